package engine

import (
	"math"
	"math/rand/v2"
	"testing"
)

// dwPixelRef is the definition of dwPixel.
func dwPixelRef(acc []int32, src []byte, soff, woff []int, f []int32, n int, zp int32, u8 bool) {
	for c := range n {
		var s int32
		for t := range soff {
			x := int32(int8(src[soff[t]+c]))
			if u8 {
				x = int32(src[soff[t]+c])
			}
			s += (x - zp) * f[woff[t]+c]
		}
		acc[c] = s
	}
}

func TestDwPixelMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for _, n := range []int{1, 3, 8, 9, 16, 17, 32, 96, 144, 960} {
		for _, ntaps := range []int{0, 1, 4, 6, 9, 25} {
			for _, u8 := range []bool{false, true} {
				for _, extreme := range []bool{false, true} {
					src := make([]byte, 3*n+50)
					f := make([]int32, ntaps*n+n)
					for i := range src {
						src[i] = byte(r.IntN(256))
						if extreme {
							src[i] = []byte{0x80, 0x7f, 0xff, 0}[r.IntN(4)]
						}
					}
					for i := range f {
						f[i] = int32(r.IntN(256) - 128)
						if extreme {
							f[i] = []int32{-128, 127, 255, -255}[r.IntN(4)]
						}
					}
					soff, woff := make([]int, ntaps), make([]int, ntaps)
					for tp := range ntaps {
						soff[tp] = r.IntN(len(src) - n + 1)
						woff[tp] = r.IntN(len(f) - n + 1)
					}
					zp := int32(r.IntN(256) - 128)
					if u8 {
						zp = int32(r.IntN(256))
					}
					if extreme {
						zp = []int32{-128, 127, 255, 0}[r.IntN(4)]
					}
					want, got := make([]int32, n), make([]int32, n+1)
					got[n] = 77
					for i := range got[:n] {
						got[i] = -9
					}
					dwPixelRef(want, src, soff, woff, f, n, zp, u8)
					dwPixel(got, src, soff, woff, packDepthwise(f), n, zp, u8)
					for c := range want {
						if got[c] != want[c] {
							t.Fatalf("n=%d taps=%d u8=%v zp=%d: acc[%d] = %d, want %d", n, ntaps, u8, zp, c, got[c], want[c])
						}
					}
					if got[n] != 77 {
						t.Fatalf("n=%d: wrote past n", n)
					}
				}
			}
		}
	}
}

// TestDwPixelsMatchesPixel checks the row form against dwPixel on each pixel.
func TestDwPixelsMatchesPixel(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, n := range []int{1, 8, 13, 24, 96} {
		for _, u8 := range []bool{false, true} {
			for _, stride := range []int{1, 2} {
				npix, ntaps := 9, 9
				pixStride := stride * n
				src := make([]byte, (npix+3)*pixStride+3*n)
				for i := range src {
					src[i] = byte(r.IntN(256))
				}
				f := make([]int32, ntaps*n)
				for i := range f {
					f[i] = int32(r.IntN(511) - 255)
				}
				soff, woff := make([]int, ntaps), make([]int, ntaps)
				for tp := range ntaps {
					soff[tp] = (tp % 3) * n
					woff[tp] = tp * n
				}
				zp := int32(r.IntN(256) - 128)
				got := make([]int32, npix*n+1)
				got[npix*n] = 99
				dwPixels(got, src, soff, woff, packDepthwise(f), n, zp, u8, npix, pixStride)
				want := make([]int32, n)
				so := make([]int, ntaps)
				for p := range npix {
					for tp := range so {
						so[tp] = soff[tp] + p*pixStride
					}
					dwPixelRef(want, src, so, woff, f, n, zp, u8)
					for c := range n {
						if got[p*n+c] != want[c] {
							t.Fatalf("n=%d u8=%v stride=%d: pixel %d channel %d = %d, want %d", n, u8, stride, p, c, got[p*n+c], want[c])
						}
					}
				}
				if got[npix*n] != 99 {
					t.Fatal("dwPixels wrote past npix*n")
				}
			}
		}
	}
}

