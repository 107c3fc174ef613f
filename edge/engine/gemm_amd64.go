//go:build amd64 && !purego

package engine

import "golang.org/x/sys/cpu"

// gemmPanelAVX2 computes out[r*ldo+c] = Σ_{kk<4·groups} a[r*lda+kk]·W[c][kk] for r < rows,
// c < 8, from one packed panel w. Int8 values are sign extended to int16 and multiplied
// pairwise with VPMADDWD, which cannot overflow (2·128·128 < 2³¹).
//
//go:noescape
func gemmPanelAVX2(w *int8, groups int, a *int8, lda int, rows int, out *int32, ldo int)

// gemmPanelVNNI is gemmPanelAVX2 with VPDPBUSD (AVX-512 VNNI on 256-bit registers). It
// multiplies unsigned by signed bytes, so it feeds a+128 (a XOR 0x80) and subtracts corr
// (128·Σ W[c]) from each sum; int32 arithmetic wraps, so the result is exact. VPDPBUSD does
// not saturate.
//
//go:noescape
func gemmPanelVNNI(w *int8, groups int, a *int8, lda int, rows int, out *int32, ldo int, corr *int32)

func (k gemmKernel) available() bool {
	switch k {
	case kernGo:
		return true
	case kernAVX2:
		return cpu.X86.HasAVX2
	case kernVNNI:
		return cpu.X86.HasAVX2 && cpu.X86.HasAVX512VNNI && cpu.X86.HasAVX512VL
	}
	return false
}

func bestKernel() gemmKernel {
	for _, k := range []gemmKernel{kernVNNI, kernAVX2} {
		if k.available() {
			return k
		}
	}
	return kernGo
}

// panelAsm runs the complete groups of one panel with kern's SIMD kernel; it reports false
// when kern has none, and the caller then runs panelGo. The caller has checked that a holds
// rows*lda values and out (rows-1)*ldo+8.
func panelAsm(kern gemmKernel, out []int32, ldo int, a []int8, lda, rows int, pw []int8, groups int, corr []int32) bool {
	if groups == 0 {
		for r := 0; r < rows; r++ {
			clear(out[r*ldo : r*ldo+panelN])
		}
		return true
	}
	switch kern {
	case kernAVX2:
		gemmPanelAVX2(&pw[0], groups, &a[0], lda, rows, &out[0], ldo)
		return true
	case kernVNNI:
		gemmPanelVNNI(&pw[0], groups, &a[0], lda, rows, &out[0], ldo, &corr[0])
		return true
	}
	return false
}

// requantAVX2 runs requantChannels.rows for the first n&^7 channels of m rows of n values;
// p points at {0, zp, lo, hi}, adds at m per-row terms or is nil.
//
//go:noescape
func requantAVX2(dst *byte, acc *int32, n, m int, bias, mult, lshift, rshift, rmask, rhalf *int32, p *[4]int32, adds *int32)

// requantSingleAVX2 is requantAVX2 with TFLITE_SINGLE_ROUNDING, for shifts <= 0.
//
//go:noescape
func requantSingleAVX2(dst *byte, acc *int32, n, m int, bias, mult, ts, tsm1 *int32, p *[4]int32, adds *int32)

// requantFloatAVX2 is requantAVX2 with XNNPACK's float rescaling: VCVTDQ2PS, VMULPS and
// VCVTPS2DQ, which rounds half to even in the default MXCSR mode Go runs with.
//
//go:noescape
func requantFloatAVX2(dst *byte, acc *int32, n, m int, bias *int32, fscale *float32, p *[4]int32, adds *int32)

// requantAsm requantises the first n&^7 channels of m rows and returns n&^7 (0 when it
// cannot: no AVX2, fewer than 8 channels, or single rounding with a shift > 0). The caller
// has checked the lengths of dst, acc and adds.
func requantAsm(r *requantChannels, dst []byte, acc []int32, m int, adds []int32) int {
	if r.n < 8 || m == 0 || !r.simd || !cpu.X86.HasAVX2 {
		return 0
	}
	p := [4]int32{0, r.zp, r.lo, r.hi}
	var ap *int32
	if adds != nil {
		ap = &adds[0]
	}
	if r.fscale != nil {
		requantFloatAVX2(&dst[0], &acc[0], r.n, m, &r.bias[0], &r.fscale[0], &p, ap)
	} else if !r.double {
		requantSingleAVX2(&dst[0], &acc[0], r.n, m, &r.bias[0], &r.mult[0], &r.ts[0], &r.tsm1[0], &p, ap)
	} else {
		requantAVX2(&dst[0], &acc[0], r.n, m, &r.bias[0], &r.mult[0], &r.lshift[0], &r.rshift[0], &r.rmask[0], &r.rhalf[0], &p, ap)
	}
	return r.n &^ 7
}

// dwPixelsS8AVX2 and dwPixelsU8AVX2 run dwPixels for the first n&^7 channels, with the
// weights of dwWeights.f16.
//
//go:noescape
func dwPixelsS8AVX2(acc *int32, src *byte, soff, woff *int, ntaps int, f *int32, n int, zp int32, npix, pixStride int)

//go:noescape
func dwPixelsU8AVX2(acc *int32, src *byte, soff, woff *int, ntaps int, f *int32, n int, zp int32, npix, pixStride int)

// dwPixelsAsm returns how many channels it did: n&^7, or 0 without AVX2. The caller has
// checked every offset.
func dwPixelsAsm(acc []int32, src []byte, soff, woff []int, f []int32, n int, zp int32, u8 bool, npix, pixStride int) int {
	if n < 8 || len(soff) == 0 || npix == 0 || !cpu.X86.HasAVX2 {
		return 0
	}
	if u8 {
		dwPixelsU8AVX2(&acc[0], &src[0], &soff[0], &woff[0], len(soff), &f[0], n, zp, npix, pixStride)
	} else {
		dwPixelsS8AVX2(&acc[0], &src[0], &soff[0], &woff[0], len(soff), &f[0], n, zp, npix, pixStride)
	}
	return n &^ 7
}

// addQ8S8AVX2 and addQ8U8AVX2 run addQ8.run on the first n&^7 elements.
//
//go:noescape
func addQ8S8AVX2(dst, a, b *byte, n int, vec *[addQ8VecN][8]int32, sub bool)

//go:noescape
func addQ8U8AVX2(dst, a, b *byte, n int, vec *[addQ8VecN][8]int32, sub bool)

func addQ8Asm(k *addQ8, dst, a, b []byte, u8 bool) int {
	n := len(dst)
	if n < 8 || !k.simd || !cpu.X86.HasAVX2 {
		return 0
	}
	if u8 {
		addQ8U8AVX2(&dst[0], &a[0], &b[0], n, &k.vec, k.sub)
	} else {
		addQ8S8AVX2(&dst[0], &a[0], &b[0], n, &k.vec, k.sub)
	}
	return n &^ 7
}
