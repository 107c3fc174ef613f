package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cxr-edge/cxr-edge/quantize"
)

// cmdTrain trains the float pneumonia model: cxr-quantize train --data DIR --out DIR.
func cmdTrain(args []string) error {
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	def := quantize.DefaultConfig()
	data := fs.String("data", "", "dataset root with {train,val,test}/{NORMAL,PNEUMONIA} (default ../shared/data/chest_xray beside the repository)")
	out := fs.String("out", "", "output folder for checkpoint, models, history and train.log (required; keep it outside the repository)")
	epochs := fs.Int("epochs", def.Epochs, "maximum epochs (early stopping may end sooner)")
	size := fs.Int("size", def.Arch.Size, "model input size (square)")
	wide := fs.Bool("wide", false, "use the wider comparison architecture")
	channels := fs.String("channels", "", "output channels of the architecture's blocks, comma-separated (default architecture: 8,16,32,32,64,64,128)")
	seed := fs.Uint64("seed", def.Seed, "seed of every random choice (split, init, order, augmentation, dropout)")
	splitSeed := fs.Uint64("split-seed", 0, "seed of the train/validation split alone (0: --seed); ensemble members share it")
	resume := fs.Bool("resume", false, "continue from OUT/checkpoint.gob")
	subset := fs.Int("subset", 0, "train on this many images only (quick CI runs)")
	batch := fs.Int("batch", def.BatchSize, "batch size")
	lr := fs.Float64("lr", def.LR, "peak learning rate")
	wd := fs.Float64("weight-decay", def.WeightDecay, "decoupled weight decay")
	patience := fs.Int("patience", def.Patience, "early-stopping patience in epochs")
	evalTest := fs.Bool("eval-test", true, "report the chosen model on the official test split at the end (never used for choosing)")
	noExport := fs.Bool("no-export", false, "do not write the int8 model.tflite at the end")
	exportOnly := fs.Bool("export-only", false, "do not train: export and evaluate OUT/best.model (int8 model.tflite)")
	aug := fs.Float64("aug", 1, "scale of every augmentation range (rotation, shift, zoom, brightness, contrast); 0 turns augmentation off")
	dropout := fs.Float64("dropout", float64(def.Arch.Dropout), "dropout before the classifier")
	calibPct := fs.Float64("calib-percentile", 0, "activation range = this percentile of calibration values (0: maximum)")
	valBatch := fs.Bool("val-by-batch", false, "validate on a held-out acquisition batch of NORMALs (IM-*) instead of a patient split")
	gamma := fs.Float64("gamma", 0, "augmentation: gamma uniform in [1-g, 1+g] (0: off)")
	blur := fs.Float64("blur", 0, "augmentation: probability of a 3x3 blur (0: off)")
	contrast := fs.Float64("contrast", quantize.DefaultAugment().Contrast, "augmentation: contrast factor range ±c")
	bright := fs.Float64("brightness", quantize.DefaultAugment().Brightness, "augmentation: brightness range ±b")
	margin := fs.Float64("margin", 0, "augmentation: probability of black margins (0: off)")
	zoomIn := fs.Float64("zoom-in", 0, "augmentation: extra magnification uniform in [1, 1+z] on every image (0: off)")
	aspect := fs.Float64("aspect", 0, "augmentation: stretch down or across by a factor log-uniform in [1/(1+a), 1+a] (0: off)")
	normalAspect := fs.Float64("normal-aspect", 0, "augmentation: stretch every NORMAL film down by this factor as well (0: off); with --pneumonia-aspect, the product 1.24 (the training originals' median PNEUMONIA/NORMAL width-to-height ratio) makes both classes equally compressed across")
	erase := fs.Float64("erase", 0, "augmentation: probability of replacing one random rectangle (2–20% of the image) by its mean grey (0: off)")
	mixup := fs.Float64("mixup", 0, "blend each training film with a random other one, labels and weights alike, by λ ~ Beta(a, a) (0: off; e.g. 0.2)")
	pneuAspect := fs.Float64("pneumonia-aspect", 0, "augmentation: stretch every PNEUMONIA film across by this factor as well (0: off); see --normal-aspect")
	window := fs.Float64("window", 0, "input grey-level window: fraction of pixels clipped at each end (0: none; stored in the model)")
	equalize := fs.Bool("equalize", false, "histogram-equalize the input after the window (stored in the model; the device does the same)")
	renormalize := fs.Bool("renormalize", false, "window every augmented film again, as the device windows every film it receives (always on with --equalize)")
	calib := fs.Int("calib", 300, "training images used to calibrate the int8 activation ranges")
	viral := fs.Float64("viral-weight", 1, "loss weight of a viral pneumonia film relative to a bacterial one (the class keeps half of the loss)")
	ema := fs.Float64("ema", 0, "validate, keep and export a moving average of the weights with this decay per step (e.g. 0.998; 0: off)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("%w: train: --out is required", errUsage)
	}
	var err error
	if *data, err = dataOrDefault(*data); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(*out, "train.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(os.Stderr, logf), nil))

	cfg := def
	cfg.Data, cfg.Out = *data, *out
	cfg.Arch = quantize.DefaultArch(*size)
	if *wide {
		cfg.Arch = quantize.WideArch(*size)
	}
	if *channels != "" {
		var cs []int
		for f := range strings.SplitSeq(*channels, ",") {
			c, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				return fmt.Errorf("%w: train: --channels %q: %v", errUsage, *channels, err)
			}
			cs = append(cs, c)
		}
		if cfg.Arch, err = cfg.Arch.WithChannels(cs); err != nil {
			return fmt.Errorf("%w: train: --channels: %v", errUsage, err)
		}
	}
	cfg.Epochs, cfg.Seed, cfg.SplitSeed, cfg.Resume, cfg.Subset = *epochs, *seed, *splitSeed, *resume, *subset
	cfg.BatchSize, cfg.LR, cfg.WeightDecay, cfg.Patience, cfg.EvalTest = *batch, *lr, *wd, *patience, *evalTest
	cfg.NoExport, cfg.ExportOnly, cfg.CalibImages, cfg.EMA, cfg.ViralWeight = *noExport, *exportOnly, *calib, *ema, *viral
	cfg.Arch.Dropout = float32(*dropout)
	cfg.Arch.Window, cfg.Arch.Equalize = float32(*window), *equalize
	cfg.CalibPercentile = *calibPct
	cfg.ValByBatch = *valBatch
	base := quantize.DefaultAugment()
	base.Contrast, base.Brightness, base.Gamma, base.Blur, base.Margin, base.ZoomIn, base.Aspect = *contrast, *bright, *gamma, *blur, *margin, *zoomIn, *aspect
	base.NormalAspect, base.PneumoniaAspect, base.Erase, base.Mixup = *normalAspect, *pneuAspect, *erase, *mixup
	base.Renormalize = *renormalize
	a := base.Scaled(*aug)
	cfg.Augment = &a
	cfg.Logger = logger
	cfg.Progress = io.MultiWriter(os.Stdout, logf)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	logger.Info("train", "data", cfg.Data, "out", cfg.Out, "resume", cfg.Resume, "subset", cfg.Subset) // quantize.Train logs the recipe
	res, err := quantize.Train(ctx, cfg)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	logger.Info("done", "model", filepath.Join(cfg.Out, quantize.ModelFile), "best_epoch", res.Model.Epoch,
		"val", res.Model.Val.String(), "elapsed", time.Since(start).Round(time.Second).String())
	if res.Test != nil {
		logger.Info("test report (float)", "test", res.Test.String())
	}
	if res.Int8 != nil {
		logger.Info("int8 model", "path", res.Int8.Path, "bytes", res.Int8.Bytes, "threshold", res.Int8.Threshold, "val", res.Int8.Val.String())
		if res.Int8.Test != nil {
			logger.Info("test report (int8)", "test", res.Int8.Test.String())
		}
	}
	return nil
}
