package dicom

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// sentinels are the errors every Decode error must wrap.
var sentinels = []error{ErrNotDICOM, ErrTruncated, ErrMalformed, ErrUnsupportedTransferSyntax, ErrUnsupported, ErrNoPixelData, ErrLimit}

func classified(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func mustDecode(t *testing.T, data []byte) *Image {
	t.Helper()
	img, err := Decode(data, Options{})
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return img
}

// renderAll prints a decoded image every way a caller might pass it on (%+v, the Info in
// %#v, JSON), for tests that no patient data survives decoding; js is the JSON alone.
func renderAll(t testing.TB, img *Image) (all string, js []byte) {
	t.Helper()
	js, err := json.Marshal(img)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%+v|%#v|%s", img, img.Info, js), js
}

// gray16 returns the values of a Gray16 image.
func gray16(t *testing.T, img image.Image) []uint16 {
	t.Helper()
	g, ok := img.(*image.Gray16)
	if !ok {
		t.Fatalf("image is %T, want *image.Gray16", img)
	}
	out := make([]uint16, 0, len(g.Pix)/2)
	for i := 0; i < len(g.Pix); i += 2 {
		out = append(out, uint16(g.Pix[i])<<8|uint16(g.Pix[i+1]))
	}
	return out
}

func grayPix(t *testing.T, img image.Image) []byte {
	t.Helper()
	g, ok := img.(*image.Gray)
	if !ok {
		t.Fatalf("image is %T, want *image.Gray", img)
	}
	return g.Pix
}

func TestDefaultOptions(t *testing.T) {
	d := DefaultOptions()
	want := Options{MaxFileSize: 128 << 20, MaxPixels: 40_000_000, MaxElementLength: 64 << 20, MaxDepth: 16, MaxElements: 100_000}
	if d != want {
		t.Fatalf("DefaultOptions() = %+v, want the documented %+v", d, want)
	}
	if got := (Options{}).withDefaults(); got != want {
		t.Fatalf("zero Options resolve to %+v, want %+v", got, want)
	}
	custom := Options{MaxPixels: 7}
	if got := custom.withDefaults(); got.MaxPixels != 7 || got.MaxDepth != 16 {
		t.Fatalf("a set field must be kept and the others defaulted: %+v", got)
	}
}

// Every layout of the same 8-bit image decodes to the same pixels, unchanged.
func TestLayouts8Bit(t *testing.T) {
	spec := imageSpec{w: 5, h: 4, bitsAlloc: 8, bitsStore: 8, highBit: 7, photometric: "MONOCHROME2", pixels: ramp8(5, 4)}
	for _, l := range []layout{
		{explicit: true, preamble: true, meta: true},
		{explicit: false, preamble: true, meta: true},
		{explicit: true, meta: true},
		{explicit: false, meta: true},
		{explicit: true},
		{explicit: false},
	} {
		t.Run(fmt.Sprintf("explicit=%v,preamble=%v,meta=%v", l.explicit, l.preamble, l.meta), func(t *testing.T) {
			img := mustDecode(t, encodeFile(l, spec.elems()))
			if got := grayPix(t, img.Gray); !bytes.Equal(got, spec.pixels) {
				t.Fatalf("pixels %v, want %v", got, spec.pixels)
			}
			wantTS := ImplicitVRLittleEndian
			if l.explicit {
				wantTS = ExplicitVRLittleEndian
			}
			in := img.Info
			if in.TransferSyntax != wantTS || in.Rows != 4 || in.Columns != 5 || in.Modality != "CR" || in.WindowSource != WindowNone ||
				in.StudyInstanceUID != "1.2.826.0.1.3680043.2.1125.2" || in.SeriesInstanceUID != "1.2.826.0.1.3680043.2.1125.3" ||
				in.SOPInstanceUID != "1.2.826.0.1.3680043.2.1125.1.1" {
				t.Fatalf("info %+v", in)
			}
		})
	}
}

func TestMonochrome1IsInverted(t *testing.T) {
	for _, bits := range []int{8, 16} {
		spec := imageSpec{w: 4, h: 4, bitsAlloc: bits, bitsStore: bits, highBit: bits - 1, photometric: "MONOCHROME2", pixels: ramp8(4, 4)}
		if bits == 16 {
			spec.pixels = ramp16(4, 4, 0, 65535, 16, 15)
		}
		m2 := mustDecode(t, encodeFile(layout{explicit: true}, spec.elems()))
		spec.photometric = "MONOCHROME1"
		m1 := mustDecode(t, encodeFile(layout{explicit: true}, spec.elems()))
		if bits == 8 {
			a, b := grayPix(t, m2.Gray), grayPix(t, m1.Gray)
			for i := range a {
				if int(a[i])+int(b[i]) != 255 {
					t.Fatalf("8-bit pixel %d: MONOCHROME2 %d, MONOCHROME1 %d; want sum 255", i, a[i], b[i])
				}
			}
			continue
		}
		a, b := gray16(t, m2.Gray), gray16(t, m1.Gray)
		for i := range a {
			if int(a[i])+int(b[i]) != 65535 {
				t.Fatalf("16-bit pixel %d: MONOCHROME2 %d, MONOCHROME1 %d; want sum 65535", i, a[i], b[i])
			}
		}
		// The min-max window spans the full output range.
		if slices.Min(a) != 0 || slices.Max(a) != 65535 || m2.Info.WindowSource != WindowMinMax {
			t.Fatalf("min-max window gives %d..%d (%s)", slices.Min(a), slices.Max(a), m2.Info.WindowSource)
		}
	}
}

// Hand-computed points of the LINEAR window of PS3.3 C.11.2.1.2.1 (center 2048, width 4096):
// x ≤ c-0.5-(w-1)/2 = 0 → 0; x > c-0.5+(w-1)/2 = 4095 → 65535;
// x = 2048 → ((2048-2047.5)/4095 + 0.5)·65535 = 32775.5… → 32776.
func TestLinearWindowPoints(t *testing.T) {
	words := []uint16{0, 2048, 4095, 1}
	var px []byte
	for _, w := range words {
		px = le16(px, w)
	}
	spec := imageSpec{w: 4, h: 1, bitsAlloc: 16, bitsStore: 12, highBit: 11, photometric: "MONOCHROME2", pixels: px,
		extra: []el{str(0x00281050, "DS", "2048\\100"), str(0x00281051, "DS", "4096\\10")}}
	img := mustDecode(t, encodeFile(layout{explicit: true, preamble: true, meta: true}, spec.elems()))
	got := gray16(t, img.Gray)
	if got[0] != 0 || got[1] != 32776 || got[2] != 65535 || got[3] != 16 {
		// x=1: ((1-2047.5)/4095+0.5)·65535 = 16.003 → 16
		t.Fatalf("window output %v, want [0 32776 65535 16]", got)
	}
	if in := img.Info; in.WindowCenter != 2048 || in.WindowWidth != 4096 || in.WindowSource != WindowFromDataset || in.WindowFunction != "LINEAR" {
		t.Fatalf("window info %+v (must use the first of several values)", in)
	}
}

// The stored value sits at HighBit; bits outside it (overlays, garbage) are ignored, and a
// signed value with an intercept gives the same picture as the unsigned equivalent.
func TestBitLayoutAndRescale(t *testing.T) {
	const w, h = 8, 8
	base := imageSpec{w: w, h: h, bitsAlloc: 16, bitsStore: 10, highBit: 9, photometric: "MONOCHROME2",
		pixels: ramp16(w, h, 0, 1023, 10, 9),
		extra:  []el{str(0x00281050, "DS", "400"), str(0x00281051, "DS", "600"), str(0x00281056, "CS", "LINEAR_EXACT")}}
	want := gray16(t, mustDecode(t, encodeFile(layout{explicit: true}, base.elems())).Gray)

	shifted := base
	shifted.highBit = 13
	shifted.pixels = ramp16(w, h, 0, 1023, 10, 13)
	for i := 0; i < len(shifted.pixels); i += 2 {
		shifted.pixels[i] |= 0x0B   // garbage below the stored bits
		shifted.pixels[i+1] |= 0xC0 // and above HighBit
	}
	if got := gray16(t, mustDecode(t, encodeFile(layout{explicit: true}, shifted.elems())).Gray); !slices.Equal(got, want) {
		t.Errorf("HighBit 13: %v\nwant %v", got[:8], want[:8])
	}

	// Signed stored values v-512 with intercept +512 are the same modality values.
	signed := base
	signed.signed = true
	signed.pixels = ramp16(w, h, -512, 511, 10, 9)
	signed.extra = append(slices.Clone(base.extra), str(0x00281052, "DS", "512"), str(0x00281053, "DS", "1"))
	if got := gray16(t, mustDecode(t, encodeFile(layout{explicit: true}, signed.elems())).Gray); !slices.Equal(got, want) {
		t.Errorf("signed+intercept: %v\nwant %v", got[:8], want[:8])
	}

	// Slope 2, intercept -100 with the window mapped accordingly: LINEAR_EXACT is affine
	// invariant, so the picture is the same up to floating point rounding (±1).
	scaled := base
	scaled.extra = []el{str(0x00281050, "DS", "700"), str(0x00281051, "DS", "1200"), str(0x00281056, "CS", "LINEAR_EXACT"),
		str(0x00281052, "DS", "-100"), str(0x00281053, "DS", "2")}
	got := gray16(t, mustDecode(t, encodeFile(layout{explicit: true}, scaled.elems())).Gray)
	for i := range got {
		if d := int(got[i]) - int(want[i]); d < -1 || d > 1 {
			t.Fatalf("rescaled pixel %d = %d, want %d±1", i, got[i], want[i])
		}
	}
}

// LINEAR_EXACT (PS3.3 C.11.2.1.3.2) with center 100, width 50: x ≤ 75 → 0, x > 125 → 65535,
// x = 100 → 0.5·65535 = 32767.5 → 32768, x = 85 → (−15/50 + 0.5)·65535 = 13107.
func TestLinearExactPoints(t *testing.T) {
	var px []byte
	for _, v := range []uint16{75, 76, 85, 100, 125, 126} {
		px = le16(px, v)
	}
	spec := imageSpec{w: 6, h: 1, bitsAlloc: 16, bitsStore: 16, highBit: 15, photometric: "MONOCHROME2", pixels: px,
		extra: []el{str(0x00281050, "DS", "100"), str(0x00281051, "DS", "50"), str(0x00281056, "CS", "LINEAR_EXACT")}}
	got := gray16(t, mustDecode(t, encodeFile(layout{explicit: true}, spec.elems())).Gray)
	// x = 76 → (−24/50 + 0.5)·65535 = 1310.7 → 1311; x = 125 → (25/50 + 0.5)·65535 = 65535.
	if want := []uint16{0, 1311, 13107, 32768, 65535, 65535}; !slices.Equal(got, want) {
		t.Fatalf("LINEAR_EXACT output %v, want %v", got, want)
	}
}

func TestSigmoidIsMonotoneAndCentred(t *testing.T) {
	spec := imageSpec{w: 3, h: 1, bitsAlloc: 16, bitsStore: 16, highBit: 15, photometric: "MONOCHROME2",
		pixels: le16(le16(le16(nil, 100), 500), 900),
		extra:  []el{str(0x00281050, "DS", "500"), str(0x00281051, "DS", "400"), str(0x00281056, "CS", "SIGMOID")}}
	got := gray16(t, mustDecode(t, encodeFile(layout{}, spec.elems())).Gray)
	// At the centre the sigmoid is half way: 65535/2 → 32768 (rounded).
	if got[1] != 32768 || !(got[0] < got[1] && got[1] < got[2]) || int(got[0])+int(got[2]) != 65535 {
		t.Fatalf("sigmoid output %v", got)
	}
}

func TestColourIsReducedToLuma(t *testing.T) {
	const w, h = 3, 2
	rgb := []byte{255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 10, 20, 30}
	planar := make([]byte, len(rgb))
	for i := 0; i < w*h; i++ {
		for c := 0; c < 3; c++ {
			planar[c*w*h+i] = rgb[3*i+c]
		}
	}
	mk := func(photometric string, planarCfg uint16, px []byte) []byte {
		els := []el{us(0x00280002, 3), str(0x00280004, "CS", photometric), us(0x00280006, planarCfg),
			us(0x00280010, h), us(0x00280011, w), us(0x00280100, 8), us(0x00280101, 8), us(0x00280102, 7),
			us(0x00280103, 0), raw(0x7FE00010, "OB", px)}
		return encodeFile(layout{explicit: true, preamble: true, meta: true}, els)
	}
	// color.GrayModel: (19595 R + 38470 G + 7471 B + 2^15) >> 16.
	want := []byte{76, 150, 29, 255, 0, 18}
	for name, data := range map[string][]byte{"interleaved": mk("RGB", 0, rgb), "planar": mk("RGB", 1, planar)} {
		if got := grayPix(t, mustDecode(t, data).Gray); !bytes.Equal(got, want) {
			t.Errorf("%s RGB: %v, want %v", name, got, want)
		}
	}
	if got := grayPix(t, mustDecode(t, mk("YBR_FULL", 0, rgb)).Gray); !bytes.Equal(got, []byte{255, 0, 0, 255, 0, 10}) {
		t.Errorf("YBR_FULL must keep Y: %v", got)
	}
}

func TestMultiFrameDecodesFirst(t *testing.T) {
	const w, h = 4, 2
	first := ramp8(w, h)
	px := append(slices.Clone(first), bytes.Repeat([]byte{7}, 2*w*h)...)
	spec := imageSpec{w: w, h: h, bitsAlloc: 8, bitsStore: 8, highBit: 7, photometric: "MONOCHROME2", pixels: px,
		extra: []el{str(0x00280008, "IS", "3")}}
	img := mustDecode(t, encodeFile(layout{explicit: true}, spec.elems()))
	if got := grayPix(t, img.Gray); !bytes.Equal(got, first) || img.Info.Frames != 3 {
		t.Fatalf("frames %d, pixels %v, want first frame %v", img.Info.Frames, got, first)
	}
}

// Sequences of every shape, private and odd-length elements are skipped, and attributes inside
// sequences (an icon image with its own Rows and pixel data) never override the image's own.
func TestStructureIsSkippedProperly(t *testing.T) {
	spec := imageSpec{w: 4, h: 3, bitsAlloc: 8, bitsStore: 8, highBit: 7, photometric: "MONOCHROME2", pixels: ramp8(4, 3)}
	icon := []el{us(0x00280010, 1), us(0x00280011, 1), us(0x00280100, 8), raw(0x7FE00010, "OB", []byte{9, 9})}
	deep := []el{str(0x00081150, "UI", "1.2")}
	for i := 0; i < 5; i++ {
		deep = []el{seq(0x00081199, i%2 == 0, deep, deep)}
	}
	spec.extra = []el{
		raw(0x00091010, "LO", []byte("ODD")),         // private, odd length
		raw(0x00091012, "OB", []byte{1, 2, 3, 4, 5}), // private OB
		seq(0x00081140, true, deep),                  // nested, mixed undefined/defined lengths
		seq(0x00400275, false, []el{seq(0x00400008, true, []el{str(0x00080100, "SH", "X")})}),
		// icon image sequence
		seq(0x00880200, true, icon),
		// private UN sequence of undefined length, implicit VR inside (CP-246)
		{tag: 0x00291020, vr: "UN", undefined: true, items: [][]el{{str(0x00291021, "LO", "SIEMENS")}}},
	}
	for _, explicit := range []bool{true, false} {
		data := encodeFile(layout{explicit: explicit, preamble: true, meta: true}, spec.elems())
		img := mustDecode(t, data)
		if got := grayPix(t, img.Gray); !bytes.Equal(got, spec.pixels) || img.Info.Rows != 3 || img.Info.Columns != 4 {
			t.Fatalf("explicit=%v: %dx%d %v", explicit, img.Info.Columns, img.Info.Rows, got)
		}
	}
}

func TestJPEGBaseline(t *testing.T) {
	frame := tinyJPEG(t, 16, 8)
	ref, err := jpeg.Decode(bytes.NewReader(frame))
	if err != nil {
		t.Fatal(err)
	}
	want := ref.(*image.Gray).Pix
	inverted := make([]byte, len(want))
	for i, v := range want {
		inverted[i] = 255 - v
	}
	other := tinyJPEG(t, 16, 8)
	other[len(other)/2] ^= 0xFF
	cases := []struct {
		name string
		data []byte
		want []byte
	}{
		{"one fragment", jpegFile(16, 8, "MONOCHROME2", frame), want},
		{"monochrome1", jpegFile(16, 8, "MONOCHROME1", frame), inverted},
		{"second frame ignored", jpegFile(16, 8, "MONOCHROME2", frame, other), want},
	}
	// One frame split over three fragments.
	split := jpegFile(16, 8, "MONOCHROME2", frame[:10], frame[10:20], frame[20:])
	cases = append(cases, struct {
		name string
		data []byte
		want []byte
	}{"split fragments", split, want})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := mustDecode(t, c.data)
			if got := grayPix(t, img.Gray); !bytes.Equal(got, c.want) {
				t.Fatalf("pixels differ from image/jpeg's decode")
			}
			if img.Info.TransferSyntax != JPEGBaseline8Bit || img.Info.TransferSyntaxName != "JPEG Baseline (Process 1)" {
				t.Fatalf("info %+v", img.Info)
			}
		})
	}
}

