package quantize

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/imaging"
	"github.com/cxr-edge/cxr-edge/edge/tflite"
	"gonum.org/v1/gonum/stat/distuv"
)

// Config of a training run. The zero value of a field means its default (see DefaultConfig).
type Config struct {
	Data string // dataset root holding {train,val,test}/{NORMAL,PNEUMONIA}
	Out  string // output folder: checkpoint, best and final models, history

	Arch         Arch
	Epochs       int     // maximum epochs (default 20)
	BatchSize    int     // images per step (default 32)
	Shards       int     // network replicas run in parallel per step (default 2); fixed, so results do not depend on the core count
	LR           float64 // peak learning rate of AdamW (default 2e-3)
	WeightDecay  float64 // decoupled weight decay on conv and dense weights (default 1e-2)
	WarmupEpochs float64 // linear warm-up, then cosine decay to LR/100 (default 1)
	Patience     int     // stop after this many epochs without a better validation AUC (default 6)
	ValFraction  float64 // fraction of train patients held out for validation (default 0.15)
	// ValByBatch: validation NORMALs are one whole acquisition batch (the IM-* studies; the
	// NORMAL2-* batch trains), so validation measures normals from a batch the model never saw,
	// the kind of shift the test split's normals show. PNEUMONIA patients split by ValFraction.
	ValByBatch bool
	Seed       uint64 // all randomness derives from it (default 1)
	// SplitSeed seeds the train/validation split alone (default: Seed). Members of an
	// ensemble use different Seeds and one SplitSeed, so none of them trains on the images
	// the ensemble's threshold is chosen on.
	SplitSeed   uint64
	Subset      int  // if > 0, train on this many images (validation on Subset/4): for CI
	Resume      bool // continue from Out/checkpoint.gob
	Augment     *Augment
	Workers     int  // decoding goroutines (default GOMAXPROCS)
	EvalTest    bool // after training, report the chosen model on the official test split (never used to choose)
	NoExport    bool // skip the int8 export (model.tflite) at the end
	ExportOnly  bool // skip training: export and evaluate Out/best.model (its architecture wins over Arch)
	CalibImages int  // training images used to calibrate activation ranges (default 300)
	// CalibPercentile: see ExportOptions.Percentile (0: maximum).
	CalibPercentile float64
	// EMA, if > 0, is the per-step decay of an exponential moving average of the weights and
	// batch-norm statistics (e.g. 0.998, a horizon of about 500 steps); validation, the best
	// model and the export then use the average instead of the last step's weights, which
	// smooths the noise of the final steps. 0 (the default): the raw weights, as before.
	EMA float64
	// ViralWeight is the loss weight of a viral pneumonia film relative to a bacterial one
	// (file names say which); the pneumonia class keeps half of the loss (default 1: all
	// pneumonia films alike). Viral films are the tail that sets the operating threshold.
	ViralWeight float64

	Logger   *slog.Logger // default: discard
	Progress io.Writer    // progress lines with ETA (nil: none)
}

