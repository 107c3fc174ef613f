package imaging

import (
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"math"
)

// ElemType is the element type of a model's input tensor.
type ElemType int

// The input element types Preprocess writes.
const (
	Int8 ElemType = iota + 1
	Uint8
	Float32
)

func (t ElemType) String() string {
	switch t {
	case Int8:
		return "int8"
	case Uint8:
		return "uint8"
	case Float32:
		return "float32"
	}
	return fmt.Sprintf("ElemType(%d)", int(t))
}

// Size in bytes of one element.
func (t ElemType) Size() int {
	if t == Float32 {
		return 4
	}
	return 1
}

// ErrSpec: an InputSpec that Preprocess cannot serve, or a destination of the wrong length.
var ErrSpec = errors.New("imaging: bad input spec")

// InputSpec describes a model's image input tensor [1, Height, Width, Channels].
//
// The mapping from an 8-bit grey pixel p (0..255, the output of [Grey]) to the tensor is
//
//	x = p / 255                            (the real value the float model is trained on)
//	q = clamp(round(x / Scale) + ZeroPoint) (Int8 and Uint8)
//	x as little-endian float32             (Float32; Scale and ZeroPoint unused)
//
// With the model's parameters Scale = 1/255, ZeroPoint = -128 (int8) the quantization is
// exact: q = p - 128, so the int8 device and float training see the same numbers.
//
// When Window > 0, p is first windowed (see [Window]): the grey levels below the Window
// quantile map to 0, those above the 1−Window quantile to 255, linearly in between. When
// Equalize is set, the (windowed) plane is then histogram-equalized (see [Equalize]).
type InputSpec struct {
	Width, Height int
	Channels      int // 1 for the grey model; 3 replicates grey for RGB models
	Type          ElemType
	Scale         float32
	ZeroPoint     int32
	// Window is the fraction of pixels clipped at each end by [Window]; 0 (the default, and
	// what a model without the WindowMetadata entry gets) leaves grey levels unchanged.
	Window float32
	// Equalize maps every plane through its own cumulative histogram (see [Equalize]), after
	// the window; false (the default, and what a model without the EqualizeMetadata entry
	// gets) leaves grey levels as the window made them.
	Equalize bool
}

// ModelInput returns the spec of the project's pneumonia model: size×size×1 int8 with scale
// 1/255 and zero point -128 (q = p - 128).
// The window is set from the model's metadata (see SpecFromModel).
func ModelInput(size int) InputSpec {
	return InputSpec{Width: size, Height: size, Channels: 1, Type: Int8, Scale: 1.0 / 255, ZeroPoint: -128}
}

// Validate reports whether Preprocess can write this spec.
func (s InputSpec) Validate() error {
	switch {
	case s.Width <= 0 || s.Height <= 0 || s.Width > 8192 || s.Height > 8192:
		return fmt.Errorf("%w: size %dx%d", ErrSpec, s.Width, s.Height)
	case s.Channels != 1 && s.Channels != 3:
		return fmt.Errorf("%w: %d channels (want 1 or 3)", ErrSpec, s.Channels)
	case s.Type != Int8 && s.Type != Uint8 && s.Type != Float32:
		return fmt.Errorf("%w: type %v", ErrSpec, s.Type)
	case s.Type != Float32 && !(s.Scale > 0 && !math.IsInf(float64(s.Scale), 0)):
		return fmt.Errorf("%w: scale %v", ErrSpec, s.Scale)
	case !(s.Window >= 0 && s.Window < MaxWindow):
		return fmt.Errorf("%w: window %v (want 0 ≤ window < %v)", ErrSpec, s.Window, MaxWindow)
	}
	return nil
}

// Bytes is the size of the tensor in bytes.
func (s InputSpec) Bytes() int { return s.Width * s.Height * s.Channels * s.Type.Size() }

// Preprocess converts img to grey, resizes it to the spec's size and writes the input tensor
// (NHWC, len(dst) == spec.Bytes()) into dst. It is the function the device, evaluation and
// training call.
func Preprocess(img image.Image, spec InputSpec, dst []byte) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	if len(dst) != spec.Bytes() {
		return fmt.Errorf("%w: destination holds %d bytes, tensor needs %d", ErrSpec, len(dst), spec.Bytes())
	}
	grey, err := Plane(img, spec)
	if err != nil {
		return err
	}
	Quantize(grey, spec, dst)
	return nil
}

// Plane returns the 8-bit grey plane the spec's tensor is made from: [Grey] at the spec's
// size, then [Normalize]. Training stores these planes and augments them.
func Plane(img image.Image, spec InputSpec) ([]uint8, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	grey, err := Grey(img, spec.Width, spec.Height)
	if err != nil {
		return nil, err
	}
	Normalize(grey, spec)
	return grey, nil
}

