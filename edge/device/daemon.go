package device

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	mqttserver "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cxr-edge/cxr-edge/edge/dicom"
	"github.com/cxr-edge/cxr-edge/edge/intake"
	"github.com/cxr-edge/cxr-edge/edge/store"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// NewLogger returns the slog logger the configuration asks for, writing to w.
func NewLogger(cfg LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level)) // validated by Config.Validate
	hopts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, hopts))
	}
	return slog.New(slog.NewTextHandler(w, hopts))
}

// Listening is where a running daemon can be reached.
type Listening struct {
	HTTP  string // intake.http_listen as bound ("" without the HTTP API)
	DICOM string // intake.dicom_listen as bound ("" without the Store SCP)
	MQTT  string // the embedded broker's address as bound (mqtt.embedded; else "")
}

// DaemonOptions are what Run needs besides the configuration.
type DaemonOptions struct {
	// Version of the daemon, reported in status.
	Version string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Console is where indicator.kind console writes; default os.Stderr.
	Console io.Writer
	// Ready, if set, is called once the daemon serves, with the addresses it listens on
	// (tests and the demo use it to learn ports the kernel chose for "127.0.0.1:0").
	Ready func(Listening)
	// Notify sends systemd notifications; default daemon.SdNotify (a no-op outside systemd).
	Notify func(state string) error
	// Reload, if set, asks for a model reload at each receive (cxr-edge sends on SIGHUP):
	// the model section is read again with ReloadConfig (nil: the model file is read again
	// with the start-up settings), the model is verified (it loads, its input fits, the
	// optional sha256 pin matches) and only then replaces the running one. Images being
	// scored finish with the old model; nothing is dropped. A model that fails the checks is
	// logged and the old one keeps running.
	Reload <-chan struct{}
	// ReloadConfig reads the configuration again for Reload.
	ReloadConfig func() (*Config, error)
}

// ShutdownTimeout bounds the stop after SIGTERM (systemd's TimeoutStopSec is longer).
const ShutdownTimeout = 30 * time.Second

// RecoverInterval is how often the daemon looks for inputs left pending.
const RecoverInterval = time.Minute

// StudyKeyFile is the name, in store.dir, of the key that pseudonymises DICOM study UIDs.
const StudyKeyFile = "study.key"

