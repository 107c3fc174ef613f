package engine

import "math"

// Requantisation of int32 sums to 8-bit outputs, TFLite's MultiplyByQuantizedMultiplier per
// channel, in a layout a SIMD kernel can stream: after the GEMM (and depthwise) kernels this
// per-element step is what dominates when it runs one scalar call per value.

// requantChannels holds, per output channel c, the folded bias and the Q31 multiplier with
// its shift in the forms the kernels use, plus the output zero point and clamp range.
type requantChannels struct {
	n          int
	double     bool // gemmlowp's two roundings (RoundDouble), else TFLITE_SINGLE_ROUNDING
	simd       bool // false when a single-rounding shift > 0 could overflow int32: scalar only
	bias, mult []int32
	lshift     []int32   // double: max(shift, 0)
	rshift     []int32   // double: max(-shift, 0)
	rmask      []int32   // double: 1<<rshift − 1
	rhalf      []int32   // double: rmask >> 1
	ts, tsm1   []int32   // single: 31 − shift and 30 − shift
	fscale     []float32 // non-nil: XNNPACK's float rescaling (the engine's RoundLiteRT)
	zp, lo, hi int32     // lo, hi within one byte's range (int8 or uint8)
}

// newRequantChannels prepares bias[c] and the multipliers (q[c], shift[c]) of
// quantizeMultiplier; outputs are clamp(mulQ(acc+bias[c]+add, q[c], shift[c]) + zp, lo, hi)
// with mulQ rounding twice (double) or once, as the engine's Rounding option says.
func newRequantChannels(bias, q []int32, shift []int, zp, lo, hi int32, double bool) *requantChannels {
	return newRequantChannelsFloat(bias, q, shift, nil, zp, lo, hi, double)
}

// newRequantFloat prepares XNNPACK's float32 rescaling: outputs are
// clamp(roundHalfEven(float32(acc+bias[c]+add)·fscale[c]) + zp, lo, hi).
func newRequantFloat(bias []int32, fscale []float32, zp, lo, hi int32) *requantChannels {
	n := len(fscale)
	return newRequantChannelsFloat(bias, make([]int32, n), make([]int, n), fscale, zp, lo, hi, false)
}

func newRequantChannelsFloat(bias, q []int32, shift []int, fscale []float32, zp, lo, hi int32, double bool) *requantChannels {
	n := len(q)
	r := &requantChannels{
		n: n, double: double, simd: true, bias: make([]int32, n), mult: make([]int32, n),
		lshift: make([]int32, n), rshift: make([]int32, n), rmask: make([]int32, n), rhalf: make([]int32, n),
		ts: make([]int32, n), tsm1: make([]int32, n),
		zp: zp, lo: lo, hi: hi,
	}
	copy(r.bias, bias)
	copy(r.mult, q)
	if fscale != nil {
		r.fscale = make([]float32, n)
		copy(r.fscale, fscale[:n])
		for _, f := range r.fscale {
			// The SIMD kernel converts with VCVTPS2DQ, which does not saturate: keep its
			// products within ±2³⁰ (|int32| · 0.5), where it agrees with the scalar sat32.
			// Real models' scales are far below 0.5.
			if !(math.Abs(float64(f)) <= 0.5) {
				r.simd = false
			}
		}
		return r
	}
	for c, s := range shift[:n] {
		if s > 0 {
			r.lshift[c] = int32(s)
		} else {
			r.rshift[c] = int32(-s)
		}
		r.rmask[c] = int32(1)<<r.rshift[c] - 1
		r.rhalf[c] = r.rmask[c] >> 1
		r.ts[c], r.tsm1[c] = int32(31-s), int32(30-s)
		if !double && s > 0 {
			// x·q·2^(s−31) may then leave int32, which TFLite saturates; the SIMD kernel
			// does not, and real models' multipliers are < 1 (s <= 0) anyway.
			r.simd = false
		}
	}
	return r
}

// row writes dst[c] = byte(clamp(mulQ(acc[c]+bias[c]+add) + zp, lo, hi)) for the n channels;
// add is a per-row term (the filter zero point times the row's activation sum, usually 0).
func (r *requantChannels) row(dst []byte, acc []int32, add int32) {
	adds := [1]int32{add}
	if add == 0 {
		r.rows(dst, acc, 1, nil)
		return
	}
	r.rows(dst, acc, 1, adds[:])
}

// rows is row for m consecutive rows of n values: dst[i*n+c] from acc[i*n+c] + adds[i]
// (adds nil: no per-row term). One call amortises the kernel's set-up over a whole tile.
func (r *requantChannels) rows(dst []byte, acc []int32, m int, adds []int32) {
	n := r.n
	if m <= 0 {
		return
	}
	dst, acc = dst[:m*n], acc[:m*n]
	if adds != nil {
		adds = adds[:m]
	}
	c0 := requantAsm(r, dst, acc, m, adds)
	if c0 == n {
		return
	}
	for i := range m {
		var add int32
		if adds != nil {
			add = adds[i]
		}
		d, a := dst[i*n:i*n+n], acc[i*n:i*n+n]
		for c := c0; c < n; c++ {
			d[c] = byte(r.one(c, a[c]+add))
		}
	}
}

// one is the scalar definition (also the tail after the SIMD kernel).
func (r *requantChannels) one(c int, x int32) int32 {
	x += r.bias[c]
	if r.fscale != nil {
		// float32 product, round half to even (the float64 round of a float32 is exact).
		return min(max(sat32(math.RoundToEven(float64(float32(x)*r.fscale[c])))+r.zp, r.lo), r.hi)
	}
	if !r.double {
		// TFLITE_SINGLE_ROUNDING: one rounding of x·q·2^(shift−31), ties towards +∞,
		// saturated to int32.
		ts := uint(r.ts[c])
		v := (int64(x)*int64(r.mult[c]) + int64(1)<<(ts-1)) >> ts
		return min(max(int32(min(max(v, math.MinInt32), math.MaxInt32))+r.zp, r.lo), r.hi)
	}
	// TFLite's reference SaturatingRoundingDoublingHighMul and RoundingDivideByPOT. Except
	// for q = MinInt32, which quantizeMultiplier never makes, the two roundings of the
	// former reduce to (x·q + 2^30) >> 31 (the test checks against the definition).
	x <<= uint(r.lshift[c])
	v := int32((int64(x)*int64(r.mult[c]) + 1<<30) >> 31)
	rem := v & r.rmask[c]
	thr := r.rhalf[c]
	if v < 0 {
		thr++
	}
	v >>= uint(r.rshift[c])
	if rem > thr {
		v++
	}
	return min(max(v+r.zp, r.lo), r.hi)
}
