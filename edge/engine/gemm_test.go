package engine

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// gemmRef is the plain definition of packedInt8.gemm, on the unpacked matrix w[n][k].
func gemmRef(dst []int32, a, w []int8, m, n, k int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s int32
			for kk := 0; kk < k; kk++ {
				s += int32(a[i*k+kk]) * int32(w[j*k+kk])
			}
			dst[i*n+j] = s
		}
	}
}

// kernels lists the kernels this CPU can run, portable Go first.
func kernels() []gemmKernel {
	var ks []gemmKernel
	for _, k := range []gemmKernel{kernGo, kernAVX2, kernVNNI, kernNEON} {
		if k.available() {
			ks = append(ks, k)
		}
	}
	return ks
}

func randInt8(r *rand.Rand, n int) []int8 {
	s := make([]int8, n)
	for i := range s {
		s[i] = int8(r.IntN(256) - 128)
	}
	return s
}

func fill(n int, v int8) []int8 {
	s := make([]int8, n)
	for i := range s {
		s[i] = v
	}
	return s
}

// checkGemm runs every kernel on (a, w) and compares with gemmRef element by element. dst is
// filled with garbage first, and a guard after m*n values must stay untouched.
func checkGemm(t *testing.T, a, w []int8, m, n, k int) {
	t.Helper()
	want := make([]int32, m*n)
	gemmRef(want, a, w, m, n, k)
	for _, kern := range kernels() {
		p := packInt8With(w, n, k, kern)
		if p.kern != kern {
			t.Fatalf("packed for %v, got %v", kern, p.kern)
		}
		got := make([]int32, m*n+3)
		for i := range got {
			got[i] = -7
		}
		p.gemm(got[:m*n], a, m)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%v m=%d n=%d k=%d: dst[%d] (row %d col %d) = %d, want %d",
					kern, m, n, k, i, i/n, i%n, got[i], want[i])
			}
		}
		for i := m * n; i < len(got); i++ {
			if got[i] != -7 {
				t.Fatalf("%v m=%d n=%d k=%d: wrote past m*n at %d", kern, m, n, k, i)
			}
		}
	}
}

func TestGemmRandomShapes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	dims := []int{1, 3, 4, 7, 8, 9, 17, 33, 64, 65}
	for _, m := range dims {
		for _, n := range dims {
			for _, k := range []int{1, 2, 3, 4, 5, 7, 8, 17, 27, 33, 96, 1000} {
				checkGemm(t, randInt8(r, m*k), randInt8(r, n*k), m, n, k)
			}
		}
	}
	// Shapes of real layers: more rows than a cache block, k beyond a block, FC with m=1.
	for _, s := range [][3]int{{1000, 16, 32}, {130, 24, 144}, {49, 320, 960}, {1, 1000, 1280}, {3, 5, 3000}} {
		m, n, k := s[0], s[1], s[2]
		checkGemm(t, randInt8(r, m*k), randInt8(r, n*k), m, n, k)
	}
}

// TestGemmExtremeValues proves there is no int16 saturation anywhere: every product is
// ±16384 or 16129, which saturating pairwise int16 arithmetic (VPMADDUBSW) would clip.
func TestGemmExtremeValues(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, s := range [][3]int{{1, 8, 4}, {9, 17, 33}, {8, 8, 1000}, {13, 3, 4099}} {
		m, n, k := s[0], s[1], s[2]
		for _, c := range []struct {
			name string
			a, w []int8
		}{
			{"min×min", fill(m*k, -128), fill(n*k, -128)},
			{"min×max", fill(m*k, -128), fill(n*k, 127)},
			{"max×max", fill(m*k, 127), fill(n*k, 127)},
			{"max×min", fill(m*k, 127), fill(n*k, -128)},
		} {
			t.Run(fmt.Sprintf("%s/%dx%dx%d", c.name, m, n, k), func(t *testing.T) {
				checkGemm(t, c.a, c.w, m, n, k)
			})
		}
		// Random signs of the extremes.
		a, w := make([]int8, m*k), make([]int8, n*k)
		for i := range a {
			a[i] = []int8{-128, 127}[r.IntN(2)]
		}
		for i := range w {
			w[i] = []int8{-128, 127}[r.IntN(2)]
		}
		checkGemm(t, a, w, m, n, k)
	}
	// The largest k whose extreme sum 128·128·k still fits in int32.
	k := 131071
	checkGemm(t, fill(k, -128), fill(k, -128), 1, 1, k)
}

func TestGemmEmpty(t *testing.T) {
	for _, kern := range kernels() {
		p := packInt8With(nil, 3, 0, kern)
		dst := []int32{5, 5, 5, 5, 5, 5}
		p.gemm(dst, nil, 2)
		for i, v := range dst {
			if v != 0 {
				t.Fatalf("%v k=0: dst[%d] = %d, want 0", kern, i, v)
			}
		}
		packInt8With(nil, 0, 5, kern).gemm(nil, make([]int8, 10), 2) // n=0: nothing to do
		packInt8With(make([]int8, 15), 3, 5, kern).gemm(nil, nil, 0) // m=0
	}
}

