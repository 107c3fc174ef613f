package engine

import "math"

// Quantized ADD and SUB of two same-shape 8-bit tensors, TFLite's integer kernel: both inputs
// are offset, shifted left by 20 bits and rescaled to a common scale, summed, and the sum
// rescaled to the output. Residual connections make this a visible share of MobileNetV2 and
// ResNet time when it runs one scalar call per element.

// addQ8 is a prepared ADD (or SUB) with per-tensor multipliers from quantizeMultiplier.
type addQ8 struct {
	offA, offB, offOut int32
	qA, qB, qOut       int32
	shA, shB, shOut    int
	leftShift          int
	lo, hi             int32
	sub, double        bool
	// simd: single rounding with every shift <= 0, the case the AVX2 kernel implements.
	simd bool
	// vec holds the constants of the AVX2 kernel as 32-byte vectors (see addQ8Vec*).
	vec [addQ8VecN][8]int32
}

// Rows of addQ8.vec, in the order the assembly reads them.
const (
	addQ8VecOffA = iota // dword broadcast
	addQ8VecOffB
	addQ8VecQA // dword broadcast (VPMULDQ reads the even dwords)
	addQ8VecRndA
	addQ8VecTsA // shift count in the low qword
	addQ8VecQB
	addQ8VecRndB
	addQ8VecTsB
	addQ8VecQOut
	addQ8VecRndOut
	addQ8VecTsOut
	addQ8VecOffOut
	addQ8VecLo
	addQ8VecHi
	addQ8VecLeft // left shift count in the low qword
	addQ8VecN
)

// newAddQ8 prepares out = clamp(mulq(mulq((a+offA)<<ls, qA, shA) ± mulq((b+offB)<<ls, qB, shB),
// qOut, shOut) + offOut, lo, hi), mulq rounding once (TFLITE_SINGLE_ROUNDING) or twice.
func newAddQ8(offA, offB, offOut, qA, qB, qOut int32, shA, shB, shOut, leftShift int, lo, hi int32, sub, double bool) *addQ8 {
	k := &addQ8{offA: offA, offB: offB, offOut: offOut, qA: qA, qB: qB, qOut: qOut,
		shA: shA, shB: shB, shOut: shOut, leftShift: leftShift, lo: lo, hi: hi, sub: sub, double: double}
	k.simd = !double && shA <= 0 && shB <= 0 && shOut <= 0 && leftShift >= 0 && leftShift < 32
	dw := func(row int, v int32) {
		for i := range 8 {
			k.vec[row][i] = v
		}
	}
	qw := func(row int, v int64) {
		for i := range 4 {
			k.vec[row][2*i], k.vec[row][2*i+1] = int32(uint32(v)), int32(uint32(uint64(v)>>32))
		}
	}
	dw(addQ8VecOffA, offA)
	dw(addQ8VecOffB, offB)
	for _, m := range []struct {
		row   int
		q     int32
		shift int
	}{{addQ8VecQA, qA, shA}, {addQ8VecQB, qB, shB}, {addQ8VecQOut, qOut, shOut}} {
		ts := 31 - m.shift
		dw(m.row, m.q)
		if k.simd {
			qw(m.row+1, int64(1)<<(ts-1))
			k.vec[m.row+2][0] = int32(ts)
		}
	}
	dw(addQ8VecOffOut, offOut)
	dw(addQ8VecLo, lo)
	dw(addQ8VecHi, hi)
	k.vec[addQ8VecLeft][0] = int32(leftShift)
	return k
}

// one is the scalar definition of one output element.
func (k *addQ8) one(x, y int32) int32 {
	sx := kmulq((x+k.offA)<<uint(k.leftShift), k.qA, k.shA, k.double)
	sy := kmulq((y+k.offB)<<uint(k.leftShift), k.qB, k.shB, k.double)
	if k.sub {
		sy = -sy
	}
	r := kmulq(sx+sy, k.qOut, k.shOut, k.double) + k.offOut
	return min(max(r, k.lo), k.hi)
}

// run computes dst[i] from a[i] and b[i], 8-bit values read as uint8 when u8 (else int8).
func (k *addQ8) run(dst, a, b []byte, u8 bool) {
	n := len(dst)
	a, b = a[:n], b[:n]
	i := addQ8Asm(k, dst, a, b, u8)
	for ; i < n; i++ {
		x, y := int32(int8(a[i])), int32(int8(b[i]))
		if u8 {
			x, y = int32(a[i]), int32(b[i])
		}
		dst[i] = byte(k.one(x, y))
	}
}

// kmulq is TFLite's MultiplyByQuantizedMultiplier: one rounding (TFLITE_SINGLE_ROUNDING,
// saturating to int32) or gemmlowp's two (SaturatingRoundingDoublingHighMul, then
// RoundingDivideByPOT).
func kmulq(x, q int32, shift int, double bool) int32 {
	if !double {
		ts := uint(31 - shift)
		v := (int64(x)*int64(q) + int64(1)<<(ts-1)) >> ts
		return int32(min(max(v, math.MinInt32), math.MaxInt32))
	}
	left, right := max(shift, 0), max(-shift, 0)
	x <<= uint(left)
	var v int32
	if x == math.MinInt32 && q == math.MinInt32 {
		v = math.MaxInt32
	} else {
		v = int32((int64(x)*int64(q) + 1<<30) >> 31) // equals gemmlowp's nudge-and-divide (see the requant test)
	}
	mask := int32(1)<<uint(right) - 1
	rem, thr := v&mask, mask>>1
	if v < 0 {
		thr++
	}
	v >>= uint(right)
	if rem > thr {
		v++
	}
	return v
}
