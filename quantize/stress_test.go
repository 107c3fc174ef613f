package quantize

import (
	"github.com/cxr-edge/cxr-edge/edge/imaging"

	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// square returns a size×size image, black with a white centred square of side frac·size.
func square(size int, frac float64) []uint8 {
	g := make([]uint8, size*size)
	c, h := float64(size-1)/2, frac*float64(size)/2
	for y := range size {
		for x := range size {
			if math.Abs(float64(x)-c) < h && math.Abs(float64(y)-c) < h {
				g[y*size+x] = 255
			}
		}
	}
	return g
}

// bright is the fraction of pixels above mid-grey.
func bright[T uint8 | float32](g []T, mid T) float64 {
	var n int
	for _, v := range g {
		if v > mid {
			n++
		}
	}
	return float64(n) / float64(len(g))
}

func TestMagnify(t *testing.T) {
	const size = 40
	g := square(size, 0.5)
	if got := Magnify(g, size, 1); string(got) != string(g) {
		t.Fatal("×1 changed the image")
	}
	for _, z := range []float64{0, -1, math.NaN()} {
		if got := Magnify(g, size, z); string(got) != string(g) {
			t.Errorf("×%v changed the image", z)
		}
	}
	for _, tc := range []struct{ z, want float64 }{{0.5, 0.0625}, {1.2, 0.36}, {1.5, 0.5625}, {2, 1}} {
		if got := bright(Magnify(g, size, tc.z), 127); math.Abs(got-tc.want) > 0.06 {
			t.Errorf("×%v: bright fraction %.3f, want ≈ %.3f", tc.z, got, tc.want)
		}
	}
}

func TestAugmentZoomIn(t *testing.T) {
	const size = 40
	g := square(size, 0.4)
	got := make([]float32, size*size)
	base := bright(g, 127)
	rng := rand.New(rand.NewPCG(3, 3))
	var sum float64
	const n = 200
	for range n {
		Augment{ZoomIn: 0.5}.apply(g, size, false, rng, got)
		f := bright(got, 0.5)
		if f < base-0.02 || f > base*1.5*1.5+0.02 {
			t.Fatalf("bright fraction %.3f outside [%.3f, %.3f]: magnification not in [1, 1.5]", f, base, base*2.25)
		}
		sum += f
	}
	// E[(1+U/2)²] = 1.5833 for U uniform in [0, 1].
	if mean := sum / n / base; math.Abs(mean-1.5833) > 0.08 {
		t.Errorf("mean area ratio %.3f, want ≈ 1.583", mean)
	}
}

func TestRunStress(t *testing.T) {
	const size = 32
	// A "model" that learned the framing shortcut: its score is the white area. Normals have
	// a small field of white, pneumonias a large one, as if the lungs filled the frame.
	var samples []Sample
	for i := range 10 {
		samples = append(samples, Sample{Label: 0, Grey: square(size, 0.3+0.005*float64(i))})
		samples = append(samples, Sample{Label: 1, Grey: square(size, 0.6+0.01*float64(i))})
	}
	calls := 0
	score := func(g [][]uint8) ([]float32, error) {
		calls++
		s := make([]float32, len(g))
		for i, x := range g {
			s[i] = float32(bright(x, 127))
		}
		return s, nil
	}
	suite := []Perturbation{Magnified(1), Magnified(1.4), Magnified(2), Exposed(1, 0)}
	st, err := RunStress(samples, suite, 0.3, score)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 4 || len(st.Rows) != 4 {
		t.Fatalf("%d score calls, %d rows", calls, len(st.Rows))
	}
	want := []float64{1, 1, 0, 1} // specificity: ×1.4 keeps the normals below 0.3, ×2 flags them all
	for i, r := range st.Rows {
		if r.Metrics.Sensitivity != 1 || r.Metrics.Specificity != want[i] || r.Metrics.N != 20 || r.Name != suite[i].Name {
			t.Errorf("%s: %v", r.Name, r.Metrics)
		}
	}
	for _, tc := range []struct {
		kind string
		want float64
	}{{"", (1 + 1 + 0.5 + 1) / 4.0}, {"framing", (1 + 1 + 0.5) / 3.0}, {"exposure", 1}} {
		if got := st.MeanAccuracy(tc.kind); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("mean accuracy of %q rows %v, want %v", tc.kind, got, tc.want)
		}
	}
	// Balanced accuracy: sensitivity 1 everywhere, specificity 1, 1, 0, 1.
	if got := st.MeanBalanced("framing"); math.Abs(got-(1+1+0.5)/3) > 1e-12 {
		t.Errorf("mean balanced accuracy of framing rows %v", got)
	}
	if !math.IsNaN(st.MeanAccuracy("nope")) {
		t.Error("mean of no rows is not NaN")
	}
	if k := st.Kinds(); !slices.Equal(k, []string{"framing", "exposure"}) {
		t.Errorf("kinds %q", k)
	}
	if s := st.String(); !strings.Contains(s, "framing 83.33%, exposure 100.00%") {
		t.Errorf("summary %q lacks the per-kind means", s)
	}
	// Falls below the first row (specificity 1): ×2 drops it to 0; exposure does not fall.
	for _, tc := range []struct {
		kind       string
		spec, sens float64
	}{{"framing", 1, 0}, {"exposure", 0, 0}, {"nope", 0, 0}} {
		if spec, sens := st.Falls(tc.kind); spec != tc.spec || sens != tc.sens {
			t.Errorf("falls of %q rows: specificity %v, sensitivity %v; want %v, %v", tc.kind, spec, sens, tc.spec, tc.sens)
		}
	}
	if s := st.String(); !strings.Contains(s, "framing specificity 100.0 sensitivity 0.0, exposure specificity 0.0 sensitivity 0.0") {
		t.Errorf("summary %q lacks the per-kind falls", s)
	}
	if _, err := RunStress(samples, nil, 0.3, score); !errors.Is(err, ErrEval) {
		t.Errorf("no perturbations: err %v", err)
	}
	failing := func([][]uint8) ([]float32, error) { return nil, errors.ErrUnsupported }
	if _, err := RunStress(samples, suite, 0.3, failing); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("scorer error lost: %v", err)
	}
	if _, err := RunStress(nil, suite, 0.3, score); !errors.Is(err, ErrEval) {
		t.Errorf("no samples: err %v", err)
	}
	bad := []Sample{{Path: "x", Grey: make([]uint8, size*size)}, {Path: "short", Grey: make([]uint8, 10)}}
	if _, err := RunStress(bad, suite, 0.3, score); !errors.Is(err, ErrEval) {
		t.Errorf("mixed plane sizes: err %v", err)
	}
}

