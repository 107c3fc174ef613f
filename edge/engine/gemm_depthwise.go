package engine

import "fmt"

// Depthwise convolution is per channel: no GEMM, but the same int8 products. dwPixel is the
// inner step of one output pixel, vectorised across channels, for the caller's loop over
// pixels; it leaves padding to the caller, which lists only the taps inside the input.

// dwPixel sets acc[c] = Σ_t (x_t[c] − zp) · f[woff[t]+c] for c < n, where x_t = src[soff[t]:]
// read as int8, or as uint8 when u8. soff and woff have one entry per tap.
func dwPixel(acc []int32, src []byte, soff, woff []int, f []int32, n int, zp int32, u8 bool) {
	if len(soff) != len(woff) || len(acc) < n {
		panic(fmt.Sprintf("engine: dwPixel with %d source and %d weight offsets, %d of %d accumulators", len(soff), len(woff), len(acc), n))
	}
	for t, o := range soff {
		// The SIMD kernel trusts these bounds.
		_ = src[o : o+n]
		_ = f[woff[t] : woff[t]+n]
	}
	c := dwPixelAsm(acc, src, soff, woff, f, n, zp, u8)
	for ; c < n; c++ {
		var s int32
		for t, o := range soff {
			x := int32(int8(src[o+c]))
			if u8 {
				x = int32(src[o+c])
			}
			s += (x - zp) * f[woff[t]+c]
		}
		acc[c] = s
	}
}