// DefaultConfig returns the defaults used for the shipped model.
func DefaultConfig() Config {
	a := DefaultAugment()
	return Config{
		Arch: DefaultArch(128), Epochs: 20, BatchSize: 32, Shards: 2, LR: 2e-3, WeightDecay: 1e-2,
		WarmupEpochs: 1, Patience: 6, ValFraction: 0.15, Seed: 1, Augment: &a,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Arch.Size == 0 && len(c.Arch.Blocks) == 0 {
		c.Arch = d.Arch
	} else if len(c.Arch.Blocks) == 0 {
		c.Arch = DefaultArch(c.Arch.Size)
	}
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setF := func(v *float64, def float64) {
		if *v == 0 {
			*v = def
		}
	}
	setInt(&c.Epochs, d.Epochs)
	setInt(&c.BatchSize, d.BatchSize)
	setInt(&c.Shards, d.Shards)
	setInt(&c.Patience, d.Patience)
	setInt(&c.Workers, runtime.GOMAXPROCS(0))
	setInt(&c.CalibImages, 300)
	setF(&c.LR, d.LR)
	setF(&c.WeightDecay, d.WeightDecay)
	setF(&c.WarmupEpochs, d.WarmupEpochs)
	setF(&c.ValFraction, d.ValFraction)
	setF(&c.ViralWeight, 1)
	if c.Seed == 0 {
		c.Seed = d.Seed
	}
	if c.SplitSeed == 0 {
		c.SplitSeed = c.Seed
	}
	if c.Augment == nil {
		c.Augment = d.Augment
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Data == "" || c.Out == "":
		return errors.New("quantize: data and output folders are required")
	case c.Epochs < 1, c.BatchSize < 2*c.Shards, c.Shards < 1:
		return fmt.Errorf("quantize: bad epochs %d / batch %d / shards %d (each shard needs ≥ 2 images for batch norm)", c.Epochs, c.BatchSize, c.Shards)
	case c.LR <= 0 || c.LR > 1 || c.WeightDecay < 0 || c.ValFraction <= 0 || c.ValFraction >= 1:
		return fmt.Errorf("quantize: bad lr %v / weight decay %v / validation fraction %v", c.LR, c.WeightDecay, c.ValFraction)
	}
	if c.ViralWeight < 0 || c.ViralWeight > 100 {
		return fmt.Errorf("quantize: bad viral weight %v (0 < w ≤ 100; 1: as bacterial)", c.ViralWeight)
	}
	if c.EMA < 0 || c.EMA >= 1 {
		return fmt.Errorf("quantize: bad EMA decay %v (0 turns it off; else in (0, 1))", c.EMA)
	}
	if a := c.Augment; a.RotateDeg < 0 || a.Shift < 0 || a.Zoom < 0 || a.Zoom >= 1 || a.Brightness < 0 || a.Contrast < 0 || a.Contrast >= 1 ||
		a.Gamma < 0 || a.Gamma >= 1 || a.Blur < 0 || a.Blur > 1 || a.Margin < 0 || a.Margin > 1 || a.ZoomIn < 0 || a.ZoomIn > 2 ||
		a.Aspect < 0 || a.Aspect > 2 || badStretch(a.NormalAspect) || badStretch(a.PneumoniaAspect) ||
		a.Erase < 0 || a.Erase > 1 || a.Mixup < 0 || a.Mixup > 10 {
		return fmt.Errorf("quantize: bad augmentation %+v (ranges ≥ 0, zoom, contrast and gamma < 1, blur, margin and erase probabilities, zoom-in and aspect ≤ 2, class stretches 0 or in [1, 2], mixup ≤ 10)", *a)
	}
	return c.Arch.Validate()
}

// badStretch reports whether a class stretch (Augment.NormalAspect, PneumoniaAspect) is out of
// range: 0 (off) or in [1, 2].
func badStretch(s float64) bool { return s != 0 && (s < 1 || s > 2) }

// EpochStats is one line of the training history.
type EpochStats struct {
	Epoch     int     // 1-based
	TrainLoss float64 // mean class-weighted loss over the epoch's steps
	LR        float64 // learning rate at the end of the epoch
	Val       Metrics // at threshold 0.5
	ValOp     Metrics // at the threshold giving validation sensitivity ≥ 0.95
	Seconds   float64 // wall time of the epoch including validation
	CPU       float64 // CPU seconds of the process during the epoch (both cores count)
}

// Result of a training run.
type Result struct {
	Model   *Model       // the best epoch by validation AUC, with its operating threshold
	History []EpochStats // all epochs run, including those before a resume
	Test    *Metrics     // float model on test, when Config.EvalTest
	Int8    *Int8Result  // the exported model, unless Config.NoExport
	Train   int          // images used for training
	ValN    int          // images used for validation
}

// checkpoint is everything needed to continue a run bit for bit.
type checkpoint struct {
	Arch                     Arch
	Seed, SplitSeed          uint64
	BatchSize, Shards        int
	Subset                   int
	Done                     int // epochs completed
	Step                     int // optimizer steps taken
	Params, M, V             map[string][]float32
	Best                     *Model
	SinceBest                int
	History                  []EpochStats
	TrainSeconds             float64
	ValFraction, WeightDecay float64
	EMADecay                 float64
	EMA                      map[string][]float32 // the moving average, when EMADecay > 0
	ViralWeight              float64              // 0 in checkpoints written before it existed: 1
	// Augment and ValByBatch: nil and false in checkpoints written before they were recorded
	// (augmentation then goes unchecked).
	Augment    *Augment
	ValByBatch bool
}

const (
	checkpointFile = "checkpoint.gob"
	bestFile       = "best.model"
	// ModelFile is the final float model a run writes into its output folder.
	ModelFile   = "float.model"
	historyFile = "history.json"
)

// SensitivityTarget is the validation sensitivity the operating threshold is chosen for.
const SensitivityTarget = 0.95

type trainer struct {
	cfg        Config
	log        *slog.Logger
	train, val []Sample
	// Loss weights of a normal, a bacterial and a viral pneumonia film (classWeights).
	wNeg, wBact, wVir float32
	master            *network
	reps              []*network
	trainable         []int // indices into params() of parameters with gradients
	m, v              [][]float32
	ema               [][]float32 // moving average of every parameter (indexed like params()), when cfg.EMA > 0
	ck                checkpoint
}

// Train runs (or resumes) a training run and writes its checkpoint every epoch, the best model
// by validation AUC (best.model), the final model with its threshold (float.model) and the
// history (history.json) into cfg.Out.
func Train(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, err
	}
	t := &trainer{cfg: cfg, log: cfg.Logger}
	// The whole recipe, defaults applied, so that a run's log says how its model was made.
	t.log.Info("recipe", "seed", cfg.Seed, "split_seed", cfg.SplitSeed, "val_fraction", cfg.ValFraction,
		"epochs", cfg.Epochs, "batch", cfg.BatchSize, "lr", cfg.LR, "weight_decay", cfg.WeightDecay, "ema", cfg.EMA, "viral_weight", cfg.ViralWeight,
		"arch", fmt.Sprintf("%+v", cfg.Arch), "augment", fmt.Sprintf("%+v", *cfg.Augment))
	if cfg.ExportOnly {
		m, err := LoadModel(filepath.Join(cfg.Out, bestFile))
		if err != nil {
			return nil, err
		}
		t.cfg.Arch = m.Arch
		if err := t.loadData(ctx); err != nil {
			return nil, err
		}
		t.setup()
		t.ck.Best = m
		return t.finish(ctx)
	}
	t.setup()
	if cfg.Resume {
		if err := t.resume(); err != nil {
			return nil, err
		}
	}
	if err := t.loadData(ctx); err != nil {
		return nil, err
	}
	if err := t.run(ctx); err != nil {
		return nil, err
	}
	return t.finish(ctx)
}

