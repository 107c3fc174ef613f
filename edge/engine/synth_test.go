package engine

import (
	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

// synthCase is a model built in Go for an operator, type or option that the shared
// models do not exercise. The oracle test runs each in LiteRT.
type synthCase struct {
	name   string
	build  func() *tflite.Model
	expect expectation
}

// hybrid: int8 weights with float32 activations. TFLite quantizes the activations on the fly
// while the engine dequantizes the weights once, so outputs agree to about 1% of range.
const hybrid expectation = 100

func scalesN(n int, base float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = base * float32(1+i%5) / 3
	}
	return s
}

func biasN(n int, seed uint32, scale int32) []int32 {
	b := make([]int32, n)
	for i, v := range seq8(n, seed) {
		b[i] = int32(v) * scale
	}
	return b
}

// unaryModel: one op from an input of shape to an output of the same shape.
func unaryModel(code tflite.BuiltinOp, version int32, opts tflite.Options, typ tflite.TensorType, shape []int32, qin, qout *tflite.Quantization) *tflite.Model {
	b := newBuilder()
	x := b.tensor("x", typ, shape, qin, nil)
	y := b.tensor("y", typ, shape, qout, nil)
	b.op(code, version, opts, []int32{x}, []int32{y})
	b.io([]int32{x}, []int32{y})
	return b.m
}

func binaryModel(code tflite.BuiltinOp, opts tflite.Options, typ tflite.TensorType, sa, sb, so []int32, qa, qb, qo *tflite.Quantization) *tflite.Model {
	b := newBuilder()
	x := b.tensor("a", typ, sa, qa, nil)
	y := b.tensor("b", typ, sb, qb, nil)
	z := b.tensor("y", typ, so, qo, nil)
	b.op(code, 2, opts, []int32{x, y}, []int32{z})
	b.io([]int32{x, y}, []int32{z})
	return b.m
}

type convSpec struct {
	typ                  tflite.TensorType
	h, w, ic, oc, kh, kw int
	stride, dil          int32
	pad                  tflite.Padding
	act                  tflite.Activation
	depthwise            bool
	mult                 int
	hybrid               bool
}

