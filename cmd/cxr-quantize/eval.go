package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/cxr-edge/cxr-edge/quantize"
)

// defaultModel is the model the device embeds, relative to the repository root. (Reading the
// file keeps this command free of the device package; an exported device.EmbeddedModel()
// would make the link explicit.)
const defaultModel = "edge/device/model/cxr-pneumonia-int8.tflite"

// modelOrDefault returns path, or the embedded default model's path in the repository.
func modelOrDefault(path string) (string, error) {
	return orInRepo(path, "--model", defaultModel)
}

// dataOrDefault returns dir, or the dataset beside the repository (../shared/data/chest_xray).
func dataOrDefault(dir string) (string, error) {
	return orInRepo(dir, "--data", filepath.Join("..", "shared", "data", "chest_xray"))
}

// orInRepo returns given, or rel joined to the repository root (the folder holding go.mod,
// searched upward from the working directory); without a root, not giving flag is a usage error.
func orInRepo(given, flag, rel string) (string, error) {
	if given != "" {
		return given, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("%w: %s not given and %w", errUsage, flag, err)
	}
	return filepath.Join(root, rel), nil
}

// Files written by eval into --out.
const (
	evalReportFile = "report.md"
	evalJSONFile   = "metrics.json"
)

// cmdEval evaluates the int8 model (and optionally its float model) on the official test split.
func cmdEval(args []string) error {
	return runEval(context.Background(), args, os.Stdout)
}

func runEval(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	modelPath := fs.String("model", "", "int8 .tflite model (default: the embedded model "+defaultModel+")")
	floatTh := fs.Float64("float-threshold", 0, "operating point of the float model(s) (default: the float model's own; for an ensemble the int8 model's); cxr-quantize ensemble prints the float ensemble's")
	floatPath := fs.String("float", "", "float model to compare, or comma-separated members of an ensemble (default: float.model beside --model, if present)")
	data := fs.String("data", "", "dataset root with test/{NORMAL,PNEUMONIA} (default ../shared/data/chest_xray beside the repository)")
	split := fs.String("split", "test", "split folder to evaluate")
	out := fs.String("out", "", "folder for report.md, metrics.json and the plots (default: print the report only)")
	scores := fs.String("scores", "", "also write one CSV row per image (file,truth,score,predicted) to this file")
	boot := fs.Int("bootstrap", 2000, "bootstrap resamples of the 95% intervals")
	seed := fs.Uint64("seed", 1, "seed of the bootstrap and of --limit's sample")
	limit := fs.Int("limit", 0, "evaluate a class-stratified sample of this many images (quick checks; 0: all)")
	siteSens := fs.Float64("site-sensitivity", 0, "also choose a site's operating point on these images: the highest threshold with at least this sensitivity (e.g. 0.95), and print how to set it on the devices; not on the test split")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: eval: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *boot < 0 || *limit < 0 {
		return fmt.Errorf("%w: eval: --bootstrap and --limit must be ≥ 0", errUsage)
	}
	if *siteSens != 0 {
		if !(*siteSens > 0 && *siteSens <= 1) {
			return fmt.Errorf("%w: eval: --site-sensitivity %v: want a fraction in (0, 1]", errUsage, *siteSens)
		}
		if *split == "test" {
			// A threshold chosen on the test split makes its report meaningless.
			return fmt.Errorf("%w: eval: --site-sensitivity chooses a threshold on the images it evaluates; not on the official test split, "+
				"whose report would then mean nothing: use the site's own labelled films (--data DIR --split site)", errUsage)
		}
	}
	name := *modelPath
	if *modelPath == "" {
		name = defaultModel + " (embedded default)"
	}
	var err error
	if *modelPath, err = modelOrDefault(*modelPath); err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	if *data, err = dataOrDefault(*data); err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	model, err := os.ReadFile(*modelPath)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	opts := quantize.EvalOptions{Bootstrap: *boot, Seed: *seed, Root: filepath.Join(*data, *split)}
	if *boot == 0 {
		opts.Bootstrap = -1 // no intervals
	}
	if *floatPath == "" {
		if beside := filepath.Join(filepath.Dir(*modelPath), "float.model"); fileExists(beside) {
			*floatPath = beside
		}
	}
	opts.FloatThreshold = float32(*floatTh)
	if *floatPath != "" {
		for _, p := range strings.Split(*floatPath, ",") {
			m, err := quantize.LoadModel(p)
			if err != nil {
				return fmt.Errorf("eval: %w", err)
			}
			opts.Float = append(opts.Float, m)
		}
	}
	samples, err := quantize.ListSplit(*data, *split)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	if *limit > 0 {
		samples = quantize.Subsample(samples, *limit, *seed)
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := quantize.EvaluateTFLite(ctx, name, model, samples, opts)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	rep.Bootstrap = *boot

	var md bytes.Buffer
	if err := rep.Markdown(&md); err != nil {
		return err
	}
	if *floatPath != "" {
		fmt.Fprintf(&md, "\nFloat model: %s.\n", *floatPath)
	}
	if *siteSens > 0 {
		writeSitePoint(&md, rep, *siteSens)
	}
	if *out != "" {
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return fmt.Errorf("eval: %w", err)
		}
		var js bytes.Buffer
		if err := rep.JSON(&js); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(*out, evalJSONFile), js.Bytes(), 0o644); err != nil {
			return fmt.Errorf("eval: %w", err)
		}
		paths, err := rep.WritePlots(*out)
		if err != nil {
			return fmt.Errorf("eval: %w", err)
		}
		md.WriteString("\nPlots: ")
		for i, p := range paths {
			if i > 0 {
				md.WriteString(", ")
			}
			fmt.Fprintf(&md, "[%s](%s)", filepath.Base(p), filepath.Base(p))
		}
		md.WriteString("\n")
		if err := os.WriteFile(filepath.Join(*out, evalReportFile), md.Bytes(), 0o644); err != nil {
			return fmt.Errorf("eval: %w", err)
		}
	}
	if *scores != "" {
		if err := writeScores(*scores, rep); err != nil {
			return fmt.Errorf("eval: %w", err)
		}
	}
	_, err = stdout.Write(md.Bytes())
	return err
}

