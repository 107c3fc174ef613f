package tflite

import (
	"encoding/binary"
	"math"
	"slices"
	"unsafe"

	flatbuffers "github.com/google/flatbuffers/go"
)

// RawOptions preserves, field by field, the builtin options table of an operator this
// package does not model (STRIDED_SLICE, RESIZE_BILINEAR, …), so that Write reproduces it.
//
// The reader knows only the table's layout, not the schema, so each field's Size is the
// room the field occupies (1, 2, 4 or 8 bytes): up to the next field, and for the last one
// as much as its alignment allows. A 1-byte field followed by padding may thus come back
// with Size 4 or 8, the following bytes in the upper bytes of Value. Readers of the field
// look only at its low bytes, so the rewritten table means the same. Options tables that hold references (ConcatEmbeddingsOptions,
// VarHandleOptions, BucketizeOptions) cannot be kept this way and are refused.
type RawOptions struct {
	Type   uint8      // BuiltinOptions union tag
	Fields []RawField // present fields in increasing ID order; nil for an empty table
}

// RawField is one scalar field of a RawOptions table.
type RawField struct {
	ID    uint16 // field id (slot) in the table
	Size  uint8  // 1, 2, 4 or 8
	Value uint64 // the field's bytes, little-endian
}

// OptionsType returns the table's union tag.
func (o *RawOptions) OptionsType() uint8 { return o.Type }

// Union tags of BuiltinOptions members this package does not model whose tables hold
// vectors or strings, and the number of members the union has.
const (
	tagConcatEmbeddings = 3
	tagVarHandle        = 111
	tagBucketize        = 115
	maxOptionsTag       = 126
)

// typedTag reports whether tag has a typed Options struct in this package.
func typedTag(tag uint8) bool {
	switch tag {
	case tagConv2D, tagDepthwiseConv2D, tagPool2D, tagFullyConnected, tagSoftmax,
		tagConcatenation, tagAdd, tagReshape, tagMul, tagPad, tagTranspose, tagReducer,
		tagSub, tagSqueeze, tagDequantize, tagPadV2, tagLeakyRelu, tagQuantize, tagHardSwish:
		return true
	}
	return false
}

// options decodes a builtin options table by its union tag.
func (d *decoder) options(tag uint8, t table) (Options, error) {
	var err error
	// Each field read below stops at the first error; later reads are skipped by `fld`.
	fld := func(f func() error) {
		if err == nil {
			err = f()
		}
	}
	u8 := func(id int, dst *uint8, def uint8, name string) {
		fld(func() (e error) { *dst, e = d.u8Field(t, id, def, name); return })
	}
	i32 := func(id int, dst *int32, def int32, name string) {
		fld(func() (e error) { *dst, e = d.i32Field(t, id, def, name); return })
	}
	boolean := func(id int, dst *bool, def bool, name string) {
		fld(func() (e error) { *dst, e = d.boolField(t, id, def, name); return })
	}
	var pad, act, qbt uint8
	var o Options
	switch tag {
	case tagConv2D:
		c := &Conv2DOptions{}
		u8(0, &pad, 0, "padding")
		i32(1, &c.StrideW, 0, "stride_w")
		i32(2, &c.StrideH, 0, "stride_h")
		u8(3, &act, 0, "fused_activation_function")
		i32(4, &c.DilationW, 1, "dilation_w_factor")
		i32(5, &c.DilationH, 1, "dilation_h_factor")
		u8(6, &qbt, 0, "quantized_bias_type")
		c.Padding, c.Activation, c.QuantizedBiasType = Padding(pad), Activation(act), TensorType(int8(qbt))
		o = c
	case tagDepthwiseConv2D:
		c := &DepthwiseConv2DOptions{}
		u8(0, &pad, 0, "padding")
		i32(1, &c.StrideW, 0, "stride_w")
		i32(2, &c.StrideH, 0, "stride_h")
		i32(3, &c.DepthMultiplier, 0, "depth_multiplier")
		u8(4, &act, 0, "fused_activation_function")
		i32(5, &c.DilationW, 1, "dilation_w_factor")
		i32(6, &c.DilationH, 1, "dilation_h_factor")
		c.Padding, c.Activation = Padding(pad), Activation(act)
		o = c
	case tagPool2D:
		p := &Pool2DOptions{}
		u8(0, &pad, 0, "padding")
		i32(1, &p.StrideW, 0, "stride_w")
		i32(2, &p.StrideH, 0, "stride_h")
		i32(3, &p.FilterW, 0, "filter_width")
		i32(4, &p.FilterH, 0, "filter_height")
		u8(5, &act, 0, "fused_activation_function")
		p.Padding, p.Activation = Padding(pad), Activation(act)
		o = p
	case tagFullyConnected:
		f := &FullyConnectedOptions{}
		var wf uint8
		u8(0, &act, 0, "fused_activation_function")
		u8(1, &wf, 0, "weights_format")
		boolean(2, &f.KeepNumDims, false, "keep_num_dims")
		boolean(3, &f.AsymmetricQuantizeInputs, false, "asymmetric_quantize_inputs")
		u8(4, &qbt, 0, "quantized_bias_type")
		f.Activation, f.WeightsFormat, f.QuantizedBiasType = Activation(act), int8(wf), TensorType(int8(qbt))
		o = f
	case tagSoftmax:
		s := &SoftmaxOptions{}
		fld(func() (e error) { s.Beta, e = d.f32Field(t, 0, 0, "beta"); return })
		o = s
	case tagConcatenation:
		c := &ConcatenationOptions{}
		i32(0, &c.Axis, 0, "axis")
		u8(1, &act, 0, "fused_activation_function")
		c.Activation = Activation(act)
		o = c
	case tagAdd:
		a := &AddOptions{}
		u8(0, &act, 0, "fused_activation_function")
		boolean(1, &a.PotScaleInt16, true, "pot_scale_int16")
		a.Activation = Activation(act)
		o = a
	case tagSub:
		s := &SubOptions{}
		u8(0, &act, 0, "fused_activation_function")
		boolean(1, &s.PotScaleInt16, true, "pot_scale_int16")
		s.Activation = Activation(act)
		o = s
	case tagMul:
		u8(0, &act, 0, "fused_activation_function")
		o = &MulOptions{Activation: Activation(act)}
	case tagReshape:
		r := &ReshapeOptions{}
		fld(func() (e error) { r.NewShape, e = d.int32s(t, 0, "new_shape"); return })
		o = r
	case tagSqueeze:
		s := &SqueezeOptions{}
		fld(func() (e error) { s.SqueezeDims, e = d.int32s(t, 0, "squeeze_dims"); return })
		o = s
	case tagReducer:
		r := &ReducerOptions{}
		boolean(0, &r.KeepDims, false, "keep_dims")
		o = r
	case tagLeakyRelu:
		l := &LeakyReluOptions{}
		fld(func() (e error) { l.Alpha, e = d.f32Field(t, 0, 0, "alpha"); return })
		o = l
	case tagPad:
		o = &PadOptions{}
	case tagPadV2:
		o = &PadV2Options{}
	case tagTranspose:
		o = &TransposeOptions{}
	case tagDequantize:
		o = &DequantizeOptions{}
	case tagQuantize:
		o = &QuantizeOptions{}
	case tagHardSwish:
		o = &HardSwishOptions{}
	case tagConcatEmbeddings, tagVarHandle, tagBucketize:
		return nil, d.errf("", ErrUnsupported, "options type %d holds references this reader does not keep", tag)
	default:
		if tag > maxOptionsTag {
			return nil, d.errf("", ErrUnsupported, "unknown options type %d", tag)
		}
		return d.rawOptions(tag, t)
	}
	if err != nil {
		return nil, err
	}
	// A generous flat charge for the options struct and its interface value.
	if err := d.alloc(64); err != nil {
		return nil, err
	}
	return o, nil
}

