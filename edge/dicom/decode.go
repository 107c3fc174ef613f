package dicom

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"math"
	"strconv"
	"strings"
)

// Options bounds the work and memory Decode spends on one input. A zero field takes its
// default (see DefaultOptions); limits are checked before anything large is allocated.
type Options struct {
	// MaxFileSize is the largest input accepted, and the largest a deflated dataset may
	// inflate to. Default 128 MiB (a 4300×4300 16-bit radiograph is about 37 MB).
	MaxFileSize int64
	// MaxPixels is the largest Rows×Columns accepted. Default 40,000,000 (≈ 6300×6300).
	MaxPixels int64
	// MaxElementLength is the longest value of any element other than the pixel data, which
	// is bounded by MaxPixels instead. Default 64 MiB.
	MaxElementLength uint32
	// MaxDepth is the deepest sequence nesting accepted. Default 16.
	MaxDepth int
	// MaxElements is the most elements, items and fragments (at every depth) accepted.
	// Default 100,000.
	MaxElements int
}

// DefaultOptions returns the limits a zero Options stands for.
func DefaultOptions() Options {
	return Options{
		MaxFileSize:      128 << 20,
		MaxPixels:        40_000_000,
		MaxElementLength: 64 << 20,
		MaxDepth:         16,
		MaxElements:      100_000,
	}
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.MaxFileSize <= 0 {
		o.MaxFileSize = d.MaxFileSize
	}
	if o.MaxPixels <= 0 {
		o.MaxPixels = d.MaxPixels
	}
	if o.MaxElementLength == 0 {
		o.MaxElementLength = d.MaxElementLength
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = d.MaxDepth
	}
	if o.MaxElements <= 0 {
		o.MaxElements = d.MaxElements
	}
	return o
}

// Image is a decoded DICOM image: the grey pixels and the technical attributes that describe
// them. It holds no patient data (see the package documentation).
type Image struct {
	// Gray is *image.Gray16 after rescale and VOI window (0..65535), or *image.Gray for plain
	// 8-bit and colour data. Bright means dense (MONOCHROME1 is already inverted).
	Gray image.Image `json:"-"`
	Info Info        `json:"info"`
}

// Window sources reported in Info.WindowSource.
const (
	WindowFromDataset = "dataset" // WindowCenter/WindowWidth of the file (first pair)
	WindowMinMax      = "min-max" // no usable window: minimum to maximum rescaled value
	WindowNone        = "none"    // 8-bit or colour data passed through unchanged
)

// Info describes the decoded image. The instance, study and series UIDs identify the study on
// this device only: they are left out of JSON so that an Info published by mistake cannot carry
// them, and anything sent off the device uses KeyedHash(key, uid) instead.
type Info struct {
	TransferSyntax            string  `json:"transfer_syntax"`
	TransferSyntaxName        string  `json:"transfer_syntax_name"`
	SOPClassUID               string  `json:"sop_class_uid,omitempty"`
	SOPInstanceUID            string  `json:"-"`
	StudyInstanceUID          string  `json:"-"`
	SeriesInstanceUID         string  `json:"-"`
	Modality                  string  `json:"modality,omitempty"`
	BodyPartExamined          string  `json:"body_part_examined,omitempty"`
	ViewPosition              string  `json:"view_position,omitempty"`
	PhotometricInterpretation string  `json:"photometric_interpretation"`
	Rows                      int     `json:"rows"`
	Columns                   int     `json:"columns"`
	Frames                    int     `json:"frames"` // frames in the file; only the first is decoded
	SamplesPerPixel           int     `json:"samples_per_pixel"`
	BitsAllocated             int     `json:"bits_allocated"`
	BitsStored                int     `json:"bits_stored"`
	HighBit                   int     `json:"high_bit"`
	Signed                    bool    `json:"signed"`
	RescaleSlope              float64 `json:"rescale_slope"`
	RescaleIntercept          float64 `json:"rescale_intercept"`
	WindowCenter              float64 `json:"window_center"` // window used, in rescaled units
	WindowWidth               float64 `json:"window_width"`
	WindowFunction            string  `json:"window_function,omitempty"` // LINEAR, LINEAR_EXACT or SIGMOID
	WindowSource              string  `json:"window_source"`             // WindowFromDataset, WindowMinMax or WindowNone
}

