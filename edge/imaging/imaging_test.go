package imaging

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
)

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeJPEG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// bombPNG returns a valid PNG header claiming w×h pixels followed by a tiny image's data.
func bombPNG(t testing.TB, w, h uint32) []byte {
	t.Helper()
	data := encodePNG(t, image.NewGray(image.Rect(0, 0, 1, 1)))
	// IHDR: 8-byte signature, 4-byte length, "IHDR", width, height at 16..24, CRC at 29..33.
	binary.BigEndian.PutUint32(data[16:], w)
	binary.BigEndian.PutUint32(data[20:], h)
	binary.BigEndian.PutUint32(data[29:], crc32.ChecksumIEEE(data[12:29]))
	return data
}

func TestOptionsDefaults(t *testing.T) {
	o := Options{}.withDefaults()
	if o.MaxFileBytes != DefaultMaxFileBytes || o.MaxPixels != DefaultMaxPixels {
		t.Fatalf("zero Options became %+v", o)
	}
	o = Options{MaxFileBytes: 10, MaxPixels: 20}.withDefaults()
	if o.MaxFileBytes != 10 || o.MaxPixels != 20 {
		t.Fatalf("explicit Options changed to %+v", o)
	}
}

func TestDecodeErrors(t *testing.T) {
	grad := image.NewGray(image.Rect(0, 0, 64, 48))
	for i := range grad.Pix {
		grad.Pix[i] = uint8(i * 7)
	}
	pngData := encodePNG(t, grad)
	jpgData := encodeJPEG(t, grad)
	gif := []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;")
	tests := []struct {
		name string
		data []byte
		opts Options
		want error
	}{
		{"truncated png", pngData[:len(pngData)/2], Options{}, ErrCorrupt},
		{"truncated jpeg", jpgData[:len(jpgData)/2], Options{}, ErrCorrupt},
		{"jpeg header only", jpgData[:200], Options{}, ErrCorrupt},
		{"png signature only", pngData[:8], Options{}, ErrCorrupt},
		{"empty", nil, Options{}, ErrUnsupportedFormat},
		{"text", []byte("hello, this is not an image"), Options{}, ErrUnsupportedFormat},
		{"gif", gif, Options{}, ErrUnsupportedFormat},
		{"bomb 60000x60000", bombPNG(t, 60000, 60000), Options{}, ErrTooLarge},
		{"over pixel limit", pngData, Options{MaxPixels: 64*48 - 1}, ErrTooLarge},
		{"over byte limit", pngData, Options{MaxFileBytes: int64(len(pngData) - 1)}, ErrTooLarge},
		{"zero width", bombPNG(t, 0, 10), Options{}, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, _, err := Decode(bytes.NewReader(tt.data), tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if img != nil {
				t.Fatal("image returned with an error")
			}
		})
	}
	// At the limits exactly, the image is accepted.
	if _, _, err := DecodeBytes(pngData, Options{MaxPixels: 64 * 48, MaxFileBytes: int64(len(pngData))}); err != nil {
		t.Fatalf("image at the limits refused: %v", err)
	}
}

