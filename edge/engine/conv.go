package engine

import (
	"fmt"

	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

// window describes a 2-D sliding window over an NHWC tensor.
type window struct {
	batch, inH, inW, inC int
	outH, outW           int
	fH, fW               int
	strideH, strideW     int
	dilH, dilW           int
	padTop, padLeft      int
	padding              tflite.Padding
	depthMult, outC      int
}

func convOut(in, f, stride, dil int, pad tflite.Padding) (out, before int) {
	eff := (f-1)*dil + 1
	if pad == tflite.PaddingValid {
		out = (in - eff + stride) / stride
	} else {
		out = (in + stride - 1) / stride
	}
	total := (out-1)*stride + eff - in
	if total < 0 {
		total = 0
	}
	return out, total / 2
}

// setup checks strides and dilations and computes the output size and padding.
func (w *window) setup(in []int) error {
	if len(in) != 4 {
		return fmt.Errorf("%w: input rank %d, expected 4 (NHWC)", ErrInvalidModel, len(in))
	}
	w.batch, w.inH, w.inW, w.inC = in[0], in[1], in[2], in[3]
	if w.dilH == 0 {
		w.dilH = 1
	}
	if w.dilW == 0 {
		w.dilW = 1
	}
	if w.strideH <= 0 || w.strideW <= 0 || w.dilH < 0 || w.dilW < 0 || w.fH <= 0 || w.fW <= 0 {
		return fmt.Errorf("%w: stride %dx%d, dilation %dx%d, filter %dx%d", ErrInvalidModel, w.strideH, w.strideW, w.dilH, w.dilW, w.fH, w.fW)
	}
	// Kernels compute input positions as oy·stride − pad + fy·dilation in int. With the
	// input under 2³⁰ elements and these under 2²⁰ that stays below 2³¹, so it cannot wrap
	// on 32-bit ARM; real models use single digits.
	effH := int64(w.fH-1)*int64(w.dilH) + 1
	effW := int64(w.fW-1)*int64(w.dilW) + 1
	if w.strideH > maxWindow || w.strideW > maxWindow || effH > maxWindow || effW > maxWindow {
		return fmt.Errorf("%w: stride %dx%d, dilation %dx%d, filter %dx%d: window over %d", ErrUnsupported, w.strideH, w.strideW, w.dilH, w.dilW, w.fH, w.fW, maxWindow)
	}
	if w.padding != tflite.PaddingSame && w.padding != tflite.PaddingValid {
		return fmt.Errorf("%w: padding %d", ErrUnsupported, w.padding)
	}
	w.outH, w.padTop = convOut(w.inH, w.fH, w.strideH, w.dilH, w.padding)
	w.outW, w.padLeft = convOut(w.inW, w.fW, w.strideW, w.dilW, w.padding)
	if w.outH <= 0 || w.outW <= 0 {
		return fmt.Errorf("%w: window %dx%d does not fit input %dx%d", ErrInvalidModel, w.fH, w.fW, w.inH, w.inW)
	}
	return nil
}

// maxWindow bounds strides and dilated filter extents (see window.setup).
const maxWindow = 1 << 20

func (w *window) outShape(c int) []int { return []int{w.batch, w.outH, w.outW, c} }

// channelScales returns per-channel filter scales (broadcasting a per-tensor scale).
func channelScales(f *tensorMeta, n int) ([]float64, error) {
	s := f.info.Scale
	out := make([]float64, n)
	switch len(s) {
	case 1:
		for i := range out {
			out[i] = float64(s[0])
		}
	case n:
		for i := range out {
			out[i] = float64(s[i])
		}
	default:
		return nil, fmt.Errorf("%w: filter has %d scales for %d channels", ErrInvalidModel, len(s), n)
	}
	return out, nil
}

// constBias reads an optional int32 bias of n values (zeros when absent).
func constBiasI32(b *tensorMeta, n int) ([]int32, error) {
	out := make([]int32, n)
	if b == nil {
		return out, nil
	}
	if b.konst == nil || b.info.Type != tflite.Int32 || b.n != n {
		return nil, fmt.Errorf("%w: bias must be a constant int32 tensor of %d values (%s %v)", ErrUnsupported, n, b.info.Type.String(), b.info.Shape)
	}
	copy(out, asI32(b.konst))
	return out, nil
}

func constBiasF32(b *tensorMeta, n int) ([]float32, error) {
	out := make([]float32, n)
	if b == nil {
		return out, nil
	}
	if b.konst == nil || b.info.Type != tflite.Float32 || b.n != n {
		return nil, fmt.Errorf("%w: bias must be a constant float32 tensor of %d values", ErrUnsupported, n)
	}
	copy(out, asF32(b.konst))
	return out, nil
}

// constWeightsF32 returns float weights, dequantizing int8 weights (hybrid models) once at
// load with the scales along dimension qdim.
func constWeightsF32(f *tensorMeta) ([]float32, error) {
	if f.konst == nil {
		return nil, fmt.Errorf("%w: weights %q are not constant", ErrUnsupported, f.info.Name)
	}
	switch f.info.Type {
	case tflite.Float32:
		return asF32(f.konst), nil
	case tflite.Int8, tflite.Uint8:
		if err := needQuant(f); err != nil {
			return nil, err
		}
		qd := f.info.QuantizedDimension
		if qd < 0 || qd >= len(f.info.Shape) {
			return nil, fmt.Errorf("%w: weights quantized dimension %d", ErrInvalidModel, qd)
		}
		inner := 1
		for _, d := range f.info.Shape[qd+1:] {
			inner *= d
		}
		nch := f.info.Shape[qd]
		if len(f.info.Scale) != 1 && len(f.info.Scale) != nch {
			return nil, fmt.Errorf("%w: weights have %d scales for %d channels", ErrInvalidModel, len(f.info.Scale), nch)
		}
		out := make([]float32, f.n)
		for i := range out {
			c := 0
			if len(f.info.Scale) > 1 {
				c = (i / inner) % nch
			}
			var q int32
			if f.info.Type == tflite.Int8 {
				q = int32(int8(f.konst[i]))
			} else {
				q = int32(f.konst[i])
			}
			out[i] = float32(float64(f.info.Scale[c]) * float64(q-int32(f.info.ZeroPoint[c])))
		}
		return out, nil
	}
	return nil, unsupportedType("weights", f)
}

// floatParams holds what the float CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED kernels
// take from the model: constant weights, a bias of n values and the fused-activation clamp.
type floatParams struct {
	wts, bias []float32
	lo, hi    float32
}

// prepFloat checks that a float op (named by what) writes a float output and gathers its
// floatParams.
func prepFloat(what string, ft, bt, ot *tensorMeta, n int, act tflite.Activation) (floatParams, error) {
	if ot.info.Type != tflite.Float32 {
		return floatParams{}, unsupportedType(what+" float input with output", ot)
	}
	wts, err := constWeightsF32(ft)
	if err != nil {
		return floatParams{}, err
	}
	bias, err := constBiasF32(bt, n)
	if err != nil {
		return floatParams{}, err
	}
	lo, hi, ok := actRangeFloat(int8(act))
	if !ok {
		return floatParams{}, fmt.Errorf("%w: fused activation %d", ErrUnsupported, act)
	}
	return floatParams{wts: wts, bias: bias, lo: lo, hi: hi}, nil
}

// actRangeQ8 is actRange on the 8-bit output ot, with an error for an unknown activation.
func actRangeQ8(act tflite.Activation, ot *tensorMeta) (lo, hi int32, err error) {
	qmin, qmax := qrange(ot.info.Type)
	lo, hi, ok := actRange(int8(act), ot.scale(), ot.zp(), qmin, qmax)
	if !ok {
		return 0, 0, fmt.Errorf("%w: fused activation %d", ErrUnsupported, act)
	}
	return lo, hi, nil
}

// ---------------------------------------------------------------- quantized CONV_2D

const convTile = 32 // output pixels per im2col tile

// qconv is CONV_2D on 8-bit tensors: im2col tiles fed to the shared int8 GEMM kernel.
// uint8 tensors are shifted into int8 by flipping the sign bit (q−128), with zero points
// shifted alike, which leaves every (q − zero point) product unchanged.
type qconv struct {
	w         window
	in, out   int
	flip      byte // 0x80 for uint8 input, 0 for int8
	k, n      int  // im2col row length, output channels
	wts       *packedInt8
	inZp      int32 // in the int8 domain
	fzp       int32 // filter zero point in the int8 domain (0 for symmetric int8)
	fold      []int32
	mult      []requant
	rq        *requantChannels // fold and mult, packed for the requantisation kernel
	outZp     int32
	lo, hi    int32
	pointwise bool
}

func prepConv(l *loader) (kernel, error) {
	in, it, out, ot, err := l.io()
	if err != nil {
		return nil, err
	}
	ft, bt, err := l.weights()
	if err != nil {
		return nil, err
	}
	o, _ := l.op.Options.(*tflite.Conv2DOptions)
	if o == nil {
		return nil, fmt.Errorf("%w: missing Conv2DOptions", ErrInvalidModel)
	}
	if len(ft.info.Shape) != 4 {
		return nil, shapeErr("filter", ft.info.Shape, []int{-1, -1, -1, -1})
	}
	oc, kh, kw, ic := ft.info.Shape[0], ft.info.Shape[1], ft.info.Shape[2], ft.info.Shape[3]
	w := window{fH: kh, fW: kw, strideH: int(o.StrideH), strideW: int(o.StrideW), dilH: int(o.DilationH), dilW: int(o.DilationW), padding: o.Padding}
	if err := w.setup(it.info.Shape); err != nil {
		return nil, err
	}
	if w.inC != ic {
		return nil, fmt.Errorf("%w: input has %d channels, filter %d (grouped convolution)", ErrUnsupported, w.inC, ic)
	}
	if want := w.outShape(oc); !sameShape(ot.info.Shape, want) {
		return nil, shapeErr("output", ot.info.Shape, want)
	}
	if it.info.Type == tflite.Float32 {
		return prepConvF32(l, w, in, out, ft, bt, o.Activation, ot)
	}
	if !isQ8(it.info.Type) || ot.info.Type != it.info.Type || ft.info.Type != it.info.Type {
		return nil, fmt.Errorf("%w: CONV_2D with %s input, %s filter, %s output", ErrUnsupported, it.info.Type.String(), ft.info.Type.String(), ot.info.Type.String())
	}
	if ft.konst == nil {
		return nil, fmt.Errorf("%w: non-constant filter", ErrUnsupported)
	}
	if err := needQuant(it, ft, ot); err != nil {
		return nil, err
	}
	k := &qconv{w: w, in: in, out: out, k: kh * kw * ic, n: oc}
	k.pointwise = kh == 1 && kw == 1 && w.strideH == 1 && w.strideW == 1 && w.padTop == 0 && w.padLeft == 0 && it.info.Type == tflite.Int8
	if err := k.prepQ(l, it, ft, bt, ot, o.Activation); err != nil {
		return nil, err
	}
	l.m.scratch.grow(convTile*int64(k.k), convTile*int64(k.n)+convTile, 0)
	return k, nil
}

// prepQ computes the packed weights, folded per-channel constants and multipliers shared
// by CONV_2D and FULLY_CONNECTED.
func (k *qconv) prepQ(l *loader, it, ft, bt, ot *tensorMeta, act tflite.Activation) error {
	n, kk := k.n, k.k
	if it.info.Type == tflite.Uint8 {
		k.flip = 0x80
	}
	k.inZp = it.zp() - int32(k.flip)
	fscales, err := channelScales(ft, n)
	if err != nil {
		return err
	}
	for _, z := range ft.info.ZeroPoint {
		if z != ft.info.ZeroPoint[0] {
			return fmt.Errorf("%w: per-channel filter zero points", ErrUnsupported)
		}
	}
	k.fzp = int32(ft.info.ZeroPoint[0]) - int32(k.flip)
	bias, err := constBiasI32(bt, n)
	if err != nil {
		return err
	}
	w := make([]int8, n*kk)
	for i, b := range ft.konst[:n*kk] {
		w[i] = int8(b ^ k.flip)
	}
	k.wts = packInt8(w, n, kk)
	k.fold = make([]int32, n)
	k.mult = make([]requant, n)
	inScale, outScale := float64(it.scale()), float64(ot.scale())
	for c := range n {
		var sw int32
		for _, v := range w[c*kk : c*kk+kk] {
			sw += int32(v)
		}
		// Σ(a−za)(w−zw) = Σaw − zw·Σa − za·Σw + K·za·zw; the Σa term is per pixel.
		k.fold[c] = bias[c] - k.inZp*sw + int32(kk)*k.inZp*k.fzp
		k.mult[c] = l.newConvRequant(float32(inScale), float32(fscales[c]), float32(outScale))
	}
	k.outZp = ot.zp()
	if k.lo, k.hi, err = actRangeQ8(act, ot); err != nil {
		return err
	}
	k.rq = l.channelRequant(k.fold, k.mult, k.outZp, k.lo, k.hi)
	return nil
}

// requantTile writes the 8-bit outputs of m rows of accumulators; a holds the rows' inputs
// (for the per-row filter-zero-point term) and adds is scratch for m values.
func (k *qconv) requantTile(dst []byte, acc []int32, a []int8, m int, adds []int32) {
	if k.fzp == 0 {
		k.rq.rows(dst, acc, m, nil)
		return
	}
	for r := range m {
		var sa int32
		for _, v := range a[r*k.k : r*k.k+k.k] {
			sa += int32(v)
		}
		adds[r] = -k.fzp * sa
	}
	k.rq.rows(dst, acc, m, adds[:m])
}

func (k *qconv) eval(ip *Interpreter) {
	ip.parallel(k, k.w.batch*k.w.outH*k.w.outW, 4)
}

func (k *qconv) rows(ip *Interpreter, wk, lo, hi int) {
	src := ip.u8(k.in)
	dst := ip.u8(k.out)
	s := &ip.scratch[wk]
	for p0 := lo; p0 < hi; p0 += convTile {
		p1 := min(hi, p0+convTile)
		m := p1 - p0
		var a []int8
		if k.pointwise {
			a = asI8(src[p0*k.k : p1*k.k])
		} else {
			a = s.i8[:m*k.k]
			k.im2col(a, src, p0, p1)
		}
		acc := s.i32[:m*k.n]
		k.wts.gemm(acc, a, m)
		k.requantTile(dst[p0*k.n:p1*k.n], acc, a, m, s.i32[convTile*k.n:])
	}
}

// im2col writes the receptive fields of output pixels [p0,p1) as rows of a, padding with
// the input zero point so padded taps contribute nothing after the zero-point fold.
func (k *qconv) im2col(a []int8, src []byte, p0, p1 int) {
	w := &k.w
	pad := int8(k.inZp)
	ic := w.inC
	for p := p0; p < p1; p++ {
		ox := p % w.outW
		oy := (p / w.outW) % w.outH
		b := p / (w.outW * w.outH)
		row := a[(p-p0)*k.k : (p-p0+1)*k.k]
		j := 0
		for fy := range w.fH {
			iy := oy*w.strideH - w.padTop + fy*w.dilH
			if ix0 := ox*w.strideW - w.padLeft; k.flip == 0 && w.dilW == 1 && iy >= 0 && iy < w.inH && ix0 >= 0 && ix0+w.fW <= w.inW {
				// The whole filter row is inside the input: one contiguous copy.
				base := ((b*w.inH+iy)*w.inW + ix0) * ic
				j += copy(row[j:j+w.fW*ic], asI8(src[base:base+w.fW*ic]))
				continue
			}
			for fx := range w.fW {
				ix := ox*w.strideW - w.padLeft + fx*w.dilW
				seg := row[j : j+ic]
				j += ic
				if iy < 0 || iy >= w.inH || ix < 0 || ix >= w.inW {
					for c := range seg {
						seg[c] = pad
					}
					continue
				}
				base := ((b*w.inH+iy)*w.inW + ix) * ic
				in := src[base : base+ic]
				if k.flip == 0 {
					copy(seg, asI8(in))
				} else {
					for c, v := range in {
						seg[c] = int8(v ^ k.flip)
					}
				}
			}
		}
	}
}

// ---------------------------------------------------------------- float CONV_2D

type fconv struct {
	w       window
	in, out int
	oc      int
	wts     []float32 // [oc][kh][kw][ic]
	bias    []float32
	lo, hi  float32
}

func prepConvF32(l *loader, w window, in, out int, ft, bt *tensorMeta, act tflite.Activation, ot *tensorMeta) (kernel, error) {
	oc := ft.info.Shape[0]
	p, err := prepFloat("CONV_2D", ft, bt, ot, oc, act)
	if err != nil {
		return nil, err
	}
	return &fconv{w: w, in: in, out: out, oc: oc, wts: p.wts, bias: p.bias, lo: p.lo, hi: p.hi}, nil
}

func (k *fconv) eval(ip *Interpreter) { ip.parallel(k, k.w.batch*k.w.outH, 1) }

func (k *fconv) rows(ip *Interpreter, _, lo, hi int) {
	src, dst := ip.f32(k.in), ip.f32(k.out)
	w := &k.w
	kk := w.fH * w.fW * w.inC
	for r := lo; r < hi; r++ {
		b, oy := r/w.outH, r%w.outH
		for ox := range w.outW {
			o := dst[((b*w.outH+oy)*w.outW+ox)*k.oc:][:k.oc]
			for c := range k.oc {
				f := k.wts[c*kk : c*kk+kk]
				sum := float32(0)
				for fy := range w.fH {
					iy := oy*w.strideH - w.padTop + fy*w.dilH
					if iy < 0 || iy >= w.inH {
						continue
					}
					for fx := range w.fW {
						ix := ox*w.strideW - w.padLeft + fx*w.dilW
						if ix < 0 || ix >= w.inW {
							continue
						}
						in := src[((b*w.inH+iy)*w.inW+ix)*w.inC:][:w.inC]
						fw := f[(fy*w.fW+fx)*w.inC:][:w.inC]
						for i, v := range in {
							sum += v * fw[i]
						}
					}
				}
				o[c] = clampF(sum+k.bias[c], k.lo, k.hi)
			}
		}
	}
}

// ---------------------------------------------------------------- DEPTHWISE_CONV_2D

type qdw struct {
	w       window
	in, out int
	wts     []int32 // [kh][kw][oc], filter value minus its zero point
	bias    []int32
	mult    []requant
	rq      *requantChannels
	dww     *dwWeights // wts packed for the depthwise kernel
	inZp    int32      // original domain
	outZp   int32
	lo, hi  int32
	u8      bool
}

func prepDepthwise(l *loader) (kernel, error) {
	in, it, out, ot, err := l.io()
	if err != nil {
		return nil, err
	}
	ft, bt, err := l.weights()
	if err != nil {
		return nil, err
	}
	o, _ := l.op.Options.(*tflite.DepthwiseConv2DOptions)
	if o == nil {
		return nil, fmt.Errorf("%w: missing DepthwiseConv2DOptions", ErrInvalidModel)
	}
	if len(ft.info.Shape) != 4 || ft.info.Shape[0] != 1 {
		return nil, shapeErr("filter", ft.info.Shape, []int{1, -1, -1, -1})
	}
	kh, kw, oc := ft.info.Shape[1], ft.info.Shape[2], ft.info.Shape[3]
	w := window{fH: kh, fW: kw, strideH: int(o.StrideH), strideW: int(o.StrideW), dilH: int(o.DilationH), dilW: int(o.DilationW), padding: o.Padding}
	if err := w.setup(it.info.Shape); err != nil {
		return nil, err
	}
	if w.inC == 0 || oc%w.inC != 0 {
		return nil, fmt.Errorf("%w: filter has %d channels for %d input channels", ErrInvalidModel, oc, w.inC)
	}
	w.depthMult, w.outC = oc/w.inC, oc
	if o.DepthMultiplier != 0 && int(o.DepthMultiplier) != w.depthMult {
		return nil, fmt.Errorf("%w: depth_multiplier %d but filter implies %d", ErrInvalidModel, o.DepthMultiplier, w.depthMult)
	}
	if want := w.outShape(oc); !sameShape(ot.info.Shape, want) {
		return nil, shapeErr("output", ot.info.Shape, want)
	}
	if it.info.Type == tflite.Float32 {
		p, err := prepFloat("DEPTHWISE_CONV_2D", ft, bt, ot, oc, o.Activation)
		if err != nil {
			return nil, err
		}
		return &fdw{w: w, in: in, out: out, wts: p.wts, bias: p.bias, lo: p.lo, hi: p.hi}, nil
	}
	if !isQ8(it.info.Type) || ot.info.Type != it.info.Type || ft.info.Type != it.info.Type || ft.konst == nil {
		return nil, fmt.Errorf("%w: DEPTHWISE_CONV_2D with %s input, %s filter, %s output", ErrUnsupported, it.info.Type.String(), ft.info.Type.String(), ot.info.Type.String())
	}
	if err := needQuant(it, ft, ot); err != nil {
		return nil, err
	}
	k := &qdw{w: w, in: in, out: out, u8: it.info.Type == tflite.Uint8}
	fscales, err := channelScales(ft, oc)
	if err != nil {
		return nil, err
	}
	k.bias, err = constBiasI32(bt, oc)
	if err != nil {
		return nil, err
	}
	k.wts = make([]int32, ft.n)
	for i, b := range ft.konst {
		c := i % oc
		zp := int32(ft.info.ZeroPoint[0])
		if len(ft.info.ZeroPoint) == oc {
			zp = int32(ft.info.ZeroPoint[c])
		}
		if k.u8 {
			k.wts[i] = int32(b) - zp
		} else {
			k.wts[i] = int32(int8(b)) - zp
		}
	}
	k.mult = make([]requant, oc)
	for c := range oc {
		k.mult[c] = l.newConvRequant(it.scale(), float32(fscales[c]), ot.scale())
	}
	k.inZp, k.outZp = it.zp(), ot.zp()
	if k.lo, k.hi, err = actRangeQ8(o.Activation, ot); err != nil {
		return nil, err
	}
	k.rq = l.channelRequant(k.bias, k.mult, k.outZp, k.lo, k.hi)
	k.dww = packDepthwise(k.wts)
	l.m.scratch.grow(0, int64(w.outW)*int64(oc), 0)
	l.m.scratch.ints = max(l.m.scratch.ints, 2*int64(kh)*int64(kw))
	return k, nil
}

func (k *qdw) eval(ip *Interpreter) { ip.parallel(k, k.w.batch*k.w.outH, 1) }

func (k *qdw) rows(ip *Interpreter, wk, lo, hi int) {
	src, dst := ip.u8(k.in), ip.u8(k.out)
	w := &k.w
	oc, ic, dm := w.outC, w.inC, w.depthMult
	acc := ip.scratch[wk].i32[:oc]
	taps := ip.scratch[wk].ints
	nt := w.fH * w.fW
	soff, woff := taps[:nt], taps[nt:2*nt]
	if dm == 1 {
		k.rowsDM1(src, dst, ip.scratch[wk].i32[:w.outW*oc], soff, woff, lo, hi)
		return
	}
	for r := lo; r < hi; r++ {
		b, oy := r/w.outH, r%w.outH
		for ox := range w.outW {
			o := dst[((b*w.outH+oy)*w.outW+ox)*oc:][:oc]
			if dm == 1 {
				// Only taps inside the input: padding adds nothing once the zero point
				// is subtracted.
				t := 0
				for fy := range w.fH {
					iy := oy*w.strideH - w.padTop + fy*w.dilH
					if iy < 0 || iy >= w.inH {
						continue
					}
					for fx := range w.fW {
						ix := ox*w.strideW - w.padLeft + fx*w.dilW
						if ix < 0 || ix >= w.inW {
							continue
						}
						soff[t] = ((b*w.inH+iy)*w.inW + ix) * ic
						woff[t] = (fy*w.fW + fx) * oc
						t++
					}
				}
				dwPixel(acc, src, soff[:t], woff[:t], k.dww, oc, k.inZp, k.u8)
				k.rq.row(o, acc, 0)
				continue
			}
			clear(acc)
			for fy := range w.fH {
				iy := oy*w.strideH - w.padTop + fy*w.dilH
				if iy < 0 || iy >= w.inH {
					continue
				}
				for fx := range w.fW {
					ix := ox*w.strideW - w.padLeft + fx*w.dilW
					if ix < 0 || ix >= w.inW {
						continue
					}
					in := src[((b*w.inH+iy)*w.inW+ix)*ic:][:ic]
					f := k.wts[(fy*w.fW+fx)*oc:][:oc]
					for c, v := range in {
						x := int32(int8(v))
						if k.u8 {
							x = int32(v)
						}
						x -= k.inZp
						for m := range dm {
							acc[c*dm+m] += x * f[c*dm+m]
						}
					}
				}
			}
			k.rq.row(o, acc, 0)
		}
	}
}

type fdw struct {
	w       window
	in, out int
	wts     []float32
	bias    []float32
	lo, hi  float32
}

func (k *fdw) eval(ip *Interpreter) { ip.parallel(k, k.w.batch*k.w.outH, 1) }

func (k *fdw) rows(ip *Interpreter, _, lo, hi int) {
	src, dst := ip.f32(k.in), ip.f32(k.out)
	w := &k.w
	oc, ic, dm := w.outC, w.inC, w.depthMult
	for r := lo; r < hi; r++ {
		b, oy := r/w.outH, r%w.outH
		for ox := range w.outW {
			o := dst[((b*w.outH+oy)*w.outW+ox)*oc:][:oc]
			for c := range ic {
				for m := range dm {
					oc1 := c*dm + m
					sum := float32(0)
					for fy := range w.fH {
						iy := oy*w.strideH - w.padTop + fy*w.dilH
						if iy < 0 || iy >= w.inH {
							continue
						}
						for fx := range w.fW {
							ix := ox*w.strideW - w.padLeft + fx*w.dilW
							if ix < 0 || ix >= w.inW {
								continue
							}
							sum += src[((b*w.inH+iy)*w.inW+ix)*ic+c] * k.wts[(fy*w.fW+fx)*oc+oc1]
						}
					}
					o[oc1] = clampF(sum+k.bias[oc1], k.lo, k.hi)
				}
			}
		}
	}
}

// ---------------------------------------------------------------- FULLY_CONNECTED

type qfc struct {
	qconv
	batch int
}

func prepFC(l *loader) (kernel, error) {
	in, it, out, ot, err := l.io()
	if err != nil {
		return nil, err
	}
	ft, bt, err := l.weights()
	if err != nil {
		return nil, err
	}
	o, _ := l.op.Options.(*tflite.FullyConnectedOptions)
	if o == nil {
		o = &tflite.FullyConnectedOptions{}
	}
	if o.WeightsFormat != 0 {
		return nil, fmt.Errorf("%w: shuffled weights format", ErrUnsupported)
	}
	if len(ft.info.Shape) != 2 {
		return nil, shapeErr("weights", ft.info.Shape, []int{-1, -1})
	}
	n, kk := ft.info.Shape[0], ft.info.Shape[1]
	if kk == 0 || it.n%kk != 0 {
		return nil, fmt.Errorf("%w: input of %d values is not a multiple of %d", ErrInvalidModel, it.n, kk)
	}
	batch := it.n / kk
	if int64(ot.n) != int64(batch)*int64(n) { // int64: the product could wrap on 32-bit ARM
		return nil, fmt.Errorf("%w: output shape %v, expected %d×%d values", ErrInvalidModel, ot.info.Shape, batch, n)
	}
	if it.info.Type == tflite.Float32 {
		p, err := prepFloat("FULLY_CONNECTED", ft, bt, ot, n, o.Activation)
		if err != nil {
			return nil, err
		}
		return &ffc{in: in, out: out, n: n, k: kk, batch: batch, wts: p.wts, bias: p.bias, lo: p.lo, hi: p.hi}, nil
	}
	if !isQ8(it.info.Type) || ot.info.Type != it.info.Type || ft.info.Type != it.info.Type || ft.konst == nil {
		return nil, fmt.Errorf("%w: FULLY_CONNECTED with %s input, %s weights, %s output", ErrUnsupported, it.info.Type.String(), ft.info.Type.String(), ot.info.Type.String())
	}
	if err := needQuant(it, ft, ot); err != nil {
		return nil, err
	}
	k := &qfc{qconv: qconv{in: in, out: out, k: kk, n: n}, batch: batch}
	if err := k.prepQ(l, it, ft, bt, ot, o.Activation); err != nil {
		return nil, err
	}
	l.m.scratch.grow(convTile*int64(kk), convTile*int64(n)+convTile, 0)
	return k, nil
}

func (k *qfc) eval(ip *Interpreter) {
	src, dst := ip.u8(k.in), ip.u8(k.out)
	s := &ip.scratch[0]
	for p0 := 0; p0 < k.batch; p0 += convTile {
		p1 := min(k.batch, p0+convTile)
		m := p1 - p0
		var a []int8
		if k.flip == 0 {
			a = asI8(src[p0*k.k : p1*k.k])
		} else {
			a = s.i8[:m*k.k]
			for i, v := range src[p0*k.k : p1*k.k] {
				a[i] = int8(v ^ k.flip)
			}
		}
		acc := s.i32[:m*k.n]
		k.wts.gemm(acc, a, m)
		k.requantTile(dst[p0*k.n:p1*k.n], acc, a, m, s.i32[convTile*k.n:])
	}
}

type ffc struct {
	in, out     int
	n, k, batch int
	wts, bias   []float32
	lo, hi      float32
}

func (k *ffc) eval(ip *Interpreter) { ip.parallel(k, k.batch*k.n, 64) }

func (k *ffc) rows(ip *Interpreter, _, lo, hi int) {
	src, dst := ip.f32(k.in), ip.f32(k.out)
	for r := lo; r < hi; r++ {
		b, c := r/k.n, r%k.n
		a := src[b*k.k : b*k.k+k.k]
		w := k.wts[c*k.k : c*k.k+k.k]
		sum := float32(0)
		for i, v := range a {
			sum += v * w[i]
		}
		dst[r] = clampF(sum+k.bias[c], k.lo, k.hi)
	}
}

// rowsDM1 is DEPTHWISE_CONV_2D with depth multiplier 1 for output rows [lo,hi): per row, the
// columns whose taps all lie inside the input go to dwPixels in one call (same taps, shifted
// by strideW·channels), the border columns one by one, and the row is requantised at once.
func (k *qdw) rowsDM1(src, dst []byte, acc []int32, soff, woff []int, lo, hi int) {
	w := &k.w
	oc, ic := w.outC, w.inC
	oxLo := 0
	for oxLo < w.outW && oxLo*w.strideW-w.padLeft < 0 {
		oxLo++
	}
	oxHi := w.outW
	for oxHi > oxLo && (oxHi-1)*w.strideW-w.padLeft+(w.fW-1)*w.dilW >= w.inW {
		oxHi--
	}
	for r := lo; r < hi; r++ {
		b, oy := r/w.outH, r%w.outH
		for ox := 0; ox < w.outW; ox++ {
			// Only taps inside the input: padding adds nothing once the zero point is
			// subtracted.
			t := 0
			for fy := range w.fH {
				iy := oy*w.strideH - w.padTop + fy*w.dilH
				if iy < 0 || iy >= w.inH {
					continue
				}
				for fx := range w.fW {
					ix := ox*w.strideW - w.padLeft + fx*w.dilW
					if ix < 0 || ix >= w.inW {
						continue
					}
					soff[t] = ((b*w.inH+iy)*w.inW + ix) * ic
					woff[t] = (fy*w.fW + fx) * oc
					t++
				}
			}
			if ox == oxLo && oxHi > oxLo {
				dwPixels(acc[ox*oc:], src, soff[:t], woff[:t], k.dww, oc, k.inZp, k.u8, oxHi-oxLo, w.strideW*ic)
				ox = oxHi - 1
				continue
			}
			dwPixel(acc[ox*oc:ox*oc+oc], src, soff[:t], woff[:t], k.dww, oc, k.inZp, k.u8)
		}
		o := (b*w.outH + oy) * w.outW * oc
		k.rq.rows(dst[o:o+w.outW*oc], acc, w.outW, nil)
	}
}
