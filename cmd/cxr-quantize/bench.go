package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/engine"
)

// benchModels are the models of the speed table: the ones the targets name, plus two
// small MLPerf Tiny models whose times show the per-operator overheads.
var benchModels = []string{
	"vww_96_int8.tflite",
	"resnet8_cifar10_int8.tflite",
	"kws_dscnn_int8.tflite",
	"mobilenet_v2_pytorch_int8_1x3x224x224.tflite",
}

// benchOptions are the flags of `cxr-quantize bench`.
type benchOptions struct {
	Models  string   // folder of the .tflite files; default ../shared/models beside the repo ($CXR_SHARED/models)
	Only    []string // file names to run, default benchModels
	Runs    int      // timed runs per model and runtime, after one warm-up; default 20
	Threads int      // engine.Options.Threads; default 0 = GOMAXPROCS
	LiteRT  string   // LiteRT.js oracle folder; default $CXR_LITERT_DIR or ~/.cache/litert-oracle
	// CPUProfile, if set, receives a pprof CPU profile of the Go engine's timed runs (all
	// models), to see where the time goes: go tool pprof -top FILE.
	CPUProfile string
}

// benchRow is one line of the table.
type benchRow struct {
	Model          string
	GoMs, LiteRTMs float64
}

func cmdBench(args []string) error {
	o, err := parseBench(args, os.Stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rows, err := runBench(ctx, o)
	if err != nil {
		return err
	}
	writeBenchTable(os.Stdout, o, rows)
	return nil
}

func parseBench(args []string, stderr io.Writer) (benchOptions, error) {
	o := benchOptions{Runs: 20, Models: defaultModelsDir(), LiteRT: defaultLiteRTDir()}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Models, "models", o.Models, "folder holding the .tflite models")
	fs.IntVar(&o.Runs, "runs", o.Runs, "timed runs per model and runtime (median reported), after one warm-up")
	fs.IntVar(&o.Threads, "threads", 0, "engine threads (0 = GOMAXPROCS)")
	fs.StringVar(&o.LiteRT, "litert", o.LiteRT, "LiteRT.js oracle folder (holds litert-run.mjs)")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the Go engine's timed runs to this file")
	only := fs.String("only", "", "comma-separated model file names (default: the four table models)")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("%w: bench: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("%w: bench takes no arguments, got %q", errUsage, fs.Args())
	}
	if o.Runs < 1 {
		return o, fmt.Errorf("%w: bench: --runs must be at least 1, got %d", errUsage, o.Runs)
	}
	if o.Threads < 0 {
		return o, fmt.Errorf("%w: bench: --threads must be 0 (GOMAXPROCS) or more, got %d", errUsage, o.Threads)
	}
	o.Only = slices.Clone(benchModels)
	if *only != "" {
		o.Only = strings.Split(*only, ",")
	}
	return o, nil
}

