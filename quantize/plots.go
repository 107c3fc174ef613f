package quantize

import (
	"fmt"
	"image/color"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Plot file names written by WritePlots.
const (
	ROCPlot         = "roc.png"
	PRPlot          = "pr.png"
	CalibrationPlot = "calibration.png"
	ConfusionPlot   = "confusion.png"
)

var (
	int8Colour  = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	floatColour = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
	greyColour  = color.Gray{Y: 0x99}
)

// plotSize keeps the committed model-card images small.
const plotSize = 4 * vg.Inch

// WritePlots writes the ROC, precision-recall, calibration and confusion-matrix plots of the
// report as PNG files into dir and returns their paths.
func (r *EvalReport) WritePlots(dir string) ([]string, error) {
	labels := make([]uint8, len(r.Scores))
	s8 := make([]float32, len(r.Scores))
	var sf []float32
	if r.Float != nil {
		sf = make([]float32, len(r.Scores))
	}
	for i, s := range r.Scores {
		labels[i], s8[i] = s.Label, s.Score
		if sf != nil {
			sf[i] = s.FloatScore
		}
	}
	type curveSet struct {
		name   string
		scores []float32
		th     float32
		col    color.Color
	}
	sets := []curveSet{{"int8", s8, r.Int8.Threshold, int8Colour}}
	if sf != nil {
		sets = append(sets, curveSet{"float", sf, r.Float.Threshold, floatColour})
	}
	var paths []string
	save := func(p *plot.Plot, name string) error {
		path := filepath.Join(dir, name)
		if err := p.Save(plotSize, plotSize, path); err != nil {
			return fmt.Errorf("quantize: plot %s: %w", name, err)
		}
		paths = append(paths, path)
		return nil
	}

	// ROC with the operating point marked.
	p := newPlot(fmt.Sprintf("ROC (n=%d)", r.Images), "1 − specificity", "sensitivity")
	addDiagonal(p)
	for _, s := range sets {
		if err := addCurve(p, fmt.Sprintf("%s AUC %.3f", s.name, AUC(s.scores, labels)), ROC(s.scores, labels), s.col); err != nil {
			return nil, err
		}
		m := Evaluate(s.scores, labels, s.th)
		if err := addPoint(p, 1-m.Specificity, m.Sensitivity, s.col); err != nil {
			return nil, err
		}
	}
	if err := save(p, ROCPlot); err != nil {
		return nil, err
	}

	// Precision-recall with the prevalence as the no-skill line.
	p = newPlot("Precision-recall", "recall (sensitivity)", "precision (PPV)")
	prev := float64(r.Positives) / float64(max(r.Images, 1))
	base, err := plotter.NewLine(plotter.XYs{{X: 0, Y: prev}, {X: 1, Y: prev}})
	if err != nil {
		return nil, err
	}
	base.Color, base.Dashes = greyColour, []vg.Length{vg.Points(3), vg.Points(3)}
	p.Add(base)
	for _, s := range sets {
		if err := addCurve(p, s.name, PR(s.scores, labels), s.col); err != nil {
			return nil, err
		}
		c := Count(s.scores, labels, s.th)
		if err := addPoint(p, ratio(c.TP, c.TP+c.FN), ratio(c.TP, c.TP+c.FP), s.col); err != nil {
			return nil, err
		}
	}
	p.Y.Min = 0
	if err := save(p, PRPlot); err != nil {
		return nil, err
	}

	// Reliability diagram.
	p = newPlot("Calibration (10 bins)", "mean predicted probability", "fraction with pneumonia")
	addDiagonal(p)
	for _, s := range sets {
		var xy plotter.XYs
		for _, b := range Calibration(s.scores, labels, 10) {
			if b.N > 0 {
				xy = append(xy, plotter.XY{X: b.MeanScore, Y: b.Positive})
			}
		}
		lp, pts, err := plotter.NewLinePoints(xy)
		if err != nil {
			return nil, err
		}
		lp.Color, pts.Color, pts.Shape = s.col, s.col, draw.CircleGlyph{}
		p.Add(lp, pts)
		p.Legend.Add(fmt.Sprintf("%s ECE %.3f", s.name, ExpectedCalibrationError(Calibration(s.scores, labels, 10))), lp, pts)
	}
	if err := save(p, CalibrationPlot); err != nil {
		return nil, err
	}

	p, err = confusionPlot(r.Int8.Confusion, r.Int8.Threshold)
	if err != nil {
		return nil, err
	}
	if err := save(p, ConfusionPlot); err != nil {
		return nil, err
	}
	return paths, nil
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, x, y
	p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = 0, 1, 0, 1
	p.Add(plotter.NewGrid())
	p.Legend.Top = false
	p.Legend.Left = false
	return p
}

func addDiagonal(p *plot.Plot) {
	d, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: 1, Y: 1}})
	if err != nil {
		return // two finite points cannot fail
	}
	d.Color, d.Dashes = greyColour, []vg.Length{vg.Points(3), vg.Points(3)}
	p.Add(d)
}

