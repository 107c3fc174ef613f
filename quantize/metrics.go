package quantize

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// Metrics summarise binary predictions (label 1 = pneumonia, the positive class).
type Metrics struct {
	N, Positives int
	AUC          float64
	Threshold    float32 // a score ≥ Threshold is called pneumonia
	Accuracy     float64
	Sensitivity  float64 // true positive rate
	Specificity  float64 // true negative rate
	Loss         float64 // mean (class-weighted) cross-entropy, when computed
}

func (m Metrics) String() string {
	return fmt.Sprintf("AUC %.4f acc %.2f%% sens %.2f%% spec %.2f%% @%.3f (n=%d, %d pos)",
		m.AUC, 100*m.Accuracy, 100*m.Sensitivity, 100*m.Specificity, m.Threshold, m.N, m.Positives)
}

// Evaluate computes the metrics of scores against labels at threshold.
func Evaluate(scores []float32, labels []uint8, threshold float32) Metrics {
	m := Metrics{N: len(scores), Threshold: threshold, AUC: AUC(scores, labels)}
	var tp, tn, neg int
	for i, s := range scores {
		pos := labels[i] == 1
		if pos {
			m.Positives++
		} else {
			neg++
		}
		switch {
		case pos && s >= threshold:
			tp++
		case !pos && s < threshold:
			tn++
		}
	}
	if m.N > 0 {
		m.Accuracy = float64(tp+tn) / float64(m.N)
	}
	if m.Positives > 0 {
		m.Sensitivity = float64(tp) / float64(m.Positives)
	}
	if neg > 0 {
		m.Specificity = float64(tn) / float64(neg)
	}
	return m
}

// AUC is the area under the ROC curve: the probability that a random positive scores above a
// random negative, ties counting one half (Mann–Whitney U with mid-ranks). NaN without both
// classes.
func AUC(scores []float32, labels []uint8) float64 {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return scores[idx[a]] < scores[idx[b]] })
	var rankSum float64
	var pos int
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && scores[idx[j]] == scores[idx[i]] {
			j++
		}
		mid := float64(i+j+1) / 2 // mean of ranks i+1..j
		for k := i; k < j; k++ {
			if labels[idx[k]] == 1 {
				rankSum += mid
				pos++
			}
		}
		i = j
	}
	neg := len(scores) - pos
	if pos == 0 || neg == 0 {
		return math.NaN()
	}
	return (rankSum - float64(pos)*float64(pos+1)/2) / (float64(pos) * float64(neg))
}

// ThresholdForSensitivity returns the highest threshold at which at least the fraction sens of
// the positives score ≥ threshold (so specificity is as high as that sensitivity allows).
func ThresholdForSensitivity(scores []float32, labels []uint8, sens float64) float32 {
	var ps []float32
	for i, s := range scores {
		if labels[i] == 1 {
			ps = append(ps, s)
		}
	}
	if len(ps) == 0 {
		return 0.5
	}
	sort.Slice(ps, func(a, b int) bool { return ps[a] > ps[b] })
	k := int(math.Ceil(sens*float64(len(ps)) - 1e-9))
	k = min(max(k, 1), len(ps))
	return ps[k-1]
}

// WilsonInterval is the 95% Wilson score interval of a proportion k/n.
func WilsonInterval(k, n int) (lo, hi float64) {
	if n == 0 {
		return 0, 1
	}
	const z = 1.959964
	p := float64(k) / float64(n)
	d := 1 + z*z/float64(n)
	c := (p + z*z/(2*float64(n))) / d
	h := z * math.Sqrt(p*(1-p)/float64(n)+z*z/(4*float64(n)*float64(n))) / d
	return c - h, c + h
}

// Confusion counts binary predictions at a threshold (positive = pneumonia).
type Confusion struct {
	TP, FN, TN, FP int
}

// Count returns the confusion matrix of scores against labels at threshold (score ≥ threshold
// is called pneumonia).
func Count(scores []float32, labels []uint8, threshold float32) Confusion {
	var c Confusion
	for i, s := range scores {
		switch pos, call := labels[i] == 1, s >= threshold; {
		case pos && call:
			c.TP++
		case pos:
			c.FN++
		case call:
			c.FP++
		default:
			c.TN++
		}
	}
	return c
}

// Interval is a point estimate with its 95% confidence interval.
type Interval struct {
	Value float64 `json:"value"`
	Lo    float64 `json:"lo"`
	Hi    float64 `json:"hi"`
}

