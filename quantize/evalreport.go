package quantize

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Markdown writes the report as a Markdown section: the metrics with their 95% intervals, the
// confusion matrix, int8-vs-float agreement and whether the release bars are met.
func (r *EvalReport) Markdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "## Evaluation of %s\n\n", r.Model)
	fmt.Fprintf(&b, "- model: %d bytes, sha256 `%s`\n", r.ModelBytes, r.ModelSHA256)
	fmt.Fprintf(&b, "- operating threshold: %.6g (%s)\n", r.Int8.Threshold, r.ThresholdSource)
	fmt.Fprintf(&b, "- images: %d (%d PNEUMONIA, %d NORMAL)\n", r.Images, r.Positives, r.Images-r.Positives)
	fmt.Fprintf(&b, "- 95%% intervals: %d stratified bootstrap resamples, seed %d\n\n", r.Bootstrap, r.Seed)

	fmt.Fprintf(&b, "| metric | int8 (engine, device preprocessing) |")
	if r.Float != nil {
		fmt.Fprintf(&b, " float (threshold %.4g) |", r.Float.Threshold)
	}
	fmt.Fprintf(&b, " bar |\n|---|---|")
	if r.Float != nil {
		b.WriteString("---|")
	}
	b.WriteString("---|\n")
	row := func(name string, f func(ModelEval) Interval, pct bool, bar string) {
		fmtIv := func(iv Interval) string {
			if pct {
				return iv.Percent()
			}
			return fmt.Sprintf("%.3f [%.3f–%.3f]", iv.Value, iv.Lo, iv.Hi)
		}
		fmt.Fprintf(&b, "| %s | %s |", name, fmtIv(f(r.Int8)))
		if r.Float != nil {
			fmt.Fprintf(&b, " %s |", fmtIv(f(*r.Float)))
		}
		fmt.Fprintf(&b, " %s |\n", bar)
	}
	mark := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**not met**"
	}
	row("AUC", func(m ModelEval) Interval { return m.AUC }, false, fmt.Sprintf("≥ %.2f: %s", BarAUC, mark(r.Int8.AUC.Value >= BarAUC)))
	row("accuracy", func(m ModelEval) Interval { return m.Accuracy }, true, fmt.Sprintf("≥ %.0f%%: %s", 100*BarAccuracy, mark(r.Int8.Accuracy.Value >= BarAccuracy)))
	row("sensitivity", func(m ModelEval) Interval { return m.Sensitivity }, true, fmt.Sprintf("≥ %.0f%%: %s", 100*BarSensitivity, mark(r.Int8.Sensitivity.Value >= BarSensitivity)))
	row("specificity", func(m ModelEval) Interval { return m.Specificity }, true, "")
	row("precision (PPV)", func(m ModelEval) Interval { return m.Precision }, true, "")
	fmt.Fprintf(&b, "| calibration error (ECE, 10 bins) | %.3f |", r.Int8.ECE)
	if r.Float != nil {
		fmt.Fprintf(&b, " %.3f |", r.Float.ECE)
	}
	b.WriteString(" |\n\n")

	c := r.Int8.Confusion
	fmt.Fprintf(&b, "Confusion matrix, int8 at %.4g:\n\n", r.Int8.Threshold)
	b.WriteString("| truth \\ called | PNEUMONIA | NORMAL |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| PNEUMONIA | %d (TP) | %d (FN) |\n| NORMAL | %d (FP) | %d (TN) |\n\n", c.TP, c.FN, c.FP, c.TN)
	if g := r.Agreement; g != nil {
		fmt.Fprintf(&b, "int8 vs float: same call on %.1f%% of images (%d differ, Cohen's κ %.3f); |p_int8 − p_float| mean %.4f, max %.4f.\n\n",
			100*g.SameCall, g.Disagree, g.Kappa, g.MeanAbsDiff, g.MaxAbsDiff)
	}
	verdict := "are **not all met**"
	if r.BarsMet {
		verdict = "are met"
	}
	fmt.Fprintf(&b, "The release bars (AUC ≥ %.2f, accuracy ≥ %.0f%%, sensitivity ≥ %.0f%%, set for the official test split) %s on these images.\n",
		BarAUC, 100*BarAccuracy, 100*BarSensitivity, verdict)
	_, err := io.WriteString(w, b.String())
	return err
}

// JSON writes the report's numbers as indented JSON (the per-image scores are left out; see
// WriteScoresCSV).
func (r *EvalReport) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteScoresCSV writes one row per image: file, truth, score, predicted (and float_score when a
// float model was evaluated), for error analysis.
func (r *EvalReport) WriteScoresCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	head := []string{"file", "truth", "score", "predicted"}
	if r.Float != nil {
		head = append(head, "float_score")
	}
	if err := cw.Write(head); err != nil {
		return err
	}
	for _, s := range r.Scores {
		pred := uint8(0)
		if s.Score >= r.Int8.Threshold {
			pred = 1
		}
		rec := []string{s.File, Classes[s.Label], strconv.FormatFloat(float64(s.Score), 'f', 6, 32), Classes[pred]}
		if r.Float != nil && !math.IsNaN(float64(s.FloatScore)) {
			rec = append(rec, strconv.FormatFloat(float64(s.FloatScore), 'f', 6, 32))
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
