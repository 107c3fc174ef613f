package tflite

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"unsafe"
)

const (
	fileIdentifier = "TFL3"
	schemaVersion  = 3

	// Decoding may allocate at most allocPerByte bytes of Go memory per file byte, plus
	// allocSlack. A well-formed file needs far less: the largest decoded object per byte of
	// its most compact encoding is an Operator without fields (~150 bytes for 8 file bytes).
	// The limit stops files whose tables share sub-tables (legal in FlatBuffers) from
	// expanding into gigabytes.
	allocPerByte = 32
	allocSlack   = 64 << 10

	// maxTensorBytes bounds any tensor's size so that byte counts fit an int on 32-bit
	// devices (armv7) and element arithmetic never overflows.
	maxTensorBytes = 1<<31 - 1
)

// ReadFile reads and validates the .tflite file at path. See Read.
func ReadFile(path string) (*Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Read(data)
}

// Read decodes and validates a .tflite flatbuffer.
//
// Every offset, length and index is checked against the file before use: a truncated,
// corrupt or hostile file returns a *FormatError (wrapping ErrTruncated, ErrCorrupt,
// ErrInvalid, ErrUnsupported or ErrTooLarge), never a panic, and decoding allocates at most
// a small multiple of len(data).
//
// Buffer.Data and Operator.CustomOptions alias data (weights are not copied): data must not
// be modified while the Model is in use.
//
// Vectors keep the difference between absent (nil) and present but empty (non-nil, length
// 0), so that Write reproduces the file's structure. Fields the file leaves out take the
// schema's defaults. Fields this package does not model are dropped when they do not change
// what the model computes (debug_metadata_index, SignatureDef.deprecated_tag) and refused
// with ErrUnsupported when they do (sparsity, external buffers, quantization details,
// BuiltinOptions2, large custom options).
//
// One lenient rule: TOCO wrote quantized_dimension 3 on rank-1 bias tensors (tflite-micro's
// person_detect.tflite); a rank-1 tensor's quantized_dimension is read as 0, its only axis.
func Read(data []byte) (*Model, error) {
	d := &decoder{buf: data, budget: int64(len(data))*allocPerByte + allocSlack}
	m, err := d.model()
	if err != nil {
		return nil, err
	}
	if err := validate(m); err != nil {
		return nil, err
	}
	return m, nil
}

// decoder reads one flatbuffer. Positions are ints that have been checked to lie in buf.
type decoder struct {
	buf    []byte
	budget int64 // bytes of Go memory decoding may still allocate
	path   trail
}

// table is a checked table: its vtable and inline object lie inside the file.
type table struct {
	pos   int // table start (its soffset)
	vt    int // vtable start
	vtLen int // vtable size in bytes
	size  int // inline object size in bytes, including the soffset
}

func (d *decoder) errf(field string, err error, format string, args ...any) error {
	return d.path.errAt(field, err, fmt.Sprintf(format, args...))
}

// alloc charges n bytes against the memory budget before they are allocated.
func (d *decoder) alloc(n int64) error {
	d.budget -= n
	if d.budget < 0 {
		return d.path.errAt("", ErrTooLarge, fmt.Sprintf(
			"decoding needs more than %d bytes of memory per file byte (tables shared many times?)", allocPerByte))
	}
	return nil
}

func (d *decoder) u16(p int) int    { return int(binary.LittleEndian.Uint16(d.buf[p:])) }
func (d *decoder) u32(p int) uint32 { return binary.LittleEndian.Uint32(d.buf[p:]) }
func (d *decoder) u64(p int) uint64 { return binary.LittleEndian.Uint64(d.buf[p:]) }

// span reports whether n bytes at p lie inside the file; arithmetic is done in 64 bits so
// that 32-bit platforms cannot overflow.
func (d *decoder) span(p int, n uint64) bool {
	return p >= 0 && uint64(p) <= uint64(len(d.buf)) && n <= uint64(len(d.buf))-uint64(p)
}

