package quantize

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/cxr-edge/cxr-edge/edge/engine"
	"github.com/cxr-edge/cxr-edge/edge/imaging"
	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

// The acceptance bars for the shipped model on the official test split.
const (
	BarAUC         = 0.96
	BarAccuracy    = 0.92
	BarSensitivity = 0.95
)

// ErrEval: the model or the data cannot be evaluated (bad model, unreadable image, ...).
var ErrEval = errors.New("quantize: cannot evaluate")

// EvalOptions configures EvaluateTFLite. Zero fields take the documented defaults.
type EvalOptions struct {
	// Float, when set, holds the float model of the int8 model (or the members of an
	// ensemble, whose logits are averaged as ExportEnsemble does); it is scored too and
	// compared with the int8 model. One model is judged at its own validation threshold, an
	// ensemble at FloatThreshold (what cxr-quantize ensemble reports), else the int8 model's.
	Float []*Model
	// FloatThreshold, if in (0, 1), is the float model's operating point (overrides the above).
	FloatThreshold float32
	// Bootstrap is the number of resamples of the confidence intervals (default 2000).
	Bootstrap int
	// Seed of the bootstrap (default 1).
	Seed uint64
	// Workers decode and run images in parallel (default GOMAXPROCS).
	Workers int
	// Root: image paths in the report are relative to it when they lie below it (default: as
	// given).
	Root string
}

func (o EvalOptions) withDefaults() EvalOptions {
	if o.Bootstrap == 0 {
		o.Bootstrap = 2000
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	return o
}

// ImageScore is one evaluated image.
type ImageScore struct {
	File       string  // path, relative to EvalOptions.Root when below it
	Label      uint8   // 1 = pneumonia
	Score      float32 // int8 model's probability (dequantized output)
	FloatScore float32 // float model's probability; NaN without a float model
}

// ModelEval is one model's result on the evaluated images.
type ModelEval struct {
	Threshold   float32   `json:"threshold"`
	AUC         Interval  `json:"auc"`
	Accuracy    Interval  `json:"accuracy"`
	Sensitivity Interval  `json:"sensitivity"`
	Specificity Interval  `json:"specificity"`
	Precision   Interval  `json:"precision"`
	Confusion   Confusion `json:"confusion"`
	// ECE is the expected calibration error over 10 equal-width score bins.
	ECE float64 `json:"ece"`
}

// EvalReport is the outcome of EvaluateTFLite: what the model card and the CI guard record.
type EvalReport struct {
	Model           string     `json:"model"` // path or name, as given
	ModelSHA256     string     `json:"model_sha256"`
	ModelBytes      int        `json:"model_bytes"`
	ThresholdSource string     `json:"threshold_source"` // "metadata cxr_threshold" or "default 0.5"
	Images          int        `json:"images"`
	Positives       int        `json:"positives"`
	Bootstrap       int        `json:"bootstrap"`
	Seed            uint64     `json:"seed"`
	Int8            ModelEval  `json:"int8"`
	Float           *ModelEval `json:"float,omitempty"`
	Agreement       *Agreement `json:"agreement,omitempty"`
	BarsMet         bool       `json:"bars_met"` // int8 AUC ≥ BarAUC, accuracy ≥ BarAccuracy, sensitivity ≥ BarSensitivity

	Scores []ImageScore `json:"-"`
}

// EvaluateTFLite scores every sample with the int8 .tflite model in the device's engine, after
// the device's preprocessing (imaging.Decode, then imaging.Preprocess with the model's input
// spec), and, if opts.Float is set, with the float model on the same decoded image. It reports
// the metrics at the model's own threshold (metadata, else 0.5) with bootstrap intervals.
func EvaluateTFLite(ctx context.Context, name string, model []byte, samples []Sample, opts EvalOptions) (*EvalReport, error) {
	opts = opts.withDefaults()
	if len(samples) == 0 {
		return nil, fmt.Errorf("%w: no images", ErrEval)
	}
	c, err := loadClassifier(model)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	em, spec := c.em, c.spec
	for _, f := range opts.Float {
		if fs := f.Arch.Input(); fs.Width != spec.Width || fs.Height != spec.Height || fs.Window != spec.Window || fs.Equalize != spec.Equalize {
			return nil, fmt.Errorf("%w: float model input %d (window %v, equalize %v), int8 model input %dx%d (window %v, equalize %v)", ErrEval,
				f.Arch.Size, f.Arch.Window, f.Arch.Equalize, spec.Width, spec.Height, spec.Window, spec.Equalize)
		}
	}
	rep := &EvalReport{Model: name, ModelBytes: len(model), Images: len(samples), Bootstrap: opts.Bootstrap, Seed: opts.Seed,
		ThresholdSource: "default 0.5"}
	sum := sha256.Sum256(model)
	rep.ModelSHA256 = hex.EncodeToString(sum[:])
	th := float32(0.5)
	if c.hasThreshold {
		th, rep.ThresholdSource = c.threshold, "metadata "+imaging.ThresholdMetadata
	}

	rep.Scores = make([]ImageScore, len(samples))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, opts.Workers)
	var wg sync.WaitGroup
	for w := range opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = scoreWorker(ctx, em, spec, opts.Float, samples, rep.Scores, w, opts.Workers)
			if errs[w] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	if err := firstError(errs); err != nil {
		return nil, err
	}

	scores, labels := make([]float32, len(samples)), make([]uint8, len(samples))
	for i, s := range samples {
		rep.Scores[i].File, rep.Scores[i].Label = relPath(opts.Root, s.Path), s.Label
		scores[i], labels[i] = rep.Scores[i].Score, s.Label
		rep.Positives += int(s.Label)
	}
	rep.Int8 = modelEval(scores, labels, th, opts)
	rep.BarsMet = rep.Int8.AUC.Value >= BarAUC && rep.Int8.Accuracy.Value >= BarAccuracy && rep.Int8.Sensitivity.Value >= BarSensitivity
	if len(opts.Float) > 0 {
		fs := make([]float32, len(samples))
		for i := range fs {
			fs[i] = rep.Scores[i].FloatScore
		}
		fth := th
		if len(opts.Float) == 1 {
			fth = opts.Float[0].Threshold
		}
		if t := opts.FloatThreshold; t > 0 && t < 1 {
			fth = t
		}
		fe := modelEval(fs, labels, fth, opts)
		rep.Float = &fe
		g := Agree(scores, fs, th, fth)
		rep.Agreement = &g
	}
	return rep, nil
}

