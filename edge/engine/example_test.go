package engine_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log"
	"math"

	"github.com/cxr-edge/cxr-edge/edge/engine"
	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

// A model is loaded once and shared; each goroutine runs its own Interpreter.
func Example() {
	m, err := engine.Load(tinyModel(), engine.Options{})
	if err != nil {
		log.Fatal(err)
	}
	ip := m.NewInterpreter()
	defer ip.Close()

	copy(ip.Input(0).Float32(), []float32{1, 2, 3})
	if err := ip.Invoke(context.Background()); err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.Inputs()[0].Shape, "→", m.Outputs()[0].Shape)
	fmt.Println(ip.Output(0).Float32())
	// Output:
	// [1 3] → [1 2]
	// [6 0]
}

// Loading a .tflite file from disk. An unsupported operator is refused here, with its
// index and name, rather than at Invoke.
func ExampleLoadFile() {
	m, err := engine.LoadFile("model.tflite", engine.Options{Threads: 2})
	if err != nil {
		log.Fatal(err) // e.g. "model.tflite: engine: unsupported: operator 12: RESIZE_BILINEAR"
	}
	for _, in := range m.Inputs() {
		fmt.Println(in.Name, in.Type, in.Shape, in.Scale, in.ZeroPoint)
	}
	fmt.Println("arena bytes per interpreter:", m.ArenaBytes())
}

// tinyModel builds one FULLY_CONNECTED with a fused RELU: y = relu(W·x + b) with
// W = [[1 1 1] [-1 -1 -1]] and b = 0.
func tinyModel() *tflite.Model {
	f32 := func(v ...float32) []byte {
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		return b
	}
	return &tflite.Model{
		Version:       3,
		OperatorCodes: []tflite.OperatorCode{{Builtin: tflite.OpFullyConnected, Version: 1}},
		Buffers:       []tflite.Buffer{{}, {}, {Data: f32(1, 1, 1, -1, -1, -1)}, {Data: f32(0, 0)}, {}},
		Subgraphs: []tflite.Subgraph{{
			Tensors: []tflite.Tensor{
				{Name: "x", Type: tflite.Float32, Shape: []int32{1, 3}, Buffer: 1},
				{Name: "W", Type: tflite.Float32, Shape: []int32{2, 3}, Buffer: 2},
				{Name: "b", Type: tflite.Float32, Shape: []int32{2}, Buffer: 3},
				{Name: "y", Type: tflite.Float32, Shape: []int32{1, 2}, Buffer: 4},
			},
			Inputs:  []int32{0},
			Outputs: []int32{3},
			Operators: []tflite.Operator{{
				Inputs: []int32{0, 1, 2}, Outputs: []int32{3},
				Options: &tflite.FullyConnectedOptions{Activation: tflite.ActRelu},
			}},
		}},
	}
}
