package quantize

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/cxr-edge/cxr-edge/edge/imaging"
)

// Perturbation is one way a film can differ from the training films while showing the same
// lungs. Apply returns a changed copy of a size×size grey plane.
type Perturbation struct {
	Kind  string // "framing" or "exposure": the stress test reports a mean per kind
	Name  string
	Apply func(grey []uint8, size int) []uint8
}

// Magnified is the film magnified by z ≥ 1 about its centre, as if collimated or cropped
// closer to the lungs. In the training split NORMAL films show a wider field than PNEUMONIA
// films; a network that learned that cue flags magnified normals.
func Magnified(z float64) Perturbation {
	return Perturbation{Kind: "framing", Name: fmt.Sprintf("×%.1f", z), Apply: func(g []uint8, size int) []uint8 {
		return Magnify(g, size, z)
	}}
}

// Stretched is the film stretched by a about its centre: down (a > 1, the top and bottom
// cropped) or, for a < 1, across by 1/a (the sides cropped). Every film is squashed to a
// square, so its anatomy is compressed across by its original width/height: in the training
// split a median 1.5 for PNEUMONIA films against 1.2 for NORMAL ones. A network that learned
// that cue calls a normal film from a wider detector pneumonia; a = 1.25 makes a normal
// training film look as compressed as a pneumonia one.
func Stretched(a float64) Perturbation {
	name := fmt.Sprintf("tall ×%.2f", a)
	if a < 1 {
		name = fmt.Sprintf("wide ×%.2f", 1/a)
	}
	zx, zy := stretch(a)
	return Perturbation{Kind: "aspect", Name: name, Apply: func(g []uint8, size int) []uint8 {
		return Warp(g, size, zx, zy)
	}}
}

// stretch is the magnification across and down of a stretch by a: down by a when a > 1,
// across by 1/a otherwise, so one axis is always magnified and no border is invented.
func stretch(a float64) (zx, zy float64) {
	if a > 1 {
		return 1, a
	}
	return 1 / a, 1
}

// Exposed is the film through the grey-level curve x^gamma (gamma < 1 brightens) and then a
// Gaussian blur of sigma pixels (0: none): another detector, exposure or resampling.
func Exposed(gamma, sigma float64) Perturbation {
	name := fmt.Sprintf("γ %.1f", gamma)
	if sigma > 0 {
		name += fmt.Sprintf(", blur σ %.1f", sigma)
	}
	return Perturbation{Kind: "exposure", Name: name, Apply: func(g []uint8, size int) []uint8 {
		return gaussianBlur(gammaCurve(g, gamma), size, sigma)
	}}
}

// StressSuite is the default stress test: magnification ×1.0–1.4 (framing), brighter,
// softer films (exposure) and films stretched down or across by up to 1.4 (aspect).
// Validation drawn from the training split is at its ceiling; these rows show what it cannot.
func StressSuite() []Perturbation {
	return []Perturbation{Magnified(1), Magnified(1.1), Magnified(1.2), Magnified(1.3), Magnified(1.4),
		Exposed(0.8, 0), Exposed(0.6, 0), Exposed(1, 0.7), Exposed(0.7, 0.7),
		Stretched(1.1), Stretched(1.25), Stretched(1.4), Stretched(1 / 1.1), Stretched(1 / 1.25), Stretched(1 / 1.4)}
}

// Renormalized returns the suite with spec's grey-level steps (imaging.Normalize: the window,
// equalization) applied again after each perturbation, as the device applies them to every
// film it receives: a brighter film's plane is windowed and equalized again, not scored as
// the brightened plane. Stress tests of a model run its own input spec's steps.
func Renormalized(suite []Perturbation, spec imaging.InputSpec) []Perturbation {
	out := make([]Perturbation, len(suite))
	for i, p := range suite {
		apply := p.Apply
		p.Apply = func(g []uint8, size int) []uint8 {
			// Clone: a perturbation may hand back its input (blur σ 0), the stored plane.
			x := slices.Clone(apply(g, size))
			imaging.Normalize(x, spec)
			return x
		}
		out[i] = p
	}
	return out
}

// StressRow is the metrics of the perturbed validation films, at a fixed threshold.
type StressRow struct {
	Kind, Name string
	Metrics    Metrics
}

// Stress summarises a stress test.
type Stress struct {
	Rows []StressRow
}