// deref follows the uoffset stored at p (checked by the caller) and returns its target.
func (d *decoder) deref(p int, field string) (int, error) {
	t := uint64(p) + uint64(d.u32(p))
	if t > uint64(len(d.buf))-4 || len(d.buf) < 4 {
		return 0, d.errf(field, ErrTruncated, "offset to byte %d, past the end of the %d-byte file", t, len(d.buf))
	}
	return int(t), nil
}

// table checks the table starting at pos.
func (d *decoder) table(pos int, field string) (table, error) {
	if !d.span(pos, 4) {
		return table{}, d.errf(field, ErrTruncated, "table at byte %d is past the end of the file", pos)
	}
	vt := int64(pos) - int64(int32(d.u32(pos)))
	if vt < 0 || vt > int64(len(d.buf))-4 {
		return table{}, d.errf(field, ErrCorrupt, "vtable at byte %d is outside the file", vt)
	}
	t := table{pos: pos, vt: int(vt), vtLen: d.u16(int(vt)), size: d.u16(int(vt) + 2)}
	if t.vtLen < 4 || t.vtLen%2 != 0 {
		return table{}, d.errf(field, ErrCorrupt, "vtable size %d", t.vtLen)
	}
	if !d.span(t.vt, uint64(t.vtLen)) {
		return table{}, d.errf(field, ErrTruncated, "vtable runs past the end of the file")
	}
	if t.size < 4 {
		return table{}, d.errf(field, ErrCorrupt, "table size %d", t.size)
	}
	if !d.span(pos, uint64(t.size)) {
		return table{}, d.errf(field, ErrTruncated, "table runs past the end of the file")
	}
	return t, nil
}

// field returns the position of field id, of the given byte width, or ok=false when the
// field is absent.
func (d *decoder) field(t table, id, width int, name string) (pos int, ok bool, err error) {
	e := 4 + 2*id
	if e+2 > t.vtLen {
		return 0, false, nil
	}
	off := d.u16(t.vt + e)
	if off == 0 {
		return 0, false, nil
	}
	// Like the FlatBuffers verifier, check the field against the file, not the table's
	// inline size: the Go builder shares a vtable between tables whose fields sit at the
	// same offsets, even when their sizes differ, so that size may be another table's.
	if off < 4 {
		return 0, false, d.errf(name, ErrCorrupt, "field at offset %d overlaps its table's vtable offset", off)
	}
	if !d.span(t.pos+off, uint64(width)) {
		return 0, false, d.errf(name, ErrTruncated, "field runs past the end of the file")
	}
	return t.pos + off, true, nil
}

func (d *decoder) u8Field(t table, id int, def uint8, name string) (uint8, error) {
	p, ok, err := d.field(t, id, 1, name)
	if !ok {
		return def, err
	}
	return d.buf[p], nil
}

func (d *decoder) boolField(t table, id int, def bool, name string) (bool, error) {
	p, ok, err := d.field(t, id, 1, name)
	if !ok {
		return def, err
	}
	return d.buf[p] != 0, nil
}

func (d *decoder) u32Field(t table, id int, def uint32, name string) (uint32, error) {
	p, ok, err := d.field(t, id, 4, name)
	if !ok {
		return def, err
	}
	return d.u32(p), nil
}

func (d *decoder) i32Field(t table, id int, def int32, name string) (int32, error) {
	v, err := d.u32Field(t, id, uint32(def), name)
	return int32(v), err
}

func (d *decoder) f32Field(t table, id int, def float32, name string) (float32, error) {
	v, err := d.u32Field(t, id, math.Float32bits(def), name)
	return math.Float32frombits(v), err
}

func (d *decoder) u64Field(t table, id int, name string) (uint64, error) {
	p, ok, err := d.field(t, id, 8, name)
	if !ok {
		return 0, err
	}
	return d.u64(p), nil
}

