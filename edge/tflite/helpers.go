package tflite

import (
	"encoding/binary"
	"fmt"
	"math"
)

// OpCode returns the operator code op runs, or an error when its index is out of range
// (impossible for a Model that Read returned).
func (m *Model) OpCode(op *Operator) (OperatorCode, error) {
	if int64(op.OpcodeIndex) >= int64(len(m.OperatorCodes)) {
		return OperatorCode{}, &FormatError{Path: "opcode_index", Err: ErrInvalid,
			Msg: fmt.Sprintf("operator code %d out of range [0,%d)", op.OpcodeIndex, len(m.OperatorCodes))}
	}
	return m.OperatorCodes[op.OpcodeIndex], nil
}

// BufferData returns the constant data of t, or nil when t is not constant (buffer 0, an
// empty buffer, or an index out of range).
func (m *Model) BufferData(t *Tensor) []byte {
	if t.Buffer == 0 || int64(t.Buffer) >= int64(len(m.Buffers)) {
		return nil
	}
	if d := m.Buffers[t.Buffer].Data; len(d) > 0 {
		return d
	}
	return nil
}

// MetadataByName returns the data of the first metadata entry called name.
func (m *Model) MetadataByName(name string) ([]byte, bool) {
	for _, md := range m.Metadata {
		if md.Name == name && int64(md.Buffer) < int64(len(m.Buffers)) {
			return m.Buffers[md.Buffer].Data, true
		}
	}
	return nil, false
}

// SetMetadata stores data under name, replacing an existing entry of that name. The data
// goes into a buffer of its own, so buffers shared with tensors are never overwritten.
func (m *Model) SetMetadata(name string, data []byte) {
	if len(m.Buffers) == 0 {
		m.Buffers = []Buffer{{}}
	}
	idx := -1
	for i, md := range m.Metadata {
		if md.Name == name {
			idx = i
			break
		}
	}
	// Reuse the entry's buffer when nothing else uses it (and, in a model built by hand
	// rather than read, when it exists at all).
	if idx >= 0 && int64(m.Metadata[idx].Buffer) < int64(len(m.Buffers)) && m.bufferUsers(m.Metadata[idx].Buffer) == 1 {
		m.Buffers[m.Metadata[idx].Buffer] = Buffer{Data: data}
		return
	}
	m.Buffers = append(m.Buffers, Buffer{Data: data})
	md := Metadata{Name: name, Buffer: uint32(len(m.Buffers) - 1)}
	if idx >= 0 {
		m.Metadata[idx] = md
	} else {
		m.Metadata = append(m.Metadata, md)
	}
}

// bufferUsers counts the tensors, metadata entries and metadata_buffer slots that use buffer b.
func (m *Model) bufferUsers(b uint32) int {
	if b == 0 {
		return 2 // the sentinel is never reused
	}
	n := 0
	for _, sg := range m.Subgraphs {
		for _, t := range sg.Tensors {
			if t.Buffer == b {
				n++
			}
		}
	}
	for _, md := range m.Metadata {
		if md.Buffer == b {
			n++
		}
	}
	for _, x := range m.MetadataBuffer {
		if int64(x) == int64(b) {
			n++
		}
	}
	return n
}

// NumElements returns the number of elements of t's shape (1 for a scalar).
func (t *Tensor) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= int(d)
	}
	return n
}

// PerChannel reports whether q has one scale per slice along QuantizedDimension.
func (q *Quantization) PerChannel() bool { return q != nil && len(q.Scale) > 1 }

// Int32Data encodes v as a constant buffer's bytes (little-endian, as the format stores
// tensor data), for building models.
func Int32Data(v []int32) []byte {
	out := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(out[4*i:], uint32(x))
	}
	return out
}

// Float32Data encodes v as a constant buffer's bytes (little-endian IEEE 754).
func Float32Data(v []float32) []byte {
	out := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
	}
	return out
}
