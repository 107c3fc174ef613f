package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/store"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// healthSource builds the periodic health payload (and the /metrics health figures) from the
// machine's figures (telemetry.Collector) and the daemon's own counters.
type healthSource struct {
	host      *telemetry.Collector
	pipe      *Pipeline
	store     *store.Store
	indicator func() string
}

func (h *healthSource) Health(ctx context.Context) (telemetry.Health, error) {
	sys, err := h.host.System(ctx)
	if err != nil {
		return telemetry.Health{}, fmt.Errorf("system health: %w", err)
	}
	st, err := h.store.Stats()
	if err != nil {
		return telemetry.Health{}, fmt.Errorf("store: %w", err)
	}
	ps := h.pipe.Stats()
	return telemetry.NewHealth(time.Now().UTC(), sys, telemetry.Counters{
		Queue: st.Pending, Outbox: st.Outbox, Scored: ps.Scored, Failed: ps.Failed,
		InferMsP50: ps.InferMsP50, InferMsP95: ps.InferMsP95, Indicator: h.indicator(),
	}), nil
}

// Remote model reloads are kept under store.dir so that the model survives a restart.
const (
	modelsDir        = "models"
	activeModelFile  = "active" // holds the file name of the model in use, in modelsDir
	maxModelDownload = 256 << 20
)

// modelReloader carries out the reload-model command: fetch or open, check the sha256, load,
// switch the pipeline, and remember the choice in store.dir/models/active.
type modelReloader struct {
	mu       sync.Mutex
	cfg      ModelConfig
	stateDir string
	pipe     *Pipeline
	client   *http.Client
}

func (r *modelReloader) ReloadModel(ctx context.Context, cmd telemetry.ReloadModelCommand) (telemetry.ModelRef, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var data []byte
	name := ""
	switch {
	case cmd.Path != "":
		b, err := os.ReadFile(cmd.Path)
		if err != nil {
			return telemetry.ModelRef{}, fmt.Errorf("reload-model: %w", err)
		}
		data, name = b, filepath.Base(cmd.Path)
	case cmd.URL != "":
		b, err := r.download(ctx, cmd.URL)
		if err != nil {
			return telemetry.ModelRef{}, fmt.Errorf("reload-model: %w", err)
		}
		u, _ := url.Parse(cmd.URL)
		data, name = b, filepath.Base(u.Path)
	default:
		return telemetry.ModelRef{}, errors.New("reload-model: needs url or path")
	}
	cfg := r.cfg
	cfg.SHA256 = cmd.SHA256 // the command's pin replaces the configured one
	m, err := LoadModelBytes(data, name, cfg)
	if err != nil {
		return telemetry.ModelRef{}, fmt.Errorf("reload-model: %w", err)
	}
	// model.threshold does not apply (see activeModelConfig); a site threshold set for this
	// very model earlier does.
	thr, _, err := siteOperatingPoint(r.stateDir, m.Ref(), nil)
	if err != nil {
		return telemetry.ModelRef{}, fmt.Errorf("reload-model: %w", err)
	}
	if err := saveActiveModel(r.stateDir, name, m.Ref().SHA256, data); err != nil {
		return telemetry.ModelRef{}, fmt.Errorf("reload-model: keeping the model: %w", err)
	}
	if err := r.pipe.SetModel(m, thr); err != nil {
		return telemetry.ModelRef{}, fmt.Errorf("reload-model: %w", err)
	}
	return m.Ref(), nil
}

// SetThreshold carries out the set-threshold command: the site's operating point for the
// running model, kept in store.dir/threshold.json so that it survives restarts and reloads of
// the same model, and applied to no other model.
func (r *modelReloader) SetThreshold(_ context.Context, cmd telemetry.SetThresholdCommand) (telemetry.OperatingPoint, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	running := r.pipe.Scorer()
	ref := running.Ref()
	if !strings.EqualFold(cmd.ModelSHA256, ref.SHA256) {
		return telemetry.OperatingPoint{}, fmt.Errorf("set-threshold: the threshold is for model sha256 %.12s…, this device runs %s (sha256 %.12s…)",
			cmd.ModelSHA256, ref.Name, ref.SHA256)
	}
	if cmd.Threshold != nil {
		err := saveSiteThreshold(r.stateDir, &siteThreshold{Threshold: *cmd.Threshold, ModelSHA256: ref.SHA256, SetAt: time.Now().UTC()})
		if err != nil {
			return telemetry.OperatingPoint{}, fmt.Errorf("set-threshold: keeping the threshold: %w", err)
		}
	} else if err := clearSiteThreshold(r.stateDir, ref.SHA256); err != nil {
		return telemetry.OperatingPoint{}, fmt.Errorf("set-threshold: %w", err)
	}
	// model.threshold still applies when the running model is the configured one.
	mcfg, _, err := activeModelConfig(r.cfg, r.stateDir)
	if err != nil {
		return telemetry.OperatingPoint{}, fmt.Errorf("set-threshold: %w", err)
	}
	thr, source, err := siteOperatingPoint(r.stateDir, ref, mcfg.Threshold)
	if err != nil {
		return telemetry.OperatingPoint{}, fmt.Errorf("set-threshold: %w", err)
	}
	if err := r.pipe.SetModel(running, thr); err != nil {
		return telemetry.OperatingPoint{}, fmt.Errorf("set-threshold: %w", err)
	}
	return telemetry.OperatingPoint{Threshold: r.pipe.Threshold(), Source: source, Model: ref}, nil
}

