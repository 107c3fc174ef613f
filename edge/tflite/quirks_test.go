package tflite

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	flatbuffers "github.com/google/flatbuffers/go"
)

func i32p(v int32) *int32 { return &v }

// TestOpcodeQuirks: op = max(deprecated_builtin_code, builtin_code), version defaults to 1,
// duplicate and unused codes are kept.
func TestOpcodeQuirks(t *testing.T) {
	maxpool := int32(OpMaxPool2D)
	tests := []struct {
		name     string
		opcodes  []rawOpcode
		ops      []uint32
		want     []OperatorCode
		wantErr  error
		wantPath string
	}{
		{name: "builtin only", opcodes: []rawOpcode{{code: maxpool, hasCode: true}}, ops: []uint32{0},
			want: []OperatorCode{{Builtin: OpMaxPool2D, Version: 1}}},
		{name: "deprecated only", opcodes: []rawOpcode{{dep: maxpool, hasDep: true}}, ops: []uint32{0},
			want: []OperatorCode{{Builtin: OpMaxPool2D, Version: 1}}},
		{name: "both", opcodes: []rawOpcode{{dep: maxpool, hasDep: true, code: maxpool, hasCode: true, version: i32p(2)}}, ops: []uint32{0},
			want: []OperatorCode{{Builtin: OpMaxPool2D, Version: 2}}},
		{name: "op above 127", opcodes: []rawOpcode{{dep: 127, hasDep: true, code: 150, hasCode: true}}, ops: []uint32{0},
			want: []OperatorCode{{Builtin: 150, Version: 1}}},
		{name: "neither field is ADD", opcodes: []rawOpcode{{}}, ops: []uint32{0},
			want: []OperatorCode{{Builtin: OpAdd, Version: 1}}},
		{name: "explicit version 0", opcodes: []rawOpcode{{dep: maxpool, hasDep: true, version: i32p(0)}}, ops: []uint32{0},
			want: []OperatorCode{{Builtin: OpMaxPool2D, Version: 0}}},
		{name: "duplicates", opcodes: []rawOpcode{{dep: maxpool, hasDep: true}, {code: maxpool, hasCode: true}}, ops: []uint32{0, 1},
			want: []OperatorCode{{Builtin: OpMaxPool2D, Version: 1}, {Builtin: OpMaxPool2D, Version: 1}}},
		{name: "unused", opcodes: []rawOpcode{{dep: maxpool, hasDep: true}, {dep: int32(OpQuantize), hasDep: true}, {dep: int32(OpDequantize), hasDep: true}}, ops: []uint32{0},
			want: []OperatorCode{{Builtin: OpMaxPool2D, Version: 1}, {Builtin: OpQuantize, Version: 1}, {Builtin: OpDequantize, Version: 1}}},
		{name: "negative", opcodes: []rawOpcode{{dep: -3, hasDep: true, code: -5, hasCode: true}}, ops: []uint32{0},
			wantErr: ErrInvalid, wantPath: "operator_codes[0].builtin_code"},
		{name: "index out of range", opcodes: []rawOpcode{{dep: maxpool, hasDep: true}}, ops: []uint32{0, 1},
			wantErr: ErrInvalid, wantPath: "subgraphs[0].operators[1].opcode_index"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := rawSpec{opcodes: tc.opcodes}
			for _, idx := range tc.ops {
				spec.operators = append(spec.operators, rawOperator{opcode: idx})
			}
			m, err := Read(spec.build())
			if tc.wantErr != nil {
				checkErr(t, err, tc.wantErr, tc.wantPath)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(m.OperatorCodes, tc.want) {
				t.Errorf("codes %+v, want %+v", m.OperatorCodes, tc.want)
			}
			roundTrip(t, m)
		})
	}
}

func checkErr(t *testing.T, err, want error, path string) {
	t.Helper()
	var fe *FormatError
	if !errors.As(err, &fe) || !errors.Is(err, want) {
		t.Fatalf("error %v, want a *FormatError wrapping %v", err, want)
	}
	if fe.Path != path {
		t.Errorf("error path %q, want %q (%v)", fe.Path, path, err)
	}
}

