package tflite

import (
	flatbuffers "github.com/google/flatbuffers/go"
)

// rawFile builds .tflite files field by field with the FlatBuffers builder, to produce what
// Write never does: opcode fields left out, missing or odd options tables, shared tables.
// The graph is one int8 [1,2,2,1] input (tensor 0) and output (tensor 1); every operator
// reads tensor 0 and writes tensor 1.

type rawOpcode struct {
	dep, code       int32
	hasDep, hasCode bool
	version         *int32
}

type rawOperator struct {
	opcode  uint32
	tag     uint8                                             // builtin_options_type
	options func(b *flatbuffers.Builder) flatbuffers.UOffsetT // nil: no table
}

type rawSpec struct {
	opcodes   []rawOpcode
	operators []rawOperator
	// tensorRepeat, when > 0, makes the tensors vector name tensor 0's table that many
	// times, with tensor 0's shape given by bigShape.
	tensorRepeat int
	bigShape     int
	// Hooks add fields Write never sets. Each is called before its table starts (to build
	// children) and returns a function that adds slots inside the table.
	tensorHook, operatorHook, modelHook func(b *flatbuffers.Builder) func()
	version                             uint32 // Model.version; 0 means 3
}

func noHook(*flatbuffers.Builder) func() { return func() {} }

func rawInt32s(b *flatbuffers.Builder, v []int32) flatbuffers.UOffsetT {
	b.StartVector(4, len(v), 4)
	for i := len(v) - 1; i >= 0; i-- {
		b.PrependInt32(v[i])
	}
	return b.EndVector(len(v))
}

func (s rawSpec) build() []byte {
	b := flatbuffers.NewBuilder(1024)
	// Buffers: just the sentinel.
	b.StartObject(3)
	buf0 := b.EndObject()
	buffers := b.CreateVectorOfTables([]flatbuffers.UOffsetT{buf0})

	for _, h := range []*func(*flatbuffers.Builder) func(){&s.tensorHook, &s.operatorHook, &s.modelHook} {
		if *h == nil {
			*h = noHook
		}
	}
	tensor := func(name string, shape []int32, hook func(*flatbuffers.Builder) func()) flatbuffers.UOffsetT {
		sh := rawInt32s(b, shape)
		nm := b.CreateString(name)
		add := hook(b)
		b.StartObject(11)
		b.PrependUOffsetTSlot(0, sh, 0)
		b.PrependInt8Slot(1, int8(Int8), 0)
		b.PrependUOffsetTSlot(3, nm, 0)
		add()
		return b.EndObject()
	}
	var tensors []flatbuffers.UOffsetT
	if s.tensorRepeat > 0 {
		shape := make([]int32, s.bigShape)
		for i := range shape {
			shape[i] = 1
		}
		t0 := tensor("shared", shape, noHook)
		for range s.tensorRepeat {
			tensors = append(tensors, t0)
		}
	} else {
		tensors = []flatbuffers.UOffsetT{tensor("in", []int32{1, 2, 2, 1}, s.tensorHook), tensor("out", []int32{1, 2, 2, 1}, noHook)}
	}
	tensorVec := b.CreateVectorOfTables(tensors)

	var ops []flatbuffers.UOffsetT
	for _, o := range s.operators {
		var opts flatbuffers.UOffsetT
		if o.options != nil {
			opts = o.options(b)
		}
		in, out := rawInt32s(b, []int32{0}), rawInt32s(b, []int32{1})
		add := s.operatorHook(b)
		b.StartObject(14)
		add()
		b.PrependUint32Slot(0, o.opcode, 0)
		b.PrependUOffsetTSlot(1, in, 0)
		b.PrependUOffsetTSlot(2, out, 0)
		b.PrependUint8Slot(3, o.tag, 0)
		if opts != 0 {
			b.PrependUOffsetTSlot(4, opts, 0)
		}
		ops = append(ops, b.EndObject())
	}
	opVec := b.CreateVectorOfTables(ops)
	sgIn, sgOut := rawInt32s(b, []int32{0}), rawInt32s(b, []int32{1})
	b.StartObject(5)
	b.PrependUOffsetTSlot(0, tensorVec, 0)
	b.PrependUOffsetTSlot(1, sgIn, 0)
	b.PrependUOffsetTSlot(2, sgOut, 0)
	b.PrependUOffsetTSlot(3, opVec, 0)
	sg := b.EndObject()
	sgVec := b.CreateVectorOfTables([]flatbuffers.UOffsetT{sg})

	var codes []flatbuffers.UOffsetT
	for _, c := range s.opcodes {
		b.StartObject(4)
		if c.hasDep {
			b.PrependInt8(int8(c.dep))
			b.Slot(0)
		}
		if c.version != nil {
			b.PrependInt32(*c.version)
			b.Slot(2)
		}
		if c.hasCode {
			b.PrependInt32(c.code)
			b.Slot(3)
		}
		codes = append(codes, b.EndObject())
	}
	codeVec := b.CreateVectorOfTables(codes)

	add := s.modelHook(b)
	b.StartObject(10)
	add()
	version := s.version
	if version == 0 {
		version = 3
	}
	b.PrependUint32Slot(0, version, 0)
	b.PrependUOffsetTSlot(1, codeVec, 0)
	b.PrependUOffsetTSlot(2, sgVec, 0)
	b.PrependUOffsetTSlot(4, buffers, 0)
	root := b.EndObject()
	b.FinishWithFileIdentifier(root, []byte("TFL3"))
	return b.FinishedBytes()
}

// emptyTable returns an options builder for a table without fields.
func emptyTable(b *flatbuffers.Builder) flatbuffers.UOffsetT {
	b.StartObject(0)
	return b.EndObject()
}
