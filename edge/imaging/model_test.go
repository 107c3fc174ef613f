package imaging

import (
	"errors"
	"image"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

// oneInput is a model with a single input tensor t (enough for SpecFromModel).
func oneInput(t tflite.Tensor) *tflite.Model {
	return &tflite.Model{Buffers: []tflite.Buffer{{}}, Subgraphs: []tflite.Subgraph{{Tensors: []tflite.Tensor{t}, Inputs: []int32{0}}}}
}

func q(scale float32, zp int64) *tflite.Quantization {
	return &tflite.Quantization{Scale: []float32{scale}, ZeroPoint: []int64{zp}}
}

func TestSpecFromModel(t *testing.T) {
	cases := []struct {
		name   string
		tensor tflite.Tensor
		window string // metadata text; "" = no entry
		equal  string // EqualizeMetadata text; "" = no entry
		want   InputSpec
		bad    bool
	}{
		{name: "int8 grey", tensor: tflite.Tensor{Shape: []int32{1, 128, 96, 1}, Type: tflite.Int8, Quantization: q(1.0/255, -128)},
			want: InputSpec{Width: 96, Height: 128, Channels: 1, Type: Int8, Scale: 1.0 / 255, ZeroPoint: -128}},
		{name: "uint8 rgb with window", tensor: tflite.Tensor{Shape: []int32{1, 8, 8, 3}, Type: tflite.Uint8, Quantization: q(0.5, 3)}, window: "0.01",
			want: InputSpec{Width: 8, Height: 8, Channels: 3, Type: Uint8, Scale: 0.5, ZeroPoint: 3, Window: 0.01}},
		{name: "float", tensor: tflite.Tensor{Shape: []int32{1, 4, 4, 1}, Type: tflite.Float32},
			want: InputSpec{Width: 4, Height: 4, Channels: 1, Type: Float32}},
		{name: "equalized", tensor: tflite.Tensor{Shape: []int32{1, 4, 4, 1}, Type: tflite.Float32}, window: "0.01", equal: "1",
			want: InputSpec{Width: 4, Height: 4, Channels: 1, Type: Float32, Window: 0.01, Equalize: true}},
		{name: "equalize 0", tensor: tflite.Tensor{Shape: []int32{1, 4, 4, 1}, Type: tflite.Float32}, equal: "0",
			want: InputSpec{Width: 4, Height: 4, Channels: 1, Type: Float32}},
		{name: "equalize 2", tensor: tflite.Tensor{Shape: []int32{1, 4, 4, 1}, Type: tflite.Float32}, equal: "2", bad: true},
		{name: "equalize text", tensor: tflite.Tensor{Shape: []int32{1, 4, 4, 1}, Type: tflite.Float32}, equal: "yes", bad: true},
		{name: "rank 3", tensor: tflite.Tensor{Shape: []int32{4, 4, 1}, Type: tflite.Float32}, bad: true},
		{name: "batch 2", tensor: tflite.Tensor{Shape: []int32{2, 4, 4, 1}, Type: tflite.Float32}, bad: true},
		{name: "2 channels", tensor: tflite.Tensor{Shape: []int32{1, 4, 4, 2}, Type: tflite.Float32}, bad: true},
		{name: "int16", tensor: tflite.Tensor{Shape: []int32{1, 4, 4, 1}, Type: tflite.Int16, Quantization: q(1, 0)}, bad: true},
		{name: "int8 unquantized", tensor: tflite.Tensor{Shape: []int32{1, 4, 4, 1}, Type: tflite.Int8}, bad: true},
		{name: "per-channel", tensor: tflite.Tensor{Shape: []int32{1, 4, 4, 1}, Type: tflite.Int8,
			Quantization: &tflite.Quantization{Scale: []float32{1, 2}, ZeroPoint: []int64{0, 0}}}, bad: true},
		{name: "zero scale", tensor: tflite.Tensor{Shape: []int32{1, 4, 4, 1}, Type: tflite.Int8, Quantization: q(0, 0)}, bad: true},
		{name: "window text", tensor: tflite.Tensor{Shape: []int32{1, 4, 4, 1}, Type: tflite.Float32}, window: "wide", bad: true},
		{name: "window too wide", tensor: tflite.Tensor{Shape: []int32{1, 4, 4, 1}, Type: tflite.Float32}, window: "0.3", bad: true},
		{name: "window negative", tensor: tflite.Tensor{Shape: []int32{1, 4, 4, 1}, Type: tflite.Float32}, window: "-0.01", bad: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := oneInput(c.tensor)
			if c.window != "" {
				m.SetMetadata(WindowMetadata, []byte(c.window))
			}
			if c.equal != "" {
				m.SetMetadata(EqualizeMetadata, []byte(c.equal))
			}
			got, err := SpecFromModel(m)
			if c.bad {
				if !errors.Is(err, ErrSpec) {
					t.Fatalf("got %+v, %v; want an ErrSpec error", got, err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
	if _, err := SpecFromModel(&tflite.Model{}); !errors.Is(err, ErrSpec) {
		t.Errorf("model without subgraph: %v", err)
	}
}

// The shipped model's input and window, read the way the device reads them, are what
// training used (ModelInput plus the window in its metadata).
func TestSpecFromShippedModel(t *testing.T) {
	m, err := tflite.ReadFile(filepath.Join(testenv.RepoRoot(t), "edge/device/model/cxr-pneumonia-int8.tflite"))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := SpecFromModel(m)
	if err != nil {
		t.Fatal(err)
	}
	want := ModelInput(spec.Width)
	want.Window = spec.Window
	if spec != want {
		t.Fatalf("shipped model input %+v, want %+v", spec, want)
	}
	if th, ok, err := ModelThreshold(m); err != nil || !ok || !(th > 0 && th < 1) {
		t.Fatalf("shipped model threshold %v %v %v", th, ok, err)
	}
}

func TestModelThreshold(t *testing.T) {
	m := oneInput(tflite.Tensor{Shape: []int32{1, 4, 4, 1}, Type: tflite.Float32})
	if th, ok, err := ModelThreshold(m); ok || err != nil || th != 0 {
		t.Fatalf("model without metadata: %v %v %v", th, ok, err)
	}
	SetMetadataFloat(m, ThresholdMetadata, 0.375)
	if th, ok, err := ModelThreshold(m); !ok || err != nil || th != 0.375 {
		t.Fatalf("threshold %v %v %v, want 0.375", th, ok, err)
	}
	for _, c := range []struct {
		text string
		want float64
	}{{" 0.5\n", 0.5}, {"1e-3", 0.001}, {"0.414062", 0.414062}} {
		m.SetMetadata(ThresholdMetadata, []byte(c.text))
		if th, ok, err := ModelThreshold(m); !ok || err != nil || th != c.want {
			t.Errorf("%q read as %v %v %v, want %v", c.text, th, ok, err, c.want)
		}
	}
	for _, bad := range []string{"1.5", "1", "0", "-0.2", "0.99999999999", "NaN", "Inf", "abc", ""} {
		m.SetMetadata(ThresholdMetadata, []byte(bad))
		if th, ok, err := ModelThreshold(m); !ok || !errors.Is(err, ErrSpec) {
			t.Errorf("%q read as %v %v %v; want an ErrSpec error", bad, th, ok, err)
		}
	}
}

// FuzzModelThreshold: whatever a model file's metadata holds, the threshold read from it is
// either an error or strictly inside (0, 1), as the device requires.
func FuzzModelThreshold(f *testing.F) {
	for _, s := range []string{"0.414062", " 0.5\n", "1", "0", "-0.2", "NaN", "1e-3", "abc", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := &tflite.Model{Buffers: []tflite.Buffer{{}, {Data: data}}, Metadata: []tflite.Metadata{{Name: ThresholdMetadata, Buffer: 1}}}
		th, ok, err := ModelThreshold(m)
		if !ok {
			t.Fatalf("%q: entry not found", data)
		}
		if err == nil && !(th > 0 && th < 1) {
			t.Fatalf("%q read as threshold %v", data, th)
		}
		if err != nil && th != 0 {
			t.Fatalf("%q rejected but returned %v", data, th)
		}
	})
}

func TestWindow(t *testing.T) {
	ramp := func(lo, hi int) []uint8 { // 100 pixels from lo to hi
		g := make([]uint8, 100)
		for i := range g {
			g[i] = uint8(lo + (hi-lo)*i/99)
		}
		return g
	}
	// A low-contrast ramp is stretched to the full range; one pixel (⌊1.5% of 100⌋) clipped
	// at each end.
	g := ramp(100, 150)
	Window(g, 0.015)
	if g[0] != 0 || g[1] != 0 || g[98] != 255 || g[99] != 255 || g[50] < 120 || g[50] > 135 {
		t.Errorf("stretched ramp %v", g)
	}
	for i := 1; i < len(g); i++ {
		if g[i] < g[i-1] {
			t.Fatalf("window is not monotonic at %d: %v", i, g)
		}
	}
	// Exposure differences vanish: the same ramp, darker and flatter, lands on the same plane.
	a, b := ramp(60, 200), ramp(30, 100)
	Window(a, 0.02)
	Window(b, 0.02)
	for i := range a {
		if d := int(a[i]) - int(b[i]); d < -6 || d > 6 {
			t.Fatalf("pixel %d: %d vs %d after windowing", i, a[i], b[i])
		}
	}
	// A flat image, frac 0, and an empty plane are left alone.
	flat := []uint8{7, 7, 7, 7}
	Window(flat, 0.1)
	if flat[0] != 7 || flat[3] != 7 {
		t.Errorf("flat image changed: %v", flat)
	}
	r := ramp(10, 20)
	Window(r, 0)
	if r[0] != 10 || r[99] != 20 {
		t.Errorf("frac 0 changed the image: %v", r)
	}
	Window(nil, 0.01)
}

func TestEqualize(t *testing.T) {
	// A plane whose grey levels crowd into a narrow dark band: equalized, they spread over
	// the whole range, in order, the lowest to 0 and the highest to 255.
	rng := rand.New(rand.NewPCG(1, 2))
	g := make([]uint8, 64*64)
	for i := range g {
		g[i] = uint8(20 + math.Sqrt(float64(rng.IntN(1600)))) // levels 20..59, skewed high
	}
	orig := slices.Clone(g)
	Equalize(g)
	if lo, hi := slices.Min(g), slices.Max(g); lo != 0 || hi != 255 {
		t.Fatalf("equalized range %d..%d, want 0..255", lo, hi)
	}
	for i := range g {
		for j := range g {
			if orig[i] < orig[j] && g[i] > g[j] {
				t.Fatalf("order broken: %d<%d became %d>%d", orig[i], orig[j], g[i], g[j])
			}
		}
		if i > 200 {
			break
		}
	}
	// Evenly spread: each quarter of the output range holds about a quarter of the pixels
	// (within the largest single level's share, which cannot be split).
	var quarter [4]int
	for _, v := range g {
		quarter[v/64]++
	}
	for q, n := range quarter {
		if n < len(g)/8 || n > len(g)/2 {
			t.Errorf("quarter %d holds %d of %d pixels: %v", q, n, len(g), quarter)
		}
	}

	// Any strictly increasing change of grey levels (here v → 2v+1 on levels below 128, a
	// brighter, higher-contrast exposure of the same film) gives the identical output.
	a := make([]uint8, 32*32)
	for i := range a {
		a[i] = uint8(rng.IntN(128))
	}
	b := make([]uint8, len(a))
	for i, v := range a {
		b[i] = 2*v + 1
	}
	Equalize(a)
	Equalize(b)
	if !slices.Equal(a, b) {
		t.Fatal("a strictly increasing grey-level change altered the equalized plane")
	}
	// Equalizing twice changes nothing more.
	again := slices.Clone(a)
	Equalize(again)
	if !slices.Equal(a, again) {
		t.Error("equalize is not idempotent")
	}

	// A flat image, two levels, and an empty plane.
	flat := []uint8{7, 7, 7, 7}
	Equalize(flat)
	if !slices.Equal(flat, []uint8{7, 7, 7, 7}) {
		t.Errorf("flat image changed: %v", flat)
	}
	two := []uint8{9, 9, 200, 9}
	Equalize(two)
	if !slices.Equal(two, []uint8{0, 0, 255, 0}) {
		t.Errorf("two levels: %v", two)
	}
	Equalize(nil)
}

// Normalize is the window, then equalization, as the spec says; Plane uses it.
func TestNormalize(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	g := make([]uint8, 48*48)
	for i := range g {
		g[i] = uint8(60 + rng.IntN(100))
	}
	for _, spec := range []InputSpec{{Window: 0.01}, {Equalize: true}, {Window: 0.01, Equalize: true}, {}} {
		want := slices.Clone(g)
		Window(want, spec.Window)
		if spec.Equalize {
			Equalize(want)
		}
		got := slices.Clone(g)
		Normalize(got, spec)
		if !slices.Equal(got, want) {
			t.Errorf("%+v: Normalize differs from Window then Equalize", spec)
		}
		if spec == (InputSpec{}) && !slices.Equal(got, g) {
			t.Error("an empty spec changed the plane")
		}
	}
	img := image.NewGray(image.Rect(0, 0, 48, 48))
	copy(img.Pix, g)
	spec := ModelInput(48)
	spec.Window, spec.Equalize = 0.01, true
	plane, err := Plane(img, spec)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(g)
	Normalize(want, spec)
	if !slices.Equal(plane, want) {
		t.Error("Plane of an image already at the spec's size is not Normalize of its pixels")
	}
}
