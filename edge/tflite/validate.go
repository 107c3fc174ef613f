package tflite

import (
	"fmt"
)

// optionsTagFor is the options table each modelled operator must carry (when it has one).
func optionsTagFor(op BuiltinOp) (uint8, bool) {
	switch op {
	case OpConv2D:
		return tagConv2D, true
	case OpDepthwiseConv2D:
		return tagDepthwiseConv2D, true
	case OpAveragePool2D, OpMaxPool2D:
		return tagPool2D, true
	case OpFullyConnected:
		return tagFullyConnected, true
	case OpSoftmax:
		return tagSoftmax, true
	case OpConcatenation:
		return tagConcatenation, true
	case OpAdd:
		return tagAdd, true
	case OpReshape:
		return tagReshape, true
	case OpMul:
		return tagMul, true
	case OpPad:
		return tagPad, true
	case OpTranspose:
		return tagTranspose, true
	case OpMean:
		return tagReducer, true
	case OpSub:
		return tagSub, true
	case OpSqueeze:
		return tagSqueeze, true
	case OpDequantize:
		return tagDequantize, true
	case OpPadV2:
		return tagPadV2, true
	case OpLeakyRelu:
		return tagLeakyRelu, true
	case OpQuantize:
		return tagQuantize, true
	case OpHardSwish:
		return tagHardSwish, true
	}
	return 0, false
}

// validator checks the rules a Model must meet beyond the flatbuffer structure, for both
// Read and Write.
type validator struct {
	m    *Model
	path trail
}

func (v *validator) errf(field string, err error, format string, args ...any) error {
	return v.path.errAt(field, err, fmt.Sprintf(format, args...))
}

func validate(m *Model) error {
	v := &validator{m: m}
	return v.model()
}

func (v *validator) model() error {
	m := v.m
	if len(m.Subgraphs) == 0 {
		return v.errf("subgraphs", ErrInvalid, "the model has no subgraph")
	}
	if len(m.Buffers) == 0 {
		return v.errf("buffers", ErrInvalid, "buffers[0], the empty sentinel, is missing")
	}
	if b := m.Buffers[0]; len(b.Data) != 0 || b.Offset != 0 || b.Size != 0 {
		return v.errf("buffers[0]", ErrInvalid, "the sentinel buffer must be empty (tensors use index 0 for no data)")
	}
	for i, oc := range m.OperatorCodes {
		if oc.Builtin < 0 {
			return v.errf(fmt.Sprintf("operator_codes[%d].builtin_code", i), ErrInvalid, "operator code %d", oc.Builtin)
		}
	}
	for i := range m.Subgraphs {
		v.path.push("subgraphs", i)
		err := v.subgraph(&m.Subgraphs[i])
		v.path.pop()
		if err != nil {
			return err
		}
	}
	for i, b := range m.MetadataBuffer {
		if b < 0 || int64(b) >= int64(len(m.Buffers)) {
			return v.errf(fmt.Sprintf("metadata_buffer[%d]", i), ErrInvalid, "buffer index %d out of range [0,%d)", b, len(m.Buffers))
		}
	}
	for i, md := range m.Metadata {
		if int64(md.Buffer) >= int64(len(m.Buffers)) {
			return v.errf(fmt.Sprintf("metadata[%d].buffer", i), ErrInvalid, "buffer index %d out of range [0,%d)", md.Buffer, len(m.Buffers))
		}
	}
	for i, s := range m.SignatureDefs {
		v.path.push("signature_defs", i)
		err := v.signatureDef(&s)
		v.path.pop()
		if err != nil {
			return err
		}
	}
	return nil
}

func (v *validator) signatureDef(s *SignatureDef) error {
	if int64(s.SubgraphIndex) >= int64(len(v.m.Subgraphs)) {
		return v.errf("subgraph_index", ErrInvalid, "subgraph %d out of range [0,%d)", s.SubgraphIndex, len(v.m.Subgraphs))
	}
	n := len(v.m.Subgraphs[s.SubgraphIndex].Tensors)
	for _, side := range [...]struct {
		name string
		maps []TensorMap
	}{{"inputs", s.Inputs}, {"outputs", s.Outputs}} {
		for i, tm := range side.maps {
			if int64(tm.TensorIndex) >= int64(n) {
				return v.errf(fmt.Sprintf("%s[%d].tensor_index", side.name, i), ErrInvalid, "tensor %d out of range [0,%d)", tm.TensorIndex, n)
			}
		}
	}
	return nil
}

// indices checks tensor indices; optional allows -1 (an optional input left out).
func (v *validator) indices(field string, idx []int32, n int, optional bool) error {
	for i, x := range idx {
		if (x < 0 && !(optional && x == -1)) || int64(x) >= int64(n) {
			return v.errf(fmt.Sprintf("%s[%d]", field, i), ErrInvalid, "tensor index %d out of range [0,%d)", x, n)
		}
	}
	return nil
}