func addCurve(p *plot.Plot, name string, pts []CurvePoint, col color.Color) error {
	xy := make(plotter.XYs, len(pts))
	for i, c := range pts {
		xy[i] = plotter.XY{X: c.X, Y: c.Y}
	}
	l, err := plotter.NewLine(xy)
	if err != nil {
		return fmt.Errorf("quantize: plot: %w", err)
	}
	l.Color, l.Width = col, vg.Points(1.5)
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

// addPoint marks the operating point.
func addPoint(p *plot.Plot, x, y float64, col color.Color) error {
	s, err := plotter.NewScatter(plotter.XYs{{X: x, Y: y}})
	if err != nil {
		return fmt.Errorf("quantize: plot: %w", err)
	}
	s.Color, s.Shape, s.Radius = col, draw.CircleGlyph{}, vg.Points(4)
	p.Add(s)
	return nil
}

// confusionPlot draws the 2×2 matrix (rows truth, columns call), each cell shaded by its share
// of its row.
func confusionPlot(c Confusion, th float32) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Confusion matrix at %.3f", th)
	p.X.Label.Text, p.Y.Label.Text = "called", "truth"
	p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = 0, 2, 0, 2
	p.X.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: 0.5, Label: "PNEUMONIA"}, {Value: 1.5, Label: "NORMAL"}})
	p.Y.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: 1.5, Label: "PNEUMONIA"}, {Value: 0.5, Label: "NORMAL"}})
	cells := []struct {
		x, y float64
		n    int
		row  int
		name string
	}{
		{0, 1, c.TP, c.TP + c.FN, "TP"}, {1, 1, c.FN, c.TP + c.FN, "FN"},
		{0, 0, c.FP, c.FP + c.TN, "FP"}, {1, 0, c.TN, c.FP + c.TN, "TN"},
	}
	var lab plotter.XYLabels
	for _, cell := range cells {
		sq, err := plotter.NewPolygon(plotter.XYs{{X: cell.x, Y: cell.y}, {X: cell.x + 1, Y: cell.y}, {X: cell.x + 1, Y: cell.y + 1}, {X: cell.x, Y: cell.y + 1}})
		if err != nil {
			return nil, fmt.Errorf("quantize: plot: %w", err)
		}
		share := ratio(cell.n, cell.row)
		sq.Color = color.RGBA{R: uint8(255 - 180*share), G: uint8(255 - 120*share), B: 255, A: 255}
		sq.LineStyle.Color = color.White
		p.Add(sq)
		lab.XYs = append(lab.XYs, plotter.XY{X: cell.x + 0.5, Y: cell.y + 0.5})
		lab.Labels = append(lab.Labels, fmt.Sprintf("%s %d\n(%.1f%% of row)", cell.name, cell.n, 100*share))
	}
	l, err := plotter.NewLabels(lab)
	if err != nil {
		return nil, fmt.Errorf("quantize: plot: %w", err)
	}
	for i := range l.TextStyle {
		l.TextStyle[i].XAlign, l.TextStyle[i].YAlign = draw.XCenter, draw.YCenter
	}
	p.Add(l)
	return p, nil
}
