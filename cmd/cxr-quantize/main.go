// Command cxr-quantize is the model pipeline's tool: inspect and run any .tflite model, and
// train, quantize and evaluate the pneumonia model.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

const usage = `usage: cxr-quantize COMMAND [flags]

commands:
  inspect MODEL     print a model's graph: ops, tensors, quantization, parameters, MACs, arena
  run               run a model in the Go engine, print JSON shaped like the oracle runners':
                    --model M [--input IN.bin ...] [--bench N] [--out F] [--threads N]
                    (no --input: the deterministic pattern of the reference models)
  bench             time the reference models in the Go engine and LiteRT.js, print a Markdown table
                    [--models DIR] [--runs N] [--threads N] [--litert DIR] [--only a.tflite,b.tflite]
                    [--cpuprofile FILE]
  train             train the float pneumonia model: --data DIR --out DIR [--epochs N] [--size 128]
                    [--seed S] [--resume] [--subset N] [--export-only] (checkpoints, float.model,
                    int8 model.tflite, train.log, history.json)
  ensemble          export several trained float models (members trained with one --split-seed) as
                    one int8 model averaging their logits, threshold chosen on validation:
                    --out DIR [--data DIR] [--split-seed 1] [--calib 300] MEMBER.model ...
  eval              evaluate the int8 model in the engine (and its float model) on the test split:
                    [--model M.tflite] [--float F.model] [--data DIR] [--out DIR] [--scores F.csv]
                    [--bootstrap 2000] [--seed S] [--limit N] (report.md, metrics.json, ROC, PR,
                    calibration and confusion-matrix PNGs)
  stress            the stress test: the int8 model on its validation films magnified ×1.0–1.4,
                    brightened, blurred and stretched down or across, at the model's threshold:
                    [--model M.tflite] [--data DIR] [--split-seed 1]
`

// errUsage marks a command-line mistake: the message is printed with the usage text.
var errUsage = errors.New("usage")

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	// Each subcommand lives in its own file as cmdNAME(args []string) error.
	case "inspect":
		err = cmdInspect(args)
	case "run":
		err = cmdRun(args)
	case "bench":
		err = cmdBench(args)
	case "train":
		err = cmdTrain(args)
	case "eval":
		err = cmdEval(args)
	case "ensemble":
		err = cmdEnsemble(args)
	case "stress":
		err = cmdStress(args)
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		err = fmt.Errorf("%w: unknown command %q", errUsage, cmd)
		_ = args
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "cxr-quantize: %v\n", err)
		if errors.Is(err, errUsage) {
			fmt.Fprint(os.Stderr, usage)
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// parseFlags parses args; on a mistake it prints the flags' help to stderr and returns an
// errUsage error naming the command.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		fs.SetOutput(os.Stderr)
		fs.PrintDefaults()
		return fmt.Errorf("%w: %s: %w", errUsage, fs.Name(), err)
	}
	return nil
}
