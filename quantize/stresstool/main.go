// Command stresstool (development only, not committed): validation AUC of float models under
// synthetic acquisition shifts.
package main

import (
	"context"
	"fmt"
	"math"
	"os"

	"github.com/cxr-edge/cxr-edge/edge/imaging"
	"github.com/cxr-edge/cxr-edge/quantize"
)

func main() {
	all, err := quantize.ListSplit("/work/shared/data/chest_xray", "train")
	if err != nil {
		panic(err)
	}
	_, val := quantize.SplitByPatient(all, 0.15, 1)
	labels := make([]uint8, len(val))
	for i, s := range val {
		labels[i] = s.Label
	}
	cache := map[int][][]uint8{}
	for _, path := range os.Args[1:] {
		m, err := quantize.LoadModel(path)
		if err != nil {
			panic(err)
		}
		size := m.Arch.Size
		raw, ok := cache[size]
		if !ok {
			v := append([]quantize.Sample(nil), val...)
			if err := quantize.LoadGrey(context.Background(), v, imaging.ModelInput(size), 2); err != nil {
				panic(err)
			}
			for _, s := range v {
				raw = append(raw, s.Grey)
			}
			cache[size] = raw
		}
		pred, err := m.NewPredictor()
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s (size %d window %v, val threshold %.3f)\n", path, size, m.Arch.Window, m.Threshold)
		var sumAUC, sumAcc float64
		for _, p := range perturbations {
			in := make([][]uint8, len(raw))
			for i, g := range raw {
				c := p.f(append([]uint8(nil), g...), size)
				imaging.Window(c, m.Arch.Window)
				in[i] = c
			}
			sc, err := pred.Predict(in)
			if err != nil {
				panic(err)
			}
			met := quantize.Evaluate(sc, labels, m.Threshold)
			auc := quantize.AUC(sc, labels)
			sumAUC += auc
			sumAcc += met.Accuracy
			fmt.Printf("  %-10s AUC %.4f  @thr acc %.2f%% sens %.2f%% spec %.2f%%\n", p.name, auc, 100*met.Accuracy, 100*met.Sensitivity, 100*met.Specificity)
		}
		n := float64(len(perturbations))
		fmt.Printf("  MEAN       AUC %.4f  acc %.2f%%\n", sumAUC/n, 100*sumAcc/n)
	}
}

type pert struct {
	name string
	f    func([]uint8, int) []uint8
}

func pointwise(f func(float64) float64) func([]uint8, int) []uint8 {
	return func(g []uint8, _ int) []uint8 {
		for i, p := range g {
			g[i] = uint8(math.Round(min(max(f(float64(p)/255), 0), 1) * 255))
		}
		return g
	}
}

var perturbations = []pert{
	{"none", func(g []uint8, _ int) []uint8 { return g }},
	{"gamma0.7", pointwise(func(x float64) float64 { return math.Pow(x, 0.7) })},
	{"gamma1.4", pointwise(func(x float64) float64 { return math.Pow(x, 1.4) })},
	{"washed", pointwise(func(x float64) float64 { return 0.15 + 0.7*x })},
	{"dark", pointwise(func(x float64) float64 { return 0.85 * x })},
	{"margins", func(g []uint8, s int) []uint8 {
		w := s * 8 / 100
		for y := 0; y < s; y++ {
			for x := 0; x < s; x++ {
				if y < w || y >= s-w || x < w || x >= s-w {
					g[y*s+x] = 0
				}
			}
		}
		return g
	}},
	{"crop", func(g []uint8, s int) []uint8 {
		out := make([]uint8, len(g))
		z := 1.12
		c := float64(s-1) / 2
		for y := 0; y < s; y++ {
			for x := 0; x < s; x++ {
				sx, sy := (float64(x)-c)/z+c, (float64(y)-c)/z+c
				x0, y0 := int(sx), int(sy)
				fx, fy := sx-float64(x0), sy-float64(y0)
				x1, y1 := min(x0+1, s-1), min(y0+1, s-1)
				v := (float64(g[y0*s+x0])*(1-fx)+float64(g[y0*s+x1])*fx)*(1-fy) + (float64(g[y1*s+x0])*(1-fx)+float64(g[y1*s+x1])*fx)*fy
				out[y*s+x] = uint8(math.Round(v))
			}
		}
		return out
	}},
	{"blur", func(g []uint8, s int) []uint8 {
		for pass := 0; pass < 2; pass++ {
			t := make([]float64, len(g))
			for y := 0; y < s; y++ {
				for x := 0; x < s; x++ {
					t[y*s+x] = (float64(g[y*s+max(x-1, 0)]) + 2*float64(g[y*s+x]) + float64(g[y*s+min(x+1, s-1)])) / 4
				}
			}
			for y := 0; y < s; y++ {
				for x := 0; x < s; x++ {
					g[y*s+x] = uint8(math.Round((t[max(y-1, 0)*s+x] + 2*t[y*s+x] + t[min(y+1, s-1)*s+x]) / 4))
				}
			}
		}
		return g
	}},
}
