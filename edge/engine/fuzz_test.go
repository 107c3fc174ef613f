package engine

import (
	"context"
	"reflect"
	"slices"
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

// FuzzLoadMutated changes one shape dimension and one integer option field (stride,
// dilation, filter size, axis, ...) of a synthetic model: a byte-level mutation rarely gets
// past the flatbuffer decoder to these. Load must refuse the model or return one whose
// Invoke succeeds, on 64-bit hosts as on 32-bit ARM.
func FuzzLoadMutated(f *testing.F) {
	f.Add(uint8(0), uint8(0), uint8(1), int32(5), uint8(0), int32(2))
	f.Add(uint8(20), uint8(1), uint8(0), int32(0), uint8(1), int32(1<<30))
	f.Add(uint8(30), uint8(2), uint8(3), int32(1<<20), uint8(3), int32(-1))
	cases := synthCases()
	f.Fuzz(func(t *testing.T, c, tensor, dim uint8, size int32, field uint8, value int32) {
		m := cases[int(c)%len(cases)].build()
		ts := m.Subgraphs[0].Tensors
		if tn := &ts[int(tensor)%len(ts)]; len(tn.Shape) > 0 {
			tn.Shape = slices.Clone(tn.Shape)
			tn.Shape[int(dim)%len(tn.Shape)] = size
		}
		if opts := m.Subgraphs[0].Operators[0].Options; opts != nil {
			var ints []reflect.Value
			v := reflect.ValueOf(opts).Elem()
			for i := range v.NumField() {
				if v.Field(i).Kind() == reflect.Int32 {
					ints = append(ints, v.Field(i))
				}
			}
			if len(ints) > 0 {
				ints[int(field)%len(ints)].SetInt(int64(value))
			}
		}
		em, err := Load(m, Options{Threads: 1})
		if err != nil {
			return
		}
		if em.ArenaBytes() > 1<<13 {
			return // valid, but pooling windows over a large input cost O(n²) to run
		}
		ip := em.NewInterpreter()
		defer ip.Close()
		if err := ip.Invoke(context.Background()); err != nil {
			t.Fatalf("Invoke of a loaded model: %v", err)
		}
	})
}
