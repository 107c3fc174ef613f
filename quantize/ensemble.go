package quantize

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
)

// EnsembleConfig describes the export of several trained float models as one int8 model.
type EnsembleConfig struct {
	Data    string   // dataset root (as Config.Data)
	Out     string   // output folder: model.tflite
	Members []string // float models (float.model or best.model of train runs)
	// SplitSeed and ValFraction must be those the members were trained with (their
	// Config.SplitSeed), so validation holds only images no member trained on. Defaults 1, 0.15.
	SplitSeed   uint64
	ValFraction float64
	CalibImages int     // calibration images from the training part (default 300)
	Percentile  float64 // ExportOptions.Percentile
	Workers     int     // default GOMAXPROCS
	Logger      *slog.Logger
}

// EnsembleResult is the written model and its validation numbers.
type EnsembleResult struct {
	Int8Result
	FloatVal Metrics // the float ensemble (mean logit) on validation at its own threshold
}

// validationDefaults fills the defaults of the tools that score a trained model on its
// validation split (Ensemble, StressModel): split seed 1, fraction 0.15, GOMAXPROCS workers.
func validationDefaults(splitSeed *uint64, fraction *float64, workers *int) {
	if *splitSeed == 0 {
		*splitSeed = 1
	}
	if *fraction == 0 {
		*fraction = 0.15
	}
	if *workers <= 0 {
		*workers = runtime.GOMAXPROCS(0)
	}
}

// Ensemble exports cfg.Members as one int8 model (ExportEnsemble), chooses its threshold on the
// int8 model's validation scores (sensitivity ≥ SensitivityTarget, as a single run does) and
// writes Out/model.tflite.
func Ensemble(ctx context.Context, cfg EnsembleConfig) (*EnsembleResult, error) {
	validationDefaults(&cfg.SplitSeed, &cfg.ValFraction, &cfg.Workers)
	if cfg.CalibImages <= 0 {
		cfg.CalibImages = 300
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Members) == 0 {
		return nil, fmt.Errorf("%w: no member models", ErrExport)
	}
	models := make([]*Model, len(cfg.Members))
	for i, p := range cfg.Members {
		m, err := LoadModel(p)
		if err != nil {
			return nil, err
		}
		models[i] = m
	}
	// The split and official val images of Train with this SplitSeed, and the calibration
	// sample of a run whose Seed equals it.
	train, val, err := trainValSplit(cfg.Data, cfg.ValFraction, cfg.SplitSeed, false)
	if err != nil {
		return nil, err
	}
	calib := Subsample(train, cfg.CalibImages, cfg.SplitSeed+2)
	spec := models[0].Arch.Input()
	if err := LoadGrey(ctx, calib, spec, cfg.Workers); err != nil {
		return nil, err
	}
	if err := LoadGrey(ctx, val, spec, cfg.Workers); err != nil {
		return nil, err
	}
	tm, err := ExportEnsemble(models, greyOf(calib), ExportOptions{Percentile: cfg.Percentile})
	if err != nil {
		return nil, err
	}
	fscores, err := EnsembleScores(models, greyOf(val))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, err
	}
	i8, err := finishInt8(ctx, tm, val, fscores, filepath.Join(cfg.Out, TFLiteFile), cfg.Workers)
	if err != nil {
		return nil, err
	}
	labels := labelsOf(val)
	res := &EnsembleResult{Int8Result: *i8,
		FloatVal: Evaluate(fscores, labels, ThresholdForSensitivity(fscores, labels, SensitivityTarget))}
	log.Info("ensemble written", "path", res.Path, "bytes", res.Bytes, "members", len(models), "val", res.Val.String(),
		"float_val", res.FloatVal.String(), "val_mean_abs_diff", res.MeanAbsDiff, "val_max_abs_diff", res.MaxAbsDiff)
	return res, nil
}
