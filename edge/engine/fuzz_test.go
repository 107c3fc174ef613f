package engine

import (
	"context"
	"testing"

	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

// FuzzLoadBytes feeds arbitrary bytes to LoadBytes: it must return an error or a model
// whose Invoke succeeds, never panic. Seeds are synthetic single-op models (the corpus in
// testdata/fuzz/FuzzLoadBytes holds more).
func FuzzLoadBytes(f *testing.F) {
	for _, c := range synthCases()[:12] {
		b, err := tflite.Write(c.build())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := LoadBytes(data, Options{Threads: 1})
		if err != nil {
			return
		}
		if m.ArenaBytes() > 1<<22 {
			return // valid but too big to run quickly while fuzzing
		}
		ip := m.NewInterpreter()
		defer ip.Close()
		if err := ip.Invoke(context.Background()); err != nil {
			t.Fatalf("Invoke of a loaded model: %v", err)
		}
	})
}