// TestOptionsQuirks: missing tables, empty tables and schema defaults.
func TestOptionsQuirks(t *testing.T) {
	conv := []rawOpcode{{dep: int32(OpConv2D), hasDep: true}}
	table := func(fields func(b *flatbuffers.Builder)) func(b *flatbuffers.Builder) flatbuffers.UOffsetT {
		return func(b *flatbuffers.Builder) flatbuffers.UOffsetT {
			b.StartObject(8)
			fields(b)
			return b.EndObject()
		}
	}
	tests := []struct {
		name     string
		opcodes  []rawOpcode
		op       rawOperator
		want     Options
		wantErr  error
		wantPath string
	}{
		{name: "tag without table", opcodes: conv, op: rawOperator{tag: tagConv2D}, want: nil},
		{name: "table without tag", opcodes: conv, op: rawOperator{options: emptyTable}, want: nil},
		{name: "empty conv table takes defaults", opcodes: conv, op: rawOperator{tag: tagConv2D, options: emptyTable},
			want: &Conv2DOptions{DilationW: 1, DilationH: 1}},
		{name: "conv fields", opcodes: conv, op: rawOperator{tag: tagConv2D, options: table(func(b *flatbuffers.Builder) {
			b.PrependInt8Slot(0, 1, 0)
			b.PrependInt32Slot(1, 2, 0)
			b.PrependInt32Slot(2, 3, 0)
			b.PrependInt8Slot(3, 3, 0)
			b.PrependInt32Slot(5, 4, 0)
		})}, want: &Conv2DOptions{Padding: PaddingValid, StrideW: 2, StrideH: 3, Activation: ActRelu6, DilationW: 1, DilationH: 4}},
		{name: "PAD empty table", opcodes: []rawOpcode{{dep: int32(OpPad), hasDep: true}}, op: rawOperator{tag: tagPad, options: emptyTable},
			want: &PadOptions{}},
		{name: "ADD empty table: pot_scale_int16 true", opcodes: []rawOpcode{{}}, op: rawOperator{tag: tagAdd, options: emptyTable},
			want: &AddOptions{PotScaleInt16: true}},
		{name: "SUB pot_scale_int16 false", opcodes: []rawOpcode{{dep: int32(OpSub), hasDep: true}}, op: rawOperator{tag: tagSub, options: table(func(b *flatbuffers.Builder) {
			b.PrependBoolSlot(1, false, true)
		})}, want: &SubOptions{PotScaleInt16: false}},
		{name: "depthwise defaults", opcodes: []rawOpcode{{dep: int32(OpDepthwiseConv2D), hasDep: true}}, op: rawOperator{tag: tagDepthwiseConv2D, options: emptyTable},
			want: &DepthwiseConv2DOptions{DilationW: 1, DilationH: 1}},
		{name: "unmodelled op keeps raw fields", opcodes: []rawOpcode{{dep: 23, hasDep: true}}, op: rawOperator{tag: 15, options: table(func(b *flatbuffers.Builder) {
			b.PrependBoolSlot(2, true, false)
			b.PrependBoolSlot(3, true, false)
		})}, want: &RawOptions{Type: 15, Fields: []RawField{{ID: 2, Size: 1, Value: 1}, {ID: 3, Size: 0, Value: 1}}}},
		{name: "options of the wrong op", opcodes: conv, op: rawOperator{tag: tagAdd, options: emptyTable},
			wantErr: ErrInvalid, wantPath: "subgraphs[0].operators[0].builtin_options_type"},
		{name: "bad activation", opcodes: conv, op: rawOperator{tag: tagConv2D, options: table(func(b *flatbuffers.Builder) { b.PrependInt8Slot(3, 9, 0) })},
			wantErr: ErrInvalid, wantPath: "subgraphs[0].operators[0].builtin_options"},
		{name: "unknown options type", opcodes: []rawOpcode{{dep: 23, hasDep: true}}, op: rawOperator{tag: 200, options: emptyTable},
			wantErr: ErrUnsupported, wantPath: "subgraphs[0].operators[0].builtin_options"},
		{name: "options with references", opcodes: []rawOpcode{{code: 147, hasCode: true, dep: 127, hasDep: true}}, op: rawOperator{tag: tagBucketize, options: emptyTable},
			wantErr: ErrUnsupported, wantPath: "subgraphs[0].operators[0].builtin_options"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Read(rawSpec{opcodes: tc.opcodes, operators: []rawOperator{tc.op}}.build())
			if tc.wantErr != nil {
				checkErr(t, err, tc.wantErr, tc.wantPath)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := m.Subgraphs[0].Operators[0].Options
			if raw, ok := tc.want.(*RawOptions); ok {
				checkRaw(t, got, raw)
			} else if !sameOptions(got, tc.want) {
				t.Errorf("options %#v, want %#v", got, tc.want)
			}
			roundTrip(t, m)
		})
	}
}