// IsDICOM reports whether data start like a DICOM file: the 128-byte preamble and "DICM", or
// (for files without preamble) a group 0002 or 0008 element in little endian byte order.
func IsDICOM(data []byte) bool {
	if len(data) >= 132 && string(data[128:132]) == "DICM" {
		return true
	}
	if len(data) >= 4 && string(data[:4]) == "DICM" {
		return true
	}
	return plausibleStart(data, 0)
}

// DecodeReader reads at most opts.MaxFileSize bytes from r and decodes them with Decode. A
// failing reader gives its own error (wrapped), not one of the sentinels.
func DecodeReader(r io.Reader, opts Options) (*Image, error) {
	opts = opts.withDefaults()
	data, err := io.ReadAll(io.LimitReader(r, opts.MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("dicom: read: %w", err)
	}
	return Decode(data, opts)
}

// Decode decodes the first frame of the DICOM file or dataset in data. It never modifies or
// retains data: the returned image owns its pixels.
func Decode(data []byte, opts Options) (*Image, error) {
	opts = opts.withDefaults()
	if int64(len(data)) > opts.MaxFileSize {
		return nil, fmt.Errorf("%w: input of %d bytes exceeds MaxFileSize %d", ErrLimit, len(data), opts.MaxFileSize)
	}
	a, err := parse(data, opts)
	if err != nil {
		return nil, err
	}
	if !a.pixelDataSeen {
		return nil, fmt.Errorf("%w: dataset has no (7FE0,0010) element", ErrNoPixelData)
	}
	info, err := a.info(opts)
	if err != nil {
		return nil, err
	}
	var img image.Image
	if a.encapsulated {
		img, err = decodeJPEGFrame(a, &info)
	} else {
		img, err = decodeNative(a, &info)
	}
	if err != nil {
		return nil, err
	}
	return &Image{Gray: img, Info: info}, nil
}

// info validates the pixel attributes and fills Info.
func (a *attrs) info(opts Options) (Info, error) {
	in := Info{
		TransferSyntax:            a.transferSyntax,
		TransferSyntaxName:        TransferSyntaxName(a.transferSyntax),
		SOPClassUID:               a.sopClassUID,
		SOPInstanceUID:            a.sopInstanceUID,
		StudyInstanceUID:          a.studyUID,
		SeriesInstanceUID:         a.seriesUID,
		Modality:                  a.modality,
		BodyPartExamined:          a.bodyPart,
		ViewPosition:              a.view,
		PhotometricInterpretation: a.photometric,
		Rows:                      a.rows,
		Columns:                   a.columns,
		Frames:                    1,
		SamplesPerPixel:           a.samples,
		BitsAllocated:             a.bitsAllocated,
		BitsStored:                a.bitsStored,
		HighBit:                   a.highBit,
		Signed:                    a.pixelRep == 1,
		RescaleSlope:              1,
	}
	bad := func(format string, args ...any) (Info, error) {
		return Info{}, fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
	if !a.has[tagRows] || !a.has[tagColumns] || a.rows <= 0 || a.columns <= 0 {
		return bad("missing or zero Rows/Columns (%d×%d)", a.rows, a.columns)
	}
	if int64(a.rows)*int64(a.columns) > opts.MaxPixels {
		return Info{}, fmt.Errorf("%w: image of %d×%d pixels exceeds MaxPixels %d", ErrLimit, a.columns, a.rows, opts.MaxPixels)
	}
	if a.samples != 1 && a.samples != 3 {
		return Info{}, fmt.Errorf("%w: SamplesPerPixel %d", ErrUnsupported, a.samples)
	}
	if in.PhotometricInterpretation == "" {
		// ACR-NEMA files may omit it; PS3.3 makes MONOCHROME2 the only sensible grey default.
		if a.samples != 1 {
			return bad("PhotometricInterpretation missing for %d samples per pixel", a.samples)
		}
		in.PhotometricInterpretation = "MONOCHROME2"
	}
	if !a.has[tagBitsAllocated] {
		return bad("missing BitsAllocated")
	}
	if a.bitsAllocated != 8 && a.bitsAllocated != 16 {
		return Info{}, fmt.Errorf("%w: BitsAllocated %d (only 8 and 16 are decoded)", ErrUnsupported, a.bitsAllocated)
	}
	if !a.has[tagBitsStored] {
		in.BitsStored = a.bitsAllocated
	}
	if in.BitsStored < 1 || in.BitsStored > a.bitsAllocated {
		return bad("BitsStored %d with BitsAllocated %d", in.BitsStored, a.bitsAllocated)
	}
	if !a.has[tagHighBit] {
		in.HighBit = in.BitsStored - 1
	}
	if in.HighBit < in.BitsStored-1 || in.HighBit >= a.bitsAllocated {
		return bad("HighBit %d with BitsStored %d and BitsAllocated %d", in.HighBit, in.BitsStored, a.bitsAllocated)
	}
	if a.pixelRep != 0 && a.pixelRep != 1 {
		return bad("PixelRepresentation %d", a.pixelRep)
	}
	if a.numberOfFrames != "" {
		if n, err := strconv.Atoi(strings.TrimSpace(a.numberOfFrames)); err == nil && n > 1 {
			in.Frames = n
		}
	}
	// The Modality LUT module requires slope and intercept together; like dcmtk and pydicom,
	// one without the other is ignored rather than half applied.
	if a.has[tagRescaleSlope] && a.has[tagRescaleIntercept] {
		s, ok := firstNumber(a.rescaleSlope)
		if !ok || s == 0 {
			return bad("RescaleSlope %s", quoted(a.rescaleSlope))
		}
		b, ok := firstNumber(a.rescaleIntercept)
		if !ok {
			return bad("RescaleIntercept %s", quoted(a.rescaleIntercept))
		}
		in.RescaleSlope, in.RescaleIntercept = s, b
	}
	return in, nil
}

// frame describes the stored samples of one monochrome frame.
type frame struct {
	raw        []byte // little-endian words of bitsAlloc bits
	bitsAlloc  int
	bitsStored int
	highBit    int
	signed     bool
}

// stored extracts the stored value of one allocated word (PS3.5 8.1.1).
func (f *frame) stored(w uint32) int32 {
	shift := uint(f.highBit + 1 - f.bitsStored)
	v := (w >> shift) & (1<<uint(f.bitsStored) - 1)
	if f.signed && v&(1<<uint(f.bitsStored-1)) != 0 {
		return int32(v) - 1<<uint(f.bitsStored)
	}
	return int32(v)
}

func (f *frame) word(i int) uint32 {
	if f.bitsAlloc == 8 {
		return uint32(f.raw[i])
	}
	return uint32(f.raw[2*i]) | uint32(f.raw[2*i+1])<<8
}

func decodeNative(a *attrs, in *Info) (image.Image, error) {
	// In int64: Rows×Columns may not fit a 32-bit int when MaxPixels is raised on armv7.
	need := int64(in.Rows) * int64(in.Columns) * int64(a.samples) * int64(a.bitsAllocated/8)
	if int64(len(a.pixels)) < need {
		return nil, fmt.Errorf("%w: pixel data holds %d bytes, a %d×%d×%d image of %d-bit samples needs %d",
			ErrMalformed, len(a.pixels), in.Columns, in.Rows, a.samples, a.bitsAllocated, need)
	}
	raw := a.pixels[:need] // first frame
	switch in.PhotometricInterpretation {
	case "MONOCHROME1", "MONOCHROME2":
		if a.samples != 1 {
			return nil, fmt.Errorf("%w: %s with %d samples per pixel", ErrMalformed, in.PhotometricInterpretation, a.samples)
		}
		f := frame{raw: raw, bitsAlloc: a.bitsAllocated, bitsStored: in.BitsStored, highBit: in.HighBit, signed: in.Signed}
		return renderMono(&f, a, in), nil
	case "RGB", "YBR_FULL":
		if a.samples != 3 || a.bitsAllocated != 8 {
			return nil, fmt.Errorf("%w: %s with %d samples of %d bits (only 3 samples of 8 bits are decoded)",
				ErrUnsupported, in.PhotometricInterpretation, a.samples, a.bitsAllocated)
		}
		in.WindowSource = WindowNone
		return colourToGray(raw, in.Columns, in.Rows, in.PhotometricInterpretation == "RGB", a.planar == 1), nil
	}
	return nil, fmt.Errorf("%w: PhotometricInterpretation %s", ErrUnsupported, quoted(in.PhotometricInterpretation))
}

// colourToGray reduces 8-bit colour pixels to luma: Y itself for YBR_FULL, and for RGB the
// BT.601 weights that color.GrayModel uses, so results match Go's own grey conversion.
func colourToGray(raw []byte, w, h int, rgb, planar bool) *image.Gray {
	n := w * h
	g := image.NewGray(image.Rect(0, 0, w, h))
	for i := 0; i < n; i++ {
		var r, gr, b byte
		if planar {
			r, gr, b = raw[i], raw[n+i], raw[2*n+i]
		} else {
			r, gr, b = raw[3*i], raw[3*i+1], raw[3*i+2]
		}
		if !rgb {
			g.Pix[i] = r // Y of YBR_FULL
			continue
		}
		y := (19595*uint32(r) + 38470*uint32(gr) + 7471*uint32(b) + 1<<15) >> 16
		g.Pix[i] = uint8(y)
	}
	return g
}

// voi is a VOI LUT function of PS3.3 C.11.2.1.2 mapping rescaled values onto 0..65535.
type voi struct {
	center, width float64
	function      string
}

// valid reports whether the width suits the function (LINEAR needs ≥ 1, the others > 0).
func (v voi) valid() bool {
	if v.function == "LINEAR" {
		return v.width >= 1
	}
	return v.width > 0
}

func (v voi) apply(x float64) float64 {
	const ymax = 65535
	c, w := v.center, v.width
	switch v.function {
	case "LINEAR_EXACT":
		switch {
		case x <= c-w/2:
			return 0
		case x > c+w/2:
			return ymax
		}
		return ((x-c)/w + 0.5) * ymax
	case "SIGMOID":
		return ymax / (1 + math.Exp(-4*(x-c)/w))
	}
	switch {
	case x <= c-0.5-(w-1)/2:
		return 0
	case x > c-0.5+(w-1)/2:
		return ymax
	}
	return ((x-(c-0.5))/(w-1) + 0.5) * ymax
}

// renderMono applies rescale, VOI window and MONOCHROME1 inversion through one lookup table
// indexed by the allocated word, so the per-pixel cost is a load and a store.
func renderMono(f *frame, a *attrs, in *Info) image.Image {
	w, h := in.Columns, in.Rows
	n := w * h
	inverted := in.PhotometricInterpretation == "MONOCHROME1"
	fn := strings.ToUpper(a.voiFunction)
	if fn != "LINEAR_EXACT" && fn != "SIGMOID" {
		fn = "LINEAR" // the default, also for unknown values
	}
	win := voi{function: fn}
	c, okC := firstNumber(a.windowCenter)
	wd, okW := firstNumber(a.windowWidth)
	win.center, win.width = c, wd
	identity := in.RescaleSlope == 1 && in.RescaleIntercept == 0
	switch {
	case okC && okW && win.valid():
		in.WindowSource = WindowFromDataset
	case f.bitsAlloc == 8 && f.bitsStored == 8 && !f.signed && identity:
		// Plain 8-bit grey: pass through, as a JPEG of it would be shown.
		in.WindowSource = WindowNone
		g := image.NewGray(image.Rect(0, 0, w, h))
		for i := 0; i < n; i++ {
			v := f.raw[i]
			if inverted {
				v = 255 - v
			}
			g.Pix[i] = v
		}
		return g
	default:
		lo, hi := int32(math.MaxInt32), int32(math.MinInt32)
		for i := 0; i < n; i++ {
			v := f.stored(f.word(i))
			lo, hi = min(lo, v), max(hi, v)
		}
		mlo := float64(lo)*in.RescaleSlope + in.RescaleIntercept
		mhi := float64(hi)*in.RescaleSlope + in.RescaleIntercept
		if mlo > mhi {
			mlo, mhi = mhi, mlo
		}
		win = voi{center: (mlo + mhi + 1) / 2, width: mhi - mlo + 1, function: "LINEAR"}
		in.WindowSource = WindowMinMax
	}
	in.WindowCenter, in.WindowWidth, in.WindowFunction = win.center, win.width, win.function

	// The table is indexed by the stored bits (2^BitsStored entries), so building it costs
	// little even for 16-bit data; sign extension happens while building.
	shift := uint(f.highBit + 1 - f.bitsStored)
	mask := uint32(1)<<uint(f.bitsStored) - 1
	lut := make([]uint16, mask+1)
	for bits := range lut {
		y := win.apply(float64(f.stored(uint32(bits)<<shift))*in.RescaleSlope + in.RescaleIntercept)
		y = math.Round(min(max(y, 0), 65535))
		if inverted {
			y = 65535 - y
		}
		lut[bits] = uint16(y)
	}
	g := image.NewGray16(image.Rect(0, 0, w, h))
	pix := g.Pix[:2*n]
	if f.bitsAlloc == 8 {
		for i, b := range f.raw[:n] {
			y := lut[(uint32(b)>>shift)&mask]
			pix[2*i], pix[2*i+1] = uint8(y>>8), uint8(y)
		}
		return g
	}
	raw := f.raw[:2*n]
	for i := 0; i < n; i++ {
		y := lut[((uint32(raw[2*i])|uint32(raw[2*i+1])<<8)>>shift)&mask]
		pix[2*i], pix[2*i+1] = uint8(y>>8), uint8(y)
	}
	return g
}

// decodeJPEGFrame decodes the first frame of JPEG Baseline pixel data. Without relying on the
// basic offset table, the first frame is the first fragment plus any following fragments that
// do not start a new JPEG stream (SOI marker FFD8).
func decodeJPEGFrame(a *attrs, in *Info) (image.Image, error) {
	if len(a.fragments) == 0 {
		return nil, fmt.Errorf("%w: encapsulated pixel data has no fragments", ErrMalformed)
	}
	stream := a.fragments[0]
	if len(a.fragments) > 1 {
		var buf bytes.Buffer
		buf.Write(stream)
		for _, fr := range a.fragments[1:] {
			if len(fr) >= 2 && fr[0] == 0xFF && fr[1] == 0xD8 {
				break
			}
			buf.Write(fr)
		}
		stream = buf.Bytes()
	}
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(stream))
	if err != nil {
		return nil, jpegError(err)
	}
	if cfg.Width != in.Columns || cfg.Height != in.Rows {
		return nil, fmt.Errorf("%w: JPEG frame is %d×%d but Columns×Rows is %d×%d", ErrMalformed, cfg.Width, cfg.Height, in.Columns, in.Rows)
	}
	dec, err := jpeg.Decode(bytes.NewReader(stream))
	if err != nil {
		return nil, jpegError(err)
	}
	w, h := in.Columns, in.Rows
	plane := make([]byte, w*h)
	switch m := dec.(type) {
	case *image.Gray:
		for y := 0; y < h; y++ {
			copy(plane[y*w:(y+1)*w], m.Pix[y*m.Stride:])
		}
	case *image.YCbCr:
		for y := 0; y < h; y++ {
			copy(plane[y*w:(y+1)*w], m.Y[y*m.YStride:])
		}
	default: // RGB (Adobe transform 0) or CMYK
		b := dec.Bounds()
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				plane[y*w+x] = color.GrayModel.Convert(dec.At(b.Min.X+x, b.Min.Y+y)).(color.Gray).Y
			}
		}
	}
	switch in.PhotometricInterpretation {
	case "MONOCHROME1", "MONOCHROME2":
		// The JPEG holds the stored values; rescale, window and inversion apply as usual.
		f := frame{raw: plane, bitsAlloc: 8, bitsStored: 8, highBit: 7}
		return renderMono(&f, a, in), nil
	case "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_422", "YBR_PARTIAL_420":
		in.WindowSource = WindowNone
		return &image.Gray{Pix: plane, Stride: w, Rect: image.Rect(0, 0, w, h)}, nil
	}
	return nil, fmt.Errorf("%w: PhotometricInterpretation %s in a JPEG frame", ErrUnsupported, quoted(in.PhotometricInterpretation))
}

func jpegError(err error) error {
	var ue jpeg.UnsupportedError
	if errors.As(err, &ue) {
		return fmt.Errorf("%w: JPEG frame: %v", ErrUnsupported, err)
	}
	return fmt.Errorf("%w: JPEG frame: %v", ErrMalformed, err)
}