// ref returns the target of reference field id, or ok=false when it is absent.
func (d *decoder) ref(t table, id int, name string) (int, bool, error) {
	p, ok, err := d.field(t, id, 4, name)
	if !ok {
		return 0, false, err
	}
	target, err := d.deref(p, name)
	return target, err == nil, err
}

// vector returns the first element's position and the length of vector field id.
func (d *decoder) vector(t table, id, elemSize int, name string) (start, n int, ok bool, err error) {
	p, ok, err := d.ref(t, id, name)
	if !ok {
		return 0, 0, false, err
	}
	count := uint64(d.u32(p))
	if !d.span(p+4, count*uint64(elemSize)) {
		return 0, 0, false, d.errf(name, ErrTruncated, "vector of %d elements runs past the end of the file", count)
	}
	return p + 4, int(count), true, nil
}

// subTable returns the table that reference field id points to.
func (d *decoder) subTable(t table, id int, name string) (table, bool, error) {
	p, ok, err := d.ref(t, id, name)
	if !ok {
		return table{}, false, err
	}
	st, err := d.table(p, name)
	return st, err == nil, err
}

func (d *decoder) str(t table, id int, name string) (string, error) {
	start, n, ok, err := d.vector(t, id, 1, name)
	if !ok {
		return "", err
	}
	if start+n >= len(d.buf) || d.buf[start+n] != 0 {
		return "", d.errf(name, ErrCorrupt, "string is not NUL-terminated")
	}
	if err := d.alloc(int64(n)); err != nil {
		return "", err
	}
	return string(d.buf[start : start+n]), nil
}

// bytes returns vector field id as a slice of the file (not copied), nil when absent.
func (d *decoder) bytes(t table, id int, name string) ([]byte, error) {
	start, n, ok, err := d.vector(t, id, 1, name)
	if !ok {
		return nil, err
	}
	return d.buf[start : start+n : start+n], nil
}

func (d *decoder) int32s(t table, id int, name string) ([]int32, error) {
	start, n, ok, err := d.vector(t, id, 4, name)
	if !ok {
		return nil, err
	}
	if err := d.alloc(4 * int64(n)); err != nil {
		return nil, err
	}
	v := make([]int32, n)
	for i := range v {
		v[i] = int32(d.u32(start + 4*i))
	}
	return v, nil
}

func (d *decoder) float32s(t table, id int, name string) ([]float32, error) {
	start, n, ok, err := d.vector(t, id, 4, name)
	if !ok {
		return nil, err
	}
	if err := d.alloc(4 * int64(n)); err != nil {
		return nil, err
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = math.Float32frombits(d.u32(start + 4*i))
	}
	return v, nil
}

func (d *decoder) int64s(t table, id int, name string) ([]int64, error) {
	start, n, ok, err := d.vector(t, id, 8, name)
	if !ok {
		return nil, err
	}
	if err := d.alloc(8 * int64(n)); err != nil {
		return nil, err
	}
	v := make([]int64, n)
	for i := range v {
		v[i] = int64(d.u64(start + 8*i))
	}
	return v, nil
}

func (d *decoder) bools(t table, id int, name string) ([]bool, error) {
	start, n, ok, err := d.vector(t, id, 1, name)
	if !ok {
		return nil, err
	}
	if err := d.alloc(int64(n)); err != nil {
		return nil, err
	}
	v := make([]bool, n)
	for i := range v {
		v[i] = d.buf[start+i] != 0
	}
	return v, nil
}

// tables decodes vector-of-tables field id with fn, extending the path with name[i].
func tables[T any](d *decoder, t table, id int, name string, fn func(*decoder, table) (T, error)) ([]T, error) {
	start, n, ok, err := d.vector(t, id, 4, name)
	if !ok {
		return nil, err
	}
	var zero T
	if err := d.alloc(int64(n) * int64(unsafe.Sizeof(zero))); err != nil {
		return nil, err
	}
	v := make([]T, n)
	for i := range v {
		d.path.push(name, i)
		p, err := d.deref(start+4*i, "")
		if err == nil {
			var st table
			if st, err = d.table(p, ""); err == nil {
				v[i], err = fn(d, st)
			}
		}
		d.path.pop()
		if err != nil {
			return nil, err
		}
	}
	return v, nil
}