// rawOptions keeps every present field of a table whose schema this package does not model.
func (d *decoder) rawOptions(tag uint8, t table) (*RawOptions, error) {
	if err := d.alloc(int64(unsafe.Sizeof(RawOptions{}))); err != nil {
		return nil, err
	}
	o := &RawOptions{Type: tag}
	ids := (t.vtLen - 4) / 2
	n := 0
	for id := range ids {
		if _, ok, err := d.field(t, id, 1, ""); err != nil {
			return nil, err
		} else if ok {
			n++
		}
	}
	if n == 0 {
		return o, nil
	}
	if err := d.alloc(int64(n) * int64(unsafe.Sizeof(RawField{}))); err != nil {
		return nil, err
	}
	// Collect the fields with their table offsets in Value, sort them by offset to derive
	// each field's room from where the next one starts, then put them in ID order.
	o.Fields = make([]RawField, 0, n)
	for id := range ids {
		if p, ok, _ := d.field(t, id, 1, ""); ok {
			o.Fields = append(o.Fields, RawField{ID: uint16(id), Value: uint64(p - t.pos)})
		}
	}
	slices.SortFunc(o.Fields, func(a, b RawField) int { return int(a.Value) - int(b.Value) })
	for i := range o.Fields {
		pos := t.pos + int(o.Fields[i].Value)
		size := 8
		if i+1 < len(o.Fields) {
			// Room up to the next field.
			room := int(o.Fields[i+1].Value - o.Fields[i].Value)
			if room == 0 {
				return nil, d.errf("", ErrCorrupt, "fields %d and %d overlap", o.Fields[i].ID, o.Fields[i+1].ID)
			}
			for size > room {
				size /= 2
			}
		} else {
			// The last field: the table's inline size cannot be trusted (see field), so
			// take the largest size its alignment allows, within the file.
			for pos%size != 0 || !d.span(pos, uint64(size)) {
				size /= 2
			}
		}
		var le [8]byte
		copy(le[:], d.buf[pos:pos+size])
		o.Fields[i].Size, o.Fields[i].Value = uint8(size), binary.LittleEndian.Uint64(le[:])
	}
	slices.SortFunc(o.Fields, func(a, b RawField) int { return int(a.ID) - int(b.ID) })
	return o, nil
}

