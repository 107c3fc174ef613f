package engine

import (
	"context"
	"encoding/json"
	"os/exec"
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
	lrt := testenv.LiteRT(b) // the peer of the ratio: skip (fail in CI) before timing anything
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
			ms := litertMedianMs(b, lrt, testenv.SharedPath(b, "models", bm.file))
			perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			b.ReportMetric(ms*1e6, "litert-ns/op")
			b.ReportMetric(perOp/(ms*1e6), "x-litert")
		})
	}
}

// litertMedianMs runs LiteRT.js (the command testenv.LiteRT found) on the deterministic
// input and returns its median Invoke time.
func litertMedianMs(b *testing.B, lrt []string, model string) float64 {
	out, err := exec.Command(lrt[0], lrt[1], "--model", model, "--bench", "20").Output()
	if err != nil {
		b.Fatalf("LiteRT.js: %v", err)
	}
	var doc struct {
		MedianMs float64 `json:"median_ms"`
	}
	if err := json.Unmarshal(out, &doc); err != nil || !(doc.MedianMs > 0) {
		b.Fatalf("LiteRT.js output %q: %v", out, err)
	}
	return doc.MedianMs
}
