package engine

import (
	"fmt"
	"math"
)

// Depthwise convolution is per channel: no GEMM, but the same int8 products. dwPixel(s) is
// the inner step of the caller's loop over output pixels, vectorised across channels; the
// caller lists only the taps inside the input (padding contributes nothing after the zero
// point is subtracted) and requantises the sums with requantChannels.rows.

// dwWeights are depthwise filter values f[tap][channel] (filter value minus its zero point),
// prepared once at load.
type dwWeights struct {
	f []int32
	// f16[i] = f[i] & 0xffff: each value in the low half of its 32-bit lane, so that the AVX2
	// kernel multiplies with VPMADDWD (one fast instruction; the high halves multiply by 0)
	// instead of VPMULLD. Nil when a value does not fit int16.
	f16 []int32
}

// packDepthwise prepares f; it keeps a reference to f.
func packDepthwise(f []int32) *dwWeights {
	w := &dwWeights{f: f, f16: make([]int32, len(f))}
	for i, v := range f {
		if v < math.MinInt16 || v > math.MaxInt16 {
			w.f16 = nil
			break
		}
		w.f16[i] = v & 0xffff
	}
	return w
}

// dwPixel sets acc[c] = Σ_t (x_t[c] − zp) · f[woff[t]+c] for c < n, where x_t = src[soff[t]:]
// read as int8, or as uint8 when u8, and f = w.f. soff and woff have one entry per tap.
func dwPixel(acc []int32, src []byte, soff, woff []int, w *dwWeights, n int, zp int32, u8 bool) {
	dwPixels(acc, src, soff, woff, w, n, zp, u8, 1, 0)
}

// dwPixels is dwPixel for npix pixels whose taps are pixStride bytes apart (the interior of
// an output row: pixStride = strideW·channels): pixel p writes acc[p*n : p*n+n] from
// src[soff[t]+p*pixStride:].
func dwPixels(acc []int32, src []byte, soff, woff []int, fw *dwWeights, n int, zp int32, u8 bool, npix, pixStride int) {
	f := fw.f
	if len(soff) != len(woff) || len(acc) < npix*n || npix < 0 || pixStride < 0 {
		panic(fmt.Sprintf("engine: dwPixels with %d source and %d weight offsets, %d pixels, %d of %d accumulators",
			len(soff), len(woff), npix, len(acc), npix*n))
	}
	if npix == 0 || n == 0 {
		return
	}
	last := (npix - 1) * pixStride
	for t, o := range soff {
		// The SIMD kernel trusts these bounds: first and last pixel of every tap.
		_ = src[o : o+n]
		_ = src[o+last : o+last+n]
		_ = f[woff[t] : woff[t]+n]
	}
	c0 := 0
	// x − zp must fit int16 for VPMADDWD: true of every 8-bit zero point.
	if fw.f16 != nil && zp >= -255 && zp <= 255 {
		c0 = dwPixelsAsm(acc, src, soff, woff, fw.f16, n, zp, u8, npix, pixStride)
	}
	if c0 == n {
		return
	}
	// Taps outer, channels inner: contiguous loops the compiler keeps free of bounds checks.
	for p := range npix {
		a := acc[p*n+c0 : p*n+n]
		clear(a)
		for t, o := range soff {
			x := src[o+p*pixStride+c0 : o+p*pixStride+n]
			w := f[woff[t]+c0 : woff[t]+n]
			w = w[:len(x)]
			a := a[:len(x)]
			if u8 {
				for c, v := range x {
					a[c] += (int32(v) - zp) * w[c]
				}
			} else {
				for c, v := range x {
					a[c] += (int32(int8(v)) - zp) * w[c]
				}
			}
		}
	}
}