// MeanAccuracy is the accuracy averaged over the rows of kind ("" for all rows); NaN when
// there are no such rows.
func (s Stress) MeanAccuracy(kind string) float64 {
	return s.mean(kind, func(m Metrics) float64 { return m.Accuracy })
}

// MeanBalanced is the balanced accuracy, (sensitivity + specificity) / 2, averaged over the
// rows of kind: the number recipes are compared by. Plain accuracy on validation (three
// quarters pneumonia) rises when a perturbation makes a model flag more films, normals too.
func (s Stress) MeanBalanced(kind string) float64 {
	return s.mean(kind, func(m Metrics) float64 { return (m.Sensitivity + m.Specificity) / 2 })
}

func (s Stress) mean(kind string, f func(Metrics) float64) float64 {
	var sum float64
	n := 0
	for _, r := range s.Rows {
		if kind == "" || r.Kind == kind {
			sum += f(r.Metrics)
			n++
		}
	}
	return sum / float64(n)
}

// Falls is how far the rows of kind fall below the first row (StressSuite's first row is the
// unperturbed films): the largest drop in specificity and in sensitivity, 0 when none falls.
// A model that ignores a perturbation keeps its rows where the first row is (flat); a mean
// over them cannot tell that from one that gains on some rows and loses on others.
func (s Stress) Falls(kind string) (spec, sens float64) {
	if len(s.Rows) == 0 {
		return 0, 0
	}
	ref := s.Rows[0].Metrics
	for _, r := range s.Rows {
		if r.Kind == kind {
			spec = max(spec, ref.Specificity-r.Metrics.Specificity)
			sens = max(sens, ref.Sensitivity-r.Metrics.Sensitivity)
		}
	}
	return spec, sens
}

// Kinds lists the kinds of the rows in order of first appearance.
func (s Stress) Kinds() []string {
	var kinds []string
	for _, r := range s.Rows {
		if !slices.Contains(kinds, r.Kind) {
			kinds = append(kinds, r.Kind)
		}
	}
	return kinds
}

func (s Stress) String() string {
	var b strings.Builder
	for _, r := range s.Rows {
		fmt.Fprintf(&b, "%s: acc %.1f%% sens %.1f%% spec %.1f%%; ", r.Name, 100*r.Metrics.Accuracy,
			100*r.Metrics.Sensitivity, 100*r.Metrics.Specificity)
	}
	fmt.Fprintf(&b, "mean balanced accuracy %.2f%% (%s), mean accuracy %.2f%%; %s", 100*s.MeanBalanced(""),
		s.KindMeans(), 100*s.MeanAccuracy(""), s.KindFalls())
	return b.String()
}

// KindFalls is Falls for each kind, "largest fall below the first row, in points: framing
// specificity 2.4 sensitivity 0.2, …".
func (s Stress) KindFalls() string {
	return "largest fall below the first row, in points: " + s.perKind(func(k string) string {
		spec, sens := s.Falls(k)
		return fmt.Sprintf("%s specificity %.1f sensitivity %.1f", k, 100*spec, 100*sens)
	})
}

// KindMeans is the mean balanced accuracy of each kind of row, "framing 92.16%, exposure …".
func (s Stress) KindMeans() string {
	return s.perKind(func(k string) string { return fmt.Sprintf("%s %.2f%%", k, 100*s.MeanBalanced(k)) })
}

// perKind joins f of each kind with commas.
func (s Stress) perKind(f func(kind string) string) string {
	var parts []string
	for _, k := range s.Kinds() {
		parts = append(parts, f(k))
	}
	return strings.Join(parts, ", ")
}

// Magnify returns the size×size grey image magnified by z about its centre (bilinear); z < 1
// shrinks it with the edges repeated, and z ≤ 0 or NaN returns an unchanged copy.
func Magnify(grey []uint8, size int, z float64) []uint8 {
	return Warp(grey, size, z, z)
}

// Warp returns the size×size grey image scaled about its centre by zx across and zy down
// (bilinear, edges repeated); a factor ≤ 0 or NaN leaves that axis unscaled.
func Warp(grey []uint8, size int, zx, zy float64) []uint8 {
	if !(zx > 0) {
		zx = 1
	}
	if !(zy > 0) {
		zy = 1
	}
	out := make([]uint8, size*size)
	c := float64(size-1) / 2
	last := size - 1
	at := func(v, z float64) float64 { return min(max((v-c)/z+c, 0), float64(last)) }
	for y := range size {
		sy := at(float64(y), zy)
		y0 := int(sy)
		y1, fy := min(y0+1, last), sy-float64(y0)
		for x := range size {
			sx := at(float64(x), zx)
			x0 := int(sx)
			x1, fx := min(x0+1, last), sx-float64(x0)
			top := float64(grey[y0*size+x0])*(1-fx) + float64(grey[y0*size+x1])*fx
			bot := float64(grey[y1*size+x0])*(1-fx) + float64(grey[y1*size+x1])*fx
			out[y*size+x] = uint8(math.Round(top*(1-fy) + bot*fy))
		}
	}
	return out
}