func (t *trainer) loadData(ctx context.Context) error {
	cfg := t.cfg
	train, val, err := trainValSplit(cfg.Data, cfg.ValFraction, cfg.SplitSeed, cfg.ValByBatch)
	if err != nil {
		return err
	}
	if cfg.Subset > 0 {
		train = Subsample(train, cfg.Subset, cfg.Seed)
		val = Subsample(val, max(cfg.Subset/4, 2*cfg.Shards), cfg.Seed+1)
	}
	if cfg.ExportOnly {
		// Only the calibration images of train are needed (the same ones a full run uses).
		train = Subsample(train, cfg.CalibImages, cfg.Seed+2)
	}
	start := time.Now()
	if err := LoadGrey(ctx, train, cfg.Arch.Input(), cfg.Workers); err != nil {
		return err
	}
	if err := LoadGrey(ctx, val, cfg.Arch.Input(), cfg.Workers); err != nil {
		return err
	}
	t.train, t.val = train, val
	p := countPos(train)
	t.wNeg, t.wBact, t.wVir = classWeights(train, cfg.ViralWeight)
	t.log.Info("data loaded", "train", len(train), "train_pneumonia", p, "val", len(val), "val_pneumonia", countPos(val),
		"size", cfg.Arch.Size, "seconds", time.Since(start).Seconds())
	if len(train) < cfg.BatchSize && !cfg.ExportOnly {
		return fmt.Errorf("%w: %d training images, fewer than one batch of %d", ErrDataset, len(train), cfg.BatchSize)
	}
	return nil
}

func (t *trainer) setup() {
	cfg := t.cfg
	t.master = build(cfg.Arch, rand.New(rand.NewPCG(cfg.Seed, 0x1417)))
	for range cfg.Shards {
		t.reps = append(t.reps, t.master.replica())
	}
	for i, p := range t.master.params() {
		if p.g != nil {
			t.trainable = append(t.trainable, i)
			t.m = append(t.m, make([]float32, len(p.w)))
			t.v = append(t.v, make([]float32, len(p.w)))
		}
	}
	if cfg.EMA > 0 {
		for _, p := range t.master.params() {
			t.ema = append(t.ema, append([]float32(nil), p.w...))
		}
	}
	macs, params := cfg.Arch.Cost()
	t.log.Info("network", "macs", macs, "params", params, "blocks", len(cfg.Arch.Blocks))
	t.ck = checkpoint{Arch: cfg.Arch, Seed: cfg.Seed, SplitSeed: cfg.SplitSeed, BatchSize: cfg.BatchSize, Shards: cfg.Shards, Subset: cfg.Subset,
		ValFraction: cfg.ValFraction, WeightDecay: cfg.WeightDecay, EMADecay: cfg.EMA, ViralWeight: cfg.ViralWeight,
		Augment: cfg.Augment, ValByBatch: cfg.ValByBatch}
}