// checkRaw compares raw fields' IDs and low bytes; a Size of 0 in want means "any size"
// (the last field's room depends on where the builder placed it).
func checkRaw(t *testing.T, got Options, want *RawOptions) {
	t.Helper()
	raw, ok := got.(*RawOptions)
	if !ok || raw.Type != want.Type || len(raw.Fields) != len(want.Fields) {
		t.Fatalf("options %#v, want %#v", got, want)
	}
	for i, f := range raw.Fields {
		w := want.Fields[i]
		if f.ID != w.ID || (w.Size != 0 && f.Size != w.Size) || uint8(f.Value) != uint8(w.Value) {
			t.Errorf("field %d: %+v, want %+v", i, f, w)
		}
	}
}

func sameOptions(a, b Options) bool {
	ma := &Model{Subgraphs: []Subgraph{{Operators: []Operator{{Options: a}}}}}
	mb := &Model{Subgraphs: []Subgraph{{Operators: []Operator{{Options: b}}}}}
	ok, _ := sameModel(ma, mb)
	return ok
}

// TestRawOptionsSurviveRewrite: after Write and Read, an unmodelled table's fields still
// hold their values in the bytes a schema-aware reader looks at.
func TestRawOptionsSurviveRewrite(t *testing.T) {
	// STRIDED_SLICE: five int masks and a bool, laid out the way flatc's builders do.
	file := rawSpec{
		opcodes: []rawOpcode{{dep: 45, hasDep: true}},
		operators: []rawOperator{{tag: 32, options: func(b *flatbuffers.Builder) flatbuffers.UOffsetT {
			b.StartObject(6)
			b.PrependBoolSlot(5, true, false)
			b.PrependInt32Slot(4, 16, 0)
			b.PrependInt32Slot(1, 7, 0)
			b.PrependInt32Slot(0, -2, 0)
			return b.EndObject()
		}}},
	}.build()
	m, err := Read(file)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Write(m)
	if err != nil {
		t.Fatal(err)
	}
	// Read the rewritten table with the schema's field types.
	d := &decoder{buf: out, budget: 1 << 20}
	root, _ := d.deref(0, "")
	rt, _ := d.table(root, "")
	sgs, _, _, _ := d.vector(rt, 2, 4, "")
	sgPos, _ := d.deref(sgs, "")
	sg, _ := d.table(sgPos, "")
	ops, _, _, _ := d.vector(sg, 3, 4, "")
	opPos, _ := d.deref(ops, "")
	op, _ := d.table(opPos, "")
	opts, _, err := d.subTable(op, 4, "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]int32{0: -2, 1: 7, 2: 0, 3: 0, 4: 16}
	for id, v := range want {
		if got, _ := d.i32Field(opts, id, 0, ""); got != v {
			t.Errorf("field %d = %d, want %d", id, got, v)
		}
	}
	if got, _ := d.boolField(opts, 5, false, ""); !got {
		t.Error("field 5 (offset) lost")
	}
	roundTrip(t, m)
}

// sharedVtableModel: the FlatBuffers Go builder reuses a vtable whose field offsets match,
// even when its table's inline size differs. Here CONCATENATION's options (an int32 at
// offset 4, 8 bytes) come first; the SPLIT operator's raw options (an 8-byte field at offset
// 4, 12 bytes) reuse that vtable. The reader once took the last raw field's size from the
// vtable's inline size and read it back as 4 bytes (found by TestCorrupted).
func sharedVtableModel() *Model {
	m := testModels()["concatenation"]
	sg := &m.Subgraphs[0]
	m.OperatorCodes = append(m.OperatorCodes, OperatorCode{Builtin: 49, Version: 1})
	sg.Operators = append(sg.Operators, Operator{
		OpcodeIndex: uint32(len(m.OperatorCodes) - 1),
		Inputs:      []int32{0},
		Outputs:     []int32{2},
		Options:     &RawOptions{Type: 35, Fields: []RawField{{ID: 0, Size: 8, Value: 0x600000006}}},
	})
	return m
}

func TestRawOptionsSharedVtable(t *testing.T) {
	m := sharedVtableModel()
	data, err := Write(m)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Read(data)
	if err != nil {
		t.Fatal(err)
	}
	if ok, where := sameModel(m, back); !ok {
		t.Errorf("differs at %s: %+v", where, back.Subgraphs[0].Operators[1].Options)
	}
	roundTrip(t, back)
}

// TestValidation: models that break a rule are refused by Write, and by Read when the
// same model comes from a file, with the same path.
func TestValidation(t *testing.T) {
	tests := []struct {
		name  string
		model string
		edit  func(m *Model)
		err   error
		path  string
	}{
		{"no subgraph", "add", func(m *Model) { m.Subgraphs = nil }, ErrInvalid, "subgraphs"},
		{"non-empty sentinel", "add", func(m *Model) { m.Buffers[0].Data = []byte{1} }, ErrInvalid, "buffers[0]"},
		{"operator input out of range", "add", func(m *Model) { m.Subgraphs[0].Operators[0].Inputs[1] = 99 }, ErrInvalid, "subgraphs[0].operators[0].inputs[1]"},
		{"operator input -2", "add", func(m *Model) { m.Subgraphs[0].Operators[0].Inputs[0] = -2 }, ErrInvalid, "subgraphs[0].operators[0].inputs[0]"},
		{"operator output -1", "add", func(m *Model) { m.Subgraphs[0].Operators[0].Outputs[0] = -1 }, ErrInvalid, "subgraphs[0].operators[0].outputs[0]"},
		{"subgraph output out of range", "add", func(m *Model) { m.Subgraphs[0].Outputs[0] = 3 }, ErrInvalid, "subgraphs[0].outputs[0]"},
		{"intermediate out of range", "add", func(m *Model) { m.Subgraphs[0].Operators[0].Intermediates = []int32{5} }, ErrInvalid, "subgraphs[0].operators[0].intermediates[0]"},
		{"mutating flags", "add", func(m *Model) { m.Subgraphs[0].Operators[0].MutatingVariableInputs = []bool{true} }, ErrInvalid, "subgraphs[0].operators[0].mutating_variable_inputs"},
		{"opcode index", "add", func(m *Model) { m.Subgraphs[0].Operators[0].OpcodeIndex = 4 }, ErrInvalid, "subgraphs[0].operators[0].opcode_index"},
		{"buffer index", "conv2d", func(m *Model) { m.Subgraphs[0].Tensors[1].Buffer = 40 }, ErrInvalid, "subgraphs[0].tensors[1].buffer"},
		{"constant data size", "conv2d", func(m *Model) { m.Buffers[m.Subgraphs[0].Tensors[1].Buffer].Data = make([]byte, 7) }, ErrInvalid, "subgraphs[0].tensors[1].buffer"},
		{"negative dimension", "add", func(m *Model) { m.Subgraphs[0].Tensors[0].Shape[0] = -1 }, ErrInvalid, "subgraphs[0].tensors[0].shape[0]"},
		{"huge tensor", "add", func(m *Model) { m.Subgraphs[0].Tensors[0].Shape = []int32{1 << 20, 1 << 20, 4} }, ErrTooLarge, "subgraphs[0].tensors[0].shape"},
		{"empty tensor with huge dimensions", "add", func(m *Model) { m.Subgraphs[0].Tensors[0].Shape = []int32{0, 1 << 20, 1 << 20, 4} }, ErrTooLarge, "subgraphs[0].tensors[0].shape"},
		{"float tensor over 2 GiB", "add", func(m *Model) {
			m.Subgraphs[0].Tensors[0].Shape = []int32{1 << 29}
			m.Subgraphs[0].Tensors[0].Type = Float32
		}, ErrTooLarge, "subgraphs[0].tensors[0].shape"},
		{"signature rank", "add", func(m *Model) { m.Subgraphs[0].Tensors[0].ShapeSignature = []int32{-1} }, ErrInvalid, "subgraphs[0].tensors[0].shape_signature"},
		{"signature dimension", "add", func(m *Model) { m.Subgraphs[0].Tensors[0].ShapeSignature = []int32{1, 2, 5, 3} }, ErrInvalid, "subgraphs[0].tensors[0].shape_signature[2]"},
		{"unknown type", "add", func(m *Model) { m.Subgraphs[0].Tensors[0].Type = 40 }, ErrUnsupported, "subgraphs[0].tensors[0].type"},
		{"scale without zero point", "add", func(m *Model) { m.Subgraphs[0].Tensors[0].Quantization.ZeroPoint = nil }, ErrInvalid, "subgraphs[0].tensors[0].quantization.zero_point"},
		{"per-channel count", "conv2d", func(m *Model) {
			q := m.Subgraphs[0].Tensors[1].Quantization
			q.Scale, q.ZeroPoint = q.Scale[:2], q.ZeroPoint[:2]
		}, ErrInvalid, "subgraphs[0].tensors[1].quantization.scale"},
		{"quantized dimension", "conv2d", func(m *Model) { m.Subgraphs[0].Tensors[1].Quantization.QuantizedDimension = 4 }, ErrInvalid, "subgraphs[0].tensors[1].quantization.quantized_dimension"},
		{"metadata buffer", "strided_slice_meta", func(m *Model) { m.Metadata[0].Buffer = 99 }, ErrInvalid, "metadata[0].buffer"},
		{"metadata_buffer", "add", func(m *Model) { m.MetadataBuffer = []int32{-1} }, ErrInvalid, "metadata_buffer[0]"},
		{"signature subgraph", "strided_slice_meta", func(m *Model) { m.SignatureDefs[0].SubgraphIndex = 1 }, ErrInvalid, "signature_defs[0].subgraph_index"},
		{"signature tensor", "strided_slice_meta", func(m *Model) { m.SignatureDefs[0].Outputs[0].TensorIndex = 60 }, ErrInvalid, "signature_defs[0].outputs[0].tensor_index"},
		{"raw options out of order", "strided_slice_meta", func(m *Model) {
			o := m.Subgraphs[0].Operators[0].Options.(*RawOptions)
			o.Fields[0].ID, o.Fields[1].ID = 3, 2
		}, ErrInvalid, "subgraphs[0].operators[0].builtin_options"},
		{"raw options for a modelled table", "strided_slice_meta", func(m *Model) {
			m.Subgraphs[0].Operators[0].Options.(*RawOptions).Type = tagSoftmax
		}, ErrInvalid, "subgraphs[0].operators[0].builtin_options"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := testModels()[tc.model]
			tc.edit(m)
			_, err := Write(m)
			checkErr(t, err, tc.err, tc.path)
			// The same model from a file: encode skips validation.
			file, err := encode(m)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(tc.name, "raw options") {
				return // a file keeps no field order or table kind to get wrong
			}
			_, err = Read(file)
			if tc.name == "no subgraph" || tc.name == "non-empty sentinel" {
				// Read reports these structurally too; only the sentinel matters.
				if !errors.Is(err, tc.err) {
					t.Errorf("Read: %v", err)
				}
				return
			}
			checkErr(t, err, tc.err, tc.path)
		})
	}
}