// OperatingPointFor is the int8 model's operating point chosen on the evaluated images: the
// highest threshold at which at least the fraction sens of their pneumonias is flagged, and the
// confusion matrix there. It is how a site sets its own threshold from its own labelled films;
// those films then cannot also report the model's accuracy at it.
func (r *EvalReport) OperatingPointFor(sens float64) (float32, Confusion) {
	scores, labels := make([]float32, len(r.Scores)), make([]uint8, len(r.Scores))
	for i, s := range r.Scores {
		scores[i], labels[i] = s.Score, s.Label
	}
	th := ThresholdForSensitivity(scores, labels, sens)
	return th, Count(scores, labels, th)
}

func modelEval(scores []float32, labels []uint8, th float32, opts EvalOptions) ModelEval {
	ci := Bootstrap(scores, labels, th, opts.Bootstrap, opts.Seed)
	return ModelEval{Threshold: th, AUC: ci.AUC, Accuracy: ci.Accuracy, Sensitivity: ci.Sensitivity,
		Specificity: ci.Specificity, Precision: ci.Precision, Confusion: Count(scores, labels, th),
		ECE: ExpectedCalibrationError(Calibration(scores, labels, 10))}
}

// scoreWorker scores samples w, w+stride, ... into out.
func scoreWorker(ctx context.Context, em *engine.Model, spec imaging.InputSpec, fms []*Model, samples []Sample, out []ImageScore, w, stride int) error {
	ip := em.NewInterpreter()
	defer ip.Close()
	preds := make([]*Predictor, len(fms))
	for k, fm := range fms {
		var err error
		if preds[k], err = fm.NewPredictor(); err != nil {
			return fmt.Errorf("%w: float model: %w", ErrEval, err)
		}
	}
	oinfo := ip.Output(0).Info()
	for i := w; i < len(samples); i += stride {
		if err := ctx.Err(); err != nil {
			return err
		}
		img, err := decodeFile(samples[i].Path)
		if err != nil {
			return err
		}
		if err := imaging.Preprocess(img, spec, ip.Input(0).Bytes()); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrEval, samples[i].Path, err)
		}
		if err := ip.Invoke(ctx); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrEval, samples[i].Path, err)
		}
		out[i].Score, err = probability(ip.Output(0), oinfo)
		if err != nil {
			return err
		}
		out[i].FloatScore = float32(math.NaN())
		if len(preds) > 0 {
			g, err := imaging.Plane(img, spec)
			if err != nil {
				return fmt.Errorf("%w: %s: %w", ErrEval, samples[i].Path, err)
			}
			var sum float32
			for _, pred := range preds {
				z, err := pred.Logits([][]uint8{g})
				if err != nil {
					return fmt.Errorf("%w: %s: %w", ErrEval, samples[i].Path, err)
				}
				sum += z[0]
			}
			out[i].FloatScore = sigmoid(sum / float32(len(preds)))
		}
	}
	return nil
}

