package quantize

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/cxr-edge/cxr-edge/edge/imaging"
)

// StressZooms are the magnifications of the framing stress test: validation films magnified
// about their centre, as if the film had been collimated or cropped closer to the lungs. In
// the training split NORMAL films show a wider field than PNEUMONIA films; a network that
// learned that cue flags magnified normals, and the official test split's normals are framed
// closer than the training split's (MODEL.md).
func StressZooms() []float64 { return []float64{1, 1.1, 1.2, 1.3, 1.4} }

// StressRow is the metrics of the validation films magnified by Zoom, at a fixed threshold.
type StressRow struct {
	Zoom    float64
	Metrics Metrics
}

// Stress summarises a framing stress test.
type Stress struct {
	Rows []StressRow
	// MeanAccuracy is the accuracy averaged over the rows: the number recipes are compared by.
	MeanAccuracy float64
}

func (s Stress) String() string {
	var b strings.Builder
	for _, r := range s.Rows {
		fmt.Fprintf(&b, "×%.1f: acc %.1f%% sens %.1f%% spec %.1f%%; ", r.Zoom, 100*r.Metrics.Accuracy,
			100*r.Metrics.Sensitivity, 100*r.Metrics.Specificity)
	}
	fmt.Fprintf(&b, "mean accuracy %.2f%%", 100*s.MeanAccuracy)
	return b.String()
}

// Magnify returns the size×size grey image magnified by z ≥ 1 about its centre (bilinear).
func Magnify(grey []uint8, size int, z float64) []uint8 {
	out := make([]uint8, size*size)
	c := float64(size-1) / 2
	last := size - 1
	for y := range size {
		sy := (float64(y)-c)/z + c
		y0 := int(sy)
		y1, fy := min(y0+1, last), sy-float64(y0)
		for x := range size {
			sx := (float64(x)-c)/z + c
			x0 := int(sx)
			x1, fx := min(x0+1, last), sx-float64(x0)
			top := float64(grey[y0*size+x0])*(1-fx) + float64(grey[y0*size+x1])*fx
			bot := float64(grey[y1*size+x0])*(1-fx) + float64(grey[y1*size+x1])*fx
			out[y*size+x] = uint8(math.Round(top*(1-fy) + bot*fy))
		}
	}
	return out
}

// FramingStress scores the samples (grey planes loaded, square) magnified by each zoom with
// score and reports the metrics at threshold.
func FramingStress(samples []Sample, zooms []float64, threshold float32, score func([][]uint8) ([]float32, error)) (Stress, error) {
	if len(samples) == 0 || len(zooms) == 0 {
		return Stress{}, fmt.Errorf("%w: framing stress needs samples and zooms", ErrEval)
	}
	size := int(math.Sqrt(float64(len(samples[0].Grey))))
	labels := labelsOf(samples)
	var st Stress
	for _, z := range zooms {
		if z < 1 || math.IsNaN(z) {
			return Stress{}, fmt.Errorf("%w: zoom %v (want ≥ 1)", ErrEval, z)
		}
		grey := make([][]uint8, len(samples))
		for i, s := range samples {
			if len(s.Grey) != size*size {
				return Stress{}, fmt.Errorf("%w: %s is not a %d×%d plane", ErrEval, s.Path, size, size)
			}
			grey[i] = Magnify(s.Grey, size, z)
		}
		scores, err := score(grey)
		if err != nil {
			return Stress{}, err
		}
		m := Evaluate(scores, labels, threshold)
		st.Rows = append(st.Rows, StressRow{Zoom: z, Metrics: m})
		st.MeanAccuracy += m.Accuracy / float64(len(zooms))
	}
	return st, nil
}

// StressConfig says which model to stress on which validation split.
type StressConfig struct {
	Data        string  // dataset root
	Model       string  // int8 .tflite with its threshold in the metadata
	SplitSeed   uint64  // the validation split of the model's training (default 1)
	ValFraction float64 // default 0.15
	Zooms       []float64
	Workers     int
}

// StressModel runs the framing stress test of a .tflite model on the validation split it was
// trained with (the patient split of SplitSeed plus the official val images), at the threshold
// stored in the model.
func StressModel(ctx context.Context, cfg StressConfig) (Stress, error) {
	if cfg.SplitSeed == 0 {
		cfg.SplitSeed = 1
	}
	if cfg.ValFraction == 0 {
		cfg.ValFraction = 0.15
	}
	if len(cfg.Zooms) == 0 {
		cfg.Zooms = StressZooms()
	}
	data, err := os.ReadFile(cfg.Model)
	if err != nil {
		return Stress{}, err
	}
	c, err := loadClassifier(data)
	if err != nil {
		return Stress{}, fmt.Errorf("%s: %w", cfg.Model, err)
	}
	if !c.hasThreshold {
		return Stress{}, fmt.Errorf("%w: %s has no %s in its metadata", ErrEval, cfg.Model, imaging.ThresholdMetadata)
	}
	_, val, err := trainValSplit(cfg.Data, cfg.ValFraction, cfg.SplitSeed, false)
	if err != nil {
		return Stress{}, err
	}
	if err := LoadGrey(ctx, val, c.spec, cfg.Workers); err != nil {
		return Stress{}, err
	}
	return FramingStress(val, cfg.Zooms, c.threshold, func(g [][]uint8) ([]float32, error) {
		return ScoreTFLite(ctx, data, g, cfg.Workers)
	})
}
