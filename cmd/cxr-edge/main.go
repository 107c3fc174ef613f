// Command cxr-edge is the device daemon: it scores chest X-rays arriving in a hot folder or
// over HTTP with the int8 model, records every input and result, drives the indicator and
// publishes results and health over MQTT.
//
//	cxr-edge [run] [flags]          start the daemon (the default); SIGHUP reloads the model
//	cxr-edge score [flags] FILE...  score files once; a table, or JSON lines with --json
//	cxr-edge config [flags]         print the effective configuration
//	cxr-edge bench [flags] DIR|FILE...  per-stage latency and memory of scoring (Markdown)
//	cxr-edge demo [flags]           the daemon in ./cxr-demo with an embedded MQTT broker;
//	                                --drop DIR copies images in and prints results from MQTT
//	cxr-edge version                print the version and the embedded model
//
// Configuration: ./cxr-edge.yaml or /etc/cxr-edge/cxr-edge.yaml (or --config FILE), then
// CXR_<SECTION>_<KEY> environment variables, then flags. See configs/cxr-edge.yaml.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/cxr-edge/cxr-edge/edge/device"
	"github.com/cxr-edge/cxr-edge/edge/intake"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// version is set at build time: go build -ldflags "-X main.version=1.2.3".
var version = ""

// Exit codes.
const (
	exitOK         = 0
	exitFailed     = 1 // the daemon failed, or `score` found an unreadable input
	exitUsage      = 2 // bad command line or configuration
	exitUnreadable = 1
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Version returns the version set with -ldflags, else the module version and VCS revision
// recorded by the Go toolchain.
func Version() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "-dirty"
			}
		}
	}
	if rev != "" && (v == "" || v == "(devel)") {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		return "devel-" + rev + modified
	}
	if v == "" {
		return "unknown"
	}
	return v
}

// flagKeys maps the named flags to configuration keys.
var flagKeys = map[string]string{
	"model":     "model.path",
	"threshold": "model.threshold",
	"watch":     "intake.watch_dir",
	"listen":    "intake.http_listen",
	"store":     "store.dir",
	"site":      "device.site",
	"device-id": "device.id",
	"broker":    "mqtt.broker",
	"log-level": "log.level",
	"indicator": "indicator.kind",
}

func newFlags(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet("cxr-edge "+name, pflag.ContinueOnError)
	fs.String("config", "", "configuration file (default: ./cxr-edge.yaml, then /etc/cxr-edge/cxr-edge.yaml)")
	fs.StringArray("set", nil, "override any key: --set model.threshold=0.4 (repeatable)")
	fs.String("model", "", "model.path: the .tflite model")
	fs.String("threshold", "", "model.threshold: operating point in (0,1)")
	fs.String("log-level", "", "log.level: debug, info, warn or error")
	if name != "score" && name != "bench" {
		fs.String("watch", "", "intake.watch_dir: the hot folder")
		fs.String("listen", "", "intake.http_listen: HTTP address, e.g. 127.0.0.1:8080")
		fs.String("store", "", "store.dir: result store folder")
		fs.String("site", "", "device.site")
		fs.String("device-id", "", "device.id")
		fs.String("broker", "", "mqtt.broker: tcp://host:1883 or ssl://host:8883")
		fs.String("indicator", "", "indicator.kind: gpio, console or none")
	}
	return fs
}

func loadConfig(fs *pflag.FlagSet) (*device.Config, error) {
	file, _ := fs.GetString("config")
	return device.Load(device.LoadOptions{File: file, Flags: fs, FlagKeys: flagKeys})
}