// The decompression bomb is refused from its header: decoding it would allocate 3.6 GB.
func TestBombAllocatesLittle(t *testing.T) {
	data := bombPNG(t, 60000, 60000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 10 {
		if _, _, err := DecodeBytes(data, Options{}); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("err = %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Fatalf("refusing the bomb 10 times allocated %d bytes", d)
	}
}

func TestGrey16BitPrecision(t *testing.T) {
	// A 16-bit ramp whose values lie between 8-bit levels: rounding once at the end must give
	// round(v/257); truncating to 8 bits first would give floor.
	img := image.NewGray16(image.Rect(0, 0, 16, 4))
	for y := range 4 {
		for x := range 16 {
			img.SetGray16(x, y, color.Gray16{Y: uint16(257*(x*15) + 200)})
		}
	}
	dec, info, err := DecodeBytes(encodePNG(t, img), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := dec.(*image.Gray16); !ok || info.Format != "png" {
		t.Fatalf("decoded %T %+v, want 16-bit grey png", dec, info)
	}
	g, err := Grey(dec, 16, 4)
	if err != nil {
		t.Fatal(err)
	}
	for x := range 16 {
		want := uint8(math.Round(float64(257*(x*15)+200) / 257))
		if g[x] != want || want == uint8(x*15) {
			t.Fatalf("x=%d: grey %d, want %d (8-bit truncation gives %d)", x, g[x], want, x*15)
		}
	}
}

func TestGreyColour(t *testing.T) {
	cols := []color.RGBA{{255, 0, 0, 255}, {0, 255, 0, 255}, {0, 0, 255, 255}, {200, 100, 50, 255}}
	for _, c := range cols {
		rgba := image.NewRGBA(image.Rect(0, 0, 8, 8))
		for i := 0; i < len(rgba.Pix); i += 4 {
			copy(rgba.Pix[i:], []uint8{c.R, c.G, c.B, c.A})
		}
		want := 0.299*float64(c.R) + 0.587*float64(c.G) + 0.114*float64(c.B)
		// 8-bit RGBA in memory, 16-bit RGB PNG, and a colour JPEG (YCbCr).
		rgb16 := image.NewRGBA64(rgba.Rect)
		for y := range 8 {
			for x := range 8 {
				rgb16.Set(x, y, c)
			}
		}
		dec16, _, err := DecodeBytes(encodePNG(t, rgb16), Options{})
		if err != nil {
			t.Fatal(err)
		}
		decJ, _, err := DecodeBytes(encodeJPEG(t, rgba), Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			img  image.Image
			tol  float64
		}{{"rgba", rgba, 0.5}, {"png16", dec16, 0.5}, {"jpeg", decJ, 3}} {
			g, err := Grey(tc.img, 4, 4)
			if err != nil {
				t.Fatal(err)
			}
			if d := math.Abs(float64(g[5]) - want); d > tc.tol {
				t.Errorf("%v %s: grey %d, BT.601 luma %.1f", c, tc.name, g[5], want)
			}
		}
	}
}

func TestGreyIdentityAndSubImage(t *testing.T) {
	img := image.NewGray(image.Rect(0, 0, 40, 30))
	for i := range img.Pix {
		img.Pix[i] = uint8(i*37 + i/7)
	}
	g, err := Grey(img, 40, 30)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g, img.Pix) {
		t.Fatal("resizing to the same size changed pixels")
	}
	sub := img.SubImage(image.Rect(10, 5, 30, 25)).(*image.Gray)
	gs, err := Grey(sub, 20, 20)
	if err != nil {
		t.Fatal(err)
	}
	for y := range 20 {
		for x := range 20 {
			if gs[y*20+x] != img.GrayAt(10+x, 5+y).Y {
				t.Fatalf("sub-image pixel (%d,%d) differs", x, y)
			}
		}
	}
	// The generic path (At) agrees with the fast path.
	gen, err := Grey(struct{ image.Image }{img}, 17, 23)
	if err != nil {
		t.Fatal(err)
	}
	fast, _ := Grey(img, 17, 23)
	if !bytes.Equal(gen, fast) {
		t.Fatal("generic and fast grey paths differ")
	}
}

// Shrinking is antialiased: a 1-pixel checkerboard averages to mid-grey instead of aliasing.
func TestGreyAntialias(t *testing.T) {
	img := image.NewGray(image.Rect(0, 0, 512, 512))
	for y := range 512 {
		for x := range 512 {
			if (x+y)%2 == 0 {
				img.Pix[y*512+x] = 255
			}
		}
	}
	g, err := Grey(img, 50, 50)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range g {
		if p < 120 || p > 135 {
			t.Fatalf("pixel %d = %d, want ≈128", i, p)
		}
	}
}

func TestQuantizeMapping(t *testing.T) {
	grey := make([]uint8, 256)
	for i := range grey {
		grey[i] = uint8(i)
	}
	spec := ModelInput(16)
	dst := make([]byte, 256)
	Quantize(grey, spec, dst)
	for p := range 256 {
		if int8(dst[p]) != int8(p-128) {
			t.Fatalf("int8 q(%d) = %d, want %d", p, int8(dst[p]), p-128)
		}
	}
	u := InputSpec{Width: 16, Height: 16, Channels: 1, Type: Uint8, Scale: 1.0 / 255}
	Quantize(grey, u, dst)
	for p := range 256 {
		if dst[p] != uint8(p) {
			t.Fatalf("uint8 q(%d) = %d", p, dst[p])
		}
	}
	f := InputSpec{Width: 16, Height: 16, Channels: 3, Type: Float32}
	fd := make([]byte, f.Bytes())
	Quantize(grey, f, fd)
	for p := range 256 {
		for k := range 3 {
			v := math.Float32frombits(binary.LittleEndian.Uint32(fd[(p*3+k)*4:]))
			// The float model's input equals the int8 tensor dequantized.
			if deq := float32(int(int8(p-128))+128) / 255; v != float32(p)/255 || v != deq {
				t.Fatalf("float32 x(%d) = %v", p, v)
			}
		}
	}
}

func TestPreprocessSpecErrors(t *testing.T) {
	img := image.NewGray(image.Rect(0, 0, 8, 8))
	good := ModelInput(4)
	tests := []struct {
		name string
		spec InputSpec
		dst  int
	}{
		{"zero size", InputSpec{Channels: 1, Type: Int8, Scale: 1}, 0},
		{"2 channels", InputSpec{Width: 4, Height: 4, Channels: 2, Type: Int8, Scale: 1}, 32},
		{"no type", InputSpec{Width: 4, Height: 4, Channels: 1, Scale: 1}, 16},
		{"zero scale", InputSpec{Width: 4, Height: 4, Channels: 1, Type: Int8}, 16},
		{"short dst", good, 15},
	}
	for _, tt := range tests {
		if err := Preprocess(img, tt.spec, make([]byte, tt.dst)); !errors.Is(err, ErrSpec) {
			t.Errorf("%s: err = %v, want ErrSpec", tt.name, err)
		}
	}
	if err := Preprocess(nil, good, make([]byte, 16)); !errors.Is(err, ErrSpec) {
		t.Errorf("nil image: err = %v", err)
	}
	if err := Preprocess(image.NewGray(image.Rect(0, 0, 0, 0)), good, make([]byte, 16)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("empty image: err = %v", err)
	}
}

// Each full-resolution original and its 224×224 dataset copy must reach nearly the same
// tensor: this is what makes a model trained on the copies valid on the device's originals.
// The copies are JPEGs (q92 for the ones resized here, Lanczos + JPEG in the source repos), so
// the difference is JPEG noise: measured mean |Δ| ≈ 0.9–1.3 grey levels at 224 and 0.4–0.5
// at 128, max ≤ 18 (JPEG ringing at the image edges). A mismatched pair differs by > 10 on
// average, so the bounds below detect a wrong resize, orientation, crop or luma.
func TestFullResMatchesDatasetCopy(t *testing.T) {
	full := testenv.SharedPath(t, "data", "fullres")
	train := testenv.SharedPath(t, "data", "chest_xray", "train")
	files, err := filepath.Glob(filepath.Join(full, "*", "*.jpeg"))
	if err != nil || len(files) != 24 {
		t.Fatalf("want 24 full-resolution files, found %d (%v)", len(files), err)
	}
	load := func(path string) image.Image {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		img, _, err := DecodeBytes(data, Options{})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return img
	}
	var prev []byte
	for _, f := range files {
		rel, _ := filepath.Rel(full, f)
		orig, cp := load(f), load(filepath.Join(train, rel))
		for _, c := range []struct {
			size          int
			window        float32
			equalize      bool
			mean, maxDiff float64
		}{{224, 0, false, 2.0, 24}, {128, 0, false, 1.0, 24}, {128, 0.01, false, 1.5, 24}, {128, 0.01, true, 3.0, 32}} {
			spec := ModelInput(c.size)
			spec.Window, spec.Equalize = c.window, c.equalize
			a, b := make([]byte, spec.Bytes()), make([]byte, spec.Bytes())
			if err := Preprocess(orig, spec, a); err != nil {
				t.Fatal(err)
			}
			if err := Preprocess(cp, spec, b); err != nil {
				t.Fatal(err)
			}
			mean, mx := diff(a, b)
			t.Logf("%s %d window %v equalize %v: mean |Δ| %.3f, max %.0f", rel, c.size, c.window, c.equalize, mean, mx)
			if mean > c.mean || mx > c.maxDiff {
				t.Errorf("%s at %d window %v equalize %v: mean |Δ| %.3f (bound %.1f), max %.0f (bound %.0f)", rel, c.size, c.window, c.equalize, mean, c.mean, mx, c.maxDiff)
			}
			if c.size == 128 && c.window == 0 {
				if prev != nil {
					if m, _ := diff(prev, a); m < 10 {
						t.Errorf("negative control: different patients differ by only %.2f", m)
					}
				}
				prev = a
			}
		}
	}
}

func diff(a, b []byte) (mean, mx float64) {
	for i := range a {
		d := math.Abs(float64(int8(a[i])) - float64(int8(b[i])))
		mean += d
		mx = max(mx, d)
	}
	return mean / float64(len(a)), mx
}

func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		img, info, err := DecodeBytes(data, Options{MaxPixels: 1 << 20, MaxFileBytes: 1 << 20})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrUnsupportedFormat) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		if img.Bounds().Dx() != info.Width || img.Bounds().Dy() != info.Height {
			t.Fatalf("decoded %v, header said %dx%d", img.Bounds(), info.Width, info.Height)
		}
		dst := make([]byte, ModelInput(8).Bytes())
		if err := Preprocess(img, ModelInput(8), dst); err != nil {
			t.Fatalf("preprocess of a decoded image: %v", err)
		}
	})
}

func BenchmarkDecodePreprocessFullRes(b *testing.B) {
	path := filepath.Join(testenv.SharedPath(b, "data", "fullres"), "NORMAL", "NORMAL2-IM-1113-0001.jpeg") // 2128×1630
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	spec := ModelInput(128)
	dst := make([]byte, spec.Bytes())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		img, _, err := DecodeBytes(data, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := Preprocess(img, spec, dst); err != nil {
			b.Fatal(err)
		}
	}
}

// The peer for the benchmark above: decoding alone, so the ratio shows what preprocessing adds.
func BenchmarkDecodeOnlyFullRes(b *testing.B) {
	path := filepath.Join(testenv.SharedPath(b, "data", "fullres"), "NORMAL", "NORMAL2-IM-1113-0001.jpeg")
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := DecodeBytes(data, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