// absentOrEmpty refuses a vector field this package does not model unless it is empty.
func (d *decoder) absentOrEmpty(t table, id int, name string) error {
	_, n, _, err := d.vector(t, id, 4, name)
	if err == nil && n > 0 {
		err = d.errf(name, ErrUnsupported, "%d entries; not handled by this reader", n)
	}
	return err
}

func (d *decoder) model() (*Model, error) {
	if len(d.buf) < 8 {
		return nil, &FormatError{Err: ErrTruncated, Msg: fmt.Sprintf("%d bytes is too short for a .tflite file", len(d.buf))}
	}
	if id := string(d.buf[4:8]); id != fileIdentifier {
		return nil, &FormatError{Err: ErrCorrupt, Msg: fmt.Sprintf("file identifier %q, want %q: not a .tflite model", id, fileIdentifier)}
	}
	root, err := d.deref(0, "")
	if err != nil {
		return nil, err
	}
	t, err := d.table(root, "")
	if err != nil {
		return nil, err
	}
	m := &Model{}
	if m.Version, err = d.u32Field(t, 0, 0, "version"); err != nil {
		return nil, err
	}
	if m.Version != schemaVersion {
		return nil, d.errf("version", ErrUnsupported, "schema version %d, want %d", m.Version, schemaVersion)
	}
	if m.OperatorCodes, err = tables(d, t, 1, "operator_codes", (*decoder).operatorCode); err != nil {
		return nil, err
	}
	if m.Subgraphs, err = tables(d, t, 2, "subgraphs", (*decoder).subgraph); err != nil {
		return nil, err
	}
	if m.Description, err = d.str(t, 3, "description"); err != nil {
		return nil, err
	}
	if m.Buffers, err = tables(d, t, 4, "buffers", (*decoder).buffer); err != nil {
		return nil, err
	}
	if len(m.Buffers) == 0 {
		// Tensors use buffer 0 for "no data"; a file without buffers means the same.
		m.Buffers = []Buffer{{}}
	}
	if m.MetadataBuffer, err = d.int32s(t, 5, "metadata_buffer"); err != nil {
		return nil, err
	}
	if m.Metadata, err = tables(d, t, 6, "metadata", (*decoder).metadata); err != nil {
		return nil, err
	}
	if m.SignatureDefs, err = tables(d, t, 7, "signature_defs", (*decoder).signatureDef); err != nil {
		return nil, err
	}
	if err := d.absentOrEmpty(t, 8, "external_buffer_groups"); err != nil {
		return nil, err
	}
	if err := d.absentOrEmpty(t, 9, "external_buffers"); err != nil {
		return nil, err
	}
	return m, nil
}

func (d *decoder) operatorCode(t table) (OperatorCode, error) {
	var oc OperatorCode
	dep, err := d.u8Field(t, 0, 0, "deprecated_builtin_code")
	if err != nil {
		return oc, err
	}
	if oc.CustomCode, err = d.str(t, 1, "custom_code"); err != nil {
		return oc, err
	}
	if oc.Version, err = d.i32Field(t, 2, 1, "version"); err != nil {
		return oc, err
	}
	code, err := d.i32Field(t, 3, 0, "builtin_code")
	if err != nil {
		return oc, err
	}
	// The official rule (schema_utils.cc): old files fill only the int8 field, new files
	// put 127 there for ops ≥ 127, so the larger of the two is the operator.
	oc.Builtin = BuiltinOp(max(int32(int8(dep)), code))
	if oc.Builtin < 0 {
		return oc, d.errf("builtin_code", ErrInvalid, "operator code %d", oc.Builtin)
	}
	return oc, nil
}