const usage = `usage:
  cxr-edge [run] [flags]          start the daemon (default)
  cxr-edge score [flags] FILE...  score files once (--json for JSON lines)
  cxr-edge config [flags]         print the effective configuration
  cxr-edge bench [--runs N] [flags] DIR|FILE...
                                  per-stage latency, throughput and peak RSS (Markdown)
  cxr-edge demo [--drop DIR] [--dir ./cxr-demo] [--listen 127.0.0.1:8080]
                                  the daemon in a local folder with an embedded MQTT
                                  broker; prints each result arriving over MQTT
  cxr-edge version                print the version and the embedded model
  cxr-edge help                   print this help
Without --model (model.path) the model embedded in the binary is used.
Run "cxr-edge <command> --help" for the flags of a command.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	} else if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		cmd = "help" // cxr-edge --help: the commands, not only the flags of run
	}
	switch cmd {
	case "run":
		return cmdRun(ctx, args, stderr)
	case "score":
		return cmdScore(ctx, args, stdout, stderr)
	case "config":
		return cmdConfig(args, stdout, stderr)
	case "bench":
		return cmdBench(ctx, args, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "cxr-edge", Version())
		ref, err := device.EmbeddedModelRef()
		if err != nil {
			fmt.Fprintln(stderr, "cxr-edge:", err)
			return exitFailed
		}
		fmt.Fprintf(stdout, "model %s\nsha256 %s\n", ref.Name, ref.SHA256)
		if ref.Version != "" {
			fmt.Fprintf(stdout, "model version %s\n", ref.Version)
		}
		return exitOK
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "cxr-edge: unknown command %q\n%s", cmd, usage)
	return exitUsage
}

// parse parses flags; ok false means stop with code (0 after --help, 2 for a bad flag).
func parse(fs *pflag.FlagSet, args []string, stderr io.Writer) (code int, ok bool) {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK, false
		}
		fmt.Fprintln(stderr, "cxr-edge:", err)
		return exitUsage, false
	}
	return exitOK, true
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) int {
	// SIGHUP (systemctl reload cxr-edge) reloads the model named by the configuration. It is
	// caught from the start: its default action would end the daemon.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	fs := newFlags("run")
	if code, ok := parse(fs, args, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "cxr-edge run: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	cfg, err := loadConfig(fs)
	if err != nil {
		fmt.Fprintln(stderr, "cxr-edge:", err)
		return exitUsage
	}
	log := device.NewLogger(cfg.Log, stderr)
	if cfg.File != "" {
		log.Info("configuration", "file", cfg.File)
	}
	reload := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading the model")
				select {
				case reload <- struct{}{}:
				default: // a reload is already waiting
				}
			}
		}
	}()
	if err := device.Run(ctx, cfg, device.DaemonOptions{
		Version: Version(), Logger: log, Reload: reload,
		ReloadConfig: func() (*device.Config, error) { return loadConfig(fs) },
	}); err != nil {
		log.Error("cxr-edge failed", "err", err)
		return exitFailed
	}
	return exitOK
}

func cmdConfig(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("config")
	if code, ok := parse(fs, args, stderr); !ok {
		return code
	}
	cfg, err := loadConfig(fs)
	if err != nil {
		fmt.Fprintln(stderr, "cxr-edge:", err)
		return exitUsage
	}
	out, err := cfg.YAML()
	if err != nil {
		fmt.Fprintln(stderr, "cxr-edge:", err)
		return exitFailed
	}
	src := cfg.File
	if src == "" {
		src = "none (defaults)"
	}
	fmt.Fprintf(stdout, "# effective configuration; file: %s\n%s", src, out)
	return exitOK
}

func cmdScore(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("score")
	asJSON := fs.Bool("json", false, "print one result document (as published on MQTT) per line")
	if code, ok := parse(fs, args, stderr); !ok {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "cxr-edge score: no files given")
		return exitUsage
	}
	cfg, err := loadConfig(fs)
	if err != nil {
		fmt.Fprintln(stderr, "cxr-edge:", err)
		return exitUsage
	}
	log := device.NewLogger(device.LogConfig{Level: "warn", Format: cfg.Log.Format}, stderr)
	if f := fs.Lookup("log-level"); f != nil && f.Changed {
		log = device.NewLogger(cfg.Log, stderr)
	}
	model, err := device.LoadModel(cfg.Model)
	if err != nil {
		fmt.Fprintln(stderr, "cxr-edge:", err)
		return exitUsage
	}
	pipe, err := device.NewPipeline(device.PipelineOptions{
		Scorer: model, Threshold: cfg.Model.Threshold, MaxBytes: int64(cfg.Intake.MaxBytes),
		MaxPixels: cfg.Intake.MaxPixels, DecodeTimeout: cfg.Intake.DecodeTimeout, Logger: log,
	})
	if err != nil {
		fmt.Fprintln(stderr, "cxr-edge:", err)
		return exitFailed
	}
	code := exitOK
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if !*asJSON {
		fmt.Fprintln(tw, "FILE\tLABEL\tSCORE\tTHRESHOLD\tSIZE\tDECODE_MS\tPREPROCESS_MS\tINFER_MS\tTOTAL_MS\tREASON")
	}
	enc := json.NewEncoder(stdout)
	for _, path := range fs.Args() {
		if ctx.Err() != nil {
			break
		}
		res, err := scoreFile(ctx, pipe, path, int64(cfg.Intake.MaxBytes))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			fmt.Fprintln(stderr, "cxr-edge:", err)
			return exitFailed
		}
		if res.Label == telemetry.LabelUnreadable {
			code = exitUnreadable
		}
		if *asJSON {
			if err := enc.Encode(res); err != nil {
				return exitFailed
			}
			continue
		}
		size := "-"
		if res.Image.Width > 0 {
			size = fmt.Sprintf("%dx%d", res.Image.Width, res.Image.Height)
		}
		score := "-"
		if res.Label != telemetry.LabelUnreadable {
			score = strconv.FormatFloat(res.Score, 'f', 4, 64)
		}
		t := res.TimingsMs
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.4g\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t%s\n",
			path, res.Label, score, res.Threshold, size, t.Decode, t.Preprocess, t.Infer, t.Total, res.Reason)
	}
	if !*asJSON {
		tw.Flush()
	}
	if ctx.Err() != nil {
		return exitFailed
	}
	return code
}

// scoreFile reads one file (bounded) and scores it; a file that is missing, too large or not
// an image gives an "unreadable" result naming the problem, like the hot folder's failed/.
func scoreFile(ctx context.Context, pipe *device.Pipeline, path string, maxBytes int64) (telemetry.Result, error) {
	unreadable := func(reason string) telemetry.Result {
		sc := pipe.Scorer()
		return telemetry.Result{
			Schema: telemetry.SchemaResult, ReceivedAt: time.Now(), ScoredAt: time.Now(), Source: "cli",
			Label: telemetry.LabelUnreadable, Reason: reason, Threshold: pipe.Threshold(), Model: sc.Ref(),
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return unreadable(err.Error()), nil
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxBytes+1))
	if err != nil {
		return unreadable(err.Error()), nil
	}
	if int64(len(data)) > maxBytes {
		return unreadable(fmt.Sprintf("%v: more than %d bytes (intake.max_bytes)", intake.ErrTooLarge, maxBytes)), nil
	}
	if len(data) == 0 {
		return unreadable(intake.ErrEmpty.Error()), nil
	}
	format := intake.Sniff(data)
	if format == "" {
		return unreadable(intake.ErrUnsupported.Error()), nil
	}
	return pipe.Process(ctx, intake.Input{Source: "cli", Format: format, Data: data, ReceivedAt: time.Now()})
}