// defaultModelsDir is $CXR_SHARED/models, else ../shared/models beside the working
// directory's repository (the layout of the development machines and CI).
func defaultModelsDir() string {
	if d := os.Getenv("CXR_SHARED"); d != "" {
		return filepath.Join(d, "models")
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				return filepath.Join(dir, "..", "shared", "models")
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	return filepath.Join("..", "shared", "models")
}

func defaultLiteRTDir() string {
	if d := os.Getenv("CXR_LITERT_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(".cache", "litert-oracle")
	}
	return filepath.Join(home, ".cache", "litert-oracle")
}

// runBench times every model in Go and in LiteRT.js, one model after the other so the two
// runtimes never compete for the cores.
func runBench(ctx context.Context, o benchOptions) (_ []benchRow, err error) {
	script := filepath.Join(o.LiteRT, "litert-run.mjs")
	if _, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("bench: LiteRT.js oracle not found (%w); set --litert or CXR_LITERT_DIR, install with shared/oracle/setup-litert.sh", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("bench: LiteRT.js needs node: %w", err)
	}
	tmp, err := os.MkdirTemp("", "cxr-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(tmp)
	if o.CPUProfile != "" {
		// LiteRT.js runs in a child process, so the profile shows the Go engine (plus its
		// model loading, which is small next to the timed runs).
		prof, err := os.Create(o.CPUProfile)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer func() {
			// A profile that did not reach the disk is an error, not a silent empty file.
			if cerr := prof.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("bench: %w", cerr)
			}
		}()
		if err := pprof.StartCPUProfile(prof); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	var rows []benchRow
	for _, name := range o.Only {
		path := filepath.Join(o.Models, name)
		goMs, err := benchGo(ctx, path, o.Runs, o.Threads)
		if err != nil {
			return nil, fmt.Errorf("bench: %s: Go engine: %w", name, err)
		}
		lrMs, err := benchLiteRT(ctx, node, script, path, filepath.Join(tmp, "out.json"), o.Runs)
		if err != nil {
			return nil, fmt.Errorf("bench: %s: LiteRT.js: %w", name, err)
		}
		rows = append(rows, benchRow{Model: strings.TrimSuffix(name, ".tflite"), GoMs: goMs, LiteRTMs: lrMs})
	}
	return rows, nil
}

// benchGo loads path, fills the inputs with the deterministic pattern of models/README.md,
// runs one warm-up and returns the median of runs timed Invoke calls in ms.
func benchGo(ctx context.Context, path string, runs, threads int) (float64, error) {
	m, err := engine.LoadFile(path, engine.Options{Threads: threads})
	if err != nil {
		return 0, err
	}
	ip := m.NewInterpreter()
	defer ip.Close()
	for i := range m.Inputs() {
		if err := fillDeterministic(ip.Input(i)); err != nil {
			return 0, err
		}
	}
	if err := ip.Invoke(ctx); err != nil {
		return 0, err
	}
	times := make([]float64, runs)
	for i := range times {
		t0 := time.Now()
		if err := ip.Invoke(ctx); err != nil {
			return 0, err
		}
		times[i] = float64(time.Since(t0).Nanoseconds()) / 1e6
	}
	return median(times), nil
}

// benchLiteRT runs the oracle script with --bench and reads median_ms from its JSON.
func benchLiteRT(ctx context.Context, node, script, model, out string, runs int) (float64, error) {
	cmd := exec.CommandContext(ctx, node, script, "--model", model, "--bench", fmt.Sprint(runs), "--out", out)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		// One line: the runner's message, however many lines it printed.
		return 0, fmt.Errorf("%w: %s", err, strings.Join(strings.Fields(stderr.String()), " "))
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return 0, err
	}
	var doc struct {
		MedianMs *float64 `json:"median_ms"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return 0, fmt.Errorf("reading %s: %w", out, err)
	}
	if doc.MedianMs == nil {
		return 0, errors.New("no median_ms in the runner's output")
	}
	return *doc.MedianMs, nil
}

// median is the element the oracle runners report, times[n>>1] of the sorted times (the
// upper median for an even count), so that run and bench compare like with like; NaN for
// no times.
func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// writeBenchTable prints the Markdown table with the machine it was measured on.
func writeBenchTable(w io.Writer, o benchOptions, rows []benchRow) {
	threads := o.Threads
	if threads == 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	fmt.Fprintf(w, "CPU: %s; GOMAXPROCS=%d; engine threads=%d; %s/%s; median of %d runs after 1 warm-up\n\n",
		cpuModel(), runtime.GOMAXPROCS(0), threads, runtime.GOOS, runtime.GOARCH, o.Runs)
	fmt.Fprintln(w, "| model | Go ms | LiteRT.js ms | Go/LiteRT |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %.2f | %.2f | %.2f |\n", r.Model, r.GoMs, r.LiteRTMs, r.GoMs/r.LiteRTMs)
	}
}

// cpuModel reads the CPU name from /proc/cpuinfo (x86 "model name", arm "Model" or
// "Hardware"); "unknown" elsewhere.
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, key := range []string{"model name", "Model", "Hardware"} {
		for line := range strings.SplitSeq(string(data), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && strings.TrimSpace(k) == key {
				return strings.TrimSpace(v)
			}
		}
	}
	return "unknown"
}
