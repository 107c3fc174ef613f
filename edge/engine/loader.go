package engine

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"unsafe"

	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

type loader struct {
	src *tflite.Model
	sg  *tflite.Subgraph
	m   *Model
	// per operator being prepared
	op       *tflite.Operator
	opIdx    int
	rounding Rounding
}

func elemSize(t tflite.TensorType) int {
	switch t {
	case tflite.Float32, tflite.Int32:
		return 4
	case tflite.Int8, tflite.Uint8, tflite.Bool:
		return 1
	case tflite.Int16, tflite.Float16:
		return 2
	case tflite.Int64:
		return 8
	}
	return 0
}

func (l *loader) tensors() error {
	ts := l.sg.Tensors
	l.m.tensors = make([]tensorMeta, len(ts))
	for i := range ts {
		t := &ts[i]
		tm := &l.m.tensors[i]
		tm.offset, tm.first, tm.last = -1, -2, -2
		tm.info = TensorInfo{Name: t.Name, Type: t.Type, Shape: make([]int, len(t.Shape))}
		// bound is the product of the non-zero dimensions: a tensor with a zero dimension has
		// no elements, but its other dimensions still size strides, windows and scratch, so
		// they must not multiply past int on 32-bit ARM either.
		n, bound := int64(1), int64(1)
		for d, v := range t.Shape {
			if v < 0 || int64(v) > maxTensorBytes/bound {
				return fmt.Errorf("%w: tensor %d (%q) has shape %v", ErrInvalidModel, i, t.Name, t.Shape)
			}
			tm.info.Shape[d] = int(v)
			n *= int64(v)
			bound *= max(int64(v), 1)
		}
		if n*int64(elemSize(t.Type)) > maxTensorBytes {
			return fmt.Errorf("%w: tensor %d (%q) of shape %v is over %d bytes", ErrUnsupported, i, t.Name, t.Shape, maxTensorBytes)
		}
		tm.n = int(n)
		tm.bytes = int(n) * elemSize(t.Type)
		if q := t.Quantization; q != nil && len(q.Scale) > 0 {
			if len(q.ZeroPoint) != 0 && len(q.ZeroPoint) != len(q.Scale) {
				return fmt.Errorf("%w: tensor %d (%q) has %d scales and %d zero points", ErrInvalidModel, i, t.Name, len(q.Scale), len(q.ZeroPoint))
			}
			tm.info.Scale = slices.Clone(q.Scale)
			tm.info.ZeroPoint = slices.Clone(q.ZeroPoint)
			if len(tm.info.ZeroPoint) == 0 {
				tm.info.ZeroPoint = make([]int64, len(q.Scale))
			}
			tm.info.QuantizedDimension = int(q.QuantizedDimension)
		}
		if int(t.Buffer) >= len(l.src.Buffers) {
			return fmt.Errorf("%w: tensor %d (%q) refers to buffer %d of %d", ErrInvalidModel, i, t.Name, t.Buffer, len(l.src.Buffers))
		}
		if t.Buffer == 0 {
			continue
		}
		data := l.src.Buffers[t.Buffer].Data
		if len(data) == 0 {
			continue
		}
		if elemSize(t.Type) == 0 {
			continue // checked if an operator uses it
		}
		if len(data) != tm.bytes {
			return fmt.Errorf("%w: tensor %d (%q) has %d bytes of data, shape %v needs %d", ErrInvalidModel, i, t.Name, len(data), t.Shape, tm.bytes)
		}
		if uintptr(unsafe.Pointer(&data[0]))%8 != 0 {
			// Typed views need alignment; the copy is made once per Model.
			al := make([]uint64, (len(data)+7)/8)
			b := unsafe.Slice((*byte)(unsafe.Pointer(&al[0])), len(data))
			copy(b, data)
			data = b
		}
		tm.konst = data
	}
	return nil
}

type prepFunc func(l *loader) (kernel, error)