// gammaCurve maps every grey level p to 255·(p/255)^gamma.
func gammaCurve(grey []uint8, gamma float64) []uint8 {
	var lut [256]uint8
	for p := range lut {
		lut[p] = uint8(math.Round(255 * math.Pow(float64(p)/255, gamma)))
	}
	out := make([]uint8, len(grey))
	for i, p := range grey {
		out[i] = lut[p]
	}
	return out
}

// gaussianBlur blurs the size×size image with a separable Gaussian of sigma pixels (edges
// repeated); sigma ≤ 0 returns grey unchanged.
func gaussianBlur(grey []uint8, size int, sigma float64) []uint8 {
	if sigma <= 0 {
		return grey
	}
	r := int(math.Ceil(3 * sigma))
	k := make([]float64, 2*r+1)
	var sum float64
	for i := range k {
		d := float64(i - r)
		k[i] = math.Exp(-d * d / (2 * sigma * sigma))
		sum += k[i]
	}
	for i := range k {
		k[i] /= sum
	}
	last := size - 1
	tmp := make([]float64, size*size)
	for y := range size {
		for x := range size {
			var v float64
			for i, w := range k {
				v += w * float64(grey[y*size+min(max(x+i-r, 0), last)])
			}
			tmp[y*size+x] = v
		}
	}
	out := make([]uint8, size*size)
	for y := range size {
		for x := range size {
			var v float64
			for i, w := range k {
				v += w * tmp[min(max(y+i-r, 0), last)*size+x]
			}
			out[y*size+x] = uint8(math.Round(min(max(v, 0), 255)))
		}
	}
	return out
}

// RunStress scores the samples (grey planes loaded, square) under each perturbation with
// score and reports the metrics at threshold.
func RunStress(samples []Sample, suite []Perturbation, threshold float32, score func([][]uint8) ([]float32, error)) (Stress, error) {
	if len(samples) == 0 || len(suite) == 0 {
		return Stress{}, fmt.Errorf("%w: a stress test needs samples and perturbations", ErrEval)
	}
	size := int(math.Sqrt(float64(len(samples[0].Grey))))
	labels := labelsOf(samples)
	var st Stress
	for _, p := range suite {
		grey := make([][]uint8, len(samples))
		for i, s := range samples {
			if len(s.Grey) != size*size {
				return Stress{}, fmt.Errorf("%w: %s is not a %d×%d plane", ErrEval, s.Path, size, size)
			}
			grey[i] = p.Apply(s.Grey, size)
		}
		scores, err := score(grey)
		if err != nil {
			return Stress{}, err
		}
		st.Rows = append(st.Rows, StressRow{Kind: p.Kind, Name: p.Name, Metrics: Evaluate(scores, labels, threshold)})
	}
	return st, nil
}

// StressConfig says which model to stress on which validation split.
type StressConfig struct {
	Data        string         // dataset root
	Model       string         // int8 .tflite with its threshold in the metadata
	SplitSeed   uint64         // the validation split of the model's training (default 1)
	ValFraction float64        // default 0.15
	Suite       []Perturbation // default StressSuite()
	Workers     int            // decoding and scoring goroutines (default GOMAXPROCS)
}

// StressModel runs the stress test of a .tflite model on the validation split it was
// trained with (the patient split of SplitSeed plus the official val images), at the threshold
// stored in the model.
func StressModel(ctx context.Context, cfg StressConfig) (Stress, error) {
	validationDefaults(&cfg.SplitSeed, &cfg.ValFraction, &cfg.Workers)
	if len(cfg.Suite) == 0 {
		cfg.Suite = StressSuite()
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
	return RunStress(val, Renormalized(cfg.Suite, c.spec), c.threshold, func(g [][]uint8) ([]float32, error) {
		return ScoreTFLite(ctx, data, g, cfg.Workers)
	})
}