func TestExposed(t *testing.T) {
	const size = 16
	g := make([]uint8, size*size)
	for i := range g {
		g[i] = uint8(i % 256)
	}
	// γ 1 without blur is the identity; γ < 1 brightens every mid-grey and keeps 0 and 255.
	if got := Exposed(1, 0).Apply(g, size); string(got) != string(g) {
		t.Fatal("γ 1, σ 0 changed the image")
	}
	b := Exposed(0.6, 0).Apply(g, size)
	for i, p := range g {
		if (p == 0 || p == 255) && b[i] != p || b[i] < p || p > 10 && p < 240 && b[i] <= p {
			t.Fatalf("γ 0.6 mapped %d to %d", p, b[i])
		}
	}
	// A blur keeps a flat image flat and spreads a single bright pixel with its total kept.
	flat := make([]uint8, size*size)
	for i := range flat {
		flat[i] = 77
	}
	if got := gaussianBlur(flat, size, 1); string(got) != string(flat) {
		t.Error("blur changed a flat image")
	}
	dot := make([]uint8, size*size)
	dot[8*size+8] = 255
	sp := gaussianBlur(dot, size, 0.7)
	var sum int
	for _, v := range sp {
		sum += int(v)
	}
	if sp[8*size+8] == 255 || sp[8*size+9] == 0 || math.Abs(float64(sum-255)) > 12 {
		t.Errorf("blurred dot: centre %d, neighbour %d, total %d", sp[8*size+8], sp[8*size+9], sum)
	}
}