func prepFor(op tflite.BuiltinOp) prepFunc {
	switch op {
	case tflite.OpConv2D:
		return prepConv
	case tflite.OpDepthwiseConv2D:
		return prepDepthwise
	case tflite.OpFullyConnected:
		return prepFC
	case tflite.OpMaxPool2D:
		return prepMaxPool
	case tflite.OpAveragePool2D:
		return prepAvgPool
	case tflite.OpMean:
		return prepMean
	case tflite.OpAdd:
		return prepAdd
	case tflite.OpSub:
		return prepSub
	case tflite.OpMul:
		return prepMul
	case tflite.OpPad, tflite.OpPadV2:
		return prepPad
	case tflite.OpReshape, tflite.OpSqueeze:
		return prepReshape
	case tflite.OpTranspose:
		return prepTranspose
	case tflite.OpConcatenation:
		return prepConcat
	case tflite.OpSoftmax:
		return prepSoftmax
	case tflite.OpLogistic:
		return prepLogistic
	case tflite.OpHardSwish:
		return prepHardSwish
	case tflite.OpRelu, tflite.OpRelu6:
		return prepRelu
	case tflite.OpLeakyRelu:
		return prepLeakyRelu
	case tflite.OpQuantize:
		return prepQuantize
	case tflite.OpDequantize:
		return prepDequantize
	case opSplit:
		return prepSplit
	}
	return nil
}

func (l *loader) operators() error {
	nt := len(l.m.tensors)
	produced := make([]bool, nt)
	for _, in := range l.sg.Inputs {
		if in < 0 || int(in) >= nt {
			return fmt.Errorf("%w: graph input %d out of range", ErrInvalidModel, in)
		}
		if l.m.tensors[in].konst != nil {
			return fmt.Errorf("%w: graph input %d is a constant", ErrInvalidModel, in)
		}
		produced[in] = true
		l.m.tensors[in].first = -1
		l.m.inputs = append(l.m.inputs, int(in))
	}
	for i := range l.sg.Operators {
		op := &l.sg.Operators[i]
		if int(op.OpcodeIndex) >= len(l.src.OperatorCodes) {
			return fmt.Errorf("%w: operator %d has opcode index %d of %d", ErrInvalidModel, i, op.OpcodeIndex, len(l.src.OperatorCodes))
		}
		code := l.src.OperatorCodes[op.OpcodeIndex].Builtin
		name := code.String()
		if code == tflite.OpCustom {
			name = fmt.Sprintf("CUSTOM %q", l.src.OperatorCodes[op.OpcodeIndex].CustomCode)
		}
		for _, t := range op.Inputs {
			if t < -1 || int(t) >= nt {
				return fmt.Errorf("%w: operator %d (%s) input tensor %d out of range", ErrInvalidModel, i, name, t)
			}
			if t >= 0 && l.m.tensors[t].konst == nil {
				if !produced[t] {
					return fmt.Errorf("%w: operator %d (%s) reads tensor %d (%q) before it is written", ErrInvalidModel, i, name, t, l.m.tensors[t].info.Name)
				}
				l.m.tensors[t].last = i
			}
		}
		if len(op.Outputs) == 0 {
			return fmt.Errorf("%w: operator %d (%s) has no output", ErrInvalidModel, i, name)
		}
		for _, t := range op.Outputs {
			if t < 0 || int(t) >= nt {
				return fmt.Errorf("%w: operator %d (%s) output tensor %d out of range", ErrInvalidModel, i, name, t)
			}
			if produced[t] || l.m.tensors[t].konst != nil {
				return fmt.Errorf("%w: operator %d (%s) writes tensor %d (%q), which is already defined", ErrInvalidModel, i, name, t, l.m.tensors[t].info.Name)
			}
			produced[t] = true
			l.m.tensors[t].first = i
			l.m.tensors[t].last = max(l.m.tensors[t].last, i)
		}
		prep := prepFor(code)
		if prep == nil {
			return fmt.Errorf("%w: operator %d: %s", ErrUnsupported, i, name)
		}
		l.op, l.opIdx = op, i
		k, err := prep(l)
		if err != nil {
			return fmt.Errorf("operator %d (%s): %w", i, name, err)
		}
		l.m.kernels = append(l.m.kernels, k)
		l.m.opNames = append(l.m.opNames, name)
	}
	for _, in := range l.m.inputs {
		// Inputs stay intact through Invoke, so a caller may invoke again without
		// rewriting them (as in TFLite, whose planner never frees graph inputs).
		l.m.tensors[in].last = len(l.sg.Operators)
	}
	for _, out := range l.sg.Outputs {
		if out < 0 || int(out) >= nt || !produced[out] {
			return fmt.Errorf("%w: graph output %d is never written", ErrInvalidModel, out)
		}
		l.m.tensors[out].last = len(l.sg.Operators)
		l.m.outputs = append(l.m.outputs, int(out))
	}
	return nil
}