func (t *trainer) resume() error {
	path := filepath.Join(t.cfg.Out, checkpointFile)
	var ck checkpoint
	if err := readGob(path, &ck); err != nil {
		return fmt.Errorf("quantize: resume: %w", err)
	}
	if ck.SplitSeed == 0 { // written before SplitSeed existed: the split used Seed
		ck.SplitSeed = ck.Seed
	}
	if ck.ViralWeight == 0 { // written before ViralWeight existed: every pneumonia alike
		ck.ViralWeight = 1
	}
	if fmt.Sprint(ck.Arch) != fmt.Sprint(t.cfg.Arch) || ck.Seed != t.cfg.Seed || ck.SplitSeed != t.cfg.SplitSeed || ck.BatchSize != t.cfg.BatchSize ||
		ck.Shards != t.cfg.Shards || ck.Subset != t.cfg.Subset || ck.ValFraction != t.cfg.ValFraction || ck.EMADecay != t.cfg.EMA ||
		ck.ViralWeight != t.cfg.ViralWeight || ck.Augment != nil && *ck.Augment != *t.cfg.Augment || ck.ValByBatch != t.cfg.ValByBatch {
		return fmt.Errorf("quantize: resume: %s was written with other settings (arch, seed, batch, shards, subset, validation split, EMA, viral weight or augmentation)", path)
	}
	ps := t.master.params()
	for _, p := range ps {
		v, ok := ck.Params[p.name]
		if !ok || len(v) != len(p.w) {
			return fmt.Errorf("%w: checkpoint parameter %s", ErrModelFormat, p.name)
		}
		copy(p.w, v)
	}
	for j, i := range t.trainable {
		copy(t.m[j], ck.M[ps[i].name])
		copy(t.v[j], ck.V[ps[i].name])
	}
	for i, e := range t.ema {
		v, ok := ck.EMA[ps[i].name]
		if !ok || len(v) != len(e) {
			return fmt.Errorf("%w: checkpoint moving average %s", ErrModelFormat, ps[i].name)
		}
		copy(e, v)
	}
	t.ck.Done, t.ck.Step, t.ck.Best, t.ck.SinceBest, t.ck.History, t.ck.TrainSeconds =
		ck.Done, ck.Step, ck.Best, ck.SinceBest, ck.History, ck.TrainSeconds
	t.log.Info("resumed", "checkpoint", path, "epochs_done", ck.Done, "step", ck.Step)
	return nil
}

func (t *trainer) stepsPerEpoch() int { return len(t.train) / t.cfg.BatchSize }

// lr is the learning rate of optimizer step s: linear warm-up, then cosine decay to LR/100.
func (t *trainer) lr(s int) float64 {
	total := float64(t.cfg.Epochs * t.stepsPerEpoch())
	warm := t.cfg.WarmupEpochs * float64(t.stepsPerEpoch())
	if float64(s) < warm {
		return t.cfg.LR * float64(s+1) / warm
	}
	p := min((float64(s)-warm)/max(total-warm, 1), 1)
	return t.cfg.LR * (0.01 + 0.99*0.5*(1+math.Cos(math.Pi*p)))
}

func (t *trainer) run(ctx context.Context) error {
	cfg := t.cfg
	steps := t.stepsPerEpoch()
	for epoch := t.ck.Done; epoch < cfg.Epochs; epoch++ {
		if t.ck.Best != nil && t.ck.SinceBest >= cfg.Patience {
			t.log.Info("early stop", "epoch", epoch, "best_epoch", t.ck.Best.Epoch, "best_val_auc", t.ck.Best.Val.AUC)
			break
		}
		start, cpu0 := time.Now(), cpuSeconds()
		perm := rand.New(rand.NewPCG(cfg.Seed, 0xe90c+uint64(epoch))).Perm(len(t.train))
		var lossSum float64
		lastPrint := time.Now()
		for s := range steps {
			if err := ctx.Err(); err != nil {
				return err
			}
			lossSum += t.step(perm[s*cfg.BatchSize:(s+1)*cfg.BatchSize], epoch)
			if cfg.Progress != nil && (time.Since(lastPrint) > 15*time.Second || s == steps-1) {
				lastPrint = time.Now()
				el := time.Since(start).Seconds()
				perStep := el / float64(s+1)
				left := perStep * float64(steps-s-1+(cfg.Epochs-epoch-1)*steps)
				fmt.Fprintf(cfg.Progress, "epoch %d/%d step %d/%d loss %.4f %.1f img/s ETA %s (at most %d epochs)\n",
					epoch+1, cfg.Epochs, s+1, steps, lossSum/float64(s+1), float64((s+1)*cfg.BatchSize)/el,
					(time.Duration(left) * time.Second).Round(time.Second), cfg.Epochs)
			}
		}
		restore := t.useEMA()
		scores, loss := t.predict(t.val)
		labels := labelsOf(t.val)
		st := EpochStats{Epoch: epoch + 1, TrainLoss: lossSum / float64(steps), LR: t.lr(t.ck.Step - 1),
			Val: Evaluate(scores, labels, 0.5)}
		st.Val.Loss = loss
		st.ValOp = Evaluate(scores, labels, ThresholdForSensitivity(scores, labels, SensitivityTarget))
		st.Seconds = time.Since(start).Seconds()
		st.CPU = cpuSeconds() - cpu0
		t.ck.TrainSeconds += st.Seconds
		t.ck.History = append(t.ck.History, st)
		t.ck.Done = epoch + 1
		improved := t.ck.Best == nil || st.Val.AUC > t.ck.Best.Val.AUC
		if improved {
			t.ck.Best = &Model{Arch: cfg.Arch, Params: snapshot(t.master), Threshold: st.ValOp.Threshold, Val: st.ValOp, Epoch: epoch + 1}
			t.ck.SinceBest = 0
		} else {
			t.ck.SinceBest++
		}
		restore()
		if improved {
			if err := SaveModel(filepath.Join(cfg.Out, bestFile), t.ck.Best); err != nil {
				return err
			}
		}
		if err := t.saveCheckpoint(); err != nil {
			return err
		}
		t.log.Info("epoch", "epoch", epoch+1, "train_loss", st.TrainLoss, "val_loss", st.Val.Loss, "val_auc", st.Val.AUC,
			"val_acc", st.Val.Accuracy, "val_sens", st.Val.Sensitivity, "val_spec", st.Val.Specificity,
			"op_threshold", st.ValOp.Threshold, "op_spec", st.ValOp.Specificity, "op_acc", st.ValOp.Accuracy,
			"lr", st.LR, "seconds", st.Seconds, "cpu_seconds", st.CPU, "best", improved)
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "epoch %d done in %s (%.0f CPU s): train loss %.4f, val loss %.4f, val %v; at sens≥%.2f: %v%s\n",
				epoch+1, time.Duration(st.Seconds*float64(time.Second)).Round(time.Second), st.CPU, st.TrainLoss, st.Val.Loss,
				st.Val, SensitivityTarget, st.ValOp, map[bool]string{true: " (best)", false: ""}[improved])
		}
	}
	return nil
}

