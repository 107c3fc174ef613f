package engine

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
)

var benchModels = []struct{ name, file string }{
	{"vww_96_int8", "vww_96_int8.tflite"},
	{"resnet8", "resnet8_cifar10_int8.tflite"},
	{"kws_dscnn", "kws_dscnn_int8.tflite"},
	{"mobilenet_v2", "mobilenet_v2_pytorch_int8_1x3x224x224.tflite"},
}

// BenchmarkModel times Invoke on the shared models with all cores (Options.Threads 0) and
// reports LiteRT.js on the same model, timed in the same run, as litert-ns/op and the
// ratio engine/LiteRT (lower is better for the engine).
func BenchmarkModel(b *testing.B) {
	for _, bm := range benchModels {
		b.Run(bm.name, func(b *testing.B) {
			m, err := loadShared(b, bm.file, Options{})
			if err != nil {
				b.Fatal(err)
			}
			ip := m.NewInterpreter()
			defer ip.Close()
			for i := range m.Inputs() {
				fillPattern(ip.Input(i))
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := ip.Invoke(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if ms, ok := litertMedianMs(b, testenv.SharedPath(b, "models", bm.file)); ok {
				perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
				b.ReportMetric(ms*1e6, "litert-ns/op")
				b.ReportMetric(perOp/(ms*1e6), "x-litert")
			}
		})
	}
}

// litertMedianMs runs LiteRT.js on the deterministic input and returns its median Invoke
// time; ok is false when the oracle is not installed (benchmarks never fail for that).
func litertMedianMs(b *testing.B, model string) (float64, bool) {
	dir := os.Getenv("CXR_LITERT_DIR")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "litert-oracle")
	}
	script := filepath.Join(dir, "litert-run.mjs")
	if _, err := os.Stat(script); err != nil {
		return 0, false
	}
	out, err := exec.Command("node", script, "--model", model, "--bench", "20").Output()
	if err != nil {
		b.Logf("litert: %v", err)
		return 0, false
	}
	var doc struct {
		MedianMs float64 `json:"median_ms"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return 0, false
	}
	return doc.MedianMs, true
}
