package quantize

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// sgemm agrees with gonum's on every transpose, on shapes around the tile edges and on the
// training network's shapes, with beta 0 (C overwritten, NaN included), 1 and another value.
func TestSgemmMatchesGonum(t *testing.T) {
	if !haveKernel {
		t.Log("no AVX2+FMA kernel on this machine: sgemm is gonum's, compared with itself")
	}
	rng := rand.New(rand.NewPCG(7, 7))
	shapes := [][3]int{ // m, n, k
		{1, 1, 1}, {5, 15, 3}, {6, 16, 1}, {7, 17, 9}, {12, 32, 64}, {13, 33, 65},
		{8, 4096, 9}, {16, 9, 4096}, {72, 1024, 8}, {128, 256, 576}, {16, 1, 128}, {20, 40, 600}, {6, 16, 257},
	}
	for _, s := range shapes {
		m, n, k := s[0], s[1], s[2]
		for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			for _, beta := range []float32{0, 1, 0.5} {
				name := fmt.Sprintf("%dx%dx%d/tA=%v,tB=%v/beta=%v", m, n, k, tr[0], tr[1], beta)
				a := randTensor(rng, 1, 1, 1, m*k, false).d
				b := randTensor(rng, 1, 1, 1, k*n, false).d
				c0 := randTensor(rng, 1, 1, 1, m*n, false).d
				if beta == 0 && len(c0) > 0 {
					c0[0] = float32(math.NaN()) // must not survive beta 0
				}
				want := append([]float32(nil), c0...)
				got := append([]float32(nil), c0...)
				gonumSgemm(tr[0], tr[1], m, n, k, 0.75, a, b, beta, want)
				sgemm(tr[0], tr[1], m, n, k, 0.75, a, b, beta, got)
				for i := range want {
					// Rounding differs (FMA, order): allow a few ulps of the sum's magnitude.
					tol := 1e-5 * (1 + float64(k)) * (1 + math.Abs(float64(want[i])))
					if math.IsNaN(float64(got[i])) || math.Abs(float64(got[i]-want[i])) > tol {
						t.Fatalf("%s: c[%d] = %v, gonum %v", name, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// BenchmarkSgemm runs the three products of a convolution layer's training step (forward,
// weight gradient, input gradient) with the kernel and with gonum, on the shapes of the
// default network's second and fifth layers for a shard of 16 images at 128²: compare the
// GFLOP/s of the two peers in the same run.
func BenchmarkSgemm(b *testing.B) {
	layers := []struct {
		name          string
		cout, kk, nhw int
	}{
		{"conv2_16x72x16384", 16, 72, 16 * 32 * 32},
		{"conv5_64x288x1024", 64, 288, 16 * 8 * 8},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, l := range layers {
		w := randTensor(rng, 1, 1, 1, l.cout*l.kk, false).d
		col := randTensor(rng, 1, 1, 1, l.kk*l.nhw, false).d
		g := randTensor(rng, 1, 1, 1, l.cout*l.nhw, false).d
		out, wg, dcol := make([]float32, l.cout*l.nhw), make([]float32, l.cout*l.kk), make([]float32, l.kk*l.nhw)
		for _, impl := range []struct {
			name string
			f    func(tA, tB bool, m, n, k int, alpha float32, a, b []float32, beta float32, c []float32)
		}{{"kernel", sgemm}, {"gonum", gonumSgemm}} {
			b.Run(l.name+"/"+impl.name, func(b *testing.B) {
				for b.Loop() {
					impl.f(false, false, l.cout, l.nhw, l.kk, 1, w, col, 0, out)
					impl.f(false, true, l.cout, l.kk, l.nhw, 1, g, col, 1, wg)
					impl.f(true, false, l.kk, l.nhw, l.cout, 1, w, g, 0, dcol)
				}
				b.ReportMetric(3*2*float64(l.cout*l.kk*l.nhw)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
