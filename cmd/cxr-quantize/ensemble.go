package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/cxr-edge/cxr-edge/quantize"
)

// cmdEnsemble exports trained float models as one int8 model that averages their logits.
func cmdEnsemble(args []string) error {
	fs := flag.NewFlagSet("ensemble", flag.ContinueOnError)
	data := fs.String("data", "", "dataset root with {train,val}/{NORMAL,PNEUMONIA} (default ../shared/data/chest_xray beside the repository)")
	out := fs.String("out", "", "output folder for model.tflite (required)")
	splitSeed := fs.Uint64("split-seed", 1, "the --split-seed (or --seed) the members were trained with")
	calib := fs.Int("calib", 300, "training images used to calibrate the int8 activation ranges")
	calibPct := fs.Float64("calib-percentile", 0, "activation range = this percentile of calibration values (0: maximum)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() == 0 {
		return fmt.Errorf("%w: ensemble: --out and at least one member model are required", errUsage)
	}
	var err error
	if *data, err = dataOrDefault(*data); err != nil {
		return fmt.Errorf("ensemble: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	res, err := quantize.Ensemble(ctx, quantize.EnsembleConfig{Data: *data, Out: *out, Members: fs.Args(),
		SplitSeed: *splitSeed, CalibImages: *calib, Percentile: *calibPct, Logger: logger})
	if err != nil {
		return fmt.Errorf("ensemble: %w", err)
	}
	fmt.Printf("int8 ensemble of %d %s (%d bytes): val %v (float ensemble: %v); |p_int8 − p_float| mean %.4f max %.4f\n",
		fs.NArg(), res.Path, res.Bytes, res.Val, res.FloatVal, res.MeanAbsDiff, res.MaxAbsDiff)
	fmt.Printf("stress test (perturbed validation, int8): %v\n", res.Stress)
	fmt.Printf("float ensemble threshold (cxr-quantize eval --float-threshold): %.6f\n", res.FloatVal.Threshold)
	return nil
}