func TestUnsupportedTransferSyntaxes(t *testing.T) {
	spec := imageSpec{w: 2, h: 2, bitsAlloc: 8, bitsStore: 8, highBit: 7, photometric: "MONOCHROME2", pixels: ramp8(2, 2)}
	for uid, name := range map[string]string{
		"1.2.840.10008.1.2.2":    "Big Endian",
		"1.2.840.10008.1.2.4.51": "JPEG Extended",
		"1.2.840.10008.1.2.4.57": "JPEG Lossless",
		"1.2.840.10008.1.2.4.70": "First-Order Prediction",
		"1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
		"1.2.840.10008.1.2.4.81": "JPEG-LS Lossy",
		"1.2.840.10008.1.2.4.90": "JPEG 2000 Image Compression (Lossless Only)",
		"1.2.840.10008.1.2.4.91": "JPEG 2000",
		"1.2.840.10008.1.2.5":    "RLE Lossless",
		"1.2.3.4.5":              "unknown transfer syntax",
	} {
		data := encodeFile(layout{explicit: true, preamble: true, meta: true, ts: uid}, spec.elems())
		_, err := Decode(data, Options{})
		if !errors.Is(err, ErrUnsupportedTransferSyntax) || !strings.Contains(err.Error(), uid) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v, want ErrUnsupportedTransferSyntax naming %q", uid, err, name)
		}
	}
	// A bare big-endian dataset is recognised as such, not as garbage.
	be := []byte{0x00, 0x08, 0x00, 0x16, 'U', 'I', 0x00, 0x02, '1', 0}
	if _, err := Decode(be, Options{}); !errors.Is(err, ErrUnsupportedTransferSyntax) {
		t.Errorf("big-endian dataset: %v", err)
	}
}