func labelsOf(s []Sample) []uint8 {
	l := make([]uint8, len(s))
	for i, x := range s {
		l[i] = x.Label
	}
	return l
}

// step runs one optimizer step on the batch idx and returns its mean weighted loss.
func (t *trainer) step(idx []int, epoch int) float64 {
	cfg := t.cfg
	size := cfg.Arch.Size
	hw := size * size
	mix := t.mixes(idx, epoch)
	var wsum float64
	for j, i := range idx {
		wsum += float64(mix[j].weight(t.weight(t.train[i]), t.weight(t.train[mix[j].with])))
	}
	losses := make([]float64, len(t.reps))
	var wg sync.WaitGroup
	for k, rep := range t.reps {
		sub := idx[k*len(idx)/len(t.reps) : (k+1)*len(idx)/len(t.reps)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, p := range rep.params() {
				clear(p.g)
			}
			x := newTensor(len(sub), 1, size, size)
			y := make([]float32, len(sub))
			w := make([]float32, len(sub))
			var other []float32 // the partner film of a mixup
			for j, i := range sub {
				s := t.train[i]
				rng := rand.New(rand.NewPCG(cfg.Seed^0xa09, uint64(epoch)<<32|uint64(i)))
				xj := x.d[j*hw : (j+1)*hw]
				t.augment(s, rng, xj)
				y[j], w[j] = float32(s.Label), t.weight(s)
				m := mix[k*len(idx)/len(t.reps)+j]
				if m.lambda == 1 {
					continue
				}
				o := t.train[m.with]
				if other == nil {
					other = make([]float32, hw)
				}
				orng := rand.New(rand.NewPCG(cfg.Seed^0x31d, uint64(epoch)<<32|uint64(i)))
				t.augment(o, orng, other)
				l := float32(m.lambda)
				for p, v := range other {
					xj[p] = l*xj[p] + (1-l)*v
				}
				y[j] = l*y[j] + (1-l)*float32(o.Label)
				w[j] = m.weight(w[j], t.weight(o))
			}
			rep.drop.rng = rand.New(rand.NewPCG(cfg.Seed^0xd40, uint64(t.ck.Step)<<8|uint64(k)))
			z := rep.forward(x, true)
			dz := newTensor(z.n, z.c, z.h, z.w)
			losses[k] = sigmoidBCE(z.d, y, w, dz.d)
			for i := range dz.d {
				dz.d[i] /= float32(wsum)
			}
			rep.backward(dz)
		}()
	}
	wg.Wait()
	// Reduce in a fixed order so runs are reproducible.
	mps := t.master.params()
	rps := make([][]*param, len(t.reps))
	for k, r := range t.reps {
		rps[k] = r.params()
	}
	for _, i := range t.trainable {
		g := mps[i].g
		copy(g, rps[0][i].g)
		for k := 1; k < len(rps); k++ {
			for j, v := range rps[k][i].g {
				g[j] += v
			}
		}
	}
	t.updateBNStats()
	t.adam(t.lr(t.ck.Step))
	t.updateEMA(mps)
	t.ck.Step++
	var loss float64
	for _, l := range losses {
		loss += l
	}
	return loss / wsum
}

// augment writes an augmented copy of s into dst as network input. With Arch.Equalize or
// Augment.Renormalize the augmented film goes through the device's grey-level steps again, as
// the device would put a film that really looked like it (the windowed plane of a magnified
// film, the equalized plane of a brighter one); otherwise the film is left as augmented, so
// older recipes are unchanged.
func (t *trainer) augment(s Sample, rng *rand.Rand, dst []float32) {
	t.cfg.Augment.apply(s.Grey, t.cfg.Arch.Size, s.Label == 0, rng, dst)
	if t.cfg.Arch.Equalize || t.cfg.Augment.Renormalize {
		renormalize(dst, t.cfg.Arch.Input())
	}
}

