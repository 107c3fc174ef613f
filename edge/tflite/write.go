package tflite

import (
	"fmt"

	flatbuffers "github.com/google/flatbuffers/go"
)

// maxWriteBytes bounds the files Write produces: the flatbuffers builder cannot grow past
// 2 GiB, and files that large keep their weights outside the flatbuffer anyway.
const maxWriteBytes = 1 << 30

// Write validates m and serialises it as a .tflite flatbuffer that Google's runtime loads:
// identifier "TFL3", schema version 3, every Buffer.Data 16-byte aligned, each operator
// code with builtin_code = op and deprecated_builtin_code = min(op, 127) (old readers,
// e.g. Arm NN 20.08, look only at the latter).
//
// Nil vectors are left out and non-nil ones written even when empty; scalar fields equal
// to the schema default are left out, as FlatBuffers writers do. Read(Write(m)) equals m
// for every m that Read returned. m.Version must be 0 (unset) or 3; Write always writes 3.
func Write(m *Model) ([]byte, error) {
	if m == nil {
		return nil, &FormatError{Err: ErrInvalid, Msg: "nil model"}
	}
	if m.Version != 0 && m.Version != schemaVersion {
		return nil, &FormatError{Path: "version", Err: ErrUnsupported, Msg: fmt.Sprintf("schema version %d, want %d", m.Version, schemaVersion)}
	}
	if err := validate(m); err != nil {
		return nil, err
	}
	return encode(m)
}

// encode serialises a validated model.
func encode(m *Model) ([]byte, error) {
	size := estimateSize(m)
	if size > maxWriteBytes {
		return nil, &FormatError{Err: ErrTooLarge, Msg: fmt.Sprintf("about %d bytes; Write handles files up to %d", size, maxWriteBytes)}
	}
	w := &writer{b: flatbuffers.NewBuilder(int(size))}
	root := w.model(m)
	w.b.FinishWithFileIdentifier(root, []byte(fileIdentifier))
	return w.b.FinishedBytes(), nil
}

// estimateSize returns an upper bound of the written file's size: payload plus generous
// room for alignment and vtables.
func estimateSize(m *Model) int64 {
	const perTable = 64 // soffset, vtable, padding, its offset in a parent vector
	n := int64(1024 + len(m.Description))
	for _, b := range m.Buffers {
		n += perTable + 16 + int64(len(b.Data))
	}
	for _, oc := range m.OperatorCodes {
		n += perTable + int64(len(oc.CustomCode))
	}
	for i := range m.Subgraphs {
		sg := &m.Subgraphs[i]
		n += perTable + int64(len(sg.Name)) + 4*int64(len(sg.Inputs)+len(sg.Outputs))
		for j := range sg.Tensors {
			t := &sg.Tensors[j]
			n += perTable + int64(len(t.Name)) + 4*int64(len(t.Shape)+len(t.ShapeSignature))
			if q := t.Quantization; q != nil {
				n += perTable + 4*int64(len(q.Min)+len(q.Max)+len(q.Scale)) + 8*int64(len(q.ZeroPoint))
			}
		}
		for j := range sg.Operators {
			op := &sg.Operators[j]
			n += 2*perTable + int64(len(op.CustomOptions)+len(op.MutatingVariableInputs)) +
				4*int64(len(op.Inputs)+len(op.Outputs)+len(op.Intermediates))
			switch o := op.Options.(type) {
			case *ReshapeOptions:
				n += 4 * int64(len(o.NewShape))
			case *SqueezeOptions:
				n += 4 * int64(len(o.SqueezeDims))
			case *RawOptions:
				if k := len(o.Fields); k > 0 {
					n += 8*int64(k) + 2*int64(o.Fields[k-1].ID)
				}
			}
		}
	}
	n += 4 * int64(len(m.MetadataBuffer))
	for _, md := range m.Metadata {
		n += perTable + int64(len(md.Name))
	}
	for _, s := range m.SignatureDefs {
		n += perTable + int64(len(s.SignatureKey))
		for _, tm := range append(s.Inputs[:len(s.Inputs):len(s.Inputs)], s.Outputs...) {
			n += perTable + int64(len(tm.Name))
		}
	}
	return n
}

