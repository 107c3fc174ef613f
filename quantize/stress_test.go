package quantize

import (
	"errors"
	"math"
	"math/rand/v2"
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
	for _, tc := range []struct{ z, want float64 }{{1.2, 0.36}, {1.5, 0.5625}, {2, 1}} {
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
		Augment{ZoomIn: 0.5}.apply(g, size, rng, got)
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

func TestFramingStress(t *testing.T) {
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
	st, err := FramingStress(samples, []float64{1, 1.4, 2}, 0.3, score)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 3 || len(st.Rows) != 3 {
		t.Fatalf("%d score calls, %d rows", calls, len(st.Rows))
	}
	want := []float64{1, 1, 0} // specificity: ×1.4 keeps the normals below 0.3, ×2 flags them all
	var mean float64
	for i, r := range st.Rows {
		if r.Metrics.Sensitivity != 1 || r.Metrics.Specificity != want[i] || r.Metrics.N != 20 {
			t.Errorf("×%v: %v", r.Zoom, r.Metrics)
		}
		mean += r.Metrics.Accuracy / 3
	}
	if math.Abs(st.MeanAccuracy-mean) > 1e-12 || math.Abs(st.MeanAccuracy-(1+1+0.5)/3) > 1e-12 {
		t.Errorf("mean accuracy %v", st.MeanAccuracy)
	}
	if st.String() == "" {
		t.Error("empty summary")
	}
	for _, bad := range [][]float64{nil, {0.9}, {math.NaN()}} {
		if _, err := FramingStress(samples, bad, 0.2, score); !errors.Is(err, ErrEval) {
			t.Errorf("zooms %v: err %v", bad, err)
		}
	}
	failing := func([][]uint8) ([]float32, error) { return nil, errors.ErrUnsupported }
	if _, err := FramingStress(samples, []float64{1}, 0.2, failing); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("scorer error lost: %v", err)
	}
	if _, err := FramingStress(nil, []float64{1}, 0.2, score); !errors.Is(err, ErrEval) {
		t.Errorf("no samples: err %v", err)
	}
}