// reloadConfigured loads the model the configuration names (or the one a remote reload chose
// earlier, which wins as at start-up), verifies it and switches the pipeline to it.
func (r *modelReloader) reloadConfigured(cfg ModelConfig) (telemetry.ModelRef, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	mcfg, _, err := activeModelConfig(cfg, r.stateDir)
	if err != nil {
		return telemetry.ModelRef{}, fmt.Errorf("remotely reloaded model: %w", err)
	}
	m, err := LoadModel(mcfg)
	if err != nil {
		return telemetry.ModelRef{}, err
	}
	// model.threshold is reloaded with the model, so a site can set its operating point
	// without a restart (a threshold set remotely for this model wins).
	thr, _, err := siteOperatingPoint(r.stateDir, m.Ref(), mcfg.Threshold)
	if err != nil {
		return telemetry.ModelRef{}, err
	}
	if err := r.pipe.SetModel(m, thr); err != nil {
		return telemetry.ModelRef{}, err
	}
	r.cfg = cfg // later remote reloads read outputs as this configuration says
	return m.Ref(), nil
}

func (r *modelReloader) download(ctx context.Context, rawURL string) ([]byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("url %q: want http(s)://host/path", rawURL)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	client := r.client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Redacted: the error goes back in the MQTT reply, and a URL may carry a password.
		return nil, fmt.Errorf("GET %s: %s", u.Redacted(), resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxModelDownload+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxModelDownload {
		return nil, fmt.Errorf("GET %s: model larger than %d bytes", u.Redacted(), maxModelDownload)
	}
	return b, nil
}

// saveActiveModel writes the model as models/<sha256>-<name> and points models/active at it,
// each by write-to-temporary and rename, so a crash leaves the old or the new choice.
func saveActiveModel(stateDir, name, digest string, data []byte) error {
	dir := filepath.Join(stateDir, modelsDir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	file := digest + "-" + strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r < ' ' {
			return '_'
		}
		return r
	}, name)
	if err := writeAtomic(filepath.Join(dir, file), data); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, activeModelFile), []byte(file+"\n"))
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ActiveModelPath returns the model a remote reload chose earlier (store.dir/models/active),
// or "" when there is none. It wins over model.path so that a reload survives a restart;
// deleting the active file reverts to model.path.
func ActiveModelPath(stateDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, modelsDir, activeModelFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	name := strings.TrimSpace(string(b))
	if name == "" || strings.ContainsAny(name, `/\`) {
		return "", fmt.Errorf("%s: bad model name %q", filepath.Join(stateDir, modelsDir, activeModelFile), name)
	}
	return filepath.Join(stateDir, modelsDir, name), nil
}

// siteThresholdFile, in store.dir, holds the operating point set by cmd/set-threshold.
const siteThresholdFile = "threshold.json"

// siteThreshold is a site's operating point for one model.
type siteThreshold struct {
	Threshold   float64   `json:"threshold"`
	ModelSHA256 string    `json:"model_sha256"`
	SetAt       time.Time `json:"set_at"`
}

func saveSiteThreshold(stateDir string, t *siteThreshold) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(stateDir, 0o750); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(stateDir, siteThresholdFile), append(b, '\n'))
}

// clearSiteThreshold removes the site threshold if it is the one for model digest (one set
// for another model is left for that model).
func clearSiteThreshold(stateDir, digest string) error {
	t, err := loadSiteThreshold(stateDir)
	if err != nil || t == nil || !strings.EqualFold(t.ModelSHA256, digest) {
		return err
	}
	if err := os.Remove(filepath.Join(stateDir, siteThresholdFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// loadSiteThreshold returns the site threshold, nil when none was set. A file that does not
// hold a valid one is an error naming it, not a silent return to another operating point.
func loadSiteThreshold(stateDir string) (*siteThreshold, error) {
	path := filepath.Join(stateDir, siteThresholdFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var t siteThreshold
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("%s: %w (delete it to return to model.threshold)", path, err)
	}
	if !(t.Threshold > 0 && t.Threshold < 1) || !telemetry.IsSHA256Hex(t.ModelSHA256) {
		return nil, fmt.Errorf("%s: threshold %v for model %q: not a valid operating point (delete it to return to model.threshold)",
			path, t.Threshold, t.ModelSHA256)
	}
	return &t, nil
}

// siteOperatingPoint is the threshold override for the model ref and where it comes from: a
// site threshold set remotely for exactly this model wins, else configured (model.threshold,
// nil for a remotely reloaded model), else nil (the model's own).
func siteOperatingPoint(stateDir string, ref telemetry.ModelRef, configured *float64) (*float64, string, error) {
	t, err := loadSiteThreshold(stateDir)
	if err != nil {
		return nil, "", err
	}
	switch {
	case t != nil && strings.EqualFold(t.ModelSHA256, ref.SHA256):
		return &t.Threshold, telemetry.ThresholdSite, nil
	case configured != nil:
		return configured, telemetry.ThresholdConfiguration, nil
	}
	return nil, telemetry.ThresholdModel, nil
}

// activeModelConfig returns cfg with the remotely reloaded model, if any, and its pin. A
// remotely chosen model runs at its own operating point: model.threshold was set for the
// configured model, and another model's scores need not share its scale.
func activeModelConfig(cfg ModelConfig, stateDir string) (ModelConfig, bool, error) {
	p, err := ActiveModelPath(stateDir)
	if err != nil || p == "" {
		return cfg, false, err
	}
	digest, _, _ := strings.Cut(filepath.Base(p), "-")
	cfg.Path, cfg.SHA256, cfg.Threshold = p, digest, nil
	return cfg, true, nil
}