// extent is the width and height, in pixels, of the bounding box of pixels above mid.
func extent[T uint8 | float32](g []T, size int, mid T) (w, h int) {
	x0, y0, x1, y1 := size, size, -1, -1
	for y := range size {
		for x := range size {
			if g[y*size+x] > mid {
				x0, x1 = min(x0, x), max(x1, x)
				y0, y1 = min(y0, y), max(y1, y)
			}
		}
	}
	return x1 - x0 + 1, y1 - y0 + 1
}

func TestWarpAndStretched(t *testing.T) {
	const size = 41
	g := square(size, 0.4) // 16×16 bright pixels
	w0, h0 := extent(g, size, 127)
	for _, tc := range []struct {
		name   string
		got    []uint8
		wx, wy float64 // expected extent ratios
	}{
		{"warp 1,1", Warp(g, size, 1, 1), 1, 1},
		{"warp NaN,0", Warp(g, size, math.NaN(), 0), 1, 1},
		{"warp 1,1.5", Warp(g, size, 1, 1.5), 1, 1.5},
		{"warp 2,1", Warp(g, size, 2, 1), 2, 1},
		{"tall 1.25", Stretched(1.25).Apply(g, size), 1, 1.25},
		{"wide 1.25", Stretched(1/1.25).Apply(g, size), 1.25, 1},
	} {
		w, h := extent(tc.got, size, 127)
		if math.Abs(float64(w)/float64(w0)-tc.wx) > 0.1 || math.Abs(float64(h)/float64(h0)-tc.wy) > 0.1 {
			t.Errorf("%s: %d×%d from %d×%d, want ratios %.2f×%.2f", tc.name, w, h, w0, h0, tc.wx, tc.wy)
		}
	}
	if p := Stretched(1.25); p.Kind != "aspect" || p.Name != "tall ×1.25" || Stretched(0.8).Name != "wide ×1.25" {
		t.Errorf("names: %q %q %q", p.Kind, p.Name, Stretched(0.8).Name)
	}
}

func TestAugmentAspect(t *testing.T) {
	const size = 41
	g := square(size, 0.4)
	w0, h0 := extent(g, size, 127)
	got := make([]float32, size*size)
	rng := rand.New(rand.NewPCG(4, 4))
	const n = 300
	var tall, sumLog float64
	for range n {
		Augment{Aspect: 0.5}.apply(g, size, false, rng, got)
		w, h := extent(got, size, 0.5)
		rx, ry := float64(w)/float64(w0), float64(h)/float64(h0)
		// One axis is magnified by up to 1.5, the other kept: the image is never shrunk.
		if min(rx, ry) < 0.93 || min(rx, ry) > 1.07 || max(rx, ry) > 1.5+0.1 {
			t.Fatalf("extent ratios %.2f×%.2f: want one axis 1, the other in [1, 1.5]", rx, ry)
		}
		if ry > rx {
			tall++
		}
		sumLog += math.Log(ry / rx)
	}
	// Log-uniform in [1/1.5, 1.5]: half tall, half wide, mean log ratio 0.
	if f := tall / n; f < 0.4 || f > 0.6 {
		t.Errorf("%.2f of the draws stretched down, want ≈ 0.5", f)
	}
	if m := sumLog / n; math.Abs(m) > 0.05 {
		t.Errorf("mean log stretch %.3f, want ≈ 0", m)
	}
}

func TestValidationDefaults(t *testing.T) {
	for _, tc := range []struct {
		seed, wantSeed uint64
		frac, wantFrac float64
		workers        int
	}{
		{0, 1, 0, 0.15, 0},
		{7, 7, 0.2, 0.2, 3},
	} {
		s, f, w := tc.seed, tc.frac, tc.workers
		validationDefaults(&s, &f, &w)
		if s != tc.wantSeed || f != tc.wantFrac || w < 1 || (tc.workers > 0 && w != tc.workers) {
			t.Errorf("(%d, %v, %d) → (%d, %v, %d)", tc.seed, tc.frac, tc.workers, s, f, w)
		}
	}
}