func (d *decoder) subgraph(t table) (Subgraph, error) {
	var sg Subgraph
	var err error
	if sg.Tensors, err = tables(d, t, 0, "tensors", (*decoder).tensor); err != nil {
		return sg, err
	}
	if sg.Inputs, err = d.int32s(t, 1, "inputs"); err != nil {
		return sg, err
	}
	if sg.Outputs, err = d.int32s(t, 2, "outputs"); err != nil {
		return sg, err
	}
	if sg.Operators, err = tables(d, t, 3, "operators", (*decoder).operator); err != nil {
		return sg, err
	}
	sg.Name, err = d.str(t, 4, "name")
	return sg, err
}

func (d *decoder) tensor(t table) (Tensor, error) {
	var tn Tensor
	var err error
	if tn.Shape, err = d.int32s(t, 0, "shape"); err != nil {
		return tn, err
	}
	typ, err := d.u8Field(t, 1, 0, "type")
	if err != nil {
		return tn, err
	}
	tn.Type = TensorType(int8(typ))
	if tn.Buffer, err = d.u32Field(t, 2, 0, "buffer"); err != nil {
		return tn, err
	}
	if tn.Name, err = d.str(t, 3, "name"); err != nil {
		return tn, err
	}
	qt, ok, err := d.subTable(t, 4, "quantization")
	if err != nil {
		return tn, err
	}
	if ok {
		d.path.push("quantization", -1)
		tn.Quantization, err = d.quantization(qt)
		d.path.pop()
		if err != nil {
			return tn, err
		}
		// TOCO quirk (person_detect.tflite): rank-1 bias tensors carry quantized_dimension 3.
		// A rank-1 tensor has one axis, so read it as that axis.
		if len(tn.Shape) == 1 && tn.Quantization.QuantizedDimension >= 1 {
			tn.Quantization.QuantizedDimension = 0
		}
	}
	if tn.IsVariable, err = d.boolField(t, 5, false, "is_variable"); err != nil {
		return tn, err
	}
	if _, ok, err := d.ref(t, 6, "sparsity"); ok || err != nil {
		if err == nil {
			err = d.errf("sparsity", ErrUnsupported, "sparse tensors are not handled by this reader")
		}
		return tn, err
	}
	if tn.ShapeSignature, err = d.int32s(t, 7, "shape_signature"); err != nil {
		return tn, err
	}
	if tn.HasRank, err = d.boolField(t, 8, false, "has_rank"); err != nil {
		return tn, err
	}
	if err := d.absentOrEmpty(t, 9, "variant_tensors"); err != nil {
		return tn, err
	}
	if eb, err := d.u32Field(t, 10, 0, "external_buffer"); err != nil || eb != 0 {
		if err == nil {
			err = d.errf("external_buffer", ErrUnsupported, "external buffer %d: data outside the file is not handled", eb)
		}
		return tn, err
	}
	return tn, nil
}

func (d *decoder) quantization(t table) (*Quantization, error) {
	if err := d.alloc(int64(unsafe.Sizeof(Quantization{}))); err != nil {
		return nil, err
	}
	q := &Quantization{}
	var err error
	if q.Min, err = d.float32s(t, 0, "min"); err != nil {
		return nil, err
	}
	if q.Max, err = d.float32s(t, 1, "max"); err != nil {
		return nil, err
	}
	if q.Scale, err = d.float32s(t, 2, "scale"); err != nil {
		return nil, err
	}
	if q.ZeroPoint, err = d.int64s(t, 3, "zero_point"); err != nil {
		return nil, err
	}
	if dt, err := d.u8Field(t, 4, 0, "details_type"); err != nil || dt != 0 {
		if err == nil {
			err = d.errf("details", ErrUnsupported, "quantization details type %d (custom, blockwise or multi-axis quantization)", dt)
		}
		return nil, err
	}
	if q.QuantizedDimension, err = d.i32Field(t, 6, 0, "quantized_dimension"); err != nil {
		return nil, err
	}
	return q, nil
}