func (iv Interval) String() string { return fmt.Sprintf("%.4f [%.4f–%.4f]", iv.Value, iv.Lo, iv.Hi) }

// Percent formats the interval as percentages with one decimal.
func (iv Interval) Percent() string {
	return fmt.Sprintf("%.1f%% [%.1f–%.1f]", 100*iv.Value, 100*iv.Lo, 100*iv.Hi)
}

// BootstrapCI holds the 95% bootstrap intervals of the threshold metrics and the AUC.
type BootstrapCI struct {
	AUC, Accuracy, Sensitivity, Specificity, Precision Interval
}

// Bootstrap computes the metrics of scores against labels at threshold with 95% percentile
// bootstrap intervals from n resamples (seeded, so a report is reproducible). Resampling is
// stratified by class: the test split's class counts are fixed by design, so every resample
// keeps them, and sensitivity and specificity are always defined.
func Bootstrap(scores []float32, labels []uint8, threshold float32, n int, seed uint64) BootstrapCI {
	point := Evaluate(scores, labels, threshold)
	c := Count(scores, labels, threshold)
	ci := BootstrapCI{
		AUC: Interval{Value: point.AUC}, Accuracy: Interval{Value: point.Accuracy},
		Sensitivity: Interval{Value: point.Sensitivity}, Specificity: Interval{Value: point.Specificity},
		Precision: Interval{Value: precision(c)},
	}
	var byClass [2][]int
	for i, l := range labels {
		byClass[min(l, 1)] = append(byClass[min(l, 1)], i)
	}
	if n <= 0 || len(scores) == 0 {
		for _, iv := range []*Interval{&ci.AUC, &ci.Accuracy, &ci.Sensitivity, &ci.Specificity, &ci.Precision} {
			iv.Lo, iv.Hi = iv.Value, iv.Value
		}
		return ci
	}
	rng := rand.New(rand.NewPCG(seed, 0xb007))
	rs := make([]float32, len(scores))
	rl := make([]uint8, len(scores))
	var auc, acc, sens, spec, prec []float64
	for range n {
		k := 0
		for label, idx := range byClass {
			for range idx {
				j := idx[rng.IntN(len(idx))]
				rs[k], rl[k] = scores[j], uint8(label)
				k++
			}
		}
		m := Evaluate(rs, rl, threshold)
		if !math.IsNaN(m.AUC) {
			auc = append(auc, m.AUC)
		}
		acc, sens, spec = append(acc, m.Accuracy), append(sens, m.Sensitivity), append(spec, m.Specificity)
		prec = append(prec, precision(Count(rs, rl, threshold)))
	}
	for _, p := range []struct {
		iv *Interval
		v  []float64
	}{{&ci.AUC, auc}, {&ci.Accuracy, acc}, {&ci.Sensitivity, sens}, {&ci.Specificity, spec}, {&ci.Precision, prec}} {
		p.iv.Lo, p.iv.Hi = percentile(p.v, 0.025), percentile(p.v, 0.975)
		if math.IsNaN(p.iv.Value) {
			p.iv.Lo, p.iv.Hi = math.NaN(), math.NaN()
		}
	}
	return ci
}

func precision(c Confusion) float64 {
	if c.TP+c.FP == 0 {
		return 0
	}
	return float64(c.TP) / float64(c.TP+c.FP)
}

// percentile of v (sorted in place) at fraction q, linearly interpolated; NaN if v is empty.
func percentile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	sort.Float64s(v)
	pos := q * float64(len(v)-1)
	i := int(pos)
	if i+1 >= len(v) {
		return v[len(v)-1]
	}
	f := pos - float64(i)
	return v[i]*(1-f) + v[i+1]*f
}

// CurvePoint is one point of a ROC (X = 1 − specificity, Y = sensitivity) or precision-recall
// (X = recall, Y = precision) curve, reached with threshold Threshold.
type CurvePoint struct {
	X, Y      float64
	Threshold float32
}