// Normalize applies the spec's grey-level steps to a resized plane in place: [Window] when
// spec.Window > 0, then [Equalize] when spec.Equalize. Tools that change a plane the way a
// different film would (the stress test, training's augmentation) call it again afterwards,
// as the device would on that film.
func Normalize(grey []uint8, spec InputSpec) {
	Window(grey, spec.Window)
	if spec.Equalize {
		Equalize(grey)
	}
}

// Equalize maps grey in place through its cumulative histogram, so the grey levels of the
// output are spread evenly over 0..255 whatever the exposure: the lowest level present maps
// to 0, and level v to round(255 × (pixels ≤ v − pixels at the lowest level) / (all pixels −
// pixels at the lowest level)). Any strictly increasing change of the input's grey levels
// (another detector's response curve, gamma, contrast, brightness short of clipping) gives
// the same output, so a model fed equalized planes cannot tell units or exposures apart by
// their grey levels. An image of one grey level is left unchanged.
func Equalize(grey []uint8) {
	var hist [256]int
	for _, p := range grey {
		hist[p]++
	}
	lowest := 0
	for lowest < 255 && hist[lowest] == 0 {
		lowest++
	}
	base, rest := hist[lowest], len(grey)-hist[lowest]
	if rest == 0 {
		return
	}
	var lut [256]uint8
	cum := 0
	for v := range lut {
		cum += hist[v]
		if v > lowest {
			lut[v] = uint8((510*(cum-base) + rest) / (2 * rest)) // round half up, integers only
		}
	}
	for i, p := range grey {
		grey[i] = lut[p]
	}
}

// MaxWindow bounds InputSpec.Window: clipping a quarter of the pixels at each end would leave
// half the image to carry the picture.
const MaxWindow = 0.25

// Window stretches grey in place so that its frac quantile becomes 0 and its 1−frac quantile
// 255 (linear in between, clipped outside): lo is the lowest grey level with more than
// ⌊frac×len(grey)⌋ pixels at or below it, hi the highest with more than that at or above it. X-ray units and their export settings differ in
// exposure, windowing and the black margin outside the collimated field; mapping every image
// to its own range keeps the model from learning a clinic's or a machine's grey levels
// instead of the lungs. frac ≤ 0 (or an image of one grey level) leaves grey unchanged.
func Window(grey []uint8, frac float32) {
	if !(frac > 0) || len(grey) == 0 {
		return
	}
	var hist [256]int
	for _, p := range grey {
		hist[p]++
	}
	clip := int(float64(frac) * float64(len(grey)))
	lo, hi := 0, 255
	for n := hist[0]; n <= clip && lo < 255; n += hist[lo] {
		lo++
	}
	for n := hist[255]; n <= clip && hi > 0; n += hist[hi] {
		hi--
	}
	if hi <= lo {
		return
	}
	var lut [256]uint8
	for p := range lut {
		v := math.Round(float64(p-lo) * 255 / float64(hi-lo))
		lut[p] = uint8(min(max(v, 0), 255))
	}
	for i, p := range grey {
		grey[i] = lut[p]
	}
}

// Quantize writes the tensor for an already resized grey plane (len(grey) == Width×Height)
// using the mapping documented on InputSpec. Callers must have validated spec and sized dst.
func Quantize(grey []uint8, spec InputSpec, dst []byte) {
	c := spec.Channels
	switch spec.Type {
	case Float32:
		for i, p := range grey {
			bits := math.Float32bits(float32(p) / 255)
			for k := 0; k < c; k++ {
				binary.LittleEndian.PutUint32(dst[(i*c+k)*4:], bits)
			}
		}
	default:
		lo, hi := int32(-128), int32(127)
		if spec.Type == Uint8 {
			lo, hi = 0, 255
		}
		// One lookup table per call: 256 entries, computed with the same formula TFLite's
		// quantizer uses (round half away from zero).
		var lut [256]byte
		for p := range lut {
			q := int32(math.Round(float64(p)/255/float64(spec.Scale))) + spec.ZeroPoint
			q = min(max(q, lo), hi)
			lut[p] = byte(q)
		}
		for i, p := range grey {
			for k := 0; k < c; k++ {
				dst[i*c+k] = lut[p]
			}
		}
	}
}

