package main

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/cxr-edge/cxr-edge/edge/engine"
	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

// inspectTestModel is CONV_2D → DEPTHWISE_CONV_2D → FULLY_CONNECTED on int8 tensors:
//
//	input [1,5,5,2] → conv filter [3,3,3,2] VALID → [1,3,3,3]
//	→ depthwise filter [1,3,3,3] VALID → [1,1,1,3] → FC weights [4,3] → [1,4].
func inspectTestModel() *tflite.Model {
	m := &tflite.Model{Version: 3, Buffers: []tflite.Buffer{{}}, Subgraphs: []tflite.Subgraph{{Name: "main"}}}
	sg := &m.Subgraphs[0]
	q := func(n int, scale float32, dim int32) *tflite.Quantization {
		qq := &tflite.Quantization{QuantizedDimension: dim}
		for range n {
			qq.Scale = append(qq.Scale, scale)
			qq.ZeroPoint = append(qq.ZeroPoint, 0)
		}
		return qq
	}
	add := func(name string, typ tflite.TensorType, shape []int32, qq *tflite.Quantization, constant bool) int32 {
		t := tflite.Tensor{Name: name, Type: typ, Shape: shape, Quantization: qq}
		if constant {
			n := 1
			for _, d := range shape {
				n *= int(d)
			}
			data := make([]byte, n*typ.Size())
			for i := range data {
				data[i] = byte(i % 7)
			}
			if typ == tflite.Int32 {
				for i := 0; i < len(data); i += 4 {
					binary.LittleEndian.PutUint32(data[i:], uint32(i))
				}
			}
			m.Buffers = append(m.Buffers, tflite.Buffer{Data: data})
			t.Buffer = uint32(len(m.Buffers) - 1)
		}
		sg.Tensors = append(sg.Tensors, t)
		return int32(len(sg.Tensors) - 1)
	}
	op := func(code tflite.BuiltinOp, opts tflite.Options, in, out []int32) {
		m.OperatorCodes = append(m.OperatorCodes, tflite.OperatorCode{Builtin: code, Version: 3})
		sg.Operators = append(sg.Operators, tflite.Operator{OpcodeIndex: uint32(len(m.OperatorCodes) - 1), Inputs: in, Outputs: out, Options: opts})
	}
	x := add("input", tflite.Int8, []int32{1, 5, 5, 2}, q(1, 0.05, 0), false)
	cw := add("conv/w", tflite.Int8, []int32{3, 3, 3, 2}, q(3, 0.01, 0), true)
	cb := add("conv/b", tflite.Int32, []int32{3}, q(3, 0.0005, 0), true)
	c := add("conv", tflite.Int8, []int32{1, 3, 3, 3}, q(1, 0.05, 0), false)
	dw := add("dw/w", tflite.Int8, []int32{1, 3, 3, 3}, q(3, 0.01, 3), true)
	db := add("dw/b", tflite.Int32, []int32{3}, q(3, 0.0005, 0), true)
	d := add("dw", tflite.Int8, []int32{1, 1, 1, 3}, q(1, 0.05, 0), false)
	fw := add("fc/w", tflite.Int8, []int32{4, 3}, q(1, 0.01, 0), true)
	fb := add("fc/b", tflite.Int32, []int32{4}, q(1, 0.0005, 0), true)
	y := add("output", tflite.Int8, []int32{1, 4}, q(1, 0.1, 0), false)
	op(tflite.OpConv2D, &tflite.Conv2DOptions{Padding: tflite.PaddingValid, StrideW: 1, StrideH: 1, DilationW: 1, DilationH: 1}, []int32{x, cw, cb}, []int32{c})
	op(tflite.OpDepthwiseConv2D, &tflite.DepthwiseConv2DOptions{Padding: tflite.PaddingValid, StrideW: 1, StrideH: 1, DepthMultiplier: 1, DilationW: 1, DilationH: 1}, []int32{c, dw, db}, []int32{d})
	op(tflite.OpFullyConnected, &tflite.FullyConnectedOptions{}, []int32{d, fw, fb}, []int32{y})
	sg.Inputs, sg.Outputs = []int32{x}, []int32{y}
	return m
}

func TestStats(t *testing.T) {
	s := statsOf(inspectTestModel())
	// By hand: conv 27 outputs × 3·3·2 taps, depthwise 3 outputs × 3·3 taps, FC 4 × 3.
	want := map[tflite.BuiltinOp]int64{tflite.OpConv2D: 27 * 18, tflite.OpDepthwiseConv2D: 3 * 9, tflite.OpFullyConnected: 4 * 3}
	for op, n := range want {
		if s.MACsByOp[op] != n {
			t.Errorf("%s MACs %d, want %d", op, s.MACsByOp[op], n)
		}
	}
	if s.MACs != 486+27+12 {
		t.Errorf("MACs %d, want 525", s.MACs)
	}
	// Weights and biases: 54+3 + 27+3 + 12+4 elements; int8 weights, int32 biases.
	if s.Params != 103 || s.ParamBytes != 54+27+12+4*(3+3+4) {
		t.Errorf("params %d (%d bytes), want 103 (133 bytes)", s.Params, s.ParamBytes)
	}
}

func TestInspectModel(t *testing.T) {
	m := inspectTestModel()
	var b bytes.Buffer
	if err := inspectModel(&b, "tiny.tflite", 1234, m, "4,096 bytes per interpreter"); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"model tiny.tflite: 1,234 bytes, schema 3",
		"3 operators, 10 tensors, inputs [0], outputs [9]",
		"CONV_2D", "VALID stride 1x1", "[0 1 2] -> [3]",
		"per-channel: 3 scales on dim 3", "scale 0.05 zp 0", "constant 54 B",
		"parameters: 103 (elements of constant tensors, 133 bytes)",
		"MACs: 525 (CONV_2D 486, DEPTHWISE_CONV_2D 27, FULLY_CONNECTED 12)",
		"arena: 4,096 bytes per interpreter",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestInspectSharedModel: the arena line is the engine's plan for the model.
func TestInspectSharedModel(t *testing.T) {
	path := testenv.SharedPath(t, "models", "vww_96_int8.tflite")
	var b bytes.Buffer
	if err := inspectFile(&b, path); err != nil {
		t.Fatal(err)
	}
	em, err := engine.LoadFile(path, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := tflite.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if want := "arena: " + thousands(int64(em.ArenaBytes())) + " bytes per interpreter"; !strings.Contains(out, want) {
		t.Errorf("output lacks %q", want)
	}
	lines := strings.Count(out, "\n")
	if want := len(m.Subgraphs[0].Operators) + len(m.Subgraphs[0].Tensors); lines < want {
		t.Errorf("%d lines for %d operators and tensors", lines, want)
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", -1234567: "-1,234,567", 100000: "100,000"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
	for in, want := range map[string]string{"abcdefghij": "ab…ghij", "conv": "conv", "a\tb\x1bc": "a\ufffdb\ufffdc"} {
		if got := shorten(in, 7); got != want {
			t.Errorf("shorten(%q, 7) = %q, want %q", in, got, want)
		}
	}
}