// TestDwPixelWideValues covers what the VPMADDWD kernel cannot take, weights beyond int16
// and a zero point beyond ±255, which must still give exact sums.
func TestDwPixelWideValues(t *testing.T) {
	r := rand.New(rand.NewPCG(29, 30))
	n, ntaps := 24, 9
	src := make([]byte, ntaps*n)
	for i := range src {
		src[i] = byte(r.IntN(256))
	}
	soff, woff := make([]int, ntaps), make([]int, ntaps)
	for tp := range ntaps {
		soff[tp], woff[tp] = tp*n, tp*n
	}
	for _, c := range []struct {
		wmax int
		zp   int32
	}{{40000, 3}, {255, 1000}, {255, -300}} {
		f := make([]int32, ntaps*n)
		for i := range f {
			f[i] = int32(r.IntN(2*c.wmax+1) - c.wmax)
		}
		fw := packDepthwise(f)
		if (c.wmax > math.MaxInt16) != (fw.f16 == nil) {
			t.Fatalf("wmax %d: f16 nil = %v", c.wmax, fw.f16 == nil)
		}
		want, got := make([]int32, n), make([]int32, n)
		dwPixelRef(want, src, soff, woff, f, n, c.zp, false)
		dwPixel(got, src, soff, woff, fw, n, c.zp, false)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("wmax %d zp %d: acc[%d] = %d, want %d", c.wmax, c.zp, i, got[i], want[i])
			}
		}
	}
}

func TestDwPixelBadOffsetsPanic(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("out-of-range source offset did not panic")
		}
	}()
	dwPixel(make([]int32, 8), make([]byte, 10), []int{5}, []int{0}, packDepthwise(make([]int32, 8)), 8, 0, false)
}

// BenchmarkDwPixel is one 3×3 output pixel of MobileNetV2's 56×56×144 depthwise layer,
// against the reference loop.
func BenchmarkDwPixel(b *testing.B) {
	r := rand.New(rand.NewPCG(17, 18))
	n := 144
	src := make([]byte, 9*n)
	for i := range src {
		src[i] = byte(r.IntN(256))
	}
	f := make([]int32, 9*n)
	for i := range f {
		f[i] = int32(r.IntN(256) - 128)
	}
	soff, woff := make([]int, 9), make([]int, 9)
	for t := range 9 {
		soff[t], woff[t] = t*n, t*n
	}
	acc := make([]int32, n)
	fw := packDepthwise(f)
	macs := float64(9 * n)
	var refNs float64
	b.Run("reference", func(b *testing.B) {
		for b.Loop() {
			dwPixelRef(acc, src, soff, woff, f, n, -3, false)
		}
		refNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		b.ReportMetric(macs/refNs, "GMAC/s")
	})
	// A row of 56 pixels in one call (56×56×144 layer, stride 1).
	row := make([]byte, 58*n+2*58*n)
	acc56 := make([]int32, 56*n)
	soffRow := make([]int, 9)
	for t := range 9 {
		soffRow[t] = (t/3)*58*n + (t%3)*n
	}
	b.Run("dwPixels_row56", func(b *testing.B) {
		for b.Loop() {
			dwPixels(acc56, row, soffRow, woff, fw, n, -3, false, 56, n)
		}
		ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N*56)
		b.ReportMetric(macs/ns, "GMAC/s")
		if refNs > 0 {
			b.ReportMetric(refNs/ns, "x-reference")
		}
	})
	b.Run("dwPixel", func(b *testing.B) {
		for b.Loop() {
			dwPixel(acc, src, soff, woff, fw, n, -3, false)
		}
		ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		b.ReportMetric(macs/ns, "GMAC/s")
		if refNs > 0 {
			b.ReportMetric(refNs/ns, "x-reference")
		}
	})
}
