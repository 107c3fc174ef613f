package quantize

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestSplitByBatch(t *testing.T) {
	var all []Sample
	for _, f := range []string{"IM-0001-0001", "IM-0001-0002", "IM-0002-0001", "NORMAL2-IM-0003-0001", "NORMAL2-IM-0004-0001"} {
		all = append(all, Sample{Path: "n" + f, Label: 0, Patient: "NORMAL/" + strings.TrimSuffix(f, f[len(f)-5:])})
	}
	for p := range 40 {
		all = append(all, Sample{Path: "p" + string(rune('A'+p)), Label: 1, Patient: "PNEUMONIA/person" + string(rune('A'+p))})
	}
	train, val := SplitByBatch(all, 0.25, 1)
	if len(train)+len(val) != len(all) {
		t.Fatalf("split lost samples: %d + %d != %d", len(train), len(val), len(all))
	}
	var valNormal, valPneu int
	for _, s := range val {
		switch {
		case s.Label == 1:
			valPneu++
		case !strings.HasPrefix(s.Patient, HoldoutBatch):
			t.Errorf("NORMAL %s of the training batch in validation", s.Path)
		default:
			valNormal++
		}
	}
	for _, s := range train {
		if s.Label == 0 && strings.HasPrefix(s.Patient, HoldoutBatch) {
			t.Errorf("NORMAL %s of the held-out batch in training", s.Path)
		}
	}
	if valNormal != 3 || valPneu != 10 {
		t.Errorf("validation holds %d NORMAL (want the 3 IM-*) and %d PNEUMONIA (want 25%% of 40)", valNormal, valPneu)
	}
}

func TestAugmentGammaBlur(t *testing.T) {
	const size = 16
	grey := make([]uint8, size*size)
	for i := range grey {
		grey[i] = uint8(i * 7 % 256)
	}
	plain, got := make([]float32, size*size), make([]float32, size*size)
	toInput(grey, plain)
	// Blur always, nothing else: the 1-2-1 kernel of a known pixel.
	Augment{Blur: 1}.apply(grey, size, false, rand.New(rand.NewPCG(1, 1)), got)
	at := func(x, y int) float64 {
		x, y = min(max(x, 0), size-1), min(max(y, 0), size-1)
		return float64(plain[y*size+x])
	}
	x, y := 5, 7
	var want float64
	for dy := -1; dy <= 1; dy++ {
		for dx := -1; dx <= 1; dx++ {
			want += at(x+dx, y+dy) * float64((2-abs(dx))*(2-abs(dy))) / 16
		}
	}
	if math.Abs(float64(got[y*size+x])-want) > 0.5/255+1e-6 {
		t.Errorf("blurred pixel %v, want %v", got[y*size+x], want)
	}
	// Gamma keeps 0 and 1 and moves mid-grey; values stay on the 8-bit grid.
	grey[0], grey[1] = 0, 255
	grey[2] = 128
	moved := false
	rng := rand.New(rand.NewPCG(2, 2))
	for range 10 {
		Augment{Gamma: 0.5}.apply(grey, size, false, rng, got)
		if got[0] != 0 || got[1] != 1 {
			t.Fatalf("gamma moved black or white: %v %v", got[0], got[1])
		}
		if got[2] != float32(128)/255 {
			moved = true
		}
		for _, v := range got {
			if v < 0 || v > 1 || float32(math.Round(float64(v)*255))/255 != v {
				t.Fatalf("value %v off the 8-bit grid in [0,1]", v)
			}
		}
	}
	if !moved {
		t.Error("gamma never changed mid-grey")
	}
	bad := DefaultConfig()
	bad.Data, bad.Out = "d", "o"
	for _, aug := range []Augment{{Gamma: 1}, {Gamma: -0.1}, {Blur: 1.5}, {ZoomIn: 2.5}, {Aspect: -0.1}, {Aspect: 3}, {NormalAspect: 0.9}, {PneumoniaAspect: 2.5}} {
		bad.Augment = &aug
		if err := bad.validate(); err == nil {
			t.Errorf("augmentation %+v accepted", aug)
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
