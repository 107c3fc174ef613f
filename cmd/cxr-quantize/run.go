package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/engine"
	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

// runOptions are the flags of `cxr-quantize run`.
type runOptions struct {
	Model   string
	Inputs  []string // raw little-endian files, one per model input; none: the deterministic pattern
	Bench   int      // extra timed runs; 0: no timing (median_ms null)
	Out     string   // JSON file; "": stdout
	Threads int      // engine threads; 0: GOMAXPROCS
}

// runResult is the JSON the LiteRT.js and Arm NN oracle runners print, so that a script can
// compare any model's outputs across runtimes.
type runResult struct {
	Model    string      `json:"model"`
	Runtime  string      `json:"runtime"`
	Inputs   []runTensor `json:"inputs"`
	Outputs  []runTensor `json:"outputs"`
	MedianMs *float64    `json:"median_ms"`
}

type runTensor struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape []int  `json:"shape"`
	Data  any    `json:"data,omitempty"`
}

func cmdRun(args []string) error {
	o, err := parseRun(args)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := runModel(ctx, o)
	if err != nil {
		return err
	}
	text, err := json.Marshal(res)
	if err != nil {
		return err
	}
	if o.Out == "" {
		_, err = fmt.Printf("%s\n", text)
		return err
	}
	return os.WriteFile(o.Out, text, 0o644)
}

func parseRun(args []string) (runOptions, error) {
	var o runOptions
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.Model, "model", "", "the .tflite model (required)")
	fs.Func("input", "raw little-endian bytes of one input tensor; repeat once per model input, in order", func(s string) error {
		o.Inputs = append(o.Inputs, s)
		return nil
	})
	fs.IntVar(&o.Bench, "bench", 0, "time N more runs and report their median in ms")
	fs.StringVar(&o.Out, "out", "", "write the JSON to this file instead of stdout")
	fs.IntVar(&o.Threads, "threads", 0, "engine threads (0 = GOMAXPROCS)")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("%w: run: %v", errUsage, err)
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("%w: run takes flags only, got %q", errUsage, fs.Args())
	case o.Model == "":
		return o, fmt.Errorf("%w: run needs --model", errUsage)
	case o.Bench < 0:
		return o, fmt.Errorf("%w: run: --bench must be at least 0, got %d", errUsage, o.Bench)
	case o.Threads < 0:
		return o, fmt.Errorf("%w: run: --threads must be at least 0, got %d", errUsage, o.Threads)
	}
	return o, nil
}

func runModel(ctx context.Context, o runOptions) (*runResult, error) {
	m, err := engine.LoadFile(o.Model, engine.Options{Threads: o.Threads}) // its errors name the file
	if err != nil {
		return nil, err
	}
	ins := m.Inputs()
	if len(o.Inputs) > 0 && len(o.Inputs) != len(ins) {
		return nil, fmt.Errorf("model has %d inputs, got %d --input files", len(ins), len(o.Inputs))
	}
	ip := m.NewInterpreter()
	defer ip.Close()
	res := &runResult{Model: filepath.Base(o.Model), Runtime: "cxr-edge engine (pure Go)"}
	for i, info := range ins {
		t := ip.Input(i)
		if len(o.Inputs) > 0 {
			err = fillFromFile(t, o.Inputs[i])
		} else {
			if err = fillDeterministic(t); err != nil {
				err = fmt.Errorf("%w: pass --input files", err)
			}
		}
		if err != nil {
			return nil, err
		}
		res.Inputs = append(res.Inputs, runTensor{Name: info.Name, DType: info.Type.String(), Shape: info.Shape})
	}
	if err := ip.Invoke(ctx); err != nil {
		return nil, err
	}
	for i, info := range m.Outputs() {
		data, err := tensorData(ip.Output(i))
		if err != nil {
			return nil, err
		}
		res.Outputs = append(res.Outputs, runTensor{Name: info.Name, DType: info.Type.String(), Shape: info.Shape, Data: data})
	}
	if o.Bench > 0 {
		times := make([]float64, o.Bench)
		for k := range times {
			t0 := time.Now()
			if err := ip.Invoke(ctx); err != nil {
				return nil, err
			}
			times[k] = float64(time.Since(t0).Nanoseconds()) / 1e6
		}
		med := median(times)
		res.MedianMs = &med
	}
	return res, nil
}

// fillFromFile copies a raw little-endian input file into t, which must match its size.
func fillFromFile(t *engine.Tensor, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dst := t.Bytes()
	if len(data) != len(dst) {
		info := t.Info()
		return fmt.Errorf("%s: %d bytes, tensor %q (%s %v) needs %d", path, len(data), info.Name, info.Type, info.Shape, len(dst))
	}
	copy(dst, data)
	return nil
}

// fillDeterministic writes the input of models/README.md, run's default and bench's input:
// element i is u = (i·37) mod 256 stored as u (uint8, int32), u−128 (int8) or u/255
// (float32, rounded from float64 as the LiteRT.js runner's Float32Array does).
func fillDeterministic(t *engine.Tensor) error {
	info := t.Info()
	switch info.Type {
	case tflite.Int8:
		for i := range t.Int8() {
			t.Int8()[i] = int8(i*37%256 - 128)
		}
	case tflite.Uint8:
		for i := range t.Uint8() {
			t.Uint8()[i] = uint8(i * 37 % 256)
		}
	case tflite.Int32:
		for i := range t.Int32() {
			t.Int32()[i] = int32(i * 37 % 256)
		}
	case tflite.Float32:
		for i := range t.Float32() {
			t.Float32()[i] = float32(float64(i*37%256) / 255)
		}
	default:
		return fmt.Errorf("input %q has type %s, which has no deterministic pattern", info.Name, info.Type)
	}
	return nil
}

// tensorData returns an output's elements as JSON-ready numbers. float32 values are widened
// to float64, as JavaScript's Array.from(Float32Array) does, so that the printed numbers
// equal LiteRT.js's.
func tensorData(t *engine.Tensor) (any, error) {
	switch info := t.Info(); info.Type {
	case tflite.Int8:
		return widen(t.Int8()), nil
	case tflite.Uint8:
		// encoding/json would print []uint8 as base64.
		return widen(t.Uint8()), nil
	case tflite.Int32:
		return t.Int32(), nil
	case tflite.Float32:
		out := make([]float64, len(t.Float32()))
		for i, v := range t.Float32() {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("output %q element %d is %v, which JSON cannot hold", info.Name, i, v)
			}
			out[i] = float64(v)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("output %q has type %s; run prints int8, uint8, int32 and float32 outputs", info.Name, info.Type)
	}
}

func widen[T int8 | uint8](v []T) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}
