package engine

import "math"

// TFLite's 8-bit HARD_SWISH (reference_ops::HardSwish): 16-bit fixed point with a
// "reluish" factor in [0,1] on a 2^-15 scale, computed here for the 256 possible inputs.

type hardSwishParams struct {
	inZp, outZp   int32
	outMult16     int16
	outExp        int
	reluishMult16 int16
	reluishExp    int
	qmin, qmax    int32
}

// downScale16 is DownScaleInt32ToInt16Multiplier: the Q31 multiplier rounded to Q15.
func downScale16(m int32) int16 {
	if m >= math.MaxInt32-(1<<15) {
		return math.MaxInt16
	}
	return int16((m + 1<<15) >> 16)
}

func srdhm16(a, b int16) int16 {
	if a == b && a == math.MinInt16 {
		return math.MaxInt16
	}
	ab := int32(a) * int32(b)
	nudge := int32(1 << 14)
	if ab < 0 {
		nudge = 1 - (1 << 14)
	}
	return int16((ab + nudge) / (1 << 15))
}

// sdhm16 is gemmlowp's SaturatingDoublingHighMul (truncating) for int16.
func sdhm16(a, b int16) int16 {
	if a == b && a == math.MinInt16 {
		return math.MaxInt16
	}
	return int16(int32(a) * int32(b) / (1 << 15))
}

func satShl16(x int16, s int) int16 {
	v := int32(x) << s
	return int16(min(max(v, math.MinInt16), math.MaxInt16))
}

func newHardSwishParams(inScale, outScale float32, inZp, outZp, qmin, qmax int32) hardSwishParams {
	p := hardSwishParams{inZp: inZp, outZp: outZp, qmin: qmin, qmax: qmax}
	hires := (1.0 / 128.0) * inScale
	const reluishScale = 3.0 / 32768.0
	q, e := quantizeMultiplier(float64(hires / outScale))
	p.outMult16, p.outExp = downScale16(q), e
	q, e = quantizeMultiplier(float64(hires / float32(reluishScale)))
	p.reluishMult16, p.reluishExp = downScale16(q), e
	return p
}

func (p hardSwishParams) apply(q int32) int32 {
	in := int16(q - p.inZp)
	hires := in * (1 << 7)
	preshiftOut := srdhm16(hires, p.outMult16)
	reluish := hires
	if p.reluishExp > 0 {
		reluish = satShl16(reluish, p.reluishExp-1)
	}
	reluish = srdhm16(reluish, p.reluishMult16)
	if p.reluishExp > 0 {
		reluish = satShl16(reluish, 1)
	}
	if p.reluishExp < 0 {
		reluish = rdbpot(reluish, -p.reluishExp)
	}
	reluish = int16((int32(reluish) + (1 << 15)) >> 1)
	out := sdhm16(reluish, preshiftOut)
	out = rdbpot(out, -p.outExp)
	return clamp32(int32(out)+p.outZp, p.qmin, p.qmax)
}