func convModel(s convSpec) *tflite.Model {
	b := newBuilder()
	var qin, qout, qw *tflite.Quantization
	wt := s.typ
	oc := s.oc
	if s.depthwise {
		oc = s.ic * s.mult
	}
	var wshape []int32
	qdim := int32(0)
	if s.depthwise {
		wshape = []int32{1, int32(s.kh), int32(s.kw), int32(oc)}
		qdim = 3
	} else {
		wshape = []int32{int32(oc), int32(s.kh), int32(s.kw), int32(s.ic)}
	}
	nw := s.kh * s.kw * s.ic * oc
	if s.depthwise {
		nw = s.kh * s.kw * oc
	}
	var wdata, bdata []byte
	inScale := float32(0.05)
	switch {
	case s.typ == tflite.Float32 && !s.hybrid:
		wdata = tflite.Float32Data(seqF(nw, 7, -0.5, 0.5))
		bdata = tflite.Float32Data(seqF(oc, 8, -0.2, 0.2))
	case s.typ == tflite.Float32 && s.hybrid:
		wt = tflite.Int8
		wdata = i8Bytes(seq8(nw, 7))
		qw = qPerChannel(scalesN(oc, 0.004), qdim)
		bdata = tflite.Float32Data(seqF(oc, 8, -0.2, 0.2))
	case s.typ == tflite.Int8:
		qin, qout = q8(inScale, -3), q8(0.08, 5)
		ws := scalesN(oc, 0.004)
		qw = qPerChannel(ws, qdim)
		wdata = i8Bytes(seq8(nw, 7))
		bdata = tflite.Int32Data(biasN(oc, 8, 40))
	case s.typ == tflite.Uint8:
		qin, qout = q8(inScale, 120), q8(0.08, 131)
		qw = q8(0.006, 127)
		w := seq8(nw, 7)
		wdata = make([]byte, nw)
		for i, v := range w {
			wdata[i] = byte(int(v) + 128)
		}
		bdata = tflite.Int32Data(biasN(oc, 8, 40))
	}
	bt := tflite.Int32
	if s.typ == tflite.Float32 {
		bt = tflite.Float32
	}
	x := b.tensor("x", s.typ, []int32{1, int32(s.h), int32(s.w), int32(s.ic)}, qin, nil)
	w := b.tensor("w", wt, wshape, qw, wdata)
	var qb *tflite.Quantization
	if bt == tflite.Int32 && len(qw.Scale) == 1 {
		qb = q8(inScale*qw.Scale[0], 0)
	} else if bt == tflite.Int32 {
		qb = &tflite.Quantization{Scale: make([]float32, oc), ZeroPoint: make([]int64, oc)}
		for c := range oc {
			ws := qw.Scale[0]
			if len(qw.Scale) > 1 {
				ws = qw.Scale[c]
			}
			qb.Scale[c] = inScale * ws
		}
	}
	bias := b.tensor("bias", bt, []int32{int32(oc)}, qb, bdata)
	oh, _ := convOut(s.h, s.kh, int(s.stride), int(s.dil), s.pad)
	ow, _ := convOut(s.w, s.kw, int(s.stride), int(s.dil), s.pad)
	y := b.tensor("y", s.typ, []int32{1, int32(oh), int32(ow), int32(oc)}, qout, nil)
	if s.depthwise {
		b.op(tflite.OpDepthwiseConv2D, 3, &tflite.DepthwiseConv2DOptions{Padding: s.pad, StrideW: s.stride, StrideH: s.stride, DepthMultiplier: int32(s.mult), Activation: s.act, DilationW: s.dil, DilationH: s.dil}, []int32{x, w, bias}, []int32{y})
	} else {
		b.op(tflite.OpConv2D, 3, &tflite.Conv2DOptions{Padding: s.pad, StrideW: s.stride, StrideH: s.stride, Activation: s.act, DilationW: s.dil, DilationH: s.dil}, []int32{x, w, bias}, []int32{y})
	}
	b.io([]int32{x}, []int32{y})
	return b.m
}

func fcModel(typ tflite.TensorType, in []int32, k, n int, keep bool, hybridW bool) *tflite.Model {
	b := newBuilder()
	var qin, qout, qw *tflite.Quantization
	wt := typ
	var wdata, bdata []byte
	bt := tflite.Int32
	switch {
	case typ == tflite.Int8:
		qin, qout, qw = q8(0.05, 2), q8(0.1, -7), q8(0.004, 0)
		wdata, bdata = i8Bytes(seq8(n*k, 3)), tflite.Int32Data(biasN(n, 4, 30))
	case typ == tflite.Float32 && hybridW:
		wt, qw = tflite.Int8, q8(0.004, 0)
		wdata, bdata, bt = i8Bytes(seq8(n*k, 3)), tflite.Float32Data(seqF(n, 4, -0.3, 0.3)), tflite.Float32
	default:
		wdata, bdata, bt = tflite.Float32Data(seqF(n*k, 3, -0.3, 0.3)), tflite.Float32Data(seqF(n, 4, -0.3, 0.3)), tflite.Float32
	}
	x := b.tensor("x", typ, in, qin, nil)
	w := b.tensor("w", wt, []int32{int32(n), int32(k)}, qw, wdata)
	var qb *tflite.Quantization
	if bt == tflite.Int32 {
		qb = q8(0.05*0.004, 0)
	}
	bias := b.tensor("bias", bt, []int32{int32(n)}, qb, bdata)
	out := []int32{int32(numel(in) / k), int32(n)}
	if keep {
		out = append(append([]int32{}, in[:len(in)-1]...), int32(n))
	}
	y := b.tensor("y", typ, out, qout, nil)
	b.op(tflite.OpFullyConnected, 4, &tflite.FullyConnectedOptions{KeepNumDims: keep, Activation: tflite.ActRelu}, []int32{x, w, bias}, []int32{y})
	b.io([]int32{x}, []int32{y})
	return b.m
}

func numel(s []int32) int {
	n := 1
	for _, d := range s {
		n *= int(d)
	}
	return n
}