func TestGemmShortBuffersPanic(t *testing.T) {
	p := packInt8(make([]int8, 12), 3, 4)
	defer func() {
		if recover() == nil {
			t.Fatal("gemm with a too short dst did not panic")
		}
	}()
	p.gemm(make([]int32, 5), make([]int8, 8), 2)
}

// TestGemmBlockSplitsIdentical checks that computing gemm as disjoint blocks of rows or of
// panels (how callers spread it over cores) gives exactly the single-call result.
func TestGemmBlockSplitsIdentical(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, s := range [][3]int{{1000, 24, 32}, {49, 320, 960}, {1, 1000, 1280}, {333, 17, 27}} {
		m, n, k := s[0], s[1], s[2]
		a, w := randInt8(r, m*k), randInt8(r, n*k)
		want := make([]int32, m*n)
		gemmRef(want, a, w, m, n, k)
		for _, kern := range kernels() {
			p := packInt8With(w, n, k, kern)
			for parts := 1; parts <= 5; parts++ {
				byRows := make([]int32, m*n)
				for i := range parts {
					p.gemmBlock(byRows, a, m, m*i/parts, m*(i+1)/parts, 0, p.npanels)
				}
				byPanels := make([]int32, m*n)
				for i := range parts {
					p.gemmBlock(byPanels, a, m, 0, m, p.npanels*i/parts, p.npanels*(i+1)/parts)
				}
				for i := range want {
					if byRows[i] != want[i] || byPanels[i] != want[i] {
						t.Fatalf("%v parts=%d %v: dst[%d] = %d by rows, %d by panels, want %d", kern, parts, s, i, byRows[i], byPanels[i], want[i])
					}
				}
			}
		}
	}
}

func TestGemmAllocatesNothing(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	m, n, k := 256, 64, 96
	p := packInt8(randInt8(r, n*k), n, k)
	a, dst := randInt8(r, m*k), make([]int32, m*n)
	if allocs := testing.AllocsPerRun(20, func() { p.gemm(dst, a, m) }); allocs != 0 {
		t.Fatalf("gemm allocates %v times per call", allocs)
	}
}

// gemmShapes are MobileNetV2's GEMMs at 224×224 (pointwise convs, the first 3×3 conv via
// im2col, the classifier), named m_k_n.
var gemmShapes = []struct {
	name    string
	m, k, n int
}{
	{"conv1_im2col_12544x27x32", 112 * 112, 27, 32},
	{"pw_12544x32x16", 112 * 112, 32, 16},
	{"pw_3136x144x24", 56 * 56, 144, 24},
	{"pw_784x192x32", 28 * 28, 192, 32},
	{"pw_196x384x64", 14 * 14, 384, 64},
	{"pw_49x960x320", 7 * 7, 960, 320},
	{"fc_1x1280x1000", 1, 1280, 1000},
}

// BenchmarkGemm reports GMAC/s per kernel and shape, and x-naive: the speed-up over the
// naive loop (gemmRef) measured in the same run, so -bench must include the naive case.
func BenchmarkGemm(b *testing.B) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, s := range gemmShapes {
		a, w := randInt8(r, s.m*s.k), randInt8(r, s.n*s.k)
		dst := make([]int32, s.m*s.n)
		macs := float64(s.m * s.k * s.n)
		var naiveNs float64
		report := func(b *testing.B) float64 {
			ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			b.ReportMetric(macs/ns, "GMAC/s")
			if naiveNs > 0 {
				b.ReportMetric(naiveNs/ns, "x-naive")
			}
			return ns
		}
		b.Run(s.name+"/naive", func(b *testing.B) {
			for b.Loop() {
				gemmRef(dst, a, w, s.m, s.n, s.k)
			}
			naiveNs = report(b)
		})
		for _, kern := range kernels() {
			p := packInt8With(w, s.n, s.k, kern)
			b.Run(s.name+"/"+kern.String(), func(b *testing.B) {
				for b.Loop() {
					p.gemm(dst, a, s.m)
				}
				report(b)
			})
		}
		// Two goroutines, split by rows (by panels when there are few rows), as an
		// interpreter's workers would.
		p := packInt8(w, s.n, s.k)
		b.Run(s.name+"/"+p.kern.String()+"_2threads", func(b *testing.B) {
			var wg sync.WaitGroup
			for b.Loop() {
				wg.Add(1)
				if s.m >= 32 {
					go func() { p.gemmBlock(dst, a, s.m, s.m/2, s.m, 0, p.npanels); wg.Done() }()
					p.gemmBlock(dst, a, s.m, 0, s.m/2, 0, p.npanels)
				} else {
					go func() { p.gemmBlock(dst, a, s.m, 0, s.m, p.npanels/2, p.npanels); wg.Done() }()
					p.gemmBlock(dst, a, s.m, 0, s.m, 0, p.npanels/2)
				}
				wg.Wait()
			}
			report(b)
		})
	}
}
