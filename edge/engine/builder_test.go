package engine

import (
	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

// builder assembles small *tflite.Model values in Go for kernel tests.
type builder struct {
	m     *tflite.Model
	codes map[tflite.BuiltinOp]uint32
}

func newBuilder() *builder {
	return &builder{
		m: &tflite.Model{
			Version:   3,
			Buffers:   []tflite.Buffer{{}},
			Subgraphs: []tflite.Subgraph{{Name: "main"}},
		},
		codes: map[tflite.BuiltinOp]uint32{},
	}
}

func (b *builder) sg() *tflite.Subgraph { return &b.m.Subgraphs[0] }

// tensor adds a tensor; data (nil for activations) becomes a constant buffer.
func (b *builder) tensor(name string, typ tflite.TensorType, shape []int32, q *tflite.Quantization, data []byte) int32 {
	t := tflite.Tensor{Name: name, Type: typ, Shape: shape, Quantization: q}
	if data != nil {
		b.m.Buffers = append(b.m.Buffers, tflite.Buffer{Data: data})
		t.Buffer = uint32(len(b.m.Buffers) - 1)
	} else {
		b.m.Buffers = append(b.m.Buffers, tflite.Buffer{})
		t.Buffer = uint32(len(b.m.Buffers) - 1)
	}
	b.sg().Tensors = append(b.sg().Tensors, t)
	return int32(len(b.sg().Tensors) - 1)
}

func (b *builder) op(code tflite.BuiltinOp, version int32, opts tflite.Options, ins, outs []int32) {
	idx, ok := b.codes[code]
	if !ok {
		b.m.OperatorCodes = append(b.m.OperatorCodes, tflite.OperatorCode{Builtin: code, Version: version})
		idx = uint32(len(b.m.OperatorCodes) - 1)
		b.codes[code] = idx
	}
	b.sg().Operators = append(b.sg().Operators, tflite.Operator{OpcodeIndex: idx, Inputs: ins, Outputs: outs, Options: opts})
}

func (b *builder) io(ins, outs []int32) {
	b.sg().Inputs, b.sg().Outputs = ins, outs
}

func q8(scale float32, zp int64) *tflite.Quantization {
	return &tflite.Quantization{Scale: []float32{scale}, ZeroPoint: []int64{zp}}
}

func qPerChannel(scales []float32, dim int32) *tflite.Quantization {
	return &tflite.Quantization{Scale: scales, ZeroPoint: make([]int64, len(scales)), QuantizedDimension: dim}
}

func i8Bytes(v []int8) []byte {
	out := make([]byte, len(v))
	for i, x := range v {
		out[i] = byte(x)
	}
	return out
}

// seq returns n deterministic pseudo-random int8 values from seed (an LCG, so the values
// are stable across platforms).
func seq8(n int, seed uint32) []int8 {
	out := make([]int8, n)
	s := seed*2654435761 + 1
	for i := range out {
		s = s*1664525 + 1013904223
		out[i] = int8(s >> 24)
	}
	return out
}

func seqF(n int, seed uint32, lo, hi float32) []float32 {
	out := make([]float32, n)
	for i, v := range seq8(n, seed) {
		out[i] = lo + (hi-lo)*float32(int(v)+128)/255
	}
	return out
}