type writer struct{ b *flatbuffers.Builder }

// refSlot writes a reference field; 0 means absent.
func (w *writer) refSlot(slot int, off flatbuffers.UOffsetT) {
	if off != 0 {
		w.b.PrependUOffsetTSlot(slot, off, 0)
	}
}

func (w *writer) str(s string) flatbuffers.UOffsetT {
	if s == "" {
		return 0
	}
	return w.b.CreateString(s)
}

func (w *writer) int32s(v []int32) flatbuffers.UOffsetT {
	if v == nil {
		return 0
	}
	w.b.StartVector(4, len(v), 4)
	for i := len(v) - 1; i >= 0; i-- {
		w.b.PrependInt32(v[i])
	}
	return w.b.EndVector(len(v))
}

func (w *writer) float32s(v []float32) flatbuffers.UOffsetT {
	if v == nil {
		return 0
	}
	w.b.StartVector(4, len(v), 4)
	for i := len(v) - 1; i >= 0; i-- {
		w.b.PrependFloat32(v[i])
	}
	return w.b.EndVector(len(v))
}

func (w *writer) int64s(v []int64) flatbuffers.UOffsetT {
	if v == nil {
		return 0
	}
	w.b.StartVector(8, len(v), 8)
	for i := len(v) - 1; i >= 0; i-- {
		w.b.PrependInt64(v[i])
	}
	return w.b.EndVector(len(v))
}

func (w *writer) bools(v []bool) flatbuffers.UOffsetT {
	if v == nil {
		return 0
	}
	w.b.StartVector(1, len(v), 1)
	for i := len(v) - 1; i >= 0; i-- {
		w.b.PrependBool(v[i])
	}
	return w.b.EndVector(len(v))
}

// bytes writes a [ubyte] vector whose first byte is aligned to align.
func (w *writer) bytes(v []byte, align int) flatbuffers.UOffsetT {
	if v == nil {
		return 0
	}
	w.b.Prep(align, len(v))
	return w.b.CreateByteVector(v)
}

func (w *writer) tables(offs []flatbuffers.UOffsetT) flatbuffers.UOffsetT {
	if offs == nil {
		return 0
	}
	return w.b.CreateVectorOfTables(offs)
}

// each builds one table per element of v, nil for a nil slice.
func each[T any](v []T, fn func(*T) flatbuffers.UOffsetT) []flatbuffers.UOffsetT {
	if v == nil {
		return nil
	}
	offs := make([]flatbuffers.UOffsetT, len(v))
	for i := range v {
		offs[i] = fn(&v[i])
	}
	return offs
}

func (w *writer) model(m *Model) flatbuffers.UOffsetT {
	// Buffers first: the builder writes back to front, so weights end up at the file's end,
	// where converters put them.
	buffers := w.tables(each(m.Buffers, w.buffer))
	codes := w.tables(each(m.OperatorCodes, w.operatorCode))
	subgraphs := w.tables(each(m.Subgraphs, w.subgraph))
	desc := w.str(m.Description)
	metaBuf := w.int32s(m.MetadataBuffer)
	meta := w.tables(each(m.Metadata, w.metadata))
	sigs := w.tables(each(m.SignatureDefs, w.signatureDef))
	b := w.b
	b.StartObject(8)
	b.PrependUint32Slot(0, schemaVersion, 0)
	w.refSlot(1, codes)
	w.refSlot(2, subgraphs)
	w.refSlot(3, desc)
	w.refSlot(4, buffers)
	w.refSlot(5, metaBuf)
	w.refSlot(6, meta)
	w.refSlot(7, sigs)
	return b.EndObject()
}

func (w *writer) buffer(buf *Buffer) flatbuffers.UOffsetT {
	data := w.bytes(buf.Data, 16) // Buffer.data has force_align: 16
	b := w.b
	b.StartObject(3)
	w.refSlot(0, data)
	b.PrependUint64Slot(1, buf.Offset, 0)
	b.PrependUint64Slot(2, buf.Size, 0)
	return b.EndObject()
}