// mixup pairs a training film with the film with, blended by lambda (1: not blended).
type mixup struct {
	with   int
	lambda float64
}

func (m mixup) weight(own, other float32) float32 {
	return float32(m.lambda)*own + float32(1-m.lambda)*other
}

// mixes draws the mixup partner and weight of each film of the batch idx (Augment.Mixup);
// each film's draw depends only on the seed, the epoch and the film, like its augmentation.
func (t *trainer) mixes(idx []int, epoch int) []mixup {
	out := make([]mixup, len(idx))
	alpha := t.cfg.Augment.Mixup
	for j, i := range idx {
		out[j] = mixup{with: i, lambda: 1}
		if alpha > 0 {
			src := rand.NewPCG(t.cfg.Seed^0x31c, uint64(epoch)<<32|uint64(i))
			out[j].with = rand.New(src).IntN(len(t.train))
			out[j].lambda = distuv.Beta{Alpha: alpha, Beta: alpha, Src: src}.Rand()
		}
	}
	return out
}

// emaDecay is the moving average's decay at optimizer step s: lower at first, so that the
// average does not hold on to the random initial weights (the TensorFlow convention).
func emaDecay(decay float64, s int) float32 {
	return float32(min(decay, float64(1+s)/float64(10+s)))
}

// updateEMA moves the average toward the weights and batch-norm statistics (ps: the master
// network's parameters) after step t.ck.Step.
func (t *trainer) updateEMA(ps []*param) {
	if t.ema == nil {
		return
	}
	d := emaDecay(t.cfg.EMA, t.ck.Step)
	for i, p := range ps {
		e := t.ema[i]
		for j, w := range p.w {
			e[j] = d*e[j] + (1-d)*w
		}
	}
}

// useEMA puts the moving average into the network (shared by the replicas) and returns the
// function that puts the trained weights back; without EMA both do nothing.
func (t *trainer) useEMA() (restore func()) {
	if t.ema == nil {
		return func() {}
	}
	ps := t.master.params()
	saved := make([][]float32, len(ps))
	for i, p := range ps {
		saved[i] = append([]float32(nil), p.w...)
		copy(p.w, t.ema[i])
	}
	return func() {
		for i, p := range ps {
			copy(p.w, saved[i])
		}
	}
}

// classWeights returns the loss weights of a normal, a bacterial and a viral pneumonia film:
// each class contributes half of the total, and within pneumonia a viral film weighs viral
// times a bacterial one. With viral 1 both pneumonia weights are n/(2·positives).
func classWeights(train []Sample, viral float64) (neg, bact, vir float32) {
	var pos, vPos int
	for _, s := range train {
		if s.Label == 1 {
			pos++
			if s.Viral {
				vPos++
			}
		}
	}
	n := float32(len(train))
	neg = n / float32(2*max(len(train)-pos, 1))
	bact = n / float32(2*max(float64(pos-vPos)+viral*float64(vPos), 1))
	return neg, bact, float32(viral) * bact
}

func (t *trainer) weight(s Sample) float32 {
	switch {
	case s.Label == 0:
		return t.wNeg
	case s.Viral:
		return t.wVir
	}
	return t.wBact
}

// updateBNStats folds the shards' batch statistics into the running statistics.
func (t *trainer) updateBNStats() {
	for li, l := range t.master.layers {
		bn, ok := l.(*batchNorm)
		if !ok {
			continue
		}
		var total float64
		mean := make([]float64, bn.ch)
		vari := make([]float64, bn.ch)
		for _, r := range t.reps {
			rb := r.layers[li].(*batchNorm)
			n := float64(rb.n)
			total += n
			for c := range bn.ch {
				mean[c] += n * float64(rb.batchMean[c])
				vari[c] += n * float64(rb.bv[c])
			}
		}
		mom := float64(bn.momentum)
		for c := range bn.ch {
			bn.mean.w[c] = float32((1-mom)*float64(bn.mean.w[c]) + mom*mean[c]/total)
			bn.vari.w[c] = float32((1-mom)*float64(bn.vari.w[c]) + mom*vari[c]/total)
		}
	}
}

// adam applies one AdamW update (β1 0.9, β2 0.999, decoupled weight decay).
func (t *trainer) adam(lr float64) {
	const b1, b2, eps = 0.9, 0.999, 1e-8
	step := float64(t.ck.Step + 1)
	c1 := 1 - math.Pow(b1, step)
	c2 := 1 - math.Pow(b2, step)
	ps := t.master.params()
	for j, i := range t.trainable {
		p := ps[i]
		m, v := t.m[j], t.v[j]
		decay := float32(0)
		if p.decay {
			decay = float32(lr * t.cfg.WeightDecay)
		}
		a := float32(lr / c1)
		for k, g := range p.g {
			m[k] = b1*m[k] + (1-b1)*g
			v[k] = b2*v[k] + (1-b2)*g*g
			p.w[k] -= a*m[k]/(float32(math.Sqrt(float64(v[k])/c2))+eps) + decay*p.w[k]
		}
	}
}

