package quantize

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cxr-edge/cxr-edge/edge/imaging"
	"github.com/cxr-edge/cxr-edge/edge/testenv"
)

func TestPatientID(t *testing.T) {
	tests := []struct{ file, want string }{
		{"person1000_bacteria_2931.jpeg", "person1000"},
		{"person1000_virus_1681.jpeg", "person1000"},
		{"person447_virus_921_1.jpeg", "person447"},
		{"IM-0115-0001.jpeg", "IM-0115"},
		{"IM-0429-0001-0002.jpeg", "IM-0429"},
		{"NORMAL2-IM-1427-0001.jpeg", "NORMAL2-IM-1427"},
		{"/some/dir/NORMAL2-IM-1427-0001.png", "NORMAL2-IM-1427"},
	}
	for _, tt := range tests {
		got, err := PatientID(tt.file)
		if err != nil || got != tt.want {
			t.Errorf("PatientID(%q) = %q, %v; want %q", tt.file, got, err, tt.want)
		}
	}
	for _, bad := range []string{"scan.jpeg", "person_bacteria_1.jpeg", "IM-.jpeg", ""} {
		if _, err := PatientID(bad); !errors.Is(err, ErrDataset) {
			t.Errorf("PatientID(%q): err = %v, want ErrDataset", bad, err)
		}
	}
}

func fakeSamples() []Sample {
	var s []Sample
	for p := range 200 {
		label := uint8(0)
		if p%4 != 0 {
			label = 1
		}
		for img := range 1 + p%3 {
			s = append(s, Sample{Path: string(rune('a'+img)) + strings.Repeat("x", p), Label: label, Patient: string(rune(label)) + "/" + string(rune(1000+p))})
		}
	}
	return s
}

func TestSplitByPatient(t *testing.T) {
	all := fakeSamples()
	train, val := SplitByPatient(all, 0.15, 42)
	if len(train)+len(val) != len(all) {
		t.Fatalf("split lost samples: %d + %d != %d", len(train), len(val), len(all))
	}
	inTrain := map[string]bool{}
	for _, s := range train {
		inTrain[s.Patient] = true
	}
	var valPatients [2]map[string]bool
	valPatients[0], valPatients[1] = map[string]bool{}, map[string]bool{}
	for _, s := range val {
		if inTrain[s.Patient] {
			t.Fatalf("patient %q on both sides", s.Patient)
		}
		valPatients[s.Label][s.Patient] = true
	}
	// 50 NORMAL and 150 PNEUMONIA patients: 15% of each.
	if len(valPatients[0]) != 8 || len(valPatients[1]) != 23 {
		t.Fatalf("validation patients per class = %d, %d; want 8, 23", len(valPatients[0]), len(valPatients[1]))
	}
	t2, v2 := SplitByPatient(all, 0.15, 42)
	if len(t2) != len(train) || v2[0].Path != val[0].Path {
		t.Fatal("same seed gave a different split")
	}
	_, v3 := SplitByPatient(all, 0.15, 43)
	same := len(v3) == len(val)
	for i := 0; same && i < len(val); i++ {
		same = v3[i].Path == val[i].Path
	}
	if same {
		t.Fatal("another seed gave the same split")
	}
}

func TestSubsample(t *testing.T) {
	all := fakeSamples()
	sub := Subsample(all, 100, 1)
	if len(sub) != 100 {
		t.Fatalf("len = %d", len(sub))
	}
	if p := countPos(sub); math.Abs(float64(p)/100-float64(countPos(all))/float64(len(all))) > 0.02 {
		t.Fatalf("class ratio not kept: %d positives of 100", p)
	}
	if len(Subsample(all, 0, 1)) != len(all) || len(Subsample(all, 1e6, 1)) != len(all) {
		t.Fatal("n ≤ 0 or ≥ len must return everything")
	}
}