// writeSitePoint reports the site operating point chosen on the evaluated images and how to
// apply it. The threshold is written exactly (the float32 score it is, in full), so that the
// film that sets it is still flagged on the device.
func writeSitePoint(w io.Writer, rep *quantize.EvalReport, sens float64) {
	threshold, c := rep.OperatingPointFor(sens)
	pos, neg := c.TP+c.FN, c.TN+c.FP
	sens1, spec := float64(c.TP)/float64(max(pos, 1)), float64(c.TN)/float64(max(neg, 1))
	sLo, sHi := quantize.WilsonInterval(c.TP, pos)
	cLo, cHi := quantize.WilsonInterval(c.TN, neg)
	th := strconv.FormatFloat(float64(threshold), 'g', -1, 64)
	fmt.Fprintf(w, "\n## Site operating point\n\n"+
		"Chosen on these %d images (%d pneumonia): the highest threshold with sensitivity ≥ %.0f%% is **%s**, "+
		"with sensitivity %.1f%% [%.1f–%.1f] and specificity %.1f%% [%.1f–%.1f] on them (95%% Wilson intervals). "+
		"These films chose the threshold, so they cannot also measure the accuracy at it: label others for that.\n\n"+
		"Apply it to the devices that run this model (sha256 %s): on each device's page of the fleet dashboard "+
		"(an operator's token), or by MQTT:\n\n"+
		"    mosquitto_pub -q 1 -t '<prefix>/<site>/<device>/cmd/set-threshold' -m '{\"threshold\":%s,\"model_sha256\":\"%s\"}'\n\n"+
		"or on a device: `model.threshold: %s` in cxr-edge.yaml, then `systemctl reload cxr-edge`.\n",
		pos+neg, pos, 100*sens, th, 100*sens1, 100*sLo, 100*sHi, 100*spec, 100*cLo, 100*cHi,
		rep.ModelSHA256, th, rep.ModelSHA256, th)
}

func writeScores(path string, rep *quantize.EvalReport) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	return rep.WriteScoresCSV(f)
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

// repoRoot is the folder holding go.mod, searched upward from the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no repository root (go.mod) above the working directory")
		}
		dir = parent
	}
}