// LoadStudyKey reads the study-hash key from dir, creating a random 32-byte key (mode 0600)
// on first start. Devices whose results must correlate can be given the same file.
func LoadStudyKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, StudyKeyFile)
	key, err := os.ReadFile(path)
	if err == nil {
		if len(key) < 16 {
			return nil, fmt.Errorf("study key %s: %d bytes, want at least 16", path, len(key))
		}
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("study key: %w", err)
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("study key: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, key, 0o600); err != nil {
		return nil, fmt.Errorf("study key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("study key: %w", err)
	}
	return key, nil
}

// Run starts the daemon and blocks until ctx is cancelled (SIGTERM/SIGINT), then stops the
// intake, lets an HTTP request in progress finish, leaves a folder image in progress pending
// (it is scored on the next start), closes the store and returns nil. Start-up problems are
// returned as errors naming what failed.
func Run(ctx context.Context, cfg *Config, opts DaemonOptions) error {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	notify := opts.Notify
	if notify == nil {
		notify = func(state string) error { _, err := daemon.SdNotify(false, state); return err }
	}

	mcfg, reloaded, err := activeModelConfig(cfg.Model, cfg.Store.Dir)
	if err != nil {
		return fmt.Errorf("remotely reloaded model: %w", err)
	}
	if reloaded {
		log.Warn("using the model set by a remote reload-model command instead of model.path; delete "+
			filepath.Join(cfg.Store.Dir, modelsDir, activeModelFile)+" to revert", "path", mcfg.Path)
	}
	model, err := LoadModel(mcfg)
	if err != nil {
		return err
	}
	threshold, thresholdSource, err := siteOperatingPoint(cfg.Store.Dir, model.Ref(), mcfg.Threshold)
	if err != nil {
		return fmt.Errorf("site threshold: %w", err)
	}
	log.Info("model loaded", "name", model.Ref().Name, "sha256", model.Ref().SHA256,
		"input", fmt.Sprintf("%dx%dx%d %v", model.Spec().Width, model.Spec().Height, model.Spec().Channels, model.Spec().Type),
		"threshold", ModelConfig{Threshold: threshold}.EffectiveThreshold(model.Threshold()), "threshold_source", thresholdSource)

	st, err := store.Open(cfg.Store.Dir, store.Options{
		MaxAge: cfg.Store.RetentionAge, MaxBytes: int64(cfg.Store.MaxBytes),
		MaxInputBytes: int64(cfg.Intake.MaxBytes), Logger: log,
	})
	if err != nil {
		return fmt.Errorf("store.dir %s: %w", cfg.Store.Dir, err)
	}
	defer st.Close()
	key, err := LoadStudyKey(cfg.Store.Dir)
	if err != nil {
		return err
	}

	console := opts.Console
	if console == nil {
		console = os.Stderr
	}
	lt, closeLights, err := openIndicator(ctx, cfg.Indicator, console, log)
	if err != nil {
		return err
	}
	defer closeLights()

	var listening Listening
	if cfg.MQTT.Embedded {
		embedded, addr, err := startEmbeddedBroker(cfg.MQTT.EmbeddedListen, log)
		if err != nil {
			return err
		}
		defer embedded.Close()
		listening.MQTT = addr
	}

	// MQTT: the configured broker, else the embedded one.
	broker := cfg.MQTT.Broker
	if broker == "" && listening.MQTT != "" {
		broker = "tcp://" + listening.MQTT
	}
	health := &healthSource{host: telemetry.NewCollector(telemetry.CollectorOptions{DiskPath: cfg.Store.Dir}),
		store: st, indicator: lt.State}
	// The registry holds the health figures (read at each scrape), Go and process metrics,
	// and the intake and pipeline metrics registered below.
	reg := telemetry.NewMetricsRegistry(health)
	reloader := &modelReloader{cfg: cfg.Model, stateDir: cfg.Store.Dir}
	var pub *telemetry.Publisher
	var publisher Publisher
	if broker != "" {
		topics, err := telemetry.NewTopics(cfg.MQTT.TopicPrefix, cfg.Device.Site, cfg.Device.ID)
		if err != nil {
			return err
		}
		pub, err = telemetry.NewPublisher(telemetry.PublisherOptions{
			Broker: broker, Topics: topics,
			Username: cfg.MQTT.Username, PasswordFile: cfg.MQTT.PasswordFile,
			CAFile: cfg.MQTT.CAFile, CertFile: cfg.MQTT.CertFile, KeyFile: cfg.MQTT.KeyFile,
			HealthInterval: cfg.MQTT.HealthInterval, Version: opts.Version, Model: model.Ref(),
			Discovery: cfg.MQTT.Discovery,
			Logger:    log.With("component", "mqtt"),
		}, st, health, reloader)
		if err != nil {
			return fmt.Errorf("mqtt: %w", err)
		}
		publisher = pub
	} else {
		log.Info("no MQTT broker configured (mqtt.broker, mqtt.embedded); results stay in the store's outbox")
	}

	// Thumbnails for the screen, only when there is an HTTP listener to show them.
	var thumbs *thumbnails
	var thumbnailer Thumbnailer
	if cfg.Intake.HTTPListen != "" {
		thumbs = newThumbnails(ThumbnailsKept, log.With("component", "screen"))
		thumbnailer = thumbs
	}
	pipe, err := NewPipeline(PipelineOptions{
		Scorer: model, Store: st, Indicator: lt, Publisher: publisher, Threshold: threshold,
		MaxBytes: int64(cfg.Intake.MaxBytes), MaxPixels: cfg.Intake.MaxPixels,
		DecodeTimeout: cfg.Intake.DecodeTimeout, StudyKey: key,
		Metrics: NewMetrics(reg), Thumbnails: thumbnailer, Logger: log,
	})
	if err != nil {
		return err
	}
	health.pipe, reloader.pipe = pipe, pipe
	intakeMetrics := intake.NewMetrics(reg)

	ctx, cancel := context.WithCancel(ctx)
	var tasks taskGroup
	// A start-up error below (say intake.http_listen in use) returns with tasks already
	// running: stop and wait for them, so none outlives Run or uses the store after Close.
	// The normal shutdown waits itself (and names stuck tasks); it must not wait twice.
	waited := false
	defer func() {
		cancel()
		if !waited {
			tasks.wait(ShutdownTimeout)
		}
	}()
	errc := make(chan error, 4)
	fail := func(err error) {
		select {
		case errc <- err:
		default:
		}
		cancel()
	}

	// Inputs left pending by a crash or a shutdown are scored at start, in arrival order, and
	// again every minute: an HTTP upload whose commit failed (503) is not left behind either.

	tasks.run("recover", func() {
		t := time.NewTicker(RecoverInterval)
		defer t.Stop()
		for {
			n, err := pipe.Recover(ctx)
			if err != nil && ctx.Err() == nil {
				log.Error("recovering pending inputs", "err", err)
			} else if n > 0 {
				log.Info("recovered pending inputs", "count", n)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})

	if cfg.Intake.WatchDir != "" {
		folder, err := intake.NewFolder(intake.FolderOptions{
			Dir: cfg.Intake.WatchDir, Settle: cfg.Intake.Settle, Rescan: cfg.Intake.Rescan,
			MaxBytes: int64(cfg.Intake.MaxBytes), KeepDone: cfg.Intake.KeepDone,
			Done:    intake.Retention{MaxAge: cfg.Intake.DoneMaxAge, MaxBytes: int64(cfg.Intake.DoneMaxBytes)},
			Failed:  intake.Retention{MaxAge: cfg.Intake.FailedMaxAge, MaxBytes: int64(cfg.Intake.FailedMaxBytes)},
			Logger:  log.With("intake", "folder"),
			Metrics: intakeMetrics,
		}, pipe)
		if err != nil {
			return fmt.Errorf("intake.watch_dir: %w", err)
		}

		tasks.run("hot folder", func() {
			if err := folder.Run(ctx); err != nil {
				fail(fmt.Errorf("hot folder: %w", err))
			}
		})
		log.Info("watching hot folder", "dir", cfg.Intake.WatchDir)
	}

	healthy := func(context.Context) error {
		if _, err := st.Stats(); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		return nil
	}

	if opts.Reload != nil {
		tasks.run("model reload", func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-opts.Reload:
				}
				mc := cfg.Model
				if opts.ReloadConfig != nil {
					c, err := opts.ReloadConfig()
					if err != nil {
						log.Error("model reload: configuration not read; the running model stays", "err", err)
						continue
					}
					mc = c.Model
					// Compared with the configuration the daemon started with, so the warning
					// repeats at every reload until a restart applies the change.
					if keys, err := cfg.RestartKeys(*c); err == nil && len(keys) > 0 {
						log.Warn("configuration reload applies the model section only; these changes take effect at the next restart",
							"keys", strings.Join(keys, ","))
					}
				}
				ref, err := reloader.reloadConfigured(mc)
				if err != nil {
					log.Error("model reload failed; the running model stays", "err", err,
						"running", pipe.Scorer().Ref().Name, "sha256", pipe.Scorer().Ref().SHA256)
					continue
				}
				if pub != nil {
					pub.SetModel(ref)
				}
				log.Info("model reloaded", "name", ref.Name, "version", ref.Version, "sha256", ref.SHA256, "threshold", pipe.Threshold())
			}
		})
	}

	if pub != nil {

		tasks.run("mqtt publisher", func() {
			// Run returns after publishing "offline" once ctx is cancelled.
			if err := pub.Run(ctx); err != nil {
				fail(fmt.Errorf("mqtt: %w", err))
			}
		})
		log.Info("publishing to MQTT", "broker", broker, "topics", cfg.MQTT.TopicPrefix+"/"+cfg.Device.Site+"/"+cfg.Device.ID+"/")
	}

	var srv *http.Server
	httpAddr := ""
	if cfg.Intake.HTTPListen != "" {
		h, err := intake.NewHTTPHandler(intake.HTTPOptions{
			Processor: pipe, Results: st, MaxBytes: int64(cfg.Intake.MaxBytes),
			Health:   healthy,
			Metrics:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
			NotFound: func(err error) bool { return errors.Is(err, store.ErrNotFound) },
			Counters: intakeMetrics, Logger: log.With("intake", "http"),
			Title:  "cxr-edge " + cfg.Device.Site + "/" + cfg.Device.ID,
			Screen: newScreen(lt.ind, st, pipe, pub, thumbs, log.With("component", "screen")),
		})
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", cfg.Intake.HTTPListen)
		if err != nil {
			return fmt.Errorf("intake.http_listen: %w", err)
		}
		httpAddr = ln.Addr().String()
		srv = &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       5 * time.Minute, // a large DICOM over a slow clinic link
			BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}

		tasks.run("http server", func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				fail(fmt.Errorf("HTTP server: %w", err))
			}
		})
		log.Info("HTTP API listening", "addr", httpAddr)
	}

	if cfg.Intake.DICOMListen != "" {
		scp, err := dicom.NewServer(dicom.ServerOptions{
			AETitle: cfg.Intake.DICOMAETitle, AllowedCallers: cfg.Intake.DICOMAllowedCallers,
			MaxBytes: int64(cfg.Intake.MaxBytes), Logger: log.With("intake", "dicom"),
		}, intake.DICOMStore{Processor: pipe, Metrics: intakeMetrics, Logger: log.With("intake", "dicom")})
		if err != nil {
			return fmt.Errorf("intake.dicom_ae_title: %w", err)
		}
		var tc *tls.Config
		if cfg.Intake.DICOMTLSCert != "" {
			if tc, err = dicom.ServerTLS(cfg.Intake.DICOMTLSCert, cfg.Intake.DICOMTLSKey, cfg.Intake.DICOMTLSClientCA); err != nil {
				return fmt.Errorf("intake.dicom_tls_cert, dicom_tls_key, dicom_tls_client_ca: %w", err)
			}
		}
		ln, err := net.Listen("tcp", cfg.Intake.DICOMListen)
		if err != nil {
			return fmt.Errorf("intake.dicom_listen: %w", err)
		}
		if tc != nil {
			ln = tls.NewListener(ln, tc)
		}
		tasks.run("dicom store scp", func() {
			if err := scp.Serve(ctx, ln); err != nil {
				fail(fmt.Errorf("DICOM Store SCP: %w", err))
			}
		})
		listening.DICOM = ln.Addr().String()
		log.Info("DICOM Store SCP listening", "addr", listening.DICOM, "ae_title", cfg.Intake.DICOMAETitle,
			"tls", tc != nil, "client_certificates", cfg.Intake.DICOMTLSClientCA != "")
	}

	// Retention of the store: hourly, and once at start.

	tasks.run("store retention", func() {
		t := time.NewTicker(time.Hour)
		defer t.Stop()
		for {
			if ps, err := st.Prune(time.Now()); err != nil {
				log.Error("store retention", "err", err)
			} else if ps.Removed > 0 {
				log.Info("store retention", "removed", ps.Removed, "bytes", ps.Bytes)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})

	// systemd: ready, then watchdog pings at half the interval while the store answers, so a
	// hung daemon is restarted.
	_ = notify(daemon.SdNotifyReady)
	if iv, err := daemon.SdWatchdogEnabled(false); err == nil && iv > 0 {

		tasks.run("watchdog", func() {
			t := time.NewTicker(iv / 2)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if err := healthy(ctx); err != nil {
						log.Error("unhealthy; withholding the watchdog ping", "err", err)
						continue
					}
					_ = notify(daemon.SdNotifyWatchdog)
				}
			}
		})
	}
	log.Info("cxr-edge running", "version", opts.Version, "device", cfg.Device.ID, "site", cfg.Device.Site)
	if opts.Ready != nil {
		listening.HTTP = httpAddr
		opts.Ready(listening)
	}

	<-ctx.Done()
	_ = notify(daemon.SdNotifyStopping)
	log.Info("stopping")
	if srv != nil {
		// Requests in progress finish (their results are committed); new ones are refused.
		sctx, scancel := context.WithTimeout(context.Background(), ShutdownTimeout*2/3)
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("HTTP shutdown", "err", err)
		}
		scancel()
	}
	// Every task stops on ctx; one that does not within ShutdownTimeout is named in the log
	// and the daemon exits non-zero rather than hang until systemd kills it.
	waited = true
	if stuck := tasks.wait(ShutdownTimeout); len(stuck) > 0 {
		log.Error("shutdown timed out", "still_running", stuck)
		return fmt.Errorf("shutdown timed out waiting for %v", stuck)
	}
	select {
	case err := <-errc:
		return err
	default:
	}
	log.Info("stopped")
	return nil
}

