package tflite

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"sort"
)

// Test models built in memory with this package's own types: single-op int8 graphs that
// Write turns into files for the round-trip, oracle and fuzz-seed tests.

type modelBuilder struct {
	m    *Model
	seed uint32
}

func newModelBuilder(desc string) *modelBuilder {
	return &modelBuilder{
		m: &Model{
			Version:     3,
			Description: desc,
			Buffers:     []Buffer{{}},
			Subgraphs:   []Subgraph{{Name: "main"}},
		},
		seed: 1,
	}
}

func (b *modelBuilder) sg() *Subgraph { return &b.m.Subgraphs[0] }

// rand returns a deterministic pseudo-random 32-bit value (an LCG; tests need no quality).
func (b *modelBuilder) rand() uint32 {
	b.seed = b.seed*1664525 + 1013904223
	return b.seed >> 8
}

func perTensor(scale float32, zp int64) *Quantization {
	return &Quantization{Scale: []float32{scale}, ZeroPoint: []int64{zp}}
}

func (b *modelBuilder) tensor(name string, typ TensorType, shape []int32, q *Quantization, data []byte) int32 {
	var buf uint32
	if data != nil {
		b.m.Buffers = append(b.m.Buffers, Buffer{Data: data})
		buf = uint32(len(b.m.Buffers) - 1)
	}
	sg := b.sg()
	sg.Tensors = append(sg.Tensors, Tensor{Name: name, Type: typ, Shape: shape, Buffer: buf, Quantization: q})
	return int32(len(sg.Tensors) - 1)
}

// act adds a non-constant activation tensor.
func (b *modelBuilder) act(name string, typ TensorType, shape []int32, q *Quantization) int32 {
	return b.tensor(name, typ, shape, q, nil)
}

func (b *modelBuilder) int8s(n int) []byte {
	d := make([]byte, n)
	for i := range d {
		d[i] = byte(int8(b.rand()%255) - 127) // symmetric weights: never -128
	}
	return d
}

func (b *modelBuilder) int32Data(v ...int32) []byte {
	d := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(d[4*i:], uint32(x))
	}
	return d
}

// weights adds a symmetric per-channel int8 weight tensor and its int32 bias.
func (b *modelBuilder) weights(name string, shape []int32, dim int32, inScale float32) (w, bias int32) {
	n := int32(1)
	for _, d := range shape {
		n *= d
	}
	ch := shape[dim]
	ws := make([]float32, ch)
	bs := make([]float32, ch)
	zp := make([]int64, ch)
	biasData := make([]int32, ch)
	for c := range ch {
		// The conversion rounds the product: without it arm64 fuses the multiply-add
		// (FMA), which gives other scale bits than amd64 and a different file.
		ws[c] = 0.002 + float32(0.001*float32(c))
		bs[c] = inScale * ws[c]
		biasData[c] = int32(b.rand()%2001) - 1000
	}
	w = b.tensor(name+"/weights", Int8, shape, &Quantization{Scale: ws, ZeroPoint: zp, QuantizedDimension: dim}, b.int8s(int(n)))
	bias = b.tensor(name+"/bias", Int32, []int32{ch}, &Quantization{Scale: bs, ZeroPoint: make([]int64, ch)}, b.int32Data(biasData...))
	return w, bias
}

func (b *modelBuilder) op(code BuiltinOp, version int32, opts Options, in, out []int32) {
	idx := -1
	for i, oc := range b.m.OperatorCodes {
		if oc.Builtin == code && oc.Version == version {
			idx = i
		}
	}
	if idx < 0 {
		b.m.OperatorCodes = append(b.m.OperatorCodes, OperatorCode{Builtin: code, Version: version})
		idx = len(b.m.OperatorCodes) - 1
	}
	sg := b.sg()
	sg.Operators = append(sg.Operators, Operator{OpcodeIndex: uint32(idx), Inputs: in, Outputs: out, Options: opts})
}

func (b *modelBuilder) io(in, out []int32) *Model {
	b.sg().Inputs, b.sg().Outputs = in, out
	return b.m
}