func TestAugmentClassAspect(t *testing.T) {
	const size = 41
	g := square(size, 0.4)
	w0, h0 := extent(g, size, 127)
	for _, tc := range []struct {
		a      Augment
		normal bool
		want   float64 // height/width gain of the square
	}{
		{Augment{NormalAspect: 1.24}, true, 1.24},
		{Augment{NormalAspect: 1.24}, false, 1},
		{Augment{PneumoniaAspect: 1.24}, false, 1 / 1.24},
		{Augment{PneumoniaAspect: 1.24}, true, 1},
		{Augment{NormalAspect: 1.114, PneumoniaAspect: 1.114}, true, 1.114},
		{Augment{NormalAspect: 1.114, PneumoniaAspect: 1.114}, false, 1 / 1.114},
	} {
		got := make([]float32, size*size)
		tc.a.apply(g, size, tc.normal, rand.New(rand.NewPCG(1, 1)), got)
		w, h := extent(got, size, 0.5)
		if r := (float64(h) / float64(h0)) / (float64(w) / float64(w0)); math.Abs(r-tc.want) > 0.08 {
			t.Errorf("%+v, normal %v: stretched down %.2f×, want %.2f×", tc.a, tc.normal, r, tc.want)
		}
	}
	// They draw no random number: a film of the other class, and a recipe without them, see
	// exactly the stream they saw before they existed.
	want, got := make([]float32, size*size), make([]float32, size*size)
	Augment{Aspect: 0.5, Gamma: 0.3}.apply(g, size, false, rand.New(rand.NewPCG(2, 2)), want)
	Augment{Aspect: 0.5, Gamma: 0.3, NormalAspect: 1.24}.apply(g, size, false, rand.New(rand.NewPCG(2, 2)), got)
	if !slices.Equal(got, want) {
		t.Error("NormalAspect changed a PNEUMONIA film's augmentation")
	}
	Augment{Aspect: 0.5, Gamma: 0.3}.apply(g, size, true, rand.New(rand.NewPCG(2, 2)), got)
	if !slices.Equal(got, want) {
		t.Error("without class stretches, a NORMAL film's augmentation differs from a PNEUMONIA one's")
	}
	if s := (Augment{NormalAspect: 1.24, PneumoniaAspect: 1.1}).Scaled(0); s.NormalAspect != 1 || s.PneumoniaAspect != 1 {
		t.Errorf("Scaled(0) = %+v, want class stretches 1 (off)", s)
	}
}

func TestAugmentErase(t *testing.T) {
	const size = 64
	g := make([]uint8, size*size)
	for i := range g {
		g[i] = uint8(i*37 + i/size*11) // texture, so an erased rectangle stands out
	}
	plain, erased := make([]float32, size*size), make([]float32, size*size)
	base := Augment{Gamma: 0.2, Margin: 0.5}
	withErase := base
	withErase.Erase = 1
	for seed := range uint64(20) {
		base.apply(g, size, true, rand.New(rand.NewPCG(seed, 9)), plain)
		withErase.apply(g, size, true, rand.New(rand.NewPCG(seed, 9)), erased)
		// Erasing comes after every other draw: the rest of the film is unchanged to the bit.
		x0, y0, x1, y1 := size, size, -1, -1
		for i := range plain {
			if plain[i] != erased[i] {
				x, y := i%size, i/size
				x0, y0, x1, y1 = min(x0, x), min(y0, y), max(x1, x), max(y1, y)
			}
		}
		if x1 < 0 {
			t.Fatalf("seed %d: nothing erased", seed)
		}
		fill := erased[y0*size+x0]
		for y := y0; y <= y1; y++ {
			for x := x0; x <= x1; x++ {
				if erased[y*size+x] != fill {
					t.Fatalf("seed %d: pixel (%d,%d) of the erased box %d,%d–%d,%d is %v, not the fill %v", seed, x, y, x0, y0, x1, y1, erased[y*size+x], fill)
				}
			}
		}
		var mean float64
		for _, v := range plain {
			mean += float64(v)
		}
		if mean /= size * size; math.Abs(float64(fill)-mean) > 0.5/255+1e-6 {
			t.Errorf("seed %d: filled with %v, the film's mean is %v", seed, fill, mean)
		}
		// Pixels that happened to equal the fill make the box look smaller, never larger.
		if frac := float64((x1-x0+1)*(y1-y0+1)) / (size * size); frac > 0.2+0.05 {
			t.Errorf("seed %d: erased %.1f%% of the film, want at most 20%%", seed, 100*frac)
		}
	}
	if s := (Augment{Erase: 0.6, Mixup: 0.2}).Scaled(2); s.Erase != 1 || s.Mixup != 0.4 {
		t.Errorf("Scaled(2) = %+v, want erase capped at 1 and mixup 0.4", s)
	}
}