func (d *decoder) buffer(t table) (Buffer, error) {
	var b Buffer
	var err error
	if b.Data, err = d.bytes(t, 0, "data"); err != nil {
		return b, err
	}
	if b.Offset, err = d.u64Field(t, 1, "offset"); err != nil {
		return b, err
	}
	b.Size, err = d.u64Field(t, 2, "size")
	return b, err
}

func (d *decoder) metadata(t table) (Metadata, error) {
	var md Metadata
	var err error
	if md.Name, err = d.str(t, 0, "name"); err != nil {
		return md, err
	}
	md.Buffer, err = d.u32Field(t, 1, 0, "buffer")
	return md, err
}

func (d *decoder) signatureDef(t table) (SignatureDef, error) {
	var s SignatureDef
	var err error
	if s.Inputs, err = tables(d, t, 0, "inputs", (*decoder).tensorMap); err != nil {
		return s, err
	}
	if s.Outputs, err = tables(d, t, 1, "outputs", (*decoder).tensorMap); err != nil {
		return s, err
	}
	if s.SignatureKey, err = d.str(t, 2, "signature_key"); err != nil {
		return s, err
	}
	// Field 3, deprecated_tag, is ignored as the schema says.
	s.SubgraphIndex, err = d.u32Field(t, 4, 0, "subgraph_index")
	return s, err
}

func (d *decoder) tensorMap(t table) (TensorMap, error) {
	var tm TensorMap
	var err error
	if tm.Name, err = d.str(t, 0, "name"); err != nil {
		return tm, err
	}
	tm.TensorIndex, err = d.u32Field(t, 1, 0, "tensor_index")
	return tm, err
}

func (d *decoder) operator(t table) (Operator, error) {
	var op Operator
	var err error
	if op.OpcodeIndex, err = d.u32Field(t, 0, 0, "opcode_index"); err != nil {
		return op, err
	}
	if op.Inputs, err = d.int32s(t, 1, "inputs"); err != nil {
		return op, err
	}
	if op.Outputs, err = d.int32s(t, 2, "outputs"); err != nil {
		return op, err
	}
	tag, err := d.u8Field(t, 3, 0, "builtin_options_type")
	if err != nil {
		return op, err
	}
	if tag != 0 {
		ot, ok, err := d.subTable(t, 4, "builtin_options")
		if err != nil {
			return op, err
		}
		if ok {
			d.path.push("builtin_options", -1)
			op.Options, err = d.options(tag, ot)
			d.path.pop()
			if err != nil {
				return op, err
			}
		}
	}
	if op.CustomOptions, err = d.bytes(t, 5, "custom_options"); err != nil {
		return op, err
	}
	if f, err := d.u8Field(t, 6, 0, "custom_options_format"); err != nil || f != 0 {
		if err == nil {
			err = d.errf("custom_options_format", ErrUnsupported, "format %d (only FLEXBUFFERS, 0, exists)", f)
		}
		return op, err
	}
	if op.MutatingVariableInputs, err = d.bools(t, 7, "mutating_variable_inputs"); err != nil {
		return op, err
	}
	if op.Intermediates, err = d.int32s(t, 8, "intermediates"); err != nil {
		return op, err
	}
	for id, name := range [...]string{9: "large_custom_options_offset", 10: "large_custom_options_size"} {
		if name == "" {
			continue
		}
		if v, err := d.u64Field(t, id, name); err != nil || v != 0 {
			if err == nil {
				err = d.errf(name, ErrUnsupported, "custom options outside the flatbuffer are not handled")
			}
			return op, err
		}
	}
	if tag2, err := d.u8Field(t, 11, 0, "builtin_options_2_type"); err != nil || tag2 != 0 {
		if err == nil {
			err = d.errf("builtin_options_2", ErrUnsupported, "BuiltinOptions2 type %d (StableHLO ops)", tag2)
		}
		return op, err
	}
	return op, nil
}