// rocSweep calls f with the confusion counts at every distinct score used as threshold, from
// the highest (fewest positive calls) down.
func rocSweep(scores []float32, labels []uint8, f func(th float32, tp, fp, pos, neg int)) {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return scores[idx[a]] > scores[idx[b]] })
	var pos, neg int
	for _, l := range labels {
		if l == 1 {
			pos++
		} else {
			neg++
		}
	}
	tp, fp := 0, 0
	for i := 0; i < len(idx); {
		th := scores[idx[i]]
		for ; i < len(idx) && scores[idx[i]] == th; i++ {
			if labels[idx[i]] == 1 {
				tp++
			} else {
				fp++
			}
		}
		f(th, tp, fp, pos, neg)
	}
}

// ROC returns the ROC curve from (0,0) to (1,1), one point per distinct score.
func ROC(scores []float32, labels []uint8) []CurvePoint {
	pts := []CurvePoint{{X: 0, Y: 0, Threshold: float32(math.Inf(1))}}
	rocSweep(scores, labels, func(th float32, tp, fp, pos, neg int) {
		pts = append(pts, CurvePoint{X: ratio(fp, neg), Y: ratio(tp, pos), Threshold: th})
	})
	return pts
}

// PR returns the precision-recall curve, one point per distinct score, from the highest
// threshold down.
func PR(scores []float32, labels []uint8) []CurvePoint {
	var pts []CurvePoint
	rocSweep(scores, labels, func(th float32, tp, fp, pos, _ int) {
		pts = append(pts, CurvePoint{X: ratio(tp, pos), Y: ratio(tp, tp+fp), Threshold: th})
	})
	return pts
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// CalibrationBin is one bin of a reliability diagram: images whose score falls in [Lo, Hi),
// their mean score and the fraction of them that truly have pneumonia.
type CalibrationBin struct {
	Lo, Hi    float64
	N         int
	MeanScore float64
	Positive  float64
}

// Calibration bins the scores into bins equal-width bins over [0, 1] (the last one closed).
func Calibration(scores []float32, labels []uint8, bins int) []CalibrationBin {
	bins = max(bins, 1)
	out := make([]CalibrationBin, bins)
	for b := range out {
		out[b].Lo, out[b].Hi = float64(b)/float64(bins), float64(b+1)/float64(bins)
	}
	for i, s := range scores {
		b := min(max(int(float64(s)*float64(bins)), 0), bins-1)
		out[b].N++
		out[b].MeanScore += float64(s)
		out[b].Positive += float64(labels[i])
	}
	for b := range out {
		if out[b].N > 0 {
			out[b].MeanScore /= float64(out[b].N)
			out[b].Positive /= float64(out[b].N)
		}
	}
	return out
}

// ExpectedCalibrationError is the N-weighted mean |Positive − MeanScore| over the bins.
func ExpectedCalibrationError(bins []CalibrationBin) float64 {
	var e float64
	var n int
	for _, b := range bins {
		e += float64(b.N) * math.Abs(b.Positive-b.MeanScore)
		n += b.N
	}
	if n == 0 {
		return 0
	}
	return e / float64(n)
}

// Agreement compares two models' scores on the same images, each at its own threshold.
type Agreement struct {
	SameCall    float64 `json:"same_call"`     // fraction of images both call the same class
	Disagree    int     `json:"disagree"`      // images called differently
	Kappa       float64 `json:"kappa"`         // Cohen's kappa of the two calls
	MeanAbsDiff float64 `json:"mean_abs_diff"` // mean |score a − score b|
	MaxAbsDiff  float64 `json:"max_abs_diff"`
}

// Agree compares scores a (at threshold ta) with scores b (at tb).
func Agree(a, b []float32, ta, tb float32) Agreement {
	var g Agreement
	n := len(a)
	if n == 0 || len(b) != n {
		return g
	}
	var aPos, bPos int
	for i := range a {
		ca, cb := a[i] >= ta, b[i] >= tb
		if ca != cb {
			g.Disagree++
		}
		if ca {
			aPos++
		}
		if cb {
			bPos++
		}
		d := math.Abs(float64(a[i]) - float64(b[i]))
		g.MeanAbsDiff += d
		g.MaxAbsDiff = max(g.MaxAbsDiff, d)
	}
	g.MeanAbsDiff /= float64(n)
	po := 1 - float64(g.Disagree)/float64(n)
	g.SameCall = po
	pa, pb := float64(aPos)/float64(n), float64(bPos)/float64(n)
	pe := pa*pb + (1-pa)*(1-pb)
	if pe < 1 {
		g.Kappa = (po - pe) / (1 - pe)
	} else {
		g.Kappa = 1
	}
	return g
}
