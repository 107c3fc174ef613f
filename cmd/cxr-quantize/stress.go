package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/cxr-edge/cxr-edge/quantize"
)

// cmdStress runs the stress test (quantize.StressSuite) of an int8 model on its validation split.
func cmdStress(args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runStress(ctx, args, os.Stdout)
}

func runStress(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("stress", flag.ContinueOnError)
	data := fs.String("data", "", "dataset root with {train,val}/{NORMAL,PNEUMONIA} (default ../shared/data/chest_xray beside the repository)")
	model := fs.String("model", "", "int8 .tflite with cxr_threshold in its metadata (default: the embedded model)")
	splitSeed := fs.Uint64("split-seed", 1, "the --split-seed (or --seed) the model was trained with")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var err error
	if *data, err = dataOrDefault(*data); err != nil {
		return fmt.Errorf("stress: %w", err)
	}
	path, err := modelOrDefault(*model)
	if err != nil {
		return fmt.Errorf("stress: %w", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: stress: unexpected argument %q", errUsage, fs.Arg(0))
	}
	st, err := quantize.StressModel(ctx, quantize.StressConfig{Data: *data, Model: path, SplitSeed: *splitSeed})
	if err != nil {
		return fmt.Errorf("stress: %w", err)
	}
	fmt.Fprintln(stdout, "| perturbation | accuracy | sensitivity | specificity | balanced accuracy |")
	fmt.Fprintln(stdout, "|---|---|---|---|---|")
	for _, r := range st.Rows {
		m := r.Metrics
		fmt.Fprintf(stdout, "| %s | %.1f%% | %.1f%% | %.1f%% | %.1f%% |\n", r.Name, 100*m.Accuracy, 100*m.Sensitivity,
			100*m.Specificity, 50*(m.Sensitivity+m.Specificity))
	}
	fmt.Fprintf(stdout, "\nmean balanced accuracy %.2f%% (%s); mean accuracy %.2f%%; %d validation images, split seed %d, threshold from the model\n%s\n",
		100*st.MeanBalanced(""), st.KindMeans(), 100*st.MeanAccuracy(""), st.Rows[0].Metrics.N, *splitSeed, st.KindFalls())
	return nil
}