// writeOptions builds the options table of o and returns its offset, or 0 for nil.
func (w *writer) writeOptions(o Options) flatbuffers.UOffsetT {
	b := w.b
	// Vectors must be built before their table starts.
	var vec flatbuffers.UOffsetT
	switch o := o.(type) {
	case nil:
		return 0
	case *ReshapeOptions:
		vec = w.int32s(o.NewShape)
	case *SqueezeOptions:
		vec = w.int32s(o.SqueezeDims)
	case *RawOptions:
		return w.rawOptions(o)
	}
	b.StartObject(7)
	switch o := o.(type) {
	case *Conv2DOptions:
		b.PrependInt8Slot(0, int8(o.Padding), 0)
		b.PrependInt32Slot(1, o.StrideW, 0)
		b.PrependInt32Slot(2, o.StrideH, 0)
		b.PrependInt8Slot(3, int8(o.Activation), 0)
		b.PrependInt32Slot(4, o.DilationW, 1)
		b.PrependInt32Slot(5, o.DilationH, 1)
		b.PrependInt8Slot(6, int8(o.QuantizedBiasType), 0)
	case *DepthwiseConv2DOptions:
		b.PrependInt8Slot(0, int8(o.Padding), 0)
		b.PrependInt32Slot(1, o.StrideW, 0)
		b.PrependInt32Slot(2, o.StrideH, 0)
		b.PrependInt32Slot(3, o.DepthMultiplier, 0)
		b.PrependInt8Slot(4, int8(o.Activation), 0)
		b.PrependInt32Slot(5, o.DilationW, 1)
		b.PrependInt32Slot(6, o.DilationH, 1)
	case *Pool2DOptions:
		b.PrependInt8Slot(0, int8(o.Padding), 0)
		b.PrependInt32Slot(1, o.StrideW, 0)
		b.PrependInt32Slot(2, o.StrideH, 0)
		b.PrependInt32Slot(3, o.FilterW, 0)
		b.PrependInt32Slot(4, o.FilterH, 0)
		b.PrependInt8Slot(5, int8(o.Activation), 0)
	case *FullyConnectedOptions:
		b.PrependInt8Slot(0, int8(o.Activation), 0)
		b.PrependInt8Slot(1, o.WeightsFormat, 0)
		b.PrependBoolSlot(2, o.KeepNumDims, false)
		b.PrependBoolSlot(3, o.AsymmetricQuantizeInputs, false)
		b.PrependInt8Slot(4, int8(o.QuantizedBiasType), 0)
	case *SoftmaxOptions:
		w.float32Slot(0, o.Beta)
	case *ConcatenationOptions:
		b.PrependInt32Slot(0, o.Axis, 0)
		b.PrependInt8Slot(1, int8(o.Activation), 0)
	case *AddOptions:
		b.PrependInt8Slot(0, int8(o.Activation), 0)
		b.PrependBoolSlot(1, o.PotScaleInt16, true)
	case *SubOptions:
		b.PrependInt8Slot(0, int8(o.Activation), 0)
		b.PrependBoolSlot(1, o.PotScaleInt16, true)
	case *MulOptions:
		b.PrependInt8Slot(0, int8(o.Activation), 0)
	case *ReducerOptions:
		b.PrependBoolSlot(0, o.KeepDims, false)
	case *LeakyReluOptions:
		w.float32Slot(0, o.Alpha)
	case *ReshapeOptions, *SqueezeOptions:
		w.refSlot(0, vec)
	}
	// The field-less tables (PAD, PADV2, TRANSPOSE, (DE)QUANTIZE, HARD_SWISH) stay empty.
	return b.EndObject()
}

// rawOptions writes the fields largest first from an 8-aligned start, so that no padding
// falls between fields and Read derives the same sizes again: each field's room ends where
// the next begins, and the last (largest, size S) starts on a multiple of S but, for S < 8,
// not of 2S.
func (w *writer) rawOptions(o *RawOptions) flatbuffers.UOffsetT {
	b := w.b
	fields := slices.Clone(o.Fields)
	slices.SortStableFunc(fields, func(x, y RawField) int { return int(y.Size) - int(x.Size) })
	numFields := 0
	for _, f := range o.Fields {
		numFields = max(numFields, int(f.ID)+1)
	}
	b.Prep(8, 0)
	b.StartObject(numFields)
	for _, f := range fields {
		switch f.Size {
		case 1:
			b.PrependUint8(uint8(f.Value))
		case 2:
			b.PrependUint16(uint16(f.Value))
		case 4:
			b.PrependUint32(uint32(f.Value))
		default:
			b.PrependUint64(f.Value)
		}
		b.Slot(int(f.ID))
	}
	return b.EndObject()
}

// float32Slot writes a float field unless it equals the default 0 bit for bit, so that -0
// and NaN payloads survive a round trip.
func (w *writer) float32Slot(slot int, v float32) {
	if math.Float32bits(v) != 0 {
		w.b.PrependFloat32(v)
		w.b.Slot(slot)
	}
}