// Grey returns img as 8-bit grey (ITU-R BT.601 luma), resized to w×h by squashing it (aspect
// ratio not kept, as the training data was made). Luma is kept at 16-bit precision until the
// resize; the result is rounded to 8 bits once. Shrinking uses Catmull-Rom with its support
// widened by the shrink factor (antialiased); an image already w×h is returned unchanged.
func Grey(img image.Image, w, h int) ([]uint8, error) {
	if img == nil {
		return nil, fmt.Errorf("%w: nil image", ErrSpec)
	}
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	if sw <= 0 || sh <= 0 {
		return nil, fmt.Errorf("%w: empty image %dx%d", ErrCorrupt, sw, sh)
	}
	if w <= 0 || h <= 0 {
		return nil, fmt.Errorf("%w: size %dx%d", ErrSpec, w, h)
	}
	xk := newKernel(sw, w)
	yk := newKernel(sh, h)
	// Horizontal pass row by row into tmp[sh][w]: memory is sh×w floats, never a full-size
	// float copy of the source.
	tmp := make([]float32, sh*w)
	row := make([]float32, sw)
	for y := 0; y < sh; y++ {
		lumaRow(img, b.Min.Y+y, row)
		xk.apply(row, tmp[y*w:y*w+w])
	}
	out := make([]uint8, w*h)
	col := make([]float32, sh)
	res := make([]float32, h)
	for x := 0; x < w; x++ {
		for y := 0; y < sh; y++ {
			col[y] = tmp[y*w+x]
		}
		yk.apply(col, res)
		for y, v := range res {
			// v is 16-bit luma (0..65535); 8-bit = v/257, rounded.
			q := math.Round(float64(v) / 257)
			out[y*w+x] = uint8(min(max(q, 0), 255))
		}
	}
	return out, nil
}

// lumaRow writes row y of img as 16-bit BT.601 luma (0..65535) into dst.
func lumaRow(img image.Image, y int, dst []float32) {
	b := img.Bounds()
	switch m := img.(type) {
	case *image.Gray:
		p := m.Pix[(y-m.Rect.Min.Y)*m.Stride:]
		for i := range dst {
			dst[i] = float32(p[i]) * 257
		}
	case *image.Gray16:
		p := m.Pix[(y-m.Rect.Min.Y)*m.Stride:]
		for i := range dst {
			dst[i] = float32(uint16(p[2*i])<<8 | uint16(p[2*i+1]))
		}
	case *image.YCbCr:
		// JPEG's Y is BT.601 luma already.
		off := (y - m.Rect.Min.Y) * m.YStride
		for i := range dst {
			dst[i] = float32(m.Y[off+i]) * 257
		}
	default:
		for i := range dst {
			r, g, bl, _ := img.At(b.Min.X+i, y).RGBA()
			// The coefficients of color.GrayModel (BT.601), at 16-bit precision.
			dst[i] = float32((19595*r + 38470*g + 7471*bl + 1<<15) >> 16)
		}
	}
}

// kernel holds, for each output coordinate, the first source index and the normalised
// weights of a 1-D resampling.
type kernel struct {
	start []int
	n     int // taps per output
	w     []float32
}

// catmullRom is the Catmull-Rom cubic (a = -0.5), support [-2, 2].
func catmullRom(t float64) float64 {
	t = math.Abs(t)
	switch {
	case t < 1:
		return (1.5*t-2.5)*t*t + 1
	case t < 2:
		return ((-0.5*t+2.5)*t-4)*t + 2
	}
	return 0
}

// newKernel maps src samples to dst samples with pixel centres aligned (x_src = (x+0.5)·s −
// 0.5); when shrinking (s > 1) the kernel is stretched by s so every source pixel contributes.
func newKernel(src, dst int) kernel {
	s := float64(src) / float64(dst)
	scale := max(s, 1)
	support := 2 * scale
	n := int(math.Ceil(2*support)) + 1
	k := kernel{start: make([]int, dst), n: n, w: make([]float32, dst*n)}
	ws := make([]float64, n)
	for x := 0; x < dst; x++ {
		c := (float64(x)+0.5)*s - 0.5
		first := int(math.Floor(c - support + 1))
		k.start[x] = first
		var sum float64
		for j := 0; j < n; j++ {
			wt := catmullRom((float64(first+j) - c) / scale)
			ws[j] = wt
			sum += wt
		}
		for j := 0; j < n; j++ {
			k.w[x*n+j] = float32(ws[j] / sum)
		}
	}
	return k
}

// apply resamples src into dst, clamping at the edges.
func (k kernel) apply(src, dst []float32) {
	last := len(src) - 1
	for x := range k.start {
		var acc float32
		st := k.start[x]
		w := k.w[x*k.n : x*k.n+k.n]
		if st >= 0 && st+k.n-1 <= last {
			seg := src[st : st+k.n]
			for j, wt := range w {
				acc += wt * seg[j]
			}
		} else {
			for j, wt := range w {
				if wt == 0 {
					continue
				}
				i := min(max(st+j, 0), last)
				acc += wt * src[i]
			}
		}
		dst[x] = acc
	}
}