func (v *validator) subgraph(sg *Subgraph) error {
	for i := range sg.Tensors {
		v.path.push("tensors", i)
		err := v.tensor(&sg.Tensors[i])
		v.path.pop()
		if err != nil {
			return err
		}
	}
	n := len(sg.Tensors)
	if err := v.indices("inputs", sg.Inputs, n, false); err != nil {
		return err
	}
	if err := v.indices("outputs", sg.Outputs, n, false); err != nil {
		return err
	}
	for i := range sg.Operators {
		v.path.push("operators", i)
		err := v.operator(&sg.Operators[i], n)
		v.path.pop()
		if err != nil {
			return err
		}
	}
	return nil
}

func (v *validator) operator(op *Operator, n int) error {
	if int64(op.OpcodeIndex) >= int64(len(v.m.OperatorCodes)) {
		return v.errf("opcode_index", ErrInvalid, "operator code %d out of range [0,%d)", op.OpcodeIndex, len(v.m.OperatorCodes))
	}
	if err := v.indices("inputs", op.Inputs, n, true); err != nil {
		return err
	}
	if err := v.indices("outputs", op.Outputs, n, false); err != nil {
		return err
	}
	if err := v.indices("intermediates", op.Intermediates, n, false); err != nil {
		return err
	}
	if k := len(op.MutatingVariableInputs); k != 0 && k != len(op.Inputs) {
		return v.errf("mutating_variable_inputs", ErrInvalid, "%d flags for %d inputs", k, len(op.Inputs))
	}
	if op.Options == nil {
		return nil
	}
	if err := v.options(op.Options); err != nil {
		return err
	}
	code := v.m.OperatorCodes[op.OpcodeIndex].Builtin
	if want, ok := optionsTagFor(code); ok && op.Options.OptionsType() != want {
		return v.errf("builtin_options_type", ErrInvalid, "%s carries options type %d, want %d", code, op.Options.OptionsType(), want)
	}
	return nil
}

func validPadding(p Padding) bool       { return p == PaddingSame || p == PaddingValid }
func validActivation(a Activation) bool { return a >= ActNone && a <= ActSignBit }

func (v *validator) options(o Options) error {
	const field = "builtin_options"
	bad := func(format string, args ...any) error { return v.errf(field, ErrInvalid, format, args...) }
	common := func(p Padding, a Activation) error {
		if !validPadding(p) {
			return bad("padding %d", p)
		}
		if !validActivation(a) {
			return bad("fused activation %d", a)
		}
		return nil
	}
	isNil := false
	switch o := o.(type) {
	case *Conv2DOptions:
		if isNil = o == nil; !isNil {
			if !o.QuantizedBiasType.Known() {
				return bad("quantized bias type %d", o.QuantizedBiasType)
			}
			return common(o.Padding, o.Activation)
		}
	case *DepthwiseConv2DOptions:
		if isNil = o == nil; !isNil {
			return common(o.Padding, o.Activation)
		}
	case *Pool2DOptions:
		if isNil = o == nil; !isNil {
			return common(o.Padding, o.Activation)
		}
	case *FullyConnectedOptions:
		if isNil = o == nil; !isNil {
			if o.WeightsFormat != 0 && o.WeightsFormat != 1 {
				return bad("weights format %d", o.WeightsFormat)
			}
			if !o.QuantizedBiasType.Known() {
				return bad("quantized bias type %d", o.QuantizedBiasType)
			}
			return common(PaddingSame, o.Activation)
		}
	case *ConcatenationOptions:
		if isNil = o == nil; !isNil {
			return common(PaddingSame, o.Activation)
		}
	case *AddOptions:
		if isNil = o == nil; !isNil {
			return common(PaddingSame, o.Activation)
		}
	case *SubOptions:
		if isNil = o == nil; !isNil {
			return common(PaddingSame, o.Activation)
		}
	case *MulOptions:
		if isNil = o == nil; !isNil {
			return common(PaddingSame, o.Activation)
		}
	case *SoftmaxOptions:
		isNil = o == nil
	case *ReshapeOptions:
		isNil = o == nil
	case *ReducerOptions:
		isNil = o == nil
	case *SqueezeOptions:
		isNil = o == nil
	case *LeakyReluOptions:
		isNil = o == nil
	case *PadOptions:
		isNil = o == nil
	case *PadV2Options:
		isNil = o == nil
	case *TransposeOptions:
		isNil = o == nil
	case *DequantizeOptions:
		isNil = o == nil
	case *QuantizeOptions:
		isNil = o == nil
	case *HardSwishOptions:
		isNil = o == nil
	case *RawOptions:
		if isNil = o == nil; !isNil {
			return v.rawOptions(o)
		}
	default:
		return v.errf(field, ErrUnsupported, "options of type %T are not a tflite options table", o)
	}
	if isNil {
		return bad("nil %T (use a nil Options instead)", o)
	}
	return nil
}