// startEmbeddedBroker runs an MQTT broker in the daemon (mqtt.embedded), for demos without one,
// and returns the address it bound (port 0 in addr: one the kernel chose).
func startEmbeddedBroker(addr string, log *slog.Logger) (*mqttserver.Server, string, error) {
	s := mqttserver.New(&mqttserver.Options{InlineClient: true, Logger: log.With("component", "mqtt-broker")})
	if err := s.AddHook(new(allowLocal), nil); err != nil {
		return nil, "", fmt.Errorf("embedded broker: %w", err)
	}
	ln := listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})
	if err := s.AddListener(ln); err != nil { // binds: Address() is the bound address from here on
		return nil, "", fmt.Errorf("mqtt.embedded_listen %s: %w", addr, err)
	}
	if err := s.Serve(); err != nil {
		s.Close()
		return nil, "", fmt.Errorf("embedded broker: %w", err)
	}
	log.Info("embedded MQTT broker listening", "addr", ln.Address())
	return s, ln.Address(), nil
}

// allowLocal lets every client of the embedded broker connect and use every topic. The broker
// listens on localhost by default and exists for demos; a fleet uses a real broker with TLS.
type allowLocal struct{ mqttserver.HookBase }

func (h *allowLocal) ID() string { return "cxr-edge-allow-local" }

func (h *allowLocal) Provides(b byte) bool {
	return b == mqttserver.OnConnectAuthenticate || b == mqttserver.OnACLCheck
}

func (h *allowLocal) OnConnectAuthenticate(*mqttserver.Client, packets.Packet) bool { return true }

func (h *allowLocal) OnACLCheck(*mqttserver.Client, string, bool) bool { return true }

// taskGroup runs the daemon's goroutines and tells which are still running at shutdown.
type taskGroup struct {
	wg      sync.WaitGroup
	mu      sync.Mutex
	running map[string]int
}

func (g *taskGroup) run(name string, fn func()) {
	g.mu.Lock()
	if g.running == nil {
		g.running = map[string]int{}
	}
	g.running[name]++
	g.mu.Unlock()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer func() {
			g.mu.Lock()
			g.running[name]--
			if g.running[name] == 0 {
				delete(g.running, name)
			}
			g.mu.Unlock()
		}()
		fn()
	}()
}

// wait waits for every task, at most timeout; it returns the names of those still running.
func (g *taskGroup) wait(timeout time.Duration) []string {
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var names []string
	for n := range g.running {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