// plan gives every activation tensor an arena offset. Tensors whose lifetimes
// [first,last] overlap never share bytes; the largest tensors are placed first, each at the
// lowest offset that fits (greedy by size, as TFLite's arena planner does).
func (l *loader) plan(keep []string) error {
	ts := l.m.tensors
	l.m.names = map[string]int{}
	for _, name := range keep {
		found := false
		for i := range ts {
			if ts[i].info.Name == name && ts[i].konst == nil && ts[i].first >= -1 {
				ts[i].first, ts[i].last = -1, len(l.sg.Operators)
				l.m.names[name] = i
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("KeepTensors: no activation tensor named %q", name)
		}
	}
	for _, i := range l.m.inputs {
		if n := ts[i].info.Name; n != "" {
			l.m.names[n] = i
		}
	}
	for _, i := range l.m.outputs {
		if n := ts[i].info.Name; n != "" {
			l.m.names[n] = i
		}
	}
	var order []int
	for i := range ts {
		if ts[i].konst == nil && ts[i].first >= -1 {
			if elemSize(ts[i].info.Type) == 0 {
				return fmt.Errorf("%w: tensor %d (%q) has %s", ErrUnsupported, i, ts[i].info.Name, ts[i].info.Type.String())
			}
			order = append(order, i)
		}
	}
	sort.SliceStable(order, func(a, b int) bool { return ts[order[a]].bytes > ts[order[b]].bytes })
	type span struct{ lo, hi int }
	var placed []int
	size := 0
	for _, i := range order {
		t := &ts[i]
		var busy []span
		for _, j := range placed {
			u := &ts[j]
			if t.first <= u.last && u.first <= t.last {
				busy = append(busy, span{u.offset, u.offset + u.bytes})
			}
		}
		sort.Slice(busy, func(a, b int) bool { return busy[a].lo < busy[b].lo })
		off := 0
		for _, s := range busy {
			if off+t.bytes <= s.lo {
				break
			}
			off = max(off, align16(s.hi))
		}
		t.offset = off
		size = max(size, off+t.bytes)
		if size > maxTensorBytes {
			return fmt.Errorf("%w: activations need an arena over %d bytes", ErrUnsupported, maxTensorBytes)
		}
		placed = append(placed, i)
	}
	l.m.arenaSize = align16(size)
	return nil
}

func (l *loader) newRequant(m float64) requant {
	q, s := quantizeMultiplier(m)
	return requant{q: q, shift: s, double: l.rounding == RoundDouble}
}

// newConvRequant prepares the rescaling of a convolution or fully connected accumulator:
// TFLite's multiplier input·filter/output computed in double, or, for RoundLiteRT,
// XNNPACK's float32 scale computed in float32 in the same order.
func (l *loader) newConvRequant(in, filter, out float32) requant {
	r := l.newRequant(float64(in) * float64(filter) / float64(out))
	if l.rounding == RoundLiteRT {
		r.f = in * filter / out
	}
	return r
}

// maxTensorBytes bounds every tensor and the arena (1 GiB), which keeps sizes within int on
// 32-bit ARM and stops a hostile file from making each interpreter allocate gigabytes.
const maxTensorBytes = 1 << 30

// channelRequant packs per-channel rescaling (bias folded in) for the shared requantisation
// kernel, in the arithmetic that l.rounding selects.
func (l *loader) channelRequant(bias []int32, mult []requant, zp, lo, hi int32) *requantChannels {
	n := len(mult)
	if l.rounding == RoundLiteRT {
		fs := make([]float32, n)
		for c, m := range mult {
			fs[c] = m.f
		}
		return newRequantFloat(bias, fs, zp, lo, hi)
	}
	q, shift := make([]int32, n), make([]int, n)
	for c, m := range mult {
		q[c], shift[c] = m.q, m.shift
	}
	return newRequantChannels(bias, q, shift, zp, lo, hi, l.rounding == RoundDouble)
}

func align16(n int) int { return (n + 15) &^ 15 }

// --- helpers used by the operator preparations ---

// input returns the k-th input tensor of the current operator, or an error if absent.
func (l *loader) input(k int) (int, *tensorMeta, error) {
	i, t := l.optInput(k)
	if t == nil {
		return 0, nil, fmt.Errorf("%w: input %d missing", ErrInvalidModel, k)
	}
	return i, t, nil
}

// optInput returns the k-th input, or -1 and nil when it is left out.
func (l *loader) optInput(k int) (int, *tensorMeta) {
	if k >= len(l.op.Inputs) || l.op.Inputs[k] < 0 {
		return -1, nil
	}
	i := int(l.op.Inputs[k])
	return i, &l.m.tensors[i]
}

// weights returns the filter (input 1, required) and bias (input 2, optional: nil) of a
// convolution or fully connected operator.
func (l *loader) weights() (filter, bias *tensorMeta, err error) {
	if _, filter, err = l.input(1); err != nil {
		return nil, nil, err
	}
	_, bias = l.optInput(2)
	return filter, bias, nil
}

// constInput returns the values of the k-th input, which must be a constant int32 or int64
// tensor (axes, paddings, a permutation).
func (l *loader) constInput(k int) ([]int, error) {
	_, t, err := l.input(k)
	if err != nil {
		return nil, err
	}
	return constInts(t)
}

func (l *loader) output(k int) (int, *tensorMeta, error) {
	if k >= len(l.op.Outputs) {
		return 0, nil, fmt.Errorf("%w: output %d missing", ErrInvalidModel, k)
	}
	i := int(l.op.Outputs[k])
	return i, &l.m.tensors[i], nil
}

// io returns input 0 and output 0, the common case.
func (l *loader) io() (int, *tensorMeta, int, *tensorMeta, error) {
	in, it, err := l.input(0)
	if err != nil {
		return 0, nil, 0, nil, err
	}
	out, ot, err := l.output(0)
	if err != nil {
		return 0, nil, 0, nil, err
	}
	return in, it, out, ot, nil
}

func unsupportedType(what string, t *tensorMeta) error {
	return fmt.Errorf("%w: %s of %s", ErrUnsupported, what, t.info.Type.String())
}

func needQuant(ts ...*tensorMeta) error {
	for _, t := range ts {
		if !t.quantized() {
			return fmt.Errorf("%w: %s tensor %q has no quantization", ErrInvalidModel, t.info.Type.String(), t.info.Name)
		}
		// Not positive, NaN or infinite: the multipliers derived from it would be garbage
		// (and converting ±Inf to an integer differs between amd64 and ARM).
		if s := float64(t.info.Scale[0]); !(s > 0) || math.IsInf(s, 0) {
			return fmt.Errorf("%w: tensor %q has scale %v", ErrInvalidModel, t.info.Name, t.info.Scale[0])
		}
		if isQ8(t.info.Type) {
			// The kernels add zero points to int32 values already bounded by sat32 and
			// assume they fit the type, as TFLite's quantization spec requires.
			lo, hi := qrange(t.info.Type)
			for _, z := range t.info.ZeroPoint {
				if z < int64(lo) || z > int64(hi) {
					return fmt.Errorf("%w: %s tensor %q has zero point %d", ErrInvalidModel, t.info.Type, t.info.Name, z)
				}
			}
		}
	}
	return nil
}

func sameShape(a, b []int) bool { return slices.Equal(a, b) }

func shapeErr(what string, got, want []int) error {
	return fmt.Errorf("%w: %s shape %v, expected %v", ErrInvalidModel, what, got, want)
}

// qrange returns the representable range of an 8-bit type.
func qrange(t tflite.TensorType) (int32, int32) {
	if t == tflite.Uint8 {
		return 0, 255
	}
	return -128, 127
}

func isQ8(t tflite.TensorType) bool { return t == tflite.Int8 || t == tflite.Uint8 }

// constInts reads a constant int32 or int64 tensor (shapes, axes, paddings). Values must
// fit in int32, so that an int64 tensor means the same on 32-bit ARM as on 64-bit hosts.
func constInts(t *tensorMeta) ([]int, error) {
	if t.konst == nil {
		return nil, fmt.Errorf("%w: tensor %q must be constant", ErrUnsupported, t.info.Name)
	}
	out := make([]int, t.n)
	switch t.info.Type {
	case tflite.Int32:
		for i, v := range asI32(t.konst) {
			out[i] = int(v)
		}
	case tflite.Int64:
		for i := range out {
			v := *(*int64)(unsafe.Pointer(&t.konst[8*i]))
			if v < math.MinInt32 || v > math.MaxInt32 {
				return nil, fmt.Errorf("%w: tensor %q holds %d, outside int32", ErrInvalidModel, t.info.Name, v)
			}
			out[i] = int(v)
		}
	default:
		return nil, unsupportedType("shape/axis tensor", t)
	}
	return out, nil
}