func TestAUCAndThreshold(t *testing.T) {
	tests := []struct {
		scores []float32
		labels []uint8
		want   float64
	}{
		{[]float32{0.1, 0.2, 0.8, 0.9}, []uint8{0, 0, 1, 1}, 1},
		{[]float32{0.9, 0.8, 0.2, 0.1}, []uint8{0, 0, 1, 1}, 0},
		{[]float32{0.5, 0.5, 0.5, 0.5}, []uint8{0, 1, 0, 1}, 0.5},
		// Pairs (pos,neg): (0.4>0.3) (0.4<0.6) (0.7>0.3) (0.7>0.6) → 3/4.
		{[]float32{0.3, 0.4, 0.6, 0.7}, []uint8{0, 1, 0, 1}, 0.75},
		// A tie between a positive and a negative counts one half: (0.5=0.5)=½, (0.5>0.2)=1 → 0.75.
		{[]float32{0.2, 0.5, 0.5}, []uint8{0, 0, 1}, 0.75},
	}
	for _, tt := range tests {
		if got := AUC(tt.scores, tt.labels); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("AUC(%v, %v) = %v, want %v", tt.scores, tt.labels, got, tt.want)
		}
	}
	if !math.IsNaN(AUC([]float32{1, 2}, []uint8{1, 1})) {
		t.Error("AUC of one class must be NaN")
	}
	scores := []float32{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95}
	labels := []uint8{0, 1, 0, 0, 1, 1, 1, 1, 1, 1}
	th := ThresholdForSensitivity(scores, labels, 0.95) // 7 positives: need all 7 → lowest positive
	if th != 0.2 {
		t.Fatalf("threshold %v, want 0.2", th)
	}
	if th := ThresholdForSensitivity(scores, labels, 0.8); th != 0.5 { // ceil(5.6) = 6 positives
		t.Fatalf("threshold for 0.8 = %v, want 0.5", th)
	}
	m := Evaluate(scores, labels, 0.5)
	if m.Sensitivity != 6.0/7 || m.Specificity != 1 || m.Accuracy != 0.9 || m.Positives != 7 {
		t.Fatalf("metrics %+v", m)
	}
	lo, hi := WilsonInterval(585, 624)
	if lo > 0.9375 || hi < 0.9375 || hi-lo > 0.045 || hi-lo < 0.03 {
		t.Fatalf("Wilson interval of 585/624 = [%v, %v]", lo, hi)
	}
}

func TestAugment(t *testing.T) {
	const size = 32
	grey := make([]uint8, size*size)
	for i := range grey {
		grey[i] = uint8((i%size)*8 + i/size)
	}
	want := make([]float32, size*size)
	toInput(grey, want)
	got := make([]float32, size*size)
	rng := rand.New(rand.NewPCG(1, 1))
	Augment{}.apply(grey, size, false, rng, got)
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("identity augmentation changed pixel %d: %v → %v", i, want[i], got[i])
		}
	}
	var changed int
	for range 20 {
		DefaultAugment().apply(grey, size, false, rng, got)
		for i, v := range got {
			if v < 0 || v > 1 || float32(math.Round(float64(v)*255))/255 != v {
				t.Fatalf("augmented value %v off the 8-bit grid in [0,1]", v)
			}
			if v != want[i] {
				changed++
			}
		}
	}
	if changed < 20*size*size/2 {
		t.Fatalf("augmentation changed only %d of %d pixels", changed, 20*size*size)
	}
}

