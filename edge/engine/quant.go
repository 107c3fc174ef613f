package engine

import (
	"fmt"
	"math"
)

// Fixed-point helpers with the semantics of TFLite's reference kernels
// (quantization_util.cc and the gemmlowp primitives they use). The interpreter must round
// exactly like TFLite, so these follow its definitions rather than plain float maths.

// quantizeMultiplier splits a real multiplier m into a Q31 mantissa and a power-of-two
// exponent, m ≈ q·2^(shift−31), rounding half away from zero like TfLiteRound.
func quantizeMultiplier(m float64) (q int32, shift int) {
	if m == 0 {
		return 0, 0
	}
	frac, exp := math.Frexp(m)
	qf := int64(math.Round(frac * (1 << 31)))
	if qf == 1<<31 {
		qf /= 2
		exp++
	}
	if exp < -31 {
		return 0, 0
	}
	if exp > 30 {
		return math.MaxInt32, 30
	}
	return int32(qf), exp
}

// srdhm is gemmlowp's SaturatingRoundingDoublingHighMul.
func srdhm(a, b int32) int32 {
	if a == b && a == math.MinInt32 {
		return math.MaxInt32
	}
	ab := int64(a) * int64(b)
	nudge := int64(1 << 30)
	if ab < 0 {
		nudge = 1 - (1 << 30)
	}
	return int32((ab + nudge) / (1 << 31))
}

// rdbpot is gemmlowp's RoundingDivideByPOT: x/2^exp rounded to nearest, ties away from zero.
// HARD_SWISH runs it on int16, everything else on int32.
func rdbpot[T int16 | int32](x T, exp int) T {
	if exp <= 0 {
		return x
	}
	mask := T(1)<<exp - 1
	rem := x & mask
	threshold := mask >> 1
	if x < 0 {
		threshold++
	}
	r := x >> exp
	if rem > threshold {
		r++
	}
	return r
}

// mulQ is TFLite's MultiplyByQuantizedMultiplier.
func mulQ(x, q int32, shift int) int32 {
	left, right := 0, 0
	if shift > 0 {
		left = shift
	} else {
		right = -shift
	}
	return rdbpot(srdhm(x*(int32(1)<<left), q), right)
}

// mulQSingle is MultiplyByQuantizedMultiplier as TFLite builds it with
// TFLITE_SINGLE_ROUNDING: one rounding of x·q·2^(shift−31), ties towards +∞.
func mulQSingle(x, q int32, shift int) int32 {
	ts := uint(31 - shift)
	r := (int64(x)*int64(q) + int64(1)<<(ts-1)) >> ts
	return int32(min(max(r, math.MinInt32), math.MaxInt32))
}

// Rounding selects how integer kernels rescale int32 accumulators to 8-bit outputs. TFLite's
// runtimes differ here by ±1 in a few percent of values, and the differences compound in
// deep networks, so the engine can reproduce each of them.
type Rounding int

const (
	// RoundLiteRT, the default, reproduces LiteRT's CPU kernels (XNNPACK): CONV_2D,
	// DEPTHWISE_CONV_2D and FULLY_CONNECTED rescale in float32 and round half to even;
	// other operators round once in fixed point. The engine then gives LiteRT's bytes on
	// every conformance model and random input.
	RoundLiteRT Rounding = iota
	// RoundSingle is TFLite's reference kernels built with TFLITE_SINGLE_ROUNDING: one
	// fixed-point rounding of x·q·2^(shift−31), ties towards +∞.
	RoundSingle
	// RoundDouble is gemmlowp's SaturatingRoundingDoublingHighMul followed by
	// RoundingDivideByPOT: the default of TFLite's reference kernels and of tflite-micro.
	RoundDouble
)

func (r Rounding) String() string {
	switch r {
	case RoundLiteRT:
		return "litert"
	case RoundSingle:
		return "single"
	case RoundDouble:
		return "double"
	}
	return fmt.Sprintf("Rounding(%d)", int(r))
}

// requant is a prepared real multiplier.
type requant struct {
	q      int32
	shift  int
	double bool
	f      float32 // float32 scale for RoundLiteRT's float rescaling; 0 = fixed point
}

func (r requant) apply(x int32) int32 {
	if r.f != 0 {
		// XNNPACK's fp32 requantisation: float32 product, round half to even. The float64
		// round of a float32 value is exact.
		return sat32(math.RoundToEven(float64(float32(x) * r.f)))
	}
	if r.double {
		return mulQ(x, r.q, r.shift)
	}
	return mulQSingle(x, r.q, r.shift)
}

// sat32 converts a rounded float to int32, saturating at ±2³⁰ (NaN gives 0). Go's
// conversion of a value outside int32 is implementation specific: amd64 gives MinInt32,
// ARM saturates, so an overflowing product clamped to the opposite end of the 8-bit range
// on one and not the other. XNNPACK clamps in float before converting, as this does;
// ±2³⁰ leaves room to add any 8-bit zero point without wrapping, and every 8-bit result
// clamps the same from there. Values within ±2³⁰ convert exactly as before.
func sat32(f float64) int32 {
	if f != f {
		return 0
	}
	return int32(min(max(f, -(1<<30)), 1<<30))
}

// tfRound rounds half away from zero, like TfLiteRound/std::round.
func tfRound32(f float32) float32 { return float32(math.Round(float64(f))) }

// actRange returns the clamp bounds of a fused activation on a quantized output
// (CalculateActivationRangeQuantized).
func actRange(act int8, scale float32, zp int32, qmin, qmax int32) (lo, hi int32, ok bool) {
	quant := func(f float32) int32 { return zp + sat32(float64(tfRound32(f/scale))) }
	lo, hi = qmin, qmax
	switch act {
	case 0:
	case 1: // RELU
		lo = max(qmin, quant(0))
	case 2: // RELU_N1_TO_1
		lo = max(qmin, quant(-1))
		hi = min(qmax, quant(1))
	case 3: // RELU6
		lo = max(qmin, quant(0))
		hi = min(qmax, quant(6))
	default:
		return 0, 0, false
	}
	return lo, hi, true
}

// actRangeFloat returns the clamp bounds of a fused activation on a float output.
func actRangeFloat(act int8) (lo, hi float32, ok bool) {
	inf := float32(math.Inf(1))
	switch act {
	case 0:
		return -inf, inf, true
	case 1:
		return 0, inf, true
	case 2:
		return -1, 1, true
	case 3:
		return 0, 6, true
	}
	return 0, 0, false
}

func clamp32(x, lo, hi int32) int32 {
	if x < lo {
		return lo
	}
	if x > hi {
		return hi
	}
	return x
}

func clampF(x, lo, hi float32) float32 {
	if x < lo {
		return lo
	}
	if x > hi {
		return hi
	}
	return x
}