func poolModel(code tflite.BuiltinOp, typ tflite.TensorType, q *tflite.Quantization, f, stride int32, pad tflite.Padding) *tflite.Model {
	b := newBuilder()
	x := b.tensor("x", typ, []int32{1, 9, 7, 3}, q, nil)
	oh, _ := convOut(9, int(f), int(stride), 1, pad)
	ow, _ := convOut(7, int(f), int(stride), 1, pad)
	y := b.tensor("y", typ, []int32{1, int32(oh), int32(ow), 3}, q, nil)
	b.op(code, 2, &tflite.Pool2DOptions{Padding: pad, StrideW: stride, StrideH: stride, FilterW: f, FilterH: f}, []int32{x}, []int32{y})
	b.io([]int32{x}, []int32{y})
	return b.m
}

func synthCases() []synthCase {
	qa, qb, qo := q8(0.05, -10), q8(0.02, 7), q8(0.07, 3)
	return []synthCase{
		{"add_int8_broadcast_relu6", func() *tflite.Model {
			return binaryModel(tflite.OpAdd, &tflite.AddOptions{Activation: tflite.ActRelu6}, tflite.Int8, []int32{1, 4, 4, 3}, []int32{1, 1, 4, 3}, []int32{1, 4, 4, 3}, qa, qb, qo)
		}, small},
		{"sub_int8_broadcast", func() *tflite.Model {
			return binaryModel(tflite.OpSub, &tflite.SubOptions{}, tflite.Int8, []int32{1, 4, 4, 3}, []int32{3}, []int32{1, 4, 4, 3}, qa, qb, qo)
		}, small},
		{"mul_int8_broadcast", func() *tflite.Model {
			return binaryModel(tflite.OpMul, &tflite.MulOptions{}, tflite.Int8, []int32{1, 4, 4, 3}, []int32{1, 1, 1, 3}, []int32{1, 4, 4, 3}, qa, qb, q8(0.03, -2))
		}, small},
		{"add_uint8", func() *tflite.Model {
			return binaryModel(tflite.OpAdd, &tflite.AddOptions{}, tflite.Uint8, []int32{1, 4, 4, 3}, []int32{1, 4, 4, 3}, []int32{1, 4, 4, 3}, q8(0.05, 128), q8(0.02, 100), q8(0.07, 120))
		}, small},
		{"add_f32_broadcast", func() *tflite.Model {
			return binaryModel(tflite.OpAdd, &tflite.AddOptions{Activation: tflite.ActRelu}, tflite.Float32, []int32{1, 4, 4, 3}, []int32{1, 1, 4, 1}, []int32{1, 4, 4, 3}, nil, nil, nil)
		}, small},
		{"sub_f32", func() *tflite.Model {
			return binaryModel(tflite.OpSub, &tflite.SubOptions{}, tflite.Float32, []int32{2, 5}, []int32{2, 5}, []int32{2, 5}, nil, nil, nil)
		}, small},
		{"mul_f32_broadcast", func() *tflite.Model {
			return binaryModel(tflite.OpMul, &tflite.MulOptions{}, tflite.Float32, []int32{1, 3, 4}, []int32{4}, []int32{1, 3, 4}, nil, nil, nil)
		}, small},
		{"relu_int8", func() *tflite.Model {
			return unaryModel(tflite.OpRelu, 2, nil, tflite.Int8, []int32{1, 64}, q8(0.05, -5), q8(0.03, -128))
		}, small},
		{"relu6_int8", func() *tflite.Model {
			return unaryModel(tflite.OpRelu6, 2, nil, tflite.Int8, []int32{1, 64}, q8(0.05, -5), q8(0.03, -128))
		}, small},
		{"leaky_relu_int8", func() *tflite.Model {
			return unaryModel(tflite.OpLeakyRelu, 2, &tflite.LeakyReluOptions{Alpha: 0.2}, tflite.Int8, []int32{1, 64}, q8(0.05, 3), q8(0.04, -20))
		}, small},
		{"hardswish_int8_wide", func() *tflite.Model {
			return unaryModel(tflite.OpHardSwish, 1, nil, tflite.Int8, []int32{1, 64}, q8(0.2, 10), q8(0.15, -90))
		}, small},
		{"hardswish_uint8", func() *tflite.Model {
			return unaryModel(tflite.OpHardSwish, 1, nil, tflite.Uint8, []int32{1, 64}, q8(0.03, 128), q8(0.02, 30))
		}, small},
		{"logistic_f32", func() *tflite.Model {
			return unaryModel(tflite.OpLogistic, 1, nil, tflite.Float32, []int32{1, 40}, nil, nil)
		}, small},
		{"hardswish_f32", func() *tflite.Model {
			return unaryModel(tflite.OpHardSwish, 1, nil, tflite.Float32, []int32{1, 40}, nil, nil)
		}, small},
		{"relu6_f32", func() *tflite.Model {
			return unaryModel(tflite.OpRelu6, 1, nil, tflite.Float32, []int32{1, 40}, nil, nil)
		}, small},
		{"leaky_relu_f32", func() *tflite.Model {
			return unaryModel(tflite.OpLeakyRelu, 1, &tflite.LeakyReluOptions{Alpha: 0.1}, tflite.Float32, []int32{1, 40}, nil, nil)
		}, small},
		{"softmax_f32", func() *tflite.Model {
			return unaryModel(tflite.OpSoftmax, 1, &tflite.SoftmaxOptions{Beta: 1}, tflite.Float32, []int32{2, 10}, nil, nil)
		}, small},
		{"softmax_int8_beta", func() *tflite.Model {
			return unaryModel(tflite.OpSoftmax, 2, &tflite.SoftmaxOptions{Beta: 0.5}, tflite.Int8, []int32{3, 10}, q8(0.1, 4), q8(1.0/256, -128))
		}, small},
		{"logistic_uint8", func() *tflite.Model {
			return unaryModel(tflite.OpLogistic, 1, nil, tflite.Uint8, []int32{1, 64}, q8(0.06, 128), q8(1.0/256, 0))
		}, small},
		{"quantize_int8_requant", func() *tflite.Model {
			return unaryModel(tflite.OpQuantize, 2, nil, tflite.Int8, []int32{1, 64}, q8(0.05, -5), q8(0.07, 9))
		}, small},
		{"conv_int8_stride2_same_relu6", func() *tflite.Model {
			return convModel(convSpec{typ: tflite.Int8, h: 9, w: 8, ic: 3, oc: 5, kh: 3, kw: 3, stride: 2, dil: 1, act: tflite.ActRelu6})
		}, small},
		{"conv_int8_dilation2_valid", func() *tflite.Model {
			return convModel(convSpec{typ: tflite.Int8, h: 9, w: 9, ic: 4, oc: 6, kh: 3, kw: 3, stride: 1, dil: 2, pad: tflite.PaddingValid})
		}, small},
		{"conv_int8_1x1", func() *tflite.Model {
			return convModel(convSpec{typ: tflite.Int8, h: 6, w: 5, ic: 16, oc: 8, kh: 1, kw: 1, stride: 1, dil: 1})
		}, small},
		{"conv_uint8", func() *tflite.Model {
			return convModel(convSpec{typ: tflite.Uint8, h: 7, w: 7, ic: 3, oc: 4, kh: 3, kw: 3, stride: 1, dil: 1, act: tflite.ActRelu})
		}, small},
		{"conv_f32_stride2", func() *tflite.Model {
			return convModel(convSpec{typ: tflite.Float32, h: 9, w: 8, ic: 3, oc: 5, kh: 3, kw: 3, stride: 2, dil: 1, act: tflite.ActRelu})
		}, small},
		{"conv_hybrid", func() *tflite.Model {
			return convModel(convSpec{typ: tflite.Float32, hybrid: true, h: 8, w: 8, ic: 3, oc: 4, kh: 3, kw: 3, stride: 1, dil: 1})
		}, hybrid},
		{"dwconv_int8_mult2_stride2", func() *tflite.Model {
			return convModel(convSpec{typ: tflite.Int8, depthwise: true, mult: 2, h: 9, w: 8, ic: 3, kh: 3, kw: 3, stride: 2, dil: 1, act: tflite.ActRelu})
		}, small},
		{"dwconv_int8_dilation2", func() *tflite.Model {
			return convModel(convSpec{typ: tflite.Int8, depthwise: true, mult: 1, h: 10, w: 10, ic: 4, kh: 3, kw: 3, stride: 1, dil: 2})
		}, small},
		{"dwconv_uint8", func() *tflite.Model {
			return convModel(convSpec{typ: tflite.Uint8, depthwise: true, mult: 1, h: 8, w: 8, ic: 4, kh: 3, kw: 3, stride: 1, dil: 1, act: tflite.ActRelu6})
		}, small},
		{"dwconv_f32_mult2", func() *tflite.Model {
			return convModel(convSpec{typ: tflite.Float32, depthwise: true, mult: 2, h: 8, w: 7, ic: 3, kh: 3, kw: 3, stride: 1, dil: 1})
		}, small},
		{"fc_int8_keep_num_dims", func() *tflite.Model { return fcModel(tflite.Int8, []int32{1, 2, 3, 8}, 8, 5, true, false) }, small},
		{"fc_int8_batch", func() *tflite.Model { return fcModel(tflite.Int8, []int32{4, 16}, 16, 6, false, false) }, small},
		{"fc_f32", func() *tflite.Model { return fcModel(tflite.Float32, []int32{2, 16}, 16, 6, false, false) }, small},
		{"fc_hybrid", func() *tflite.Model { return fcModel(tflite.Float32, []int32{1, 32}, 32, 6, false, true) }, hybrid},
		{"avgpool_f32_same", func() *tflite.Model {
			return poolModel(tflite.OpAveragePool2D, tflite.Float32, nil, 3, 2, tflite.PaddingSame)
		}, small},
		{"maxpool_f32_same", func() *tflite.Model {
			return poolModel(tflite.OpMaxPool2D, tflite.Float32, nil, 3, 2, tflite.PaddingSame)
		}, small},
		{"avgpool_int8_same", func() *tflite.Model {
			return poolModel(tflite.OpAveragePool2D, tflite.Int8, q8(0.1, -3), 3, 2, tflite.PaddingSame)
		}, small},
		{"avgpool_uint8", func() *tflite.Model {
			return poolModel(tflite.OpAveragePool2D, tflite.Uint8, q8(0.1, 128), 2, 2, tflite.PaddingValid)
		}, small},
		{"padv2_int8", func() *tflite.Model {
			b := newBuilder()
			x := b.tensor("x", tflite.Int8, []int32{1, 3, 3, 2}, q8(0.1, 4), nil)
			p := b.tensor("p", tflite.Int32, []int32{4, 2}, nil, tflite.Int32Data([]int32{0, 0, 1, 2, 2, 0, 0, 1}))
			v := b.tensor("v", tflite.Int8, []int32{}, q8(0.1, 4), i8Bytes([]int8{-100}))
			y := b.tensor("y", tflite.Int8, []int32{1, 6, 5, 3}, q8(0.1, 4), nil)
			b.op(tflite.OpPadV2, 2, &tflite.PadV2Options{}, []int32{x, p, v}, []int32{y})
			b.io([]int32{x}, []int32{y})
			return b.m
		}, small},
		{"pad_f32", func() *tflite.Model {
			b := newBuilder()
			x := b.tensor("x", tflite.Float32, []int32{1, 3, 3, 2}, nil, nil)
			p := b.tensor("p", tflite.Int32, []int32{4, 2}, nil, tflite.Int32Data([]int32{0, 0, 1, 1, 0, 2, 0, 0}))
			y := b.tensor("y", tflite.Float32, []int32{1, 5, 5, 2}, nil, nil)
			b.op(tflite.OpPad, 1, &tflite.PadOptions{}, []int32{x, p}, []int32{y})
			b.io([]int32{x}, []int32{y})
			return b.m
		}, small},
		{"transpose_int8", func() *tflite.Model {
			b := newBuilder()
			x := b.tensor("x", tflite.Int8, []int32{1, 2, 3, 4}, q8(0.1, 0), nil)
			p := b.tensor("perm", tflite.Int32, []int32{4}, nil, tflite.Int32Data([]int32{0, 3, 1, 2}))
			y := b.tensor("y", tflite.Int8, []int32{1, 4, 2, 3}, q8(0.1, 0), nil)
			b.op(tflite.OpTranspose, 2, &tflite.TransposeOptions{}, []int32{x, p}, []int32{y})
			b.io([]int32{x}, []int32{y})
			return b.m
		}, small},
		{"squeeze_f32", func() *tflite.Model {
			return reshapeLike(tflite.OpSqueeze, &tflite.SqueezeOptions{SqueezeDims: []int32{1, 2}}, []int32{1, 1, 1, 6}, []int32{1, 6})
		}, small},
		{"mean_f32_keepdims", func() *tflite.Model {
			b := newBuilder()
			x := b.tensor("x", tflite.Float32, []int32{1, 4, 5, 3}, nil, nil)
			ax := b.tensor("axes", tflite.Int32, []int32{2}, nil, tflite.Int32Data([]int32{1, 2}))
			y := b.tensor("y", tflite.Float32, []int32{1, 1, 1, 3}, nil, nil)
			b.op(tflite.OpMean, 1, &tflite.ReducerOptions{KeepDims: true}, []int32{x, ax}, []int32{y})
			b.io([]int32{x}, []int32{y})
			return b.m
		}, small},
		{"mean_int8_rescale", func() *tflite.Model {
			b := newBuilder()
			x := b.tensor("x", tflite.Int8, []int32{1, 5, 5, 4}, q8(0.1, -3), nil)
			ax := b.tensor("axes", tflite.Int32, []int32{2}, nil, tflite.Int32Data([]int32{1, 2}))
			y := b.tensor("y", tflite.Int8, []int32{1, 4}, q8(0.05, 6), nil)
			b.op(tflite.OpMean, 2, &tflite.ReducerOptions{}, []int32{x, ax}, []int32{y})
			b.io([]int32{x}, []int32{y})
			return b.m
		}, plusMinus1},
		{"concat_f32_axis1", func() *tflite.Model {
			b := newBuilder()
			x := b.tensor("x", tflite.Float32, []int32{2, 3, 2}, nil, nil)
			z := b.tensor("z", tflite.Float32, []int32{2, 1, 2}, nil, nil)
			y := b.tensor("y", tflite.Float32, []int32{2, 4, 2}, nil, nil)
			b.op(tflite.OpConcatenation, 1, &tflite.ConcatenationOptions{Axis: 1}, []int32{x, z}, []int32{y})
			b.io([]int32{x, z}, []int32{y})
			return b.m
		}, small},
		{"concat_uint8_mixedscale", func() *tflite.Model {
			b := newBuilder()
			x := b.tensor("x", tflite.Uint8, []int32{1, 4, 4, 2}, q8(0.05, 120), nil)
			z := b.tensor("z", tflite.Uint8, []int32{1, 4, 4, 3}, q8(0.11, 30), nil)
			y := b.tensor("y", tflite.Uint8, []int32{1, 4, 4, 5}, q8(0.08, 100), nil)
			b.op(tflite.OpConcatenation, 1, &tflite.ConcatenationOptions{Axis: 3}, []int32{x, z}, []int32{y})
			b.io([]int32{x, z}, []int32{y})
			return b.m
		}, small},
		{"dequantize_uint8", func() *tflite.Model {
			b := newBuilder()
			x := b.tensor("x", tflite.Uint8, []int32{1, 32}, q8(0.03, 100), nil)
			y := b.tensor("y", tflite.Float32, []int32{1, 32}, nil, nil)
			b.op(tflite.OpDequantize, 1, nil, []int32{x}, []int32{y})
			b.io([]int32{x}, []int32{y})
			return b.m
		}, small},
	}
}

func reshapeLike(code tflite.BuiltinOp, opts tflite.Options, in, out []int32) *tflite.Model {
	b := newBuilder()
	x := b.tensor("x", tflite.Float32, in, nil, nil)
	y := b.tensor("y", tflite.Float32, out, nil, nil)
	b.op(code, 1, opts, []int32{x}, []int32{y})
	b.io([]int32{x}, []int32{y})
	return b.m
}