// predict scores samples with the current weights in inference mode, in parallel, and returns
// the scores and the mean class-weighted loss.
func (t *trainer) predict(samples []Sample) ([]float32, float64) {
	size := t.cfg.Arch.Size
	hw := size * size
	scores := make([]float32, len(samples))
	losses := make([]float64, len(t.reps))
	var wg sync.WaitGroup
	const chunk = 64
	for k, rep := range t.reps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lo := k * chunk; lo < len(samples); lo += chunk * len(t.reps) {
				hi := min(lo+chunk, len(samples))
				x := newTensor(hi-lo, 1, size, size)
				y := make([]float32, hi-lo)
				w := make([]float32, hi-lo)
				for j := lo; j < hi; j++ {
					toInput(samples[j].Grey, x.d[(j-lo)*hw:(j-lo+1)*hw])
					y[j-lo], w[j-lo] = float32(samples[j].Label), t.weight(samples[j])
				}
				z := rep.forward(x, false)
				losses[k] += sigmoidBCE(z.d, y, w, make([]float32, len(z.d)))
				for j := lo; j < hi; j++ {
					scores[j] = sigmoid(z.d[j-lo])
				}
			}
		}()
	}
	wg.Wait()
	var loss, wsum float64
	for _, l := range losses {
		loss += l
	}
	for _, s := range samples {
		wsum += float64(t.weight(s))
	}
	return scores, loss / max(wsum, 1e-9)
}

func (t *trainer) saveCheckpoint() error {
	ps := t.master.params()
	t.ck.Params = snapshot(t.master)
	t.ck.M, t.ck.V = map[string][]float32{}, map[string][]float32{}
	for j, i := range t.trainable {
		t.ck.M[ps[i].name] = t.m[j]
		t.ck.V[ps[i].name] = t.v[j]
	}
	if t.ema != nil {
		t.ck.EMA = map[string][]float32{}
		for i, e := range t.ema {
			t.ck.EMA[ps[i].name] = e
		}
	}
	if err := writeGob(filepath.Join(t.cfg.Out, checkpointFile), &t.ck); err != nil {
		return fmt.Errorf("quantize: checkpoint: %w", err)
	}
	h, err := json.MarshalIndent(t.ck.History, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(t.cfg.Out, historyFile), h, 0o644)
}

func (t *trainer) finish(ctx context.Context) (*Result, error) {
	res := &Result{Model: t.ck.Best, History: t.ck.History, Train: len(t.train), ValN: len(t.val)}
	if res.Model == nil {
		return nil, errors.New("quantize: no epoch completed")
	}
	if err := SaveModel(filepath.Join(t.cfg.Out, ModelFile), res.Model); err != nil {
		return nil, err
	}
	t.log.Info("float model written", "path", filepath.Join(t.cfg.Out, ModelFile), "epoch", res.Model.Epoch,
		"val", res.Model.Val.String(), "train_seconds", t.ck.TrainSeconds)
	if !t.cfg.NoExport {
		if err := t.exportInt8(ctx, res); err != nil {
			return nil, err
		}
	}
	if !t.cfg.EvalTest {
		return res, nil
	}
	// The official test split, touched only here, after the model and its threshold are fixed.
	test, err := ListSplit(t.cfg.Data, "test")
	if err != nil {
		return nil, err
	}
	if err := LoadGrey(ctx, test, t.cfg.Arch.Input(), t.cfg.Workers); err != nil {
		return nil, err
	}
	net, err := res.Model.network()
	if err != nil {
		return nil, err
	}
	copyWeights(t.master, net)
	scores, loss := t.predict(test)
	m := Evaluate(scores, labelsOf(test), res.Model.Threshold)
	m.Loss = loss
	res.Test = &m
	t.logTest("float", m)
	if res.Int8 != nil {
		data, err := os.ReadFile(res.Int8.Path)
		if err != nil {
			return nil, err
		}
		s8, err := ScoreTFLite(ctx, data, greyOf(test), t.cfg.Workers)
		if err != nil {
			return nil, err
		}
		m8 := Evaluate(s8, labelsOf(test), res.Int8.Threshold)
		res.Int8.Test = &m8
		t.logTest("int8", m8)
	}
	return res, nil
}

