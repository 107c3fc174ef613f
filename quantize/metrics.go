package quantize

import (
	"fmt"
	"math"
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