func (v *validator) rawOptions(o *RawOptions) error {
	const field = "builtin_options"
	switch {
	case o.Type == 0 || o.Type > maxOptionsTag:
		return v.errf(field, ErrUnsupported, "unknown options type %d", o.Type)
	case typedTag(o.Type):
		return v.errf(field, ErrInvalid, "options type %d has a typed struct; use it instead of RawOptions", o.Type)
	case o.Type == tagConcatEmbeddings || o.Type == tagVarHandle || o.Type == tagBucketize:
		return v.errf(field, ErrUnsupported, "options type %d holds references RawOptions cannot keep", o.Type)
	}
	size := 8 // soffset and worst-case alignment
	for i, f := range o.Fields {
		if i > 0 && f.ID <= o.Fields[i-1].ID {
			return v.errf(field, ErrInvalid, "raw fields out of order at id %d", f.ID)
		}
		if f.Size != 1 && f.Size != 2 && f.Size != 4 && f.Size != 8 {
			return v.errf(field, ErrInvalid, "raw field %d has size %d", f.ID, f.Size)
		}
		if f.Size < 8 && f.Value>>(8*f.Size) != 0 {
			return v.errf(field, ErrInvalid, "raw field %d: value %#x does not fit %d bytes", f.ID, f.Value, f.Size)
		}
		size += int(f.Size)
	}
	// Offsets inside a table and the vtable's own size are 16-bit.
	if n := len(o.Fields); n > 0 && (size > 0xffff || 4+2*(int(o.Fields[n-1].ID)+1) > 0xffff) {
		return v.errf(field, ErrTooLarge, "raw options table exceeds the 64 KiB a flatbuffer table can address")
	}
	return nil
}

// elementCount returns the number of elements of shape, or ok=false when a dimension is
// negative, the count times elemSize exceeds maxTensorBytes, or the non-zero dimensions
// multiply past maxTensorBytes: a tensor with a zero dimension is empty, but readers still
// multiply its other dimensions (strides, windows), which must not overflow an int.
func elementCount(shape []int32, elemSize int) (n int64, ok bool) {
	n, bound := 1, int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		if d == 0 {
			n = 0
			continue
		}
		if bound > maxTensorBytes/int64(d) {
			return 0, false
		}
		n *= int64(d)
		bound *= int64(d)
	}
	return n, n*int64(max(elemSize, 1)) <= maxTensorBytes
}

func (v *validator) tensor(t *Tensor) error {
	if !t.Type.Known() {
		return v.errf("type", ErrUnsupported, "unknown tensor type %d", t.Type)
	}
	for i, d := range t.Shape {
		if d < 0 {
			return v.errf(fmt.Sprintf("shape[%d]", i), ErrInvalid, "dimension %d (unknown dimensions belong in shape_signature)", d)
		}
	}
	n, ok := elementCount(t.Shape, t.Type.Size())
	if !ok {
		return v.errf("shape", ErrTooLarge, "%v %s is over %d bytes", t.Shape, t.Type, maxTensorBytes)
	}
	if t.ShapeSignature != nil {
		if len(t.ShapeSignature) != len(t.Shape) {
			return v.errf("shape_signature", ErrInvalid, "rank %d, shape has rank %d", len(t.ShapeSignature), len(t.Shape))
		}
		for i, d := range t.ShapeSignature {
			if d != -1 && d != t.Shape[i] {
				return v.errf(fmt.Sprintf("shape_signature[%d]", i), ErrInvalid, "%d, shape has %d (only -1 may differ)", d, t.Shape[i])
			}
		}
	}
	if int64(t.Buffer) >= int64(len(v.m.Buffers)) {
		return v.errf("buffer", ErrInvalid, "buffer index %d out of range [0,%d)", t.Buffer, len(v.m.Buffers))
	}
	if data := v.m.Buffers[t.Buffer].Data; len(data) > 0 && t.Type.Size() > 0 {
		if want := n * int64(t.Type.Size()); int64(len(data)) != want {
			return v.errf("buffer", ErrInvalid, "buffer %d holds %d bytes, %v %s needs %d", t.Buffer, len(data), t.Shape, t.Type, want)
		}
	}
	if q := t.Quantization; q != nil {
		v.path.push("quantization", -1)
		err := v.quantization(q, t.Shape)
		v.path.pop()
		if err != nil {
			return err
		}
	}
	return nil
}

func (v *validator) quantization(q *Quantization, shape []int32) error {
	if len(q.Scale) != len(q.ZeroPoint) {
		return v.errf("zero_point", ErrInvalid, "%d zero points for %d scales", len(q.ZeroPoint), len(q.Scale))
	}
	qd := int(q.QuantizedDimension)
	if qd < 0 || (len(shape) > 0 && qd >= len(shape)) {
		return v.errf("quantized_dimension", ErrInvalid, "%d outside the tensor's rank %d", qd, len(shape))
	}
	if len(q.Scale) > 1 {
		if len(shape) == 0 {
			return v.errf("scale", ErrInvalid, "%d scales on a scalar", len(q.Scale))
		}
		if int64(len(q.Scale)) != int64(shape[qd]) {
			return v.errf("scale", ErrInvalid, "%d scales for %d channels on dimension %d", len(q.Scale), shape[qd], qd)
		}
	}
	return nil
}
