package engine

import (
	"math"
	"math/rand/v2"
	"testing"
)

// refAddQ8 is TFLite's quantized ADD/SUB of one element, from the definitions in the tests
// of requantChannels (refMulQ, refMulQSingle).
func refAddQ8(x, y, offA, offB, offOut, qA, qB, qOut int32, shA, shB, shOut, ls int, lo, hi int32, sub, double bool) int32 {
	mul := refMulQSingle
	if double {
		mul = refMulQ
	}
	sx := mul((x+offA)<<ls, qA, shA)
	sy := mul((y+offB)<<ls, qB, shB)
	if sub {
		sy = -sy
	}
	return min(max(mul(sx+sy, qOut, shOut)+offOut, lo), hi)
}

func TestAddQ8MatchesTFLite(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	simd := 0
	for trial := range 300 {
		double, sub, u8 := trial%3 == 0, trial%4 == 1, trial%5 == 2
		// Multipliers as prepBinary makes them: inputs scale/(2·max scale) <= 1/2, output
		// 2·max scale/(2^20·out scale).
		q := func() int32 { return int32(1<<30 + r.IntN(1<<30)) }
		shA, shB, shOut := -r.IntN(3), -r.IntN(3), -r.IntN(12)-10
		if trial%7 == 3 {
			shOut = r.IntN(3) // a rescaling > 1: no SIMD for single rounding
		}
		if trial%11 == 5 {
			shA, shOut = 0, -31
		}
		qmin, qmax := int32(-128), int32(127)
		if u8 {
			qmin, qmax = 0, 255
		}
		zp := func() int32 { return qmin + int32(r.IntN(256)) }
		offA, offB, offOut := -zp(), -zp(), zp()
		lo, hi := qmin, qmax
		if trial%2 == 0 {
			lo = max(qmin, offOut) // RELU
		}
		qA, qB, qOut := q(), q(), q()
		if trial%13 == 0 {
			qA, qOut = math.MaxInt32, 0
		}
		k := newAddQ8(offA, offB, offOut, qA, qB, qOut, shA, shB, shOut, 20, lo, hi, sub, double)
		if k.simd {
			simd++
		}
		n := []int{1, 7, 8, 9, 31, 64, 1000}[trial%7]
		a, b, dst := make([]byte, n), make([]byte, n), make([]byte, n+1)
		for i := range a {
			a[i], b[i] = byte(r.IntN(256)), byte(r.IntN(256))
			if trial%9 == 0 {
				a[i], b[i] = []byte{0, 0x7f, 0x80, 0xff}[r.IntN(4)], []byte{0, 0x7f, 0x80, 0xff}[r.IntN(4)]
			}
		}
		dst[n] = 0x33
		k.run(dst[:n], a, b, u8)
		for i := range n {
			x, y := int32(int8(a[i])), int32(int8(b[i]))
			if u8 {
				x, y = int32(a[i]), int32(b[i])
			}
			want := refAddQ8(x, y, offA, offB, offOut, qA, qB, qOut, shA, shB, shOut, 20, lo, hi, sub, double)
			if dst[i] != byte(want) {
				t.Fatalf("trial %d (double=%v sub=%v u8=%v simd=%v) element %d: %d ⊕ %d = %d, want %d",
					trial, double, sub, u8, k.simd, i, x, y, dst[i], byte(want))
			}
		}
		if dst[n] != 0x33 {
			t.Fatal("run wrote past len(dst)")
		}
	}
	if simd < 100 {
		t.Fatalf("only %d of 300 trials took the SIMD path", simd)
	}
}

func BenchmarkAddQ8(b *testing.B) {
	r := rand.New(rand.NewPCG(25, 26))
	n := 56 * 56 * 24 // a MobileNetV2 residual ADD
	x, y, dst := make([]byte, n), make([]byte, n), make([]byte, n)
	for i := range x {
		x[i], y[i] = byte(r.IntN(256)), byte(r.IntN(256))
	}
	k := newAddQ8(3, -7, 2, 1<<30+12345, 1<<30+999, 1<<30+777, -1, 0, -19, 20, -128, 127, false, false)
	var refNs float64
	b.Run("reference", func(b *testing.B) {
		for b.Loop() {
			for i := range dst {
				dst[i] = byte(refAddQ8(int32(int8(x[i])), int32(int8(y[i])), 3, -7, 2, 1<<30+12345, 1<<30+999, 1<<30+777, -1, 0, -19, 20, -128, 127, false, false))
			}
		}
		refNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("addQ8", func(b *testing.B) {
		for b.Loop() {
			k.run(dst, x, y, false)
		}
		ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		b.ReportMetric(ns/float64(n), "ns/value")
		if refNs > 0 {
			b.ReportMetric(refNs/ns, "x-reference")
		}
	})
}
