package engine

import (
	"math"
	"math/rand/v2"
	"testing"
)

// refMulQ is TFLite's MultiplyByQuantizedMultiplier written out from gemmlowp's definitions
// (SaturatingRoundingDoublingHighMul with its int64 division, RoundingDivideByPOT).
func refMulQ(x, q int32, shift int) int32 {
	left, right := max(shift, 0), max(-shift, 0)
	a := x * (int32(1) << left)
	var s int32
	if a == math.MinInt32 && q == math.MinInt32 {
		s = math.MaxInt32
	} else {
		ab := int64(a) * int64(q)
		nudge := int64(1 << 30)
		if ab < 0 {
			nudge = 1 - (1 << 30)
		}
		s = int32((ab + nudge) / (1 << 31))
	}
	mask := int32(1)<<right - 1
	rem := s & mask
	thr := mask >> 1
	if s < 0 {
		thr++
	}
	r := s >> right
	if rem > thr {
		r++
	}
	return r
}

// refMulQSingle is MultiplyByQuantizedMultiplier built with TFLITE_SINGLE_ROUNDING.
func refMulQSingle(x, q int32, shift int) int32 {
	ts := uint(31 - shift)
	v := (int64(x)*int64(q) + int64(1)<<(ts-1)) >> ts
	return int32(min(max(v, math.MinInt32), math.MaxInt32))
}

func TestRequantRowMatchesTFLite(t *testing.T) {
	for _, double := range []bool{true, false} {
		t.Run(map[bool]string{true: "double", false: "single"}[double], func(t *testing.T) {
			testRequantRow(t, double)
		})
	}
}

func testRequantRow(t *testing.T, double bool) {
	r := rand.New(rand.NewPCG(11, 12))
	xs := func() int32 {
		switch r.IntN(6) {
		case 0:
			return []int32{math.MinInt32, math.MaxInt32, 0, -1, 1, 1 << 30, -1 << 30}[r.IntN(7)]
		case 1:
			return int32(r.Uint32())
		default: // realistic sums
			return int32(r.IntN(1<<21) - 1<<20)
		}
	}
	ranges := [][3]int32{{-128, 127, -5}, {0, 255, 131}, {-128, -1, -128}, {-120, 90, 3}, {0, 6, 0}}
	for _, n := range []int{1, 7, 8, 9, 16, 17, 33, 96, 1000} {
		for _, rg := range ranges {
			bias, q, shift := make([]int32, n), make([]int32, n), make([]int, n)
			for c := range n {
				bias[c] = int32(r.IntN(1<<16) - 1<<15)
				switch r.IntN(4) {
				case 0:
					q[c] = []int32{0, 1, math.MaxInt32, 1 << 30}[r.IntN(4)]
				default:
					q[c] = int32(1<<30 + r.IntN(1<<30))
				}
				shift[c] = r.IntN(62) - 31 // -31..30
				if r.IntN(2) == 0 {
					shift[c] = r.IntN(16) - 12 // the usual range
				}
				if !double && n > 9 && shift[c] > 0 {
					shift[c] = -shift[c] // keep these rows on the SIMD path (shift <= 0)
				}
			}
			rq := newRequantChannels(bias, q, shift, rg[2], rg[0], rg[1], double)
			if !double && n > 9 && !rq.simd {
				t.Fatal("single rounding with shifts <= 0 left the SIMD path")
			}
			acc := make([]int32, n)
			dst := make([]byte, n+1)
			for range 20 {
				for c := range acc {
					acc[c] = xs()
				}
				add := int32(0)
				if r.IntN(3) == 0 {
					add = int32(r.IntN(2001) - 1000)
				}
				dst[n] = 0xee
				rq.row(dst, acc, add)
				for c := range n {
					want := refMulQ(acc[c]+bias[c]+add, q[c], shift[c]) + rg[2]
					if !double {
						want = refMulQSingle(acc[c]+bias[c]+add, q[c], shift[c]) + rg[2]
					}
					want = min(max(want, rg[0]), rg[1])
					if dst[c] != byte(want) {
						t.Fatalf("n=%d c=%d x=%d bias=%d add=%d q=%d shift=%d: got %d, want %d (byte %d)",
							n, c, acc[c], bias[c], add, q[c], shift[c], dst[c], want, byte(want))
					}
				}
				if dst[n] != 0xee {
					t.Fatalf("n=%d: row wrote past n", n)
				}
			}
		}
	}
}

// refRequantFloat is XNNPACK's fp32 requantisation as the engine's RoundLiteRT defines it.
func refRequantFloat(x int32, f float32, zp, lo, hi int32) int32 {
	return min(max(int32(math.RoundToEven(float64(float32(x)*f)))+zp, lo), hi)
}

func TestRequantFloatMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(27, 28))
	for _, n := range []int{1, 7, 8, 9, 24, 33, 96} {
		bias, fs := make([]int32, n), make([]float32, n)
		for c := range n {
			bias[c] = int32(r.IntN(1<<16) - 1<<15)
			fs[c] = float32(math.Ldexp(0.5+r.Float64()/2, -r.IntN(16)))
		}
		// Ties: x·f exactly halfway between integers must round to even.
		fs[0] = 0.5
		rq := newRequantFloat(bias, fs, 7, -128, 127)
		for _, m := range []int{1, 3, 32} {
			acc := make([]int32, m*n)
			for i := range acc {
				acc[i] = int32(r.IntN(1<<22) - 1<<21)
				if r.IntN(4) == 0 {
					acc[i] = -bias[i%n] + int32(r.IntN(21)-10) // small sums: many exact halves
				}
			}
			adds := make([]int32, m)
			for i := range adds {
				adds[i] = int32(r.IntN(200) - 100)
			}
			for _, ad := range [][]int32{nil, adds} {
				got := make([]byte, m*n)
				rq.rows(got, acc, m, ad)
				for i := range m {
					var add int32
					if ad != nil {
						add = ad[i]
					}
					for c := range n {
						want := refRequantFloat(acc[i*n+c]+bias[c]+add, fs[c], 7, -128, 127)
						if got[i*n+c] != byte(want) {
							t.Fatalf("n=%d m=%d row %d channel %d: x=%d f=%g: got %d, want %d", n, m, i, c, acc[i*n+c]+bias[c]+add, fs[c], int8(got[i*n+c]), want)
						}
					}
				}
			}
		}
	}
}

// TestRequantRowsMatchesRow checks the multi-row call, with and without per-row terms,
// against row on each row.
func TestRequantRowsMatchesRow(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	for _, double := range []bool{true, false} {
		for _, n := range []int{1, 8, 13, 24, 96} {
			bias, q, shift := make([]int32, n), make([]int32, n), make([]int, n)
			for c := range n {
				bias[c], q[c], shift[c] = int32(r.IntN(2000)-1000), int32(1<<30+r.IntN(1<<30)), -r.IntN(12)
			}
			rq := newRequantChannels(bias, q, shift, 5, -128, 127, double)
			for _, m := range []int{1, 2, 7, 32} {
				acc := make([]int32, m*n)
				for i := range acc {
					acc[i] = int32(r.IntN(1<<22) - 1<<21)
				}
				for _, withAdds := range []bool{false, true} {
					var adds []int32
					if withAdds {
						adds = make([]int32, m)
						for i := range adds {
							adds[i] = int32(r.IntN(1<<16) - 1<<15)
						}
					}
					got := make([]byte, m*n+1)
					got[m*n] = 0x5a
					rq.rows(got, acc, m, adds)
					want := make([]byte, n)
					for i := range m {
						var add int32
						if adds != nil {
							add = adds[i]
						}
						for c := range n {
							want[c] = byte(rq.one(c, acc[i*n+c]+add))
						}
						for c := range n {
							if got[i*n+c] != want[c] {
								t.Fatalf("double=%v n=%d m=%d adds=%v: row %d channel %d = %d, want %d", double, n, m, withAdds, i, c, got[i*n+c], want[c])
							}
						}
					}
					if got[m*n] != 0x5a {
						t.Fatal("rows wrote past m*n")
					}
				}
			}
		}
	}
}

func BenchmarkRequantRow(b *testing.B) {
	r := rand.New(rand.NewPCG(13, 14))
	n := 144
	bias, q, shift := make([]int32, n), make([]int32, n), make([]int, n)
	acc := make([]int32, n)
	for c := range n {
		bias[c], q[c], shift[c] = int32(r.IntN(1000)), int32(1<<30+r.IntN(1<<30)), -8-r.IntN(3)
		acc[c] = int32(r.IntN(1<<20) - 1<<19)
	}
	rq := newRequantChannels(bias, q, shift, -3, -128, 127, true)
	dst := make([]byte, n)
	b.Run("scalar", func(b *testing.B) {
		for b.Loop() {
			for c := range n {
				dst[c] = byte(min(max(refMulQ(acc[c]+bias[c], q[c], shift[c])-3, -128), 127))
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/value")
	})
	b.Run("row", func(b *testing.B) {
		for b.Loop() {
			rq.row(dst, acc, 0)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/value")
	})
	// A GEMM tile of 32 rows of 24 channels, in one call.
	m, n24 := 32, 24
	rq24 := newRequantChannels(bias[:n24], q[:n24], shift[:n24], -3, -128, 127, true)
	acc32, dst32 := make([]int32, m*n24), make([]byte, m*n24)
	for i := range acc32 {
		acc32[i] = int32(r.IntN(1<<20) - 1<<19)
	}
	b.Run("rows_32x24", func(b *testing.B) {
		for b.Loop() {
			rq24.rows(dst32, acc32, m, nil)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*m*n24), "ns/value")
	})
}