func TestWriteRefuses(t *testing.T) {
	if _, err := Write(nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil model: %v", err)
	}
	m := testModels()["add"]
	m.Version = 2
	if _, err := Write(m); !errors.Is(err, ErrUnsupported) {
		t.Errorf("version 2: %v", err)
	}
	m = testModels()["add"]
	m.Subgraphs[0].Operators[0].Options = (*AddOptions)(nil)
	if _, err := Write(m); !errors.Is(err, ErrInvalid) {
		t.Errorf("typed nil options: %v", err)
	}
	m = testModels()["add"]
	m.Version = 0 // unset: written as 3
	data, err := Write(m)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := Read(data); got.Version != 3 {
		t.Errorf("version %d", got.Version)
	}
}

// TestUnsupportedFields: fields that change what a model computes and that this package
// does not keep are refused by name.
func TestUnsupportedFields(t *testing.T) {
	emptyChild := func(slot int) func(b *flatbuffers.Builder) func() {
		return func(b *flatbuffers.Builder) func() {
			child := emptyTable(b)
			return func() { b.PrependUOffsetTSlot(slot, child, 0) }
		}
	}
	vectorOfOne := func(slot int) func(b *flatbuffers.Builder) func() {
		return func(b *flatbuffers.Builder) func() {
			vec := b.CreateVectorOfTables([]flatbuffers.UOffsetT{emptyTable(b)})
			return func() { b.PrependUOffsetTSlot(slot, vec, 0) }
		}
	}
	scalar := func(slot int, v uint64) func(b *flatbuffers.Builder) func() {
		return func(b *flatbuffers.Builder) func() {
			return func() { b.PrependUint64Slot(slot, v, 0) }
		}
	}
	byteSlot := func(slot int, v byte) func(b *flatbuffers.Builder) func() {
		return func(b *flatbuffers.Builder) func() {
			return func() { b.PrependByteSlot(slot, v, 0) }
		}
	}
	tests := []struct {
		name string
		spec rawSpec
		path string
	}{
		{"sparsity", rawSpec{tensorHook: emptyChild(6)}, "subgraphs[0].tensors[0].sparsity"},
		{"variant tensors", rawSpec{tensorHook: vectorOfOne(9)}, "subgraphs[0].tensors[0].variant_tensors"},
		{"external buffer", rawSpec{tensorHook: func(b *flatbuffers.Builder) func() {
			return func() { b.PrependUint32Slot(10, 1, 0) }
		}}, "subgraphs[0].tensors[0].external_buffer"},
		{"quantization details", rawSpec{tensorHook: func(b *flatbuffers.Builder) func() {
			custom := emptyTable(b)
			b.StartObject(7)
			b.PrependByteSlot(4, 1, 0)
			b.PrependUOffsetTSlot(5, custom, 0)
			q := b.EndObject()
			return func() { b.PrependUOffsetTSlot(4, q, 0) }
		}}, "subgraphs[0].tensors[0].quantization.details"},
		{"custom options format", rawSpec{operatorHook: byteSlot(6, 1)}, "subgraphs[0].operators[0].custom_options_format"},
		{"large custom options", rawSpec{operatorHook: scalar(9, 1<<31)}, "subgraphs[0].operators[0].large_custom_options_offset"},
		{"builtin options 2", rawSpec{operatorHook: byteSlot(11, 3)}, "subgraphs[0].operators[0].builtin_options_2"},
		{"external buffers", rawSpec{modelHook: vectorOfOne(9)}, "external_buffers"},
		{"external buffer groups", rawSpec{modelHook: vectorOfOne(8)}, "external_buffer_groups"},
		{"schema version 2", rawSpec{version: 2}, "version"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.opcodes = []rawOpcode{{dep: int32(OpMaxPool2D), hasDep: true}}
			tc.spec.operators = []rawOperator{{}}
			_, err := Read(tc.spec.build())
			checkErr(t, err, ErrUnsupported, tc.path)
		})
	}
	// Fields that do not change the computation are dropped: debug_metadata_index.
	spec := rawSpec{opcodes: []rawOpcode{{}}, operators: []rawOperator{{}}, operatorHook: func(b *flatbuffers.Builder) func() {
		return func() { b.PrependInt32Slot(13, 7, -1) }
	}}
	if _, err := Read(spec.build()); err != nil {
		t.Errorf("debug_metadata_index: %v", err)
	}
}

