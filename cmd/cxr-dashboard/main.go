// Command cxr-dashboard is the central fleet view: it subscribes to the devices' MQTT topics
// and serves a web UI, a JSON API and Prometheus metrics.
//
//	cxr-dashboard [serve] [--config /etc/cxr/cxr-dashboard.yaml] [--mqtt.broker URL] [--http.listen ADDR] [--store.dir DIR]
//	cxr-dashboard loadgen --broker URL --devices 1000 --duration 90s [--dashboard http://127.0.0.1:8090]
//	cxr-dashboard token NAME [COMMANDS]   (a new operator token, and the line for
//	                                      commands.operators_file; COMMANDS limits it)
//
// Every configuration key can also be set as CXR_<KEY> with dots as underscores
// (CXR_MQTT_BROKER, CXR_HTTP_LISTEN, CXR_STORE_DIR, …).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/cxr-edge/cxr-edge/telemetry/fleet"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	args := os.Args[1:]
	cmd := "serve"
	if len(args) > 0 && (args[0] == "serve" || args[0] == "loadgen" || args[0] == "token") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "loadgen":
		err = loadgen(ctx, log, args)
	case "token":
		err = token(os.Stdout, args)
	default:
		err = serve(ctx, log, args)
	}
	if errors.Is(err, pflag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cxr-dashboard:", err)
		os.Exit(1)
	}
}

func serve(ctx context.Context, log *slog.Logger, args []string) error {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	cfgFile := fs.String("config", "", "configuration file (YAML); default: none, or $CXR_CONFIG")
	fs.String("mqtt.broker", "", "broker URL, e.g. ssl://broker:8883")
	fs.String("http.listen", "", "UI/API address (default "+fleet.DefaultHTTPListen+")")
	fs.String("store.dir", "", "directory of the fleet database")
	if err := fs.Parse(args); err != nil {
		return err
	}
	v := viper.New()
	fleet.SetConfigDefaults(v)
	for _, k := range []string{"mqtt.broker", "http.listen", "store.dir"} {
		if f := fs.Lookup(k); f.Changed {
			if err := v.BindPFlag(k, f); err != nil {
				return err
			}
		}
	}
	if *cfgFile == "" {
		*cfgFile = os.Getenv("CXR_CONFIG")
	}
	if *cfgFile != "" {
		v.SetConfigFile(*cfgFile)
		if err := v.ReadInConfig(); err != nil {
			return fmt.Errorf("config %s: %w", *cfgFile, err)
		}
	}
	cfg, err := fleet.LoadConfig(v)
	if err != nil {
		return err
	}
	cfg.Logger = log
	svc, err := fleet.New(cfg.Options)
	if err != nil {
		return err
	}
	defer svc.Close()
	ln, err := net.Listen("tcp", cfg.HTTPListen)
	if err != nil {
		return fmt.Errorf("http.listen %s: %w", cfg.HTTPListen, err)
	}
	// No WriteTimeout: /events streams for as long as a browser stays on the page.
	srv := &http.Server{Handler: svc.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
	log.Info("cxr-dashboard listening", "http", "http://"+ln.Addr().String(), "broker", cfg.MQTT.Broker,
		"topic", cfg.MQTT.SubscriptionTopic(), "store", cfg.StoreDir)
	runErr := make(chan error, 1)
	go func() { runErr <- svc.Run(ctx) }()
	// Ready once the store is open and HTTP listens; the broker may come later (retries).
	_, _ = daemon.SdNotify(false, daemon.SdNotifyReady)
	if wd, err := daemon.SdWatchdogEnabled(false); err == nil && wd > 0 {
		go watchdog(ctx, svc, wd/2)
	}
	err = <-runErr
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shut)
	return err
}

// token prints a new operator token and the operators-file line that admits it (to every
// command, or to the comma-separated COMMANDS).
func token(w io.Writer, args []string) error {
	if len(args) != 1 && len(args) != 2 {
		return errors.New("usage: cxr-dashboard token NAME [COMMANDS] (COMMANDS: comma-separated of ping, set-threshold, reload-model; default all)")
	}
	commands := ""
	if len(args) == 2 {
		commands = args[1]
	}
	tok, line, err := fleet.NewOperatorToken(args[0], commands)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "token for %s (give it to the operator; it is not stored and cannot be shown again):\n  %s\n"+
		"line for commands.operators_file (only the token's sha256):\n  %s\n", args[0], tok, line)
	return err
}

// watchdog pings systemd only while the processor is alive, so a hung dashboard is restarted.
func watchdog(ctx context.Context, svc *fleet.Service, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if svc.Healthy() {
				_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
			}
		}
	}
}

func loadgen(ctx context.Context, log *slog.Logger, args []string) error {
	fs := pflag.NewFlagSet("loadgen", pflag.ContinueOnError)
	var o fleet.LoadOptions
	fs.StringVar(&o.Broker, "broker", "tcp://127.0.0.1:1883", "broker URL")
	fs.StringVar(&o.Prefix, "prefix", "cxr", "topic prefix")
	fs.IntVar(&o.Devices, "devices", 100, "simulated devices (one MQTT connection each)")
	fs.IntVar(&o.Sites, "sites", 10, "sites the devices are spread over")
	fs.DurationVar(&o.Duration, "duration", time.Minute, "how long to publish (at most 10m)")
	fs.DurationVar(&o.HealthEvery, "health-every", 10*time.Second, "health interval per device")
	fs.DurationVar(&o.ResultEvery, "result-every", time.Minute, "mean result interval per device")
	dash := fs.String("dashboard", "", "base URL of a running dashboard to measure; empty: start one in this process")
	storeDir := fs.String("store.dir", "", "store of the in-process dashboard (default: a temporary directory)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.Logger = log
	var src fleet.StatsSource
	if *dash != "" {
		src = fleet.HTTPStats(*dash)
	} else {
		dir := *storeDir
		if dir == "" {
			tmp, err := os.MkdirTemp("", "cxr-loadgen-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			dir = tmp
		}
		opts := fleet.DefaultOptions()
		opts.StoreDir, opts.Logger = dir, log
		opts.MQTT.Broker, opts.MQTT.TopicPrefix = o.Broker, o.Prefix
		opts.MQTT.ClientID = fmt.Sprintf("cxr-dashboard-loadgen-%d", os.Getpid())
		// loadgen simulates up to 20000 devices, more than the default cap; none may be dropped.
		opts.MaxDevices = max(opts.MaxDevices, o.Devices)
		svc, err := fleet.New(opts)
		if err != nil {
			return err
		}
		defer svc.Close()
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = svc.Run(runCtx); close(done) }()
		defer func() { cancel(); <-done }()
		// Connected means subscribed (SUBACK received): from then on nothing published is missed.
		deadline := time.Now().Add(10 * time.Second)
		for !svc.Connected() {
			if time.Now().After(deadline) {
				return fmt.Errorf("in-process dashboard not subscribed at %s after 10s", o.Broker)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
		src = svc.Stats
	}
	rep, err := fleet.RunLoad(ctx, o, src)
	if err != nil {
		return err
	}
	fmt.Println(rep)
	return nil
}