func TestMixes(t *testing.T) {
	tr := &trainer{train: make([]Sample, 500)}
	idx := make([]int, 400)
	for i := range idx {
		idx[i] = i + 50
	}
	tr.cfg.Augment = &Augment{}
	for j, m := range tr.mixes(idx, 3) {
		if m.with != idx[j] || m.lambda != 1 {
			t.Fatalf("mixup off: film %d mixed %+v", idx[j], m)
		}
	}
	tr.cfg.Augment = &Augment{Mixup: 0.2}
	tr.cfg.Seed = 7
	a, b := tr.mixes(idx, 3), tr.mixes(idx, 3)
	if !slices.Equal(a, b) {
		t.Fatal("mixup draws are not reproducible")
	}
	if c := tr.mixes(idx, 4); slices.Equal(a, c) {
		t.Error("another epoch drew the same mixup")
	}
	// Beta(0.2, 0.2) piles up near 0 and 1, mean ½; partners are spread over the training set.
	var sum float64
	var extreme int
	partners := map[int]bool{}
	for _, m := range a {
		if m.lambda < 0 || m.lambda > 1 || m.with < 0 || m.with >= len(tr.train) {
			t.Fatalf("bad draw %+v", m)
		}
		sum += m.lambda
		if m.lambda < 0.1 || m.lambda > 0.9 {
			extreme++
		}
		partners[m.with] = true
	}
	if mean := sum / float64(len(a)); math.Abs(mean-0.5) > 0.08 || extreme < len(a)/2 || len(partners) < 200 {
		t.Errorf("λ mean %.3f, %d of %d near 0 or 1, %d partners: not Beta(0.2, 0.2) draws over the set", mean, extreme, len(a), len(partners))
	}
	if w := (mixup{lambda: 0.25}).weight(2, 6); w != 5 {
		t.Errorf("blended weight %v, want 0.25·2 + 0.75·6 = 5", w)
	}
}

// Renormalized puts each perturbed film through the model's grey-level steps, as the device
// does, and never touches the stored plane.
func TestRenormalized(t *testing.T) {
	const size = 24
	rng := rand.New(rand.NewPCG(4, 4))
	g := randomFilm(rng, size*size, 40, 120)
	stored := slices.Clone(g)
	suite := []Perturbation{Exposed(1, 0), Exposed(0.6, 0), Magnified(1.2)}
	for _, spec := range []imaging.InputSpec{{}, {Window: 0.01}, {Equalize: true}, {Window: 0.02, Equalize: true}} {
		re := Renormalized(suite, spec)
		if len(re) != len(suite) {
			t.Fatalf("%d perturbations, want %d", len(re), len(suite))
		}
		for i, p := range re {
			want := slices.Clone(suite[i].Apply(g, size))
			imaging.Normalize(want, spec)
			got := p.Apply(g, size)
			if !slices.Equal(got, want) || p.Name != suite[i].Name || p.Kind != suite[i].Kind {
				t.Errorf("%+v, %s: not the perturbation then the spec's steps", spec, suite[i].Name)
			}
			if !slices.Equal(g, stored) {
				t.Fatalf("%+v, %s changed the stored plane", spec, suite[i].Name)
			}
		}
	}
	// With equalization, brightening (γ 0.6) leaves a film whose levels it keeps apart
	// unchanged: the row measures the model, not the curve.
	// (levels 5..60, where the curve's slope exceeds 1, so rounding merges none).
	dark := randomFilm(rng, size*size, 5, 56)
	eq := Renormalized([]Perturbation{Exposed(1, 0), Exposed(0.6, 0)}, imaging.InputSpec{Equalize: true})
	a, b := eq[0].Apply(dark, size), eq[1].Apply(dark, size)
	if slices.Equal(dark, Exposed(0.6, 0).Apply(dark, size)) {
		t.Fatal("γ 0.6 left the film unchanged: no test")
	}
	if !slices.Equal(a, b) {
		t.Error("γ 0.6 changed an equalized film whose grey levels it keeps distinct")
	}
}