func TestArchValidateAndCost(t *testing.T) {
	macs, params := DefaultArch(128).Cost()
	if macs != 9734272 || params != 144545 {
		t.Fatalf("default arch: %d MACs, %d params", macs, params)
	}
	net := build(DefaultArch(128), rand.New(rand.NewPCG(1, 1)))
	var n, bnStats int64
	for _, p := range net.params() {
		if strings.HasSuffix(p.name, ".mean") || strings.HasSuffix(p.name, ".var") || strings.HasSuffix(p.name, ".gamma") {
			bnStats += int64(len(p.w))
			continue
		}
		n += int64(len(p.w))
	}
	if n != params { // after folding, beta becomes the bias and gamma, mean, var disappear
		t.Fatalf("Cost says %d params, network holds %d (+%d batch norm)", params, n, bnStats)
	}
	for _, bad := range []Arch{
		{Size: 4, Blocks: DefaultArch(4).Blocks},
		{Size: 64},
		{Size: 64, Blocks: []Block{{Kind: "lstm", Out: 3, Stride: 1}}},
		{Size: 64, Blocks: []Block{{Kind: "conv", Out: 3, Kernel: 3, Stride: 3}}},
		{Size: 64, Blocks: []Block{{Kind: "conv", Out: 3, Kernel: 3, Stride: 1}}, Dropout: 1},
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// WithChannels changes only the blocks' widths, and leaves the architecture it came from alone.
func TestArchWithChannels(t *testing.T) {
	def := DefaultArch(128)
	stem, err := def.WithChannels([]int{16, 16, 32, 32, 64, 64, 128})
	if err != nil {
		t.Fatal(err)
	}
	if def.Blocks[0].Out != 8 || stem.Blocks[0].Out != 16 || stem.Blocks[1].Out != 16 {
		t.Fatalf("default %+v, stem %+v", def.Blocks[:2], stem.Blocks[:2])
	}
	for i := range def.Blocks {
		if b, d := stem.Blocks[i], def.Blocks[i]; b.Kind != d.Kind || b.Kernel != d.Kernel || b.Stride != d.Stride {
			t.Errorf("block %d: %+v, want %+v with other channels", i, b, d)
		}
	}
	if err := stem.Validate(); err != nil {
		t.Fatal(err)
	}
	// Cost: the first block's 8 more channels add 8×9 weights and biases, the second's input 8×16×9.
	_, p0 := def.Cost()
	if _, p := stem.Cost(); p != p0+8*9+8+8*16*9 {
		t.Errorf("params %d, want %d", p, p0+8*9+8+8*16*9)
	}
	for _, bad := range [][]int{{16}, {8, 16, 32, 32, 64, 64, 0}, {8, 16, 32, 32, 64, 64, 128, 4}} {
		if _, err := def.WithChannels(bad); err == nil {
			t.Errorf("channels %v accepted", bad)
		}
	}
}

func TestModelFileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.model")
	if err := os.WriteFile(bad, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadModel(bad); !errors.Is(err, ErrModelFormat) {
		t.Fatalf("garbage: err = %v", err)
	}
	trunc := filepath.Join(dir, "trunc.model")
	if err := os.WriteFile(trunc, []byte(modelMagic+"\x10\xff"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadModel(trunc); !errors.Is(err, ErrModelFormat) {
		t.Fatalf("truncated: err = %v", err)
	}
	// A model whose weights do not fit its architecture is refused.
	net := build(DefaultArch(32), rand.New(rand.NewPCG(1, 1)))
	m := &Model{Arch: DefaultArch(32), Params: snapshot(net)}
	m.Params["head.w"] = m.Params["head.w"][:3]
	path := filepath.Join(dir, "short.model")
	if err := SaveModel(path, m); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadModel(path); !errors.Is(err, ErrModelFormat) {
		t.Fatalf("short weights: err = %v", err)
	}
}

// cancelAfter cancels a run when the progress output reports that an epoch finished.
type cancelAfter struct {
	mu     sync.Mutex
	marker string
	cancel context.CancelFunc
	buf    bytes.Buffer
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	if c.cancel != nil && strings.Contains(c.buf.String(), c.marker) {
		c.cancel()
	}
	return len(p), nil
}

// The CI-sized run: on a subset of the real data the loss falls, and a run interrupted after
// an epoch and resumed ends with bit-identical weights.
func TestTrainSubsetAndResume(t *testing.T) {
	data := testenv.SharedPath(t, "data", "chest_xray")
	var logs bytes.Buffer
	cfg := Config{Data: data, Arch: DefaultArch(32), Epochs: 3, Subset: 128, BatchSize: 16, Seed: 3,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	cfg.Out = t.TempDir()
	full, err := Train(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The log records the recipe with its defaults applied (split seed = seed).
	if l := logs.String(); !strings.Contains(l, "msg=recipe seed=3 split_seed=3") || !strings.Contains(l, "Aspect:0 NormalAspect:0 PneumoniaAspect:0 Erase:0 Mixup:0 Renormalize:false}") {
		t.Errorf("no recipe in the log:\n%.600s", l)
	}
	h := full.History
	if len(h) != 3 {
		t.Fatalf("%d epochs run, want 3", len(h))
	}
	for _, e := range h {
		t.Logf("epoch %d: train loss %.4f, val %v", e.Epoch, e.TrainLoss, e.Val)
	}
	if !(h[2].TrainLoss < h[0].TrainLoss) {
		t.Errorf("training loss did not fall: %.4f → %.4f", h[0].TrainLoss, h[2].TrainLoss)
	}
	if full.Int8 == nil || full.Int8.Bytes == 0 || full.Int8.Val.Sensitivity < SensitivityTarget || full.Int8.Val.N != full.ValN ||
		full.Int8.MeanAbsDiff > 0.03 || full.Int8.MaxAbsDiff == 0 {
		t.Errorf("int8 export: %+v", full.Int8)
	} else {
		t.Logf("int8 %d bytes, val %v (float %v), |Δp| mean %.4f max %.4f", full.Int8.Bytes, full.Int8.Val, full.Model.Val, full.Int8.MeanAbsDiff, full.Int8.MaxAbsDiff)
	}
	for _, f := range []string{checkpointFile, bestFile, ModelFile, historyFile, TFLiteFile} {
		if _, err := os.Stat(filepath.Join(cfg.Out, f)); err != nil {
			t.Errorf("output %s: %v", f, err)
		}
	}
	// --export-only on the same folder rebuilds the same int8 file bit for bit.
	first, err := os.ReadFile(filepath.Join(cfg.Out, TFLiteFile))
	if err != nil {
		t.Fatal(err)
	}
	// The written model runs in Google's runtime with the engine's output.
	val, err := ListSplit(data, "val")
	if err != nil {
		t.Fatal(err)
	}
	spec := cfg.Arch.Input()
	if err := LoadGrey(context.Background(), val[:1], spec, 1); err != nil {
		t.Fatal(err)
	}
	eng, err := ScoreTFLite(context.Background(), first, greyOf(val[:1]), 1)
	if err != nil {
		t.Fatal(err)
	}
	in := make([]byte, spec.Bytes())
	imaging.Quantize(val[0].Grey, spec, in)
	if lq := liteRTScore(t, first, in); math.Abs(lq-float64(eng[0])) > 1e-5 {
		t.Errorf("trained model: LiteRT.js %v, engine %v", lq, eng[0])
	}
	// A second member (another seed, the same split, erasing and mixup) and the two as one
	// int8 ensemble.
	cfgB := cfg
	augB := DefaultAugment()
	augB.Erase, augB.Mixup = 0.5, 0.4
	cfgB.Out, cfgB.Seed, cfgB.SplitSeed, cfgB.Augment = t.TempDir(), 4, cfg.Seed, &augB
	member, err := Train(context.Background(), cfgB)
	if err != nil {
		t.Fatal(err)
	}
	if hb := member.History; math.IsNaN(hb[len(hb)-1].TrainLoss) || !(hb[len(hb)-1].TrainLoss < hb[0].TrainLoss) {
		t.Errorf("with mixup the training loss did not fall: %+v", hb)
	}
	ens, err := Ensemble(context.Background(), EnsembleConfig{Data: data, Out: t.TempDir(), SplitSeed: cfg.Seed, CalibImages: 64,
		Members: []string{filepath.Join(cfg.Out, ModelFile), filepath.Join(cfgB.Out, ModelFile)}})
	if err != nil {
		t.Fatal(err)
	}
	if ens.Val.Sensitivity < SensitivityTarget || ens.Threshold <= 0 || ens.Threshold >= 1 || ens.MeanAbsDiff > 0.03 {
		t.Errorf("ensemble: %+v", ens)
	}
	t.Logf("ensemble of 2: val %v (float %v), |Δp| mean %.4f", ens.Val, ens.FloatVal, ens.MeanAbsDiff)
	ex := cfg
	ex.ExportOnly = true
	if _, err := Train(context.Background(), ex); err != nil {
		t.Fatal(err)
	}
	if again, err := os.ReadFile(filepath.Join(cfg.Out, TFLiteFile)); err != nil || !bytes.Equal(first, again) {
		t.Fatalf("export-only wrote a different model (%d vs %d bytes, %v)", len(first), len(again), err)
	}
	m, err := LoadModel(filepath.Join(cfg.Out, ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	if m.Epoch < 1 || m.Threshold <= 0 || m.Threshold >= 1 || m.Val.Sensitivity < SensitivityTarget {
		t.Errorf("final model: epoch %d, threshold %v, val %v", m.Epoch, m.Threshold, m.Val)
	}

	// Interrupted after epoch 1, then resumed.
	cfg2 := trainInterrupted(t, cfg)
	resumed, err := Train(context.Background(), cfg2)
	if err != nil {
		t.Fatal(err)
	}
	if len(resumed.History) != 3 {
		t.Fatalf("resumed history has %d epochs", len(resumed.History))
	}
	sameWeights(t, full.Model, resumed.Model)
	// Resuming with other settings is refused.
	otherAug := DefaultAugment() // cfg2 leaves the augmentation at its default
	otherAug.NormalAspect = 1.2
	for _, c := range []struct {
		name   string
		change func(*Config)
	}{
		{"another seed", func(c *Config) { c.Seed = 4 }},
		{"other augmentation", func(c *Config) { c.Augment = &otherAug }},
		{"validation by batch", func(c *Config) { c.ValByBatch = true }},
	} {
		other := cfg2
		c.change(&other)
		if _, err := Train(context.Background(), other); err == nil || !strings.Contains(err.Error(), "other settings") {
			t.Fatalf("resume with %s: err = %v", c.name, err)
		}
	}
	// The saved model predicts what the trainer measured on validation.
	p, err := m.NewPredictor()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Predict([][]uint8{make([]uint8, 10)}); err == nil {
		t.Fatal("wrong image size accepted")
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	d := DefaultConfig()
	if c.Epochs != d.Epochs || c.BatchSize != 32 || c.Shards != 2 || c.LR != 2e-3 || c.Seed != 1 || c.Arch.Size != 128 ||
		c.ValFraction != 0.15 || c.Patience != d.Patience || c.Augment == nil || c.Logger == nil || c.Workers < 1 {
		t.Fatalf("defaults: %+v", c)
	}
	if err := (Config{Out: "x"}).withDefaults().validate(); err == nil {
		t.Fatal("missing data folder accepted")
	}
	if err := (Config{Data: "x", Out: "y", BatchSize: 3}).withDefaults().validate(); err == nil {
		t.Fatal("batch smaller than 2 per shard accepted")
	}
	bad := DefaultAugment().Scaled(10) // zoom ±100%
	if err := (Config{Data: "x", Out: "y", Augment: &bad}).withDefaults().validate(); err == nil {
		t.Fatal("augmentation with zoom ±100% accepted")
	}
	if DefaultAugment().Scaled(0) != (Augment{}) || DefaultAugment().Scaled(2).RotateDeg != 20 {
		t.Fatal("Scaled does not scale every range")
	}
	if _, err := Train(context.Background(), Config{Data: t.TempDir(), Out: t.TempDir()}); !errors.Is(err, ErrDataset) {
		t.Fatalf("empty data folder: err = %v", err)
	}
}

// trainInterrupted runs cfg in a new folder until epoch 1 is done, then cancels it, and
// returns the configuration that resumes it.
func trainInterrupted(t *testing.T, cfg Config) Config {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg.Out = t.TempDir()
	cfg.Progress = &cancelAfter{marker: "epoch 1 done", cancel: cancel}
	if _, err := Train(ctx, cfg); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: err = %v", err)
	}
	cfg.Progress, cfg.Resume = nil, true
	return cfg
}

// sameWeights fails unless the uninterrupted and the resumed model are bit-identical.
func sameWeights(t *testing.T, full, resumed *Model) {
	t.Helper()
	for name, w := range full.Params {
		r := resumed.Params[name]
		for i := range w {
			if math.Float32bits(w[i]) != math.Float32bits(r[i]) {
				t.Fatalf("%s[%d]: %v uninterrupted, %v resumed", name, i, w[i], r[i])
			}
		}
	}
}

func TestEMADecay(t *testing.T) {
	for _, c := range []struct {
		decay float64
		step  int
		want  float32
	}{
		{0.998, 0, 0.1},        // first step: mostly the new weights
		{0.998, 90, 0.91},      // still warming up
		{0.998, 100000, 0.998}, // the configured decay once warmed up
		{0.5, 90, 0.5},
	} {
		if got := emaDecay(c.decay, c.step); math.Abs(float64(got-c.want)) > 1e-6 {
			t.Errorf("emaDecay(%v, %d) = %v, want %v", c.decay, c.step, got, c.want)
		}
	}
	for _, bad := range []float64{-0.1, 1, 1.5} {
		if err := (Config{Data: "x", Out: "y", EMA: bad}).withDefaults().validate(); err == nil {
			t.Errorf("EMA %v accepted", bad)
		}
	}
}

// With a moving average, validation and the kept model use the average, not the last
// step's weights, and a resumed run still ends bit for bit where an uninterrupted one does.
func TestTrainEMA(t *testing.T) {
	data := testenv.SharedPath(t, "data", "chest_xray")
	cfg := Config{Data: data, Arch: DefaultArch(32), Epochs: 2, Subset: 64, BatchSize: 16, Seed: 5, EMA: 0.9, NoExport: true}
	cfg.Out = t.TempDir()
	full, err := Train(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}

	cfg2 := trainInterrupted(t, cfg)
	// After epoch 1 the best model is epoch 1's average: the checkpoint's EMA, not its weights.
	var ck checkpoint
	if err := readGob(filepath.Join(cfg2.Out, checkpointFile), &ck); err != nil {
		t.Fatal(err)
	}
	best, err := LoadModel(filepath.Join(cfg2.Out, bestFile))
	if err != nil {
		t.Fatal(err)
	}
	if ck.EMADecay != 0.9 || len(ck.EMA) != len(ck.Params) || best.Epoch != 1 {
		t.Fatalf("checkpoint: decay %v, %d averages for %d parameters; best epoch %d", ck.EMADecay, len(ck.EMA), len(ck.Params), best.Epoch)
	}
	differ := 0
	for name, w := range best.Params {
		e, raw := ck.EMA[name], ck.Params[name]
		for i := range w {
			if math.Float32bits(w[i]) != math.Float32bits(e[i]) {
				t.Fatalf("best %s[%d] = %v, moving average %v", name, i, w[i], e[i])
			}
			if w[i] != raw[i] {
				differ++
			}
		}
	}
	if differ == 0 {
		t.Fatal("the kept model is the last step's weights, not their average")
	}

	resumed, err := Train(context.Background(), cfg2)
	if err != nil {
		t.Fatal(err)
	}
	if full.Model.Epoch != resumed.Model.Epoch {
		t.Fatalf("best epoch %d uninterrupted, %d resumed", full.Model.Epoch, resumed.Model.Epoch)
	}
	sameWeights(t, full.Model, resumed.Model)
	// The average is part of the recipe: resuming without it is refused.
	cfg2.EMA = 0
	if _, err := Train(context.Background(), cfg2); err == nil || !strings.Contains(err.Error(), "other settings") {
		t.Fatalf("resume without the moving average: err = %v", err)
	}
}

func TestClassWeights(t *testing.T) {
	var train []Sample
	add := func(n int, name string, label uint8) {
		for i := range n {
			path := fmt.Sprintf("/d/%s_%d.jpeg", name, i)
			train = append(train, Sample{Path: path, Label: label, Viral: viralFile(path)})
		}
	}
	add(25, "IM-0001-0001", 0)
	add(50, "person1_bacteria", 1)
	add(25, "person2_virus", 1)
	for _, viral := range []float64{1, 2, 3.5} {
		neg, bact, vir := classWeights(train, viral)
		var sum [2]float64
		for _, s := range train {
			w := map[bool]float32{true: vir, false: bact}[s.Viral]
			if s.Label == 0 {
				w = neg
			}
			sum[s.Label] += float64(w)
		}
		// Each class carries half of the total weight (the number of films), and a viral film
		// weighs viral times a bacterial one.
		if math.Abs(sum[0]-50) > 1e-4 || math.Abs(sum[1]-50) > 1e-4 || math.Abs(float64(vir/bact)-viral) > 1e-6 {
			t.Errorf("viral %v: normals %.4f, pneumonias %.4f (want 50 each), viral/bacterial %v", viral, sum[0], sum[1], vir/bact)
		}
	}
	// Weight 1 is the plain class weighting, to the bit (recipes before the option reproduce).
	if _, bact, vir := classWeights(train, 1); bact != vir || bact != float32(100)/float32(2*75) {
		t.Errorf("viral 1: bacterial %v, viral %v, want %v", bact, vir, float32(100)/float32(150))
	}
	for name, want := range map[string]bool{"person1_virus_7.jpeg": true, "person1_bacteria_7.jpeg": false, "person447_virus_921_1.jpeg": true, "IM-0115-0001.jpeg": false, "virus.jpeg": false} {
		if got := viralFile("/x/PNEUMONIA/" + name); got != want {
			t.Errorf("Viral(%s) = %v", name, got)
		}
	}
	if err := (Config{Data: "x", Out: "y", ViralWeight: -1}).withDefaults().validate(); err == nil {
		t.Error("negative viral weight accepted")
	}
}