func TestDeflated(t *testing.T) {
	spec := imageSpec{w: 4, h: 3, bitsAlloc: 8, bitsStore: 8, highBit: 7, photometric: "MONOCHROME2", pixels: ramp8(4, 3)}
	plain := encodeFile(layout{explicit: true, preamble: true, meta: true, ts: DeflatedExplicitVRLittleEndian}, nil)
	body := encodeElems(nil, spec.elems(), true)
	var buf bytes.Buffer
	fw, _ := flateWriter(&buf)
	fw.Write(body)
	fw.Close()
	img := mustDecode(t, append(plain, buf.Bytes()...))
	if got := grayPix(t, img.Gray); !bytes.Equal(got, spec.pixels) {
		t.Fatalf("deflated pixels %v", got)
	}
	// A deflate bomb is stopped at MaxFileSize: 1 MB of zeros inflates from about 1 kB.
	bomb := spec
	bomb.w, bomb.h, bomb.pixels = 1000, 1000, make([]byte, 1000*1000)
	buf.Reset()
	fw, _ = flateWriter(&buf)
	fw.Write(encodeElems(nil, bomb.elems(), true))
	fw.Close()
	small := append(slices.Clone(plain), buf.Bytes()...)
	if _, err := Decode(small, Options{MaxFileSize: 100_000}); !errors.Is(err, ErrLimit) || len(small) > 100_000 {
		t.Fatalf("inflating %d bytes beyond MaxFileSize: %v", len(small), err)
	}
	if _, err := Decode(small, Options{}); err != nil {
		t.Fatalf("the same file within the limits: %v", err)
	}
}