func decodeFile(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEval, err)
	}
	defer f.Close()
	img, _, err := imaging.Decode(f, imaging.Options{})
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrEval, path, err)
	}
	return img, nil
}

// probability dequantizes the model's single output value.
func probability(t *engine.Tensor, info engine.TensorInfo) (float32, error) {
	switch info.Type {
	case tflite.Int8:
		return float32(float64(int64(t.Int8()[0])-info.ZeroPoint[0]) * float64(info.Scale[0])), nil
	case tflite.Uint8:
		return float32(float64(int64(t.Uint8()[0])-info.ZeroPoint[0]) * float64(info.Scale[0])), nil
	case tflite.Float32:
		return t.Float32()[0], nil
	}
	return 0, fmt.Errorf("%w: output type %v", ErrEval, info.Type)
}

// classifier is a loaded .tflite model with one grey image input and one probability output
// (the shape cxr-quantize writes) and the contract its metadata states.
type classifier struct {
	em           *engine.Model
	spec         imaging.InputSpec
	threshold    float32
	hasThreshold bool
}

// loadClassifier loads a classifier; every error wraps ErrEval.
func loadClassifier(model []byte) (*classifier, error) {
	tm, err := tflite.Read(model)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEval, err)
	}
	em, err := engine.Load(tm, engine.Options{Threads: 1})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEval, err)
	}
	spec, err := imaging.SpecFromModel(tm)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEval, err)
	}
	outs := em.Outputs()
	if spec.Channels != 1 || len(outs) != 1 {
		return nil, fmt.Errorf("%w: want one [1,H,W,1] input and one output", ErrEval)
	}
	if o := outs[0]; o.NumElements() != 1 {
		return nil, fmt.Errorf("%w: output %q has %d values, want one probability", ErrEval, o.Name, o.NumElements())
	} else if o.Type != tflite.Float32 && (len(o.Scale) != 1 || len(o.ZeroPoint) != 1) {
		return nil, fmt.Errorf("%w: output %q is not quantized per tensor", ErrEval, o.Name)
	}
	th, ok, err := imaging.ModelThreshold(tm)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEval, err)
	}
	return &classifier{em: em, spec: spec, threshold: float32(th), hasThreshold: ok}, nil
}

func relPath(root, path string) string {
	if root == "" {
		return path
	}
	r, err := filepath.Rel(root, path)
	if err != nil || strings.HasPrefix(r, "..") {
		return path
	}
	return filepath.ToSlash(r)
}

// firstError returns the error that stopped the workers: a worker's own failure cancels the
// others, so their context.Canceled is not the cause.
func firstError(errs []error) error {
	var canceled error
	for _, e := range errs {
		switch {
		case e == nil:
		case errors.Is(e, context.Canceled):
			canceled = cmp.Or(canceled, e)
		default:
			return e
		}
	}
	return canceled
}