func TestHelpers(t *testing.T) {
	m := testModels()["conv2d"]
	op := &m.Subgraphs[0].Operators[0]
	oc, err := m.OpCode(op)
	if err != nil || oc.Builtin != OpConv2D || oc.Version != 3 {
		t.Errorf("OpCode: %+v %v", oc, err)
	}
	if _, err := m.OpCode(&Operator{OpcodeIndex: 9}); !errors.Is(err, ErrInvalid) {
		t.Errorf("OpCode out of range: %v", err)
	}
	in, w := &m.Subgraphs[0].Tensors[op.Inputs[0]], &m.Subgraphs[0].Tensors[op.Inputs[1]]
	if m.BufferData(in) != nil {
		t.Error("input has data")
	}
	if got := len(m.BufferData(w)); got != w.NumElements() || got != 3*3*3*2 {
		t.Errorf("weights: %d bytes", got)
	}

	if _, ok := m.MetadataByName("cxr_operating_point"); ok {
		t.Error("metadata before SetMetadata")
	}
	m.SetMetadata("cxr_operating_point", []byte(`{"threshold":0.4}`))
	nbuf := len(m.Buffers)
	m.SetMetadata("cxr_operating_point", []byte(`{"threshold":0.5}`))
	if len(m.Buffers) != nbuf || len(m.Metadata) != 1 {
		t.Errorf("replacing metadata grew buffers %d→%d, metadata %d", nbuf, len(m.Buffers), len(m.Metadata))
	}
	// A metadata entry that shares a tensor's buffer is given a buffer of its own.
	m.Metadata = append(m.Metadata, Metadata{Name: "shared", Buffer: w.Buffer})
	weights := bytes.Clone(m.BufferData(w))
	m.SetMetadata("shared", []byte("x"))
	if !bytes.Equal(m.BufferData(w), weights) {
		t.Error("SetMetadata overwrote a tensor's buffer")
	}
	data, err := Write(m)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Read(data)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"cxr_operating_point": `{"threshold":0.5}`, "shared": "x"} {
		if got, ok := back.MetadataByName(name); !ok || string(got) != want {
			t.Errorf("%s: %q %v", name, got, ok)
		}
	}
	// A hand-built entry whose buffer does not exist gets a new buffer instead of a panic.
	back.Metadata = append(back.Metadata, Metadata{Name: "dangling", Buffer: 999})
	back.SetMetadata("dangling", []byte("y"))
	if got, ok := back.MetadataByName("dangling"); !ok || string(got) != "y" {
		t.Errorf("dangling: %q %v", got, ok)
	}
	if (&Quantization{Scale: []float32{1}}).PerChannel() || !w.Quantization.PerChannel() {
		t.Error("PerChannel")
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{OpConv2D.String(), "CONV_2D"}, {OpHardSwish.String(), "HARD_SWISH"}, {BuiltinOp(209).String(), "STABLEHLO_CASE"},
		{BuiltinOp(500).String(), "BUILTIN_500"}, {Int8.String(), "int8"}, {Float32.String(), "float32"},
		{TensorType(30).String(), "type30"}, {ActRelu6.String(), "RELU6"}, {PaddingValid.String(), "VALID"},
	} {
		if tc.got != tc.want {
			t.Errorf("%q, want %q", tc.got, tc.want)
		}
	}
	if Int8.Size() != 1 || Float32.Size() != 4 || Int64.Size() != 8 || String.Size() != 0 || TensorType(-1).Size() != 0 {
		t.Error("Size")
	}
}
