package quantize

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cxr-edge/cxr-edge/edge/imaging"
	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

func TestCount(t *testing.T) {
	tests := []struct {
		name   string
		scores []float32
		labels []uint8
		th     float32
		want   Confusion
	}{
		{"all right", []float32{0.1, 0.9}, []uint8{0, 1}, 0.5, Confusion{TP: 1, TN: 1}},
		{"all wrong", []float32{0.9, 0.1}, []uint8{0, 1}, 0.5, Confusion{FP: 1, FN: 1}},
		{"score at threshold is pneumonia", []float32{0.5, 0.5}, []uint8{0, 1}, 0.5, Confusion{TP: 1, FP: 1}},
		{"empty", nil, nil, 0.5, Confusion{}},
	}
	for _, tt := range tests {
		if got := Count(tt.scores, tt.labels, tt.th); got != tt.want {
			t.Errorf("%s: Count = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// synthetic returns n scores of which a fraction pos are positives, with positives scoring
// higher on average (AUC ≈ 0.9).
func synthetic(n int, pos float64, seed uint64) ([]float32, []uint8) {
	rng := rand.New(rand.NewPCG(seed, 2))
	s, l := make([]float32, n), make([]uint8, n)
	for i := range n {
		if float64(i) < pos*float64(n) {
			l[i] = 1
			s[i] = float32(1 / (1 + math.Exp(-(rng.NormFloat64() + 1.8))))
		} else {
			s[i] = float32(1 / (1 + math.Exp(-rng.NormFloat64())))
		}
	}
	return s, l
}

func TestBootstrap(t *testing.T) {
	var prevWidth [5]float64
	for k, n := range []int{60, 600, 6000} {
		s, l := synthetic(n, 0.6, 7)
		ci := Bootstrap(s, l, 0.7, 500, 1)
		m := Evaluate(s, l, 0.7)
		ivs := []struct {
			name  string
			iv    Interval
			point float64
		}{
			{"AUC", ci.AUC, m.AUC}, {"accuracy", ci.Accuracy, m.Accuracy}, {"sensitivity", ci.Sensitivity, m.Sensitivity},
			{"specificity", ci.Specificity, m.Specificity}, {"precision", ci.Precision, precision(Count(s, l, 0.7))},
		}
		for j, x := range ivs {
			if x.iv.Value != x.point {
				t.Errorf("n=%d %s: value %v, point estimate %v", n, x.name, x.iv.Value, x.point)
			}
			if !(x.iv.Lo <= x.point && x.point <= x.iv.Hi) || x.iv.Lo < 0 || x.iv.Hi > 1 {
				t.Errorf("n=%d %s: interval [%v, %v] does not hold %v in [0,1]", n, x.name, x.iv.Lo, x.iv.Hi, x.point)
			}
			w := x.iv.Hi - x.iv.Lo
			if w <= 0 {
				t.Errorf("n=%d %s: empty interval [%v, %v]", n, x.name, x.iv.Lo, x.iv.Hi)
			}
			// The width shrinks like 1/√n: tenfold n narrows it by ≈ 3.2.
			if k > 0 && !(w < prevWidth[j]/2) {
				t.Errorf("n=%d %s: width %v, not below half the width %v at n/10", n, x.name, w, prevWidth[j])
			}
			prevWidth[j] = w
		}
	}
	s, l := synthetic(200, 0.5, 3)
	if a, b := Bootstrap(s, l, 0.5, 300, 9), Bootstrap(s, l, 0.5, 300, 9); a != b {
		t.Error("same seed, different intervals")
	}
	if ci := Bootstrap(s, l, 0.5, 0, 1); ci.AUC.Lo != ci.AUC.Value || ci.AUC.Hi != ci.AUC.Value {
		t.Errorf("no resamples: interval %+v, want the point", ci.AUC)
	}
	// The interval of a 95% accuracy on 624 images agrees with Wilson's to within a point.
	s, l = make([]float32, 624), make([]uint8, 624)
	for i := range s {
		l[i] = uint8(i % 2)
		s[i] = float32(l[i])
		if i < 31 { // 31 wrong calls
			s[i] = 1 - s[i]
		}
	}
	ci := Bootstrap(s, l, 0.5, 2000, 1)
	lo, hi := WilsonInterval(624-31, 624)
	if math.Abs(ci.Accuracy.Lo-lo) > 0.01 || math.Abs(ci.Accuracy.Hi-hi) > 0.01 {
		t.Errorf("bootstrap accuracy [%v, %v], Wilson [%v, %v]", ci.Accuracy.Lo, ci.Accuracy.Hi, lo, hi)
	}
}

func TestCurves(t *testing.T) {
	scores := []float32{0.1, 0.4, 0.35, 0.8}
	labels := []uint8{0, 0, 1, 1}
	roc := ROC(scores, labels)
	want := []CurvePoint{{0, 0, float32(math.Inf(1))}, {0, 0.5, 0.8}, {0.5, 0.5, 0.4}, {0.5, 1, 0.35}, {1, 1, 0.1}}
	if len(roc) != len(want) {
		t.Fatalf("ROC %v, want %v", roc, want)
	}
	var area float64
	for i := range want {
		if roc[i] != want[i] {
			t.Fatalf("ROC point %d = %v, want %v", i, roc[i], want[i])
		}
		if i > 0 {
			area += (roc[i].X - roc[i-1].X) * (roc[i].Y + roc[i-1].Y) / 2
		}
	}
	if auc := AUC(scores, labels); math.Abs(area-auc) > 1e-12 {
		t.Errorf("area under ROC points %v, AUC %v", area, auc)
	}
	pr := PR(scores, labels)
	wantPR := []CurvePoint{{0.5, 1, 0.8}, {0.5, 0.5, 0.4}, {1, 2.0 / 3, 0.35}, {1, 0.5, 0.1}}
	for i := range wantPR {
		if pr[i] != wantPR[i] {
			t.Fatalf("PR point %d = %v, want %v", i, pr[i], wantPR[i])
		}
	}
	// Tied scores make one point.
	if got := ROC([]float32{0.5, 0.5}, []uint8{0, 1}); len(got) != 2 || got[1] != (CurvePoint{1, 1, 0.5}) {
		t.Errorf("ROC of a tie = %v", got)
	}
}

func TestCalibration(t *testing.T) {
	scores := []float32{0, 0.05, 0.55, 0.95, 1}
	labels := []uint8{0, 1, 1, 1, 1}
	bins := Calibration(scores, labels, 2)
	if bins[0].N != 2 || bins[1].N != 3 || bins[0].Positive != 0.5 || bins[1].Positive != 1 {
		t.Fatalf("bins %+v", bins)
	}
	if math.Abs(bins[0].MeanScore-0.025) > 1e-6 || math.Abs(bins[1].MeanScore-2.5/3) > 1e-6 {
		t.Fatalf("bin means %+v", bins)
	}
	// ECE = (2·|0.5−0.025| + 3·|1−0.8333|) / 5.
	if e, want := ExpectedCalibrationError(bins), (2*0.475+3*(1-2.5/3))/5; math.Abs(e-want) > 1e-6 {
		t.Errorf("ECE %v, want %v", e, want)
	}
	if e := ExpectedCalibrationError(Calibration([]float32{0.05, 0.95}, []uint8{0, 1}, 10)); math.Abs(e-0.05) > 1e-6 {
		t.Errorf("ECE of a nearly perfect model %v, want 0.05", e)
	}
}

func TestAgree(t *testing.T) {
	tests := []struct {
		name       string
		a, b       []float32
		ta, tb     float32
		same, kapp float64
		disagree   int
	}{
		{"identical", []float32{0.1, 0.9, 0.2, 0.8}, []float32{0.1, 0.9, 0.2, 0.8}, 0.5, 0.5, 1, 1, 0},
		{"own thresholds", []float32{0.1, 0.9}, []float32{0.3, 0.7}, 0.5, 0.6, 1, 1, 0},
		{"opposite", []float32{0.1, 0.9}, []float32{0.9, 0.1}, 0.5, 0.5, 0, -1, 2},
		// 3 of 4 agree; both call 2 positive → pe = 0.5, κ = (0.75−0.5)/0.5 = 0.5.
		{"one differs", []float32{0.9, 0.9, 0.1, 0.1}, []float32{0.9, 0.1, 0.9, 0.1}, 0.5, 0.5, 0.5, 0, 2},
	}
	for _, tt := range tests {
		g := Agree(tt.a, tt.b, tt.ta, tt.tb)
		if math.Abs(g.SameCall-tt.same) > 1e-12 || math.Abs(g.Kappa-tt.kapp) > 1e-12 || g.Disagree != tt.disagree {
			t.Errorf("%s: %+v, want same %v κ %v disagree %d", tt.name, g, tt.same, tt.kapp, tt.disagree)
		}
	}
	if g := Agree([]float32{0.2, 0.6}, []float32{0.3, 0.3}, 0.5, 0.5); math.Abs(g.MeanAbsDiff-0.2) > 1e-6 || math.Abs(g.MaxAbsDiff-0.3) > 1e-6 {
		t.Errorf("score differences %+v", g)
	}
}

// evalSubset is a small, fixed, class-balanced part of the test split.
func evalSubset(t *testing.T, n int) (string, []Sample) {
	t.Helper()
	data := testenv.SharedPath(t, "data", "chest_xray")
	all, err := ListSplit(data, "test")
	if err != nil {
		t.Fatal(err)
	}
	return data, Subsample(all, n, 1)
}

func TestEvaluateTFLite(t *testing.T) {
	data, samples := evalSubset(t, 24)
	model, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), committedModel))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rep, err := EvaluateTFLite(ctx, "shipped", model, samples, EvalOptions{Bootstrap: 100, Root: filepath.Join(data, "test")})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Images != 24 || rep.Positives != countPos(samples) || len(rep.Scores) != 24 || rep.Float != nil {
		t.Fatalf("report %+v", rep)
	}
	if rep.ThresholdSource != "metadata "+imaging.ThresholdMetadata {
		t.Errorf("threshold source %q", rep.ThresholdSource)
	}
	c := rep.Int8.Confusion
	if c.TP+c.FN+c.TN+c.FP != 24 || c.TP+c.FN != rep.Positives {
		t.Errorf("confusion %+v", c)
	}
	// The scores are the engine's: ScoreTFLite on imaging.Plane planes gives the same numbers.
	tm, err := tflite.Read(model)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := imaging.SpecFromModel(tm)
	if err != nil {
		t.Fatal(err)
	}
	if err := LoadGrey(ctx, samples, spec, 2); err != nil {
		t.Fatal(err)
	}
	want, err := ScoreTFLite(ctx, model, greyOf(samples), 2)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range rep.Scores {
		if s.Score != want[i] || !strings.HasPrefix(s.File, Classes[s.Label]+"/") {
			t.Fatalf("image %d: %+v, want score %v", i, s, want[i])
		}
	}
	// With a float model (random weights: only the plumbing is under test), both models score
	// the same decoded image, and the report compares them.
	arch := DefaultArch(spec.Width)
	arch.Window = spec.Window
	fm := &Model{Arch: arch, Params: snapshot(build(arch, rand.New(rand.NewPCG(5, 5)))), Threshold: 0.5}
	withFloat, err := EvaluateTFLite(ctx, "shipped", model, samples, EvalOptions{Float: []*Model{fm}, Bootstrap: 50})
	if err != nil {
		t.Fatal(err)
	}
	pred, err := fm.NewPredictor()
	if err != nil {
		t.Fatal(err)
	}
	wantF, err := pred.Predict(greyOf(samples))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range withFloat.Scores {
		if math.Abs(float64(s.FloatScore-wantF[i])) > 1e-5 || s.Score != want[i] {
			t.Fatalf("image %d: float %v int8 %v, want %v %v", i, s.FloatScore, s.Score, wantF[i], want[i])
		}
	}
	if withFloat.Float == nil || withFloat.Agreement == nil || withFloat.Float.Threshold != 0.5 {
		t.Fatalf("float part of the report: %+v %+v", withFloat.Float, withFloat.Agreement)
	}
	// Two members: the float score is the sigmoid of their mean logit, judged at FloatThreshold.
	fm2 := perturbed(fm, 11)
	pair, err := EvaluateTFLite(ctx, "shipped", model, samples, EvalOptions{Float: []*Model{fm, fm2}, FloatThreshold: 0.3, Bootstrap: 10})
	if err != nil {
		t.Fatal(err)
	}
	wantPair, err := EnsembleScores([]*Model{fm, fm2}, greyOf(samples))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range pair.Scores {
		if math.Abs(float64(s.FloatScore-wantPair[i])) > 1e-5 {
			t.Fatalf("image %d: float ensemble %v, want %v", i, s.FloatScore, wantPair[i])
		}
	}
	if pair.Float == nil || pair.Float.Threshold != 0.3 {
		t.Fatalf("float ensemble part of the report: %+v", pair.Float)
	}
	// A float model whose input steps differ from the int8 model's (here equalization) would
	// score other pixels: refused.
	eqm := *fm
	eqm.Arch.Equalize = true
	if _, err := EvaluateTFLite(ctx, "shipped", model, samples, EvalOptions{Float: []*Model{&eqm}, Bootstrap: 10}); !errors.Is(err, ErrEval) {
		t.Errorf("float model with equalization against an int8 model without: %v", err)
	}
	var fcsv bytes.Buffer
	if err := withFloat.WriteScoresCSV(&fcsv); err != nil || !strings.HasPrefix(fcsv.String(), "file,truth,score,predicted,float_score\n") {
		t.Errorf("csv with float scores %v:\n%.200s", err, fcsv.String())
	}

	var md, js, csvOut bytes.Buffer
	if err := rep.Markdown(&md); err != nil || !strings.Contains(md.String(), "| AUC |") {
		t.Errorf("markdown %v:\n%s", err, md.String())
	}
	if err := rep.JSON(&js); err != nil || !strings.Contains(js.String(), `"accuracy"`) {
		t.Errorf("json %v:\n%s", err, js.String())
	}
	if err := rep.WriteScoresCSV(&csvOut); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&csvOut).ReadAll()
	if err != nil || len(rows) != 25 || strings.Join(rows[0], ",") != "file,truth,score,predicted" {
		t.Fatalf("csv %v: %d rows, header %v", err, len(rows), rows[0])
	}

	// Bad input: a clear error, nothing written.
	if _, err := EvaluateTFLite(ctx, "junk", []byte("not a model"), samples, EvalOptions{}); !errors.Is(err, ErrEval) {
		t.Errorf("junk model: %v", err)
	}
	if _, err := EvaluateTFLite(ctx, "shipped", model, nil, EvalOptions{}); !errors.Is(err, ErrEval) {
		t.Errorf("no images: %v", err)
	}
	missing := []Sample{{Path: filepath.Join(t.TempDir(), "gone.jpeg")}}
	if _, err := EvaluateTFLite(ctx, "shipped", model, missing, EvalOptions{}); !errors.Is(err, ErrEval) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing image: %v", err)
	}
	small := &Model{Arch: DefaultArch(64)}
	if _, err := EvaluateTFLite(ctx, "shipped", model, samples, EvalOptions{Float: []*Model{small}}); !errors.Is(err, ErrEval) {
		t.Errorf("float model of another size: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := EvaluateTFLite(cctx, "shipped", model, samples, EvalOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestEvalOptionsDefaults(t *testing.T) {
	o := EvalOptions{}.withDefaults()
	if o.Bootstrap != 2000 || o.Seed != 1 || o.Workers < 1 {
		t.Errorf("defaults %+v", o)
	}
	o = EvalOptions{Bootstrap: 5, Seed: 3, Workers: 2}.withDefaults()
	if o.Bootstrap != 5 || o.Seed != 3 || o.Workers != 2 {
		t.Errorf("explicit values changed: %+v", o)
	}
}
