package imaging

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

// Metadata entries the project's models carry (TFLite metadata buffers holding decimal text),
// written by cxr-quantize and read by the device and the evaluation, so both use the same
// preprocessing and the same operating point.
const (
	// ThresholdMetadata holds the operating threshold on the pneumonia probability.
	ThresholdMetadata = "cxr_threshold"
	// WindowMetadata holds InputSpec.Window; a model without it gets no window.
	WindowMetadata = "cxr_window"
	// EqualizeMetadata is 1 when the model's input is histogram-equalized (InputSpec.Equalize);
	// a model without it (or with 0) gets none.
	EqualizeMetadata = "cxr_equalize"
)

// SpecFromModel returns the spec of the model's single image input: shape [1,H,W,1] or
// [1,H,W,3]; int8 or uint8 quantized per tensor, or float32; the window and equalization from
// its metadata.
func SpecFromModel(m *tflite.Model) (InputSpec, error) {
	if m == nil || len(m.Subgraphs) == 0 || len(m.Subgraphs[0].Inputs) != 1 {
		return InputSpec{}, fmt.Errorf("%w: want a model with one image input", ErrSpec)
	}
	sg := m.Subgraphs[0]
	ti := sg.Inputs[0]
	if ti < 0 || int(ti) >= len(sg.Tensors) {
		return InputSpec{}, fmt.Errorf("%w: input tensor index %d out of range", ErrSpec, ti)
	}
	in := sg.Tensors[ti]
	if len(in.Shape) != 4 || in.Shape[0] != 1 || (in.Shape[3] != 1 && in.Shape[3] != 3) {
		return InputSpec{}, fmt.Errorf("%w: input %q has shape %v, want [1,H,W,1] or [1,H,W,3]", ErrSpec, in.Name, in.Shape)
	}
	spec := InputSpec{Height: int(in.Shape[1]), Width: int(in.Shape[2]), Channels: int(in.Shape[3])}
	switch in.Type {
	case tflite.Int8:
		spec.Type = Int8
	case tflite.Uint8:
		spec.Type = Uint8
	case tflite.Float32:
		spec.Type = Float32
	default:
		return InputSpec{}, fmt.Errorf("%w: input %q has type %v, want int8, uint8 or float32", ErrSpec, in.Name, in.Type)
	}
	if spec.Type != Float32 {
		q := in.Quantization
		if q == nil || len(q.Scale) != 1 || len(q.ZeroPoint) != 1 {
			return InputSpec{}, fmt.Errorf("%w: input %q is not quantized per tensor", ErrSpec, in.Name)
		}
		spec.Scale, spec.ZeroPoint = q.Scale[0], int32(q.ZeroPoint[0])
	}
	w, ok, err := MetadataFloat(m, WindowMetadata)
	if err != nil {
		return InputSpec{}, err
	}
	if ok {
		spec.Window = float32(w)
	}
	switch e, ok, err := MetadataFloat(m, EqualizeMetadata); {
	case err != nil:
		return InputSpec{}, err
	case ok && e != 0 && e != 1:
		return InputSpec{}, fmt.Errorf("%w: metadata %s = %v (want 0 or 1)", ErrSpec, EqualizeMetadata, e)
	default:
		spec.Equalize = e == 1
	}
	if err := spec.Validate(); err != nil {
		return InputSpec{}, fmt.Errorf("input %q: %w", in.Name, err)
	}
	return spec, nil
}

// MetadataFloat reads a metadata entry holding a decimal number. ok is false when the model
// has no such entry; an entry that is not a finite number is an error wrapping ErrSpec.
func MetadataFloat(m *tflite.Model, name string) (v float64, ok bool, err error) {
	data, ok := m.MetadataByName(name)
	if !ok {
		return 0, false, nil
	}
	v, err = strconv.ParseFloat(strings.TrimSpace(string(data)), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, true, fmt.Errorf("%w: metadata %s = %.40q is not a number", ErrSpec, name, data)
	}
	return v, true, nil
}

// SetMetadataFloat stores v under name as decimal text (float32 precision, the precision the
// device uses), replacing an existing entry.
func SetMetadataFloat(m *tflite.Model, name string, v float64) {
	m.SetMetadata(name, []byte(strconv.FormatFloat(v, 'f', 6, 32)))
}

// SetModelThreshold stores the operating threshold th in the model's metadata, written exactly
// (the shortest decimal that reads back as th itself). The threshold is a film's score, so any
// rounding could lift it above that film: the film would no longer be flagged and the model's
// own validation sensitivity would fall below its target on the device (6 decimals did, for a
// model chosen in session 8: 95.1% → 94.9%).
func SetModelThreshold(m *tflite.Model, th float32) {
	m.SetMetadata(ThresholdMetadata, []byte(strconv.FormatFloat(float64(th), 'g', -1, 64)))
}

// ModelThreshold returns the operating threshold in the model's metadata, as written (a
// hand-set 0.4 reads as 0.4, one written by SetModelThreshold as the float32 it was). ok is false when the model names none; an
// entry that is not a probability strictly inside (0, 1) — also after rounding to float32, the
// precision of the evaluation, so 0.9999999999 is refused — is an error wrapping ErrSpec: a
// damaged operating point would silently change every result.
func ModelThreshold(m *tflite.Model) (th float64, ok bool, err error) {
	v, ok, err := MetadataFloat(m, ThresholdMetadata)
	if err != nil || !ok {
		return 0, ok, err
	}
	if f := float32(v); !(v > 0 && v < 1 && f > 0 && f < 1) {
		return 0, true, fmt.Errorf("%w: metadata %s = %v is not a threshold in (0,1)", ErrSpec, ThresholdMetadata, v)
	}
	return v, true, nil
}