func TestErrors(t *testing.T) {
	good := imageSpec{w: 2, h: 2, bitsAlloc: 8, bitsStore: 8, highBit: 7, photometric: "MONOCHROME2", pixels: ramp8(2, 2)}
	with := func(mod func(s *imageSpec)) []byte {
		s := good
		s.extra = nil
		mod(&s)
		return encodeFile(layout{explicit: true, preamble: true, meta: true}, s.elems())
	}
	without := func(drop uint32) []byte {
		els := slices.DeleteFunc(good.elems(), func(e el) bool { return e.tag == drop })
		return encodeFile(layout{explicit: true, preamble: true, meta: true}, els)
	}
	badItem := encodeFile(layout{explicit: true, preamble: true, meta: true}, append(good.elems(),
		el{tag: 0x00081140, vr: "SQ", val: nil}))
	// Replace the empty defined-length sequence by an undefined one holding a non-item tag.
	badItem = bytes.Replace(badItem, []byte{0x08, 0x00, 0x40, 0x11, 'S', 'Q', 0, 0, 0, 0, 0, 0},
		[]byte{0x08, 0x00, 0x40, 0x11, 'S', 'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x08, 0x00, 0x00, 0x01, 0, 0, 0, 0}, 1)
	frame := tinyJPEG(t, 8, 8)
	corrupt := slices.Clone(frame)
	for i := 200; i < len(corrupt)-2; i++ {
		corrupt[i] = 0xFF
	}
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrNotDICOM},
		{"text", []byte("hello, this is not a DICOM file at all"), ErrNotDICOM},
		{"png", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), ErrNotDICOM},
		{"zero preamble only", make([]byte, 200), ErrNotDICOM},
		{"DICM then nothing", append(make([]byte, 128), "DICM"...), ErrTruncated},
		{"no pixel data", without(uint32(tagPixelData)), ErrNoPixelData},
		{"no rows", without(uint32(tagRows)), ErrMalformed},
		{"no bits allocated", without(uint32(tagBitsAllocated)), ErrMalformed},
		{"bits stored > allocated", with(func(s *imageSpec) { s.bitsStore = 9 }), ErrMalformed},
		{"high bit too low", with(func(s *imageSpec) { s.bitsStore = 6; s.highBit = 4 }), ErrMalformed},
		{"pixel data too short", with(func(s *imageSpec) { s.pixels = s.pixels[:3] }), ErrMalformed},
		{"bad item tag", badItem, ErrMalformed},
		{"rescale slope 0", with(func(s *imageSpec) { s.extra = []el{str(0x00281053, "DS", "0"), str(0x00281052, "DS", "0")} }), ErrMalformed},
		{"rescale intercept not a number", with(func(s *imageSpec) { s.extra = []el{str(0x00281053, "DS", "1"), str(0x00281052, "DS", "abc")} }), ErrMalformed},
		{"32 bits allocated", with(func(s *imageSpec) { s.bitsAlloc, s.bitsStore, s.highBit = 32, 32, 31 }), ErrUnsupported},
		{"1 bit allocated", with(func(s *imageSpec) { s.bitsAlloc, s.bitsStore, s.highBit = 1, 1, 0 }), ErrUnsupported},
		{"palette colour", with(func(s *imageSpec) { s.photometric = "PALETTE COLOR" }), ErrUnsupported},
		{"jpeg size mismatch", jpegFile(16, 8, "MONOCHROME2", frame), ErrMalformed},
		{"jpeg corrupt", jpegFile(8, 8, "MONOCHROME2", corrupt), ErrMalformed},
		{"jpeg no fragments", jpegFile(8, 8, "MONOCHROME2"), ErrMalformed},
		{"encapsulated in native syntax", bytes.Replace(jpegFile(8, 8, "MONOCHROME2", frame), []byte(JPEGBaseline8Bit), []byte("1.2.840.10008.1.2.1\x00\x00\x00"), 1), ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, err := Decode(c.data, Options{})
			if !errors.Is(err, c.want) || img != nil {
				t.Fatalf("got %v, %v; want %v", img, err, c.want)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	spec := imageSpec{w: 10, h: 10, bitsAlloc: 8, bitsStore: 8, highBit: 7, photometric: "MONOCHROME2", pixels: ramp8(10, 10),
		extra: []el{raw(0x00091010, "OB", make([]byte, 1000)), seq(0x00081140, true, []el{seq(0x00081199, true, []el{str(0x00081150, "UI", "1")})})}}
	data := encodeFile(layout{explicit: true, preamble: true, meta: true}, spec.elems())
	if _, err := Decode(data, Options{}); err != nil {
		t.Fatalf("defaults must accept the file: %v", err)
	}
	for name, o := range map[string]Options{
		"MaxFileSize":      {MaxFileSize: int64(len(data) - 1)},
		"MaxPixels":        {MaxPixels: 99},
		"MaxElementLength": {MaxElementLength: 999},
		"MaxDepth":         {MaxDepth: 1},
		"MaxElements":      {MaxElements: 15},
	} {
		if _, err := Decode(data, o); !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v, want ErrLimit naming the limit", name, err)
		}
	}
	if _, err := DecodeReader(bytes.NewReader(data), Options{MaxFileSize: 100}); !errors.Is(err, ErrLimit) {
		t.Errorf("DecodeReader beyond MaxFileSize: %v", err)
	}
	if img, err := DecodeReader(bytes.NewReader(data), Options{}); err != nil || img.Info.Rows != 10 {
		t.Errorf("DecodeReader: %v", err)
	}
	// Rows×Columns is refused before the pixel data is even looked at: a 65535×65535 header
	// with 4 bytes of pixels fails on the limit, not on the missing data.
	huge := imageSpec{w: 65535, h: 65535, bitsAlloc: 16, bitsStore: 16, highBit: 15, photometric: "MONOCHROME2", pixels: make([]byte, 4)}
	if _, err := Decode(encodeFile(layout{explicit: true}, huge.elems()), Options{}); !errors.Is(err, ErrLimit) {
		t.Errorf("65535×65535: %v", err)
	}
}

func TestIsDICOM(t *testing.T) {
	seeds := seedFiles(t)
	for name, data := range seeds {
		if !IsDICOM(data) {
			t.Errorf("%s: IsDICOM false", name)
		}
	}
	for name, data := range map[string][]byte{
		"empty": nil, "short": {8, 0}, "jpeg": {0xFF, 0xD8, 0xFF, 0xE0, 0, 16, 'J', 'F', 'I', 'F'},
		"text": []byte("(0008,0016) UI"), "zeros": make([]byte, 300),
		"group 0008 with absurd length": {0x08, 0, 0x16, 0, 0xF0, 0xFF, 0xFF, 0x7F, 1, 2},
	} {
		if IsDICOM(data) {
			t.Errorf("%s: IsDICOM true", name)
		}
	}
}

func TestKeyedHash(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	// Independent reference: printf %s 1.2.3.4 | openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef
	const want = "72ceb83c11a982108cf5effa99b6e1a9"
	if got := KeyedHash(key, "1.2.3.4"); got != want {
		t.Fatalf("KeyedHash = %s, want %s", got, want)
	}
	if KeyedHash(key, "1.2.3.4\x00") != want || KeyedHash(key, "1.2.3.4 ") != want {
		t.Error("padding must not change the hash")
	}
	if KeyedHash([]byte("another key"), "1.2.3.4") == want || KeyedHash(key, "1.2.3.5") == want {
		t.Error("hash must depend on key and UID")
	}
	if KeyedHash(key, "") != "" {
		t.Error("empty UID must stay empty")
	}
}

// Nothing of the patient survives decoding, wherever it sits in the dataset.
func TestPrivacyByConstruction(t *testing.T) {
	secrets := []string{"DOE^JANE", "PID-4711", "19700101", "20240229", "ACC-99", "Dr^Who"}
	spec := imageSpec{w: 4, h: 3, bitsAlloc: 8, bitsStore: 8, highBit: 7, photometric: "MONOCHROME2", pixels: ramp8(4, 3),
		extra: []el{
			str(0x00100010, "PN", secrets[0]), str(0x00100020, "LO", secrets[1]), str(0x00100030, "DA", secrets[2]),
			str(0x00080020, "DA", secrets[3]), str(0x00080050, "SH", secrets[4]), str(0x00080090, "PN", secrets[5]),
			seq(0x00101002, true, []el{str(0x00100020, "LO", secrets[1])}),
		}}
	img := mustDecode(t, encodeFile(layout{explicit: true, preamble: true, meta: true}, spec.elems()))
	dump, js := renderAll(t, img)
	for _, s := range secrets {
		if strings.Contains(dump, s) {
			t.Errorf("decoded value contains %q", s)
		}
	}
	if !strings.Contains(dump, "1.2.826.0.1.3680043.2.1125.2") {
		t.Error("the dump should contain the study UID (proves the dump covers Info)")
	}
	// The UIDs stay on the device: JSON (what gets published) leaves them out.
	for _, uid := range []string{"1.2.826.0.1.3680043.2.1125.1.1", "1.2.826.0.1.3680043.2.1125.2", "1.2.826.0.1.3680043.2.1125.3"} {
		if strings.Contains(string(js), uid) {
			t.Errorf("JSON carries UID %s: %s", uid, js)
		}
	}
	if !strings.Contains(string(js), `"modality":"CR"`) {
		t.Errorf("JSON lacks the technical attributes: %s", js)
	}
}

// Cutting a file anywhere gives an error (never a panic, never a half image).
func TestTruncationEverywhere(t *testing.T) {
	for name, data := range seedFiles(t) {
		pixelStart := bytes.LastIndex(data, []byte{0xE0, 0x7F, 0x10, 0x00})
		for cut := 0; cut < len(data); cut++ {
			img, err := Decode(data[:cut], Options{})
			if err == nil {
				t.Fatalf("%s cut at %d/%d: decoded %v", name, cut, len(data), img.Info)
			}
			switch {
			case errors.Is(err, ErrTruncated):
			case errors.Is(err, ErrNoPixelData) && cut <= pixelStart:
				// cut between two elements before the pixel data: a complete dataset without image
			case errors.Is(err, ErrNotDICOM) && cut < 140:
				// too short to be recognised
			default:
				t.Fatalf("%s cut at %d/%d: %v (pixel data at %d)", name, cut, len(data), err, pixelStart)
			}
		}
	}
}

// Random byte flips give an image or a classified error, never a panic.
func TestRandomCorruption(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for name, data := range seedFiles(t) {
		for i := 0; i < 400; i++ {
			mut := slices.Clone(data)
			for k := 0; k < 1+rng.IntN(4); k++ {
				mut[rng.IntN(len(mut))] ^= byte(1 + rng.IntN(255))
			}
			img, err := Decode(mut, Options{MaxPixels: 1 << 20})
			if err != nil && !classified(err) {
				t.Fatalf("%s mutation %d: unclassified error %v", name, i, err)
			}
			if err == nil && (img.Gray.Bounds().Dx() != img.Info.Columns || img.Gray.Bounds().Dy() != img.Info.Rows) {
				t.Fatalf("%s mutation %d: image %v for %dx%d", name, i, img.Gray.Bounds(), img.Info.Columns, img.Info.Rows)
			}
		}
	}
}

func TestResultDoesNotAliasInput(t *testing.T) {
	spec := imageSpec{w: 4, h: 3, bitsAlloc: 8, bitsStore: 8, highBit: 7, photometric: "MONOCHROME2", pixels: ramp8(4, 3)}
	data := encodeFile(layout{explicit: true}, spec.elems())
	img := mustDecode(t, data)
	before := slices.Clone(grayPix(t, img.Gray))
	for i := range data {
		data[i] = 0xAA
	}
	if !bytes.Equal(grayPix(t, img.Gray), before) {
		t.Fatal("image changed when the input buffer was overwritten")
	}
}

// TestErrorQuotesAreBounded: decode errors travel as the reason of an unreadable result, so
// a huge or odd value from the file is quoted clipped, never in full.
func TestErrorQuotesAreBounded(t *testing.T) {
	long := strings.Repeat("DOE^JANE ", 500) // 4500 bytes, and a name where none belongs
	cases := map[string]imageSpec{
		"photometric": {w: 4, h: 3, bitsAlloc: 8, bitsStore: 8, highBit: 7, photometric: long, pixels: ramp8(4, 3)},
		"rescale": {w: 4, h: 3, bitsAlloc: 8, bitsStore: 8, highBit: 7, photometric: "MONOCHROME2", pixels: ramp8(4, 3),
			extra: []el{str(0x00281053, "DS", long), str(0x00281052, "DS", "0")}},
	}
	for name, spec := range cases {
		_, err := Decode(encodeFile(layout{explicit: true, preamble: true, meta: true}, spec.elems()), Options{})
		if err == nil {
			t.Fatalf("%s: decoded", name)
		}
		msg := err.Error()
		if len(msg) > 200 || strings.Count(msg, "DOE^JANE") > 7 || !strings.Contains(msg, "bytes)") {
			t.Errorf("%s: error of %d bytes quotes too much: %.300s", name, len(msg), msg)
		}
	}
	// %q shows a split rune as \x escapes.
	if got := quoted("é" + strings.Repeat("x", 61) + "é"); strings.Contains(got, `\x`) || !strings.Contains(got, "(65 bytes)") {
		t.Errorf("clipped inside a rune: %s", got)
	}
}