// With Arch.Equalize the trainer equalizes each augmented film again, so a film and a
// brighter exposure of it reach the network as the same input; without, they differ.
func TestTrainerEqualizes(t *testing.T) {
	const size = 16
	film := randomFilm(rand.New(rand.NewPCG(6, 6)), size*size, 0, 128)
	brighter := make([]uint8, len(film)) // v → 2v+1: strictly increasing
	for i, v := range film {
		brighter[i] = 2*v + 1
	}
	for _, equalize := range []bool{false, true} {
		arch := DefaultArch(size)
		arch.Equalize = equalize
		tr := &trainer{cfg: Config{Arch: arch, Augment: &Augment{}}}
		x, y := make([]float32, size*size), make([]float32, size*size)
		tr.augment(Sample{Grey: film, Label: 1}, rand.New(rand.NewPCG(1, 1)), x)
		tr.augment(Sample{Grey: brighter, Label: 1}, rand.New(rand.NewPCG(1, 1)), y)
		if slices.Equal(x, y) != equalize {
			t.Errorf("equalize %v: film and its brighter exposure give the same input: %v", equalize, slices.Equal(x, y))
		}
		if equalize && (slices.Min(x) != 0 || slices.Max(x) != 1) {
			t.Errorf("equalized input spans %v..%v, want 0..1", slices.Min(x), slices.Max(x))
		}
	}
}

// With Augment.Renormalize the trainer windows every augmented film again, as the device
// windows every film it receives: a low-contrast augmentation of a film still reaches the
// network at full range. Without it the film is left as augmented (older recipes unchanged).
func TestTrainerRenormalizes(t *testing.T) {
	const size = 24
	film := randomFilm(rand.New(rand.NewPCG(8, 8)), size*size, 0, 256)
	arch := DefaultArch(size)
	arch.Window = 0.01
	for _, re := range []bool{false, true} {
		aug := Augment{Contrast: 0.6, Renormalize: re}
		tr := &trainer{cfg: Config{Arch: arch, Augment: &aug}}
		got := make([]float32, size*size)
		tr.augment(Sample{Grey: film, Label: 0}, rand.New(rand.NewPCG(3, 3)), got)
		want := make([]float32, size*size)
		aug.apply(film, size, true, rand.New(rand.NewPCG(3, 3)), want)
		if re {
			renormalize(want, arch.Input())
			if slices.Min(got) != 0 || slices.Max(got) != 1 {
				t.Errorf("renormalized input spans %v..%v, want 0..1", slices.Min(got), slices.Max(got))
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("renormalize %v: the trainer's input is not the augmented film%s", re, map[bool]string{true: " windowed again"}[re])
		}
	}
	if s := (Augment{Renormalize: true}).Scaled(0.5); !s.Renormalize {
		t.Error("Scaled dropped Renormalize")
	}
}

// randomFilm is n pixels of uniform noise over the grey levels lo..lo+levels-1.
func randomFilm(rng *rand.Rand, n, lo, levels int) []uint8 {
	g := make([]uint8, n)
	for i := range g {
		g[i] = uint8(lo + rng.IntN(levels))
	}
	return g
}