func (t *trainer) logTest(kind string, m Metrics) {
	k := int(math.Round(m.Accuracy * float64(m.N)))
	lo, hi := WilsonInterval(k, m.N)
	t.log.Info("test (report only, never used to choose)", "model", kind, "metrics", m.String(), "acc_ci95_lo", lo, "acc_ci95_hi", hi)
	if t.cfg.Progress != nil {
		fmt.Fprintf(t.cfg.Progress, "TEST %s: %v, accuracy 95%% CI [%.1f%%, %.1f%%]\n", kind, m, 100*lo, 100*hi)
	}
}

func greyOf(s []Sample) [][]uint8 {
	g := make([][]uint8, len(s))
	for i, x := range s {
		g[i] = x.Grey
	}
	return g
}

// Int8Result describes the exported int8 model.
type Int8Result struct {
	Path      string
	Bytes     int
	Threshold float32  // chosen on the int8 model's validation scores (sensitivity ≥ SensitivityTarget)
	Val       Metrics  // int8 model on validation at Threshold
	Test      *Metrics // when Config.EvalTest
	// MeanAbsDiff and MaxAbsDiff compare int8 and float probabilities on validation.
	MeanAbsDiff, MaxAbsDiff float64
	// Stress is the int8 model on perturbed validation films at Threshold (StressSuite).
	Stress Stress
}

// TFLiteFile is the int8 model a run writes into its output folder.
const TFLiteFile = "model.tflite"

// exportInt8 calibrates on CalibImages training images, writes model.tflite, scores validation
// with the Go engine and stores the int8 model's own operating threshold in its metadata.
func (t *trainer) exportInt8(ctx context.Context, res *Result) error {
	calib := t.train
	if !t.cfg.ExportOnly {
		calib = Subsample(t.train, t.cfg.CalibImages, t.cfg.Seed+2)
	}
	tm, err := ExportInt8(res.Model, greyOf(calib), ExportOptions{Percentile: t.cfg.CalibPercentile})
	if err != nil {
		return err
	}
	net, err := res.Model.network()
	if err != nil {
		return err
	}
	copyWeights(t.master, net)
	fscores, _ := t.predict(t.val)
	if res.Int8, err = finishInt8(ctx, tm, t.val, fscores, filepath.Join(t.cfg.Out, TFLiteFile), t.cfg.Workers); err != nil {
		return err
	}
	t.log.Info("int8 model written", "path", res.Int8.Path, "bytes", res.Int8.Bytes, "calibration_images", len(calib),
		"val", res.Int8.Val.String(), "float_val", res.Model.Val.String(), "val_mean_abs_diff", res.Int8.MeanAbsDiff, "val_max_abs_diff", res.Int8.MaxAbsDiff,
		"stress_mean_balanced_accuracy", res.Int8.Stress.MeanBalanced(""))
	if t.cfg.Progress != nil {
		fmt.Fprintf(t.cfg.Progress, "int8 model %s (%d bytes): val %v (float: %v); |p_int8 − p_float| mean %.4f max %.4f\nstress test (perturbed validation): %v\n",
			res.Int8.Path, res.Int8.Bytes, res.Int8.Val, res.Model.Val, res.Int8.MeanAbsDiff, res.Int8.MaxAbsDiff, res.Int8.Stress)
	}
	return nil
}

// finishInt8 scores val with the exported model in the engine, stores the threshold of
// validation sensitivity ≥ SensitivityTarget in it, writes it to path atomically and compares
// its validation scores with the float model's (fscores): that agreement measures the
// quantization loss without labels, so calibration can be tuned without the test split.
func finishInt8(ctx context.Context, tm *tflite.Model, val []Sample, fscores []float32, path string, workers int) (*Int8Result, error) {
	data, err := tflite.Write(tm)
	if err != nil {
		return nil, err
	}
	scores, err := ScoreTFLite(ctx, data, greyOf(val), workers)
	if err != nil {
		return nil, fmt.Errorf("quantize: the exported model does not run in the engine: %w", err)
	}
	labels := labelsOf(val)
	th := ThresholdForSensitivity(scores, labels, SensitivityTarget)
	SetThreshold(tm, th)
	if data, err = tflite.Write(tm); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path, data); err != nil {
		return nil, err
	}
	spec, err := imaging.SpecFromModel(tm)
	if err != nil {
		return nil, err
	}
	st, err := RunStress(val, Renormalized(StressSuite(), spec), th, func(g [][]uint8) ([]float32, error) {
		return ScoreTFLite(ctx, data, g, workers)
	})
	if err != nil {
		return nil, err
	}
	g := Agree(scores, fscores, th, th)
	return &Int8Result{Path: path, Bytes: len(data), Threshold: th, Val: Evaluate(scores, labels, th),
		MeanAbsDiff: g.MeanAbsDiff, MaxAbsDiff: g.MaxAbsDiff, Stress: st}, nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// copyWeights copies src's weights into dst (same architecture); replicas of dst see them.
func copyWeights(dst, src *network) {
	sp := src.params()
	for i, p := range dst.params() {
		copy(p.w, sp[i].w)
	}
}