// testModels returns small valid models, one per operator this package models plus a few
// structural variants, keyed by a file-friendly name.
func testModels() map[string]*Model {
	ms := map[string]*Model{}
	q := perTensor(0.05, -3)

	b := newModelBuilder("conv2d")
	x := b.act("input", Int8, []int32{1, 5, 5, 2}, q)
	w, bias := b.weights("conv", []int32{3, 3, 3, 2}, 0, 0.05)
	y := b.act("output", Int8, []int32{1, 3, 3, 3}, perTensor(0.02, 5))
	b.op(OpConv2D, 3, &Conv2DOptions{Padding: PaddingValid, StrideW: 1, StrideH: 1, DilationW: 1, DilationH: 1, Activation: ActRelu6}, []int32{x, w, bias}, []int32{y})
	ms["conv2d"] = b.io([]int32{x}, []int32{y})

	b = newModelBuilder("depthwise")
	x = b.act("input", Int8, []int32{1, 4, 4, 2}, q)
	w, bias = b.weights("dw", []int32{1, 3, 3, 4}, 3, 0.05)
	y = b.act("output", Int8, []int32{1, 4, 4, 4}, perTensor(0.02, 0))
	b.op(OpDepthwiseConv2D, 3, &DepthwiseConv2DOptions{StrideW: 1, StrideH: 1, DepthMultiplier: 2, DilationW: 1, DilationH: 1}, []int32{x, w, bias}, []int32{y})
	ms["depthwise"] = b.io([]int32{x}, []int32{y})

	b = newModelBuilder("fully connected")
	x = b.act("input", Int8, []int32{1, 6}, q)
	w, _ = b.weights("fc", []int32{4, 6}, 0, 0.05)
	b.m.Subgraphs[0].Tensors[w].Quantization = perTensor(0.004, 0)
	bias = b.tensor("fc/bias", Int32, []int32{4}, perTensor(0.05*0.004, 0), b.int32Data(10, -20, 30, -40))
	y = b.act("output", Int8, []int32{1, 4}, perTensor(0.03, -1))
	b.op(OpFullyConnected, 4, &FullyConnectedOptions{Activation: ActRelu}, []int32{x, w, bias}, []int32{y})
	ms["fully_connected"] = b.io([]int32{x}, []int32{y})

	b = newModelBuilder("add")
	x = b.act("a", Int8, []int32{1, 2, 2, 3}, q)
	x2 := b.act("b", Int8, []int32{1, 2, 2, 3}, perTensor(0.07, 4))
	y = b.act("sum", Int8, []int32{1, 2, 2, 3}, perTensor(0.1, -2))
	b.op(OpAdd, 2, &AddOptions{PotScaleInt16: true}, []int32{x, x2}, []int32{y})
	ms["add"] = b.io([]int32{x, x2}, []int32{y})

	for _, pool := range []BuiltinOp{OpAveragePool2D, OpMaxPool2D} {
		b = newModelBuilder(pool.String())
		x = b.act("input", Int8, []int32{1, 4, 4, 3}, q)
		y = b.act("output", Int8, []int32{1, 2, 2, 3}, q)
		b.op(pool, 2, &Pool2DOptions{Padding: PaddingValid, StrideW: 2, StrideH: 2, FilterW: 2, FilterH: 2}, []int32{x}, []int32{y})
		ms[map[BuiltinOp]string{OpAveragePool2D: "avgpool", OpMaxPool2D: "maxpool"}[pool]] = b.io([]int32{x}, []int32{y})
	}

	b = newModelBuilder("softmax")
	x = b.act("logits", Int8, []int32{1, 5}, perTensor(0.1, 0))
	y = b.act("probs", Int8, []int32{1, 5}, perTensor(1.0/256, -128))
	b.op(OpSoftmax, 2, &SoftmaxOptions{Beta: 1}, []int32{x}, []int32{y})
	ms["softmax"] = b.io([]int32{x}, []int32{y})

	b = newModelBuilder("reshape")
	x = b.act("input", Int8, []int32{1, 2, 2, 3}, q)
	s := b.tensor("shape", Int32, []int32{2}, nil, b.int32Data(1, 12))
	y = b.act("output", Int8, []int32{1, 12}, q)
	b.op(OpReshape, 1, &ReshapeOptions{NewShape: []int32{1, 12}}, []int32{x, s}, []int32{y})
	ms["reshape"] = b.io([]int32{x}, []int32{y})

	b = newModelBuilder("pad")
	x = b.act("input", Int8, []int32{1, 2, 2, 1}, q)
	p := b.tensor("paddings", Int32, []int32{4, 2}, nil, b.int32Data(0, 0, 1, 1, 1, 1, 0, 0))
	y = b.act("output", Int8, []int32{1, 4, 4, 1}, q)
	b.op(OpPad, 2, &PadOptions{}, []int32{x, p}, []int32{y})
	ms["pad"] = b.io([]int32{x}, []int32{y})

	b = newModelBuilder("mean")
	x = b.act("input", Int8, []int32{1, 3, 3, 4}, q)
	a := b.tensor("axes", Int32, []int32{2}, nil, b.int32Data(1, 2))
	y = b.act("output", Int8, []int32{1, 1, 1, 4}, q)
	b.op(OpMean, 2, &ReducerOptions{KeepDims: true}, []int32{x, a}, []int32{y})
	ms["mean"] = b.io([]int32{x}, []int32{y})

	b = newModelBuilder("concatenation")
	x = b.act("a", Int8, []int32{1, 2, 2, 1}, q)
	x2 = b.act("b", Int8, []int32{1, 2, 2, 2}, q)
	y = b.act("output", Int8, []int32{1, 2, 2, 3}, q)
	b.op(OpConcatenation, 2, &ConcatenationOptions{Axis: 3}, []int32{x, x2}, []int32{y})
	ms["concatenation"] = b.io([]int32{x, x2}, []int32{y})

	b = newModelBuilder("quantize, hard swish, logistic, dequantize")
	x = b.act("input", Float32, []int32{1, 8}, nil)
	t1 := b.act("quantized", Int8, []int32{1, 8}, perTensor(1.0/255, -128))
	t2 := b.act("hardswish", Int8, []int32{1, 8}, perTensor(1.0/255, -128))
	t3 := b.act("logistic", Int8, []int32{1, 8}, perTensor(1.0/256, -128))
	y = b.act("output", Float32, []int32{1, 8}, nil)
	b.op(OpQuantize, 1, nil, []int32{x}, []int32{t1})
	b.op(OpHardSwish, 1, nil, []int32{t1}, []int32{t2})
	b.op(OpLogistic, 2, nil, []int32{t2}, []int32{t3})
	b.op(OpDequantize, 2, nil, []int32{t3}, []int32{y})
	ms["quantize_chain"] = b.io([]int32{x}, []int32{y})

	// An operator this package does not model keeps its options as RawOptions; metadata,
	// signature defs and shape signatures round-trip too.
	b = newModelBuilder("strided slice, metadata, signature")
	x = b.act("input", Int8, []int32{1, 4, 4, 2}, q)
	b.sg().Tensors[x].ShapeSignature = []int32{1, 4, 4, 2} // LiteRT.js refuses -1
	begin := b.tensor("begin", Int32, []int32{4}, nil, b.int32Data(0, 1, 0, 0))
	end := b.tensor("end", Int32, []int32{4}, nil, b.int32Data(1, 3, 4, 2))
	strides := b.tensor("strides", Int32, []int32{4}, nil, b.int32Data(1, 1, 2, 1))
	y = b.act("output", Int8, []int32{1, 2, 2, 2}, q)
	b.op(BuiltinOp(45), 4, &RawOptions{Type: 32, Fields: []RawField{{ID: 0, Size: 4, Value: 1}, {ID: 1, Size: 4, Value: 9}}}, []int32{x, begin, end, strides}, []int32{y})
	m := b.io([]int32{x}, []int32{y})
	m.SetMetadata("min_runtime_version", []byte("1.14.0\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"))
	m.SignatureDefs = []SignatureDef{{
		SignatureKey: "serving_default",
		Inputs:       []TensorMap{{Name: "image", TensorIndex: uint32(x)}},
		Outputs:      []TensorMap{{Name: "crop", TensorIndex: uint32(y)}},
	}}
	ms["strided_slice_meta"] = m
	return ms
}