func (w *writer) operatorCode(oc *OperatorCode) flatbuffers.UOffsetT {
	custom := w.str(oc.CustomCode)
	b := w.b
	b.StartObject(4)
	b.PrependInt8Slot(0, int8(min(oc.Builtin, OpPlaceholderForGreaterOpCodes)), 0)
	w.refSlot(1, custom)
	b.PrependInt32Slot(2, oc.Version, 1)
	b.PrependInt32Slot(3, int32(oc.Builtin), 0)
	return b.EndObject()
}

func (w *writer) subgraph(sg *Subgraph) flatbuffers.UOffsetT {
	tensors := w.tables(each(sg.Tensors, w.tensor))
	inputs := w.int32s(sg.Inputs)
	outputs := w.int32s(sg.Outputs)
	ops := w.tables(each(sg.Operators, w.operator))
	name := w.str(sg.Name)
	b := w.b
	b.StartObject(5)
	w.refSlot(0, tensors)
	w.refSlot(1, inputs)
	w.refSlot(2, outputs)
	w.refSlot(3, ops)
	w.refSlot(4, name)
	return b.EndObject()
}

func (w *writer) tensor(t *Tensor) flatbuffers.UOffsetT {
	shape := w.int32s(t.Shape)
	name := w.str(t.Name)
	var quant flatbuffers.UOffsetT
	if q := t.Quantization; q != nil {
		qmin, qmax := w.float32s(q.Min), w.float32s(q.Max)
		scale, zp := w.float32s(q.Scale), w.int64s(q.ZeroPoint)
		w.b.StartObject(7)
		w.refSlot(0, qmin)
		w.refSlot(1, qmax)
		w.refSlot(2, scale)
		w.refSlot(3, zp)
		w.b.PrependInt32Slot(6, q.QuantizedDimension, 0)
		quant = w.b.EndObject()
	}
	sig := w.int32s(t.ShapeSignature)
	b := w.b
	b.StartObject(9)
	w.refSlot(0, shape)
	b.PrependInt8Slot(1, int8(t.Type), 0)
	b.PrependUint32Slot(2, t.Buffer, 0)
	w.refSlot(3, name)
	w.refSlot(4, quant)
	b.PrependBoolSlot(5, t.IsVariable, false)
	w.refSlot(7, sig)
	b.PrependBoolSlot(8, t.HasRank, false)
	return b.EndObject()
}

func (w *writer) operator(op *Operator) flatbuffers.UOffsetT {
	inputs := w.int32s(op.Inputs)
	outputs := w.int32s(op.Outputs)
	opts := w.writeOptions(op.Options)
	custom := w.bytes(op.CustomOptions, 4)
	mut := w.bools(op.MutatingVariableInputs)
	inter := w.int32s(op.Intermediates)
	b := w.b
	b.StartObject(9)
	b.PrependUint32Slot(0, op.OpcodeIndex, 0)
	w.refSlot(1, inputs)
	w.refSlot(2, outputs)
	if op.Options != nil {
		b.PrependUint8Slot(3, op.Options.OptionsType(), 0)
		w.refSlot(4, opts)
	}
	w.refSlot(5, custom)
	w.refSlot(7, mut)
	w.refSlot(8, inter)
	return b.EndObject()
}

func (w *writer) metadata(md *Metadata) flatbuffers.UOffsetT {
	name := w.str(md.Name)
	w.b.StartObject(2)
	w.refSlot(0, name)
	w.b.PrependUint32Slot(1, md.Buffer, 0)
	return w.b.EndObject()
}

func (w *writer) signatureDef(s *SignatureDef) flatbuffers.UOffsetT {
	inputs := w.tables(each(s.Inputs, w.tensorMap))
	outputs := w.tables(each(s.Outputs, w.tensorMap))
	key := w.str(s.SignatureKey)
	b := w.b
	b.StartObject(5)
	w.refSlot(0, inputs)
	w.refSlot(1, outputs)
	w.refSlot(2, key)
	b.PrependUint32Slot(4, s.SubgraphIndex, 0)
	return b.EndObject()
}

func (w *writer) tensorMap(tm *TensorMap) flatbuffers.UOffsetT {
	name := w.str(tm.Name)
	w.b.StartObject(2)
	w.refSlot(0, name)
	w.b.PrependUint32Slot(1, tm.TensorIndex, 0)
	return w.b.EndObject()
}