// sortedNames returns the keys of ms in order.
func sortedNames(ms map[string]*Model) []string {
	names := make([]string, 0, len(ms))
	for n := range ms {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// sameModel reports whether a and b are deep-equal, comparing floats bit for bit so that
// NaN scales (possible in fuzzed files) compare equal to themselves. It returns the path of
// the first difference.
func sameModel(a, b *Model) (bool, string) {
	return sameValue(reflect.ValueOf(a), reflect.ValueOf(b), "model")
}

func sameValue(a, b reflect.Value, path string) (bool, string) {
	if a.Kind() != b.Kind() || a.Type() != b.Type() {
		return false, path + ": type"
	}
	switch a.Kind() {
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil(), path + ": nil"
		}
		if a.Kind() == reflect.Interface && a.Elem().Type() != b.Elem().Type() {
			return false, path + ": dynamic type"
		}
		return sameValue(a.Elem(), b.Elem(), path)
	case reflect.Slice:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false, fmt.Sprintf("%s: nil %v/%v, len %d/%d", path, a.IsNil(), b.IsNil(), a.Len(), b.Len())
		}
		if a.Type().Elem().Kind() == reflect.Uint8 {
			return bytes.Equal(a.Bytes(), b.Bytes()), path
		}
		for i := range a.Len() {
			if ok, p := sameValue(a.Index(i), b.Index(i), fmt.Sprintf("%s[%d]", path, i)); !ok {
				return false, p
			}
		}
		return true, ""
	case reflect.Struct:
		for i := range a.NumField() {
			if ok, p := sameValue(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name); !ok {
				return false, p
			}
		}
		return true, ""
	case reflect.Float32:
		// Via Interface, not Float(): widening to float64 may quiet a signalling NaN.
		return math.Float32bits(a.Interface().(float32)) == math.Float32bits(b.Interface().(float32)), path
	default:
		return a.Equal(b), path
	}
}
