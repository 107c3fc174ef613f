package device

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// A reload (SIGHUP) verifies the configured model before it replaces the running one.
func TestReloadConfiguredVerifiesFirst(t *testing.T) {
	p, err := NewPipeline(PipelineOptions{Scorer: testModel(t, "vww_96_int8.tflite", ModelConfig{}), Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	r := &modelReloader{stateDir: t.TempDir(), pipe: p}
	float := testenv.SharedPath(t, "models", "vww_96_float.tflite")
	for _, tc := range []struct {
		name string
		cfg  ModelConfig
		msg  string
	}{
		{"wrong pin", ModelConfig{Path: float, SHA256: strings.Repeat("ab", 32), Output: "auto", PositiveIndex: 1}, "sha256"},
		{"missing file", ModelConfig{Path: float + ".missing", Output: "auto", PositiveIndex: 1}, "no such file"},
		{"not an image model", ModelConfig{Path: testenv.SharedPath(t, "models", "hello_world_int8.tflite"), Output: "auto", PositiveIndex: 1}, "input"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.reloadConfigured(tc.cfg)
			if !errors.Is(err, ErrModel) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err %v, want ErrModel mentioning %q", err, tc.msg)
			}
			if got := p.Scorer().Ref().Name; got != "vww_96_int8" {
				t.Errorf("running model changed to %s by a refused reload", got)
			}
		})
	}
	ref, err := r.reloadConfigured(ModelConfig{Path: float, Output: "auto", PositiveIndex: 1})
	if err != nil || ref.Name != "vww_96_float" || p.Scorer().Ref() != ref {
		t.Errorf("reload to the float model: %+v %v; running %+v", ref, err, p.Scorer().Ref())
	}
	// model.threshold comes with the reload (a site sets its operating point without a
	// restart), and removing it returns to the model's own.
	own := p.Scorer().Threshold()
	site := 0.23
	configured := ModelConfig{Path: float, Output: "auto", PositiveIndex: 1, Threshold: &site}
	if _, err := r.reloadConfigured(configured); err != nil || p.Threshold() != site {
		t.Fatalf("reload with model.threshold %v: threshold %v, err %v", site, p.Threshold(), err)
	}
	if _, err := r.reloadConfigured(ModelConfig{Path: float, Output: "auto", PositiveIndex: 1}); err != nil || p.Threshold() != own {
		t.Errorf("reload without model.threshold: threshold %v, want the model's own %v (err %v)", p.Threshold(), own, err)
	}
	bad := 1.5
	if err := p.SetModel(p.Scorer(), &bad); err == nil || p.Threshold() != own {
		t.Errorf("threshold %v accepted (err %v, in use %v)", bad, err, p.Threshold())
	}

	// The site's threshold belongs to the configured model: a model chosen remotely runs at its
	// own operating point, now and after later reloads of the configuration.
	if _, err := r.reloadConfigured(configured); err != nil || p.Threshold() != site {
		t.Fatalf("reload with model.threshold: %v, %v", p.Threshold(), err)
	}
	r.cfg = configured
	int8Path := testenv.SharedPath(t, "models", "vww_96_int8.tflite")
	data, err := os.ReadFile(int8Path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	ref, err = r.ReloadModel(context.Background(), telemetry.ReloadModelCommand{Path: int8Path, SHA256: hex.EncodeToString(sum[:])})
	if err != nil || ref.Name != "vww_96_int8" || p.Threshold() != p.Scorer().Threshold() {
		t.Fatalf("remote reload: %+v %v; threshold %v, want the model's own %v", ref, err, p.Threshold(), p.Scorer().Threshold())
	}
	if _, err := r.reloadConfigured(configured); err != nil || p.Scorer().Ref().Name != "vww_96_int8" || p.Threshold() != p.Scorer().Threshold() {
		t.Errorf("reload after a remote model: running %s at %v (err %v); want the remote model at its own threshold",
			p.Scorer().Ref().Name, p.Threshold(), err)
	}
}

// cmd/set-threshold sets a site's operating point for the running model only: it survives
// configuration reloads and restarts of that model, does not follow the device to another
// model, comes back with the model, and clearing it returns to model.threshold or the model's
// own.
func TestSetThreshold(t *testing.T) {
	ctx := context.Background()
	p, err := NewPipeline(PipelineOptions{Scorer: testModel(t, "vww_96_int8.tflite", ModelConfig{}), Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	configuredThr := 0.23
	floatPath := testenv.SharedPath(t, "models", "vww_96_float.tflite")
	configured := ModelConfig{Path: floatPath, Output: "auto", PositiveIndex: 1, Threshold: &configuredThr}
	r := &modelReloader{cfg: configured, stateDir: state, pipe: p}
	floatRef, err := r.reloadConfigured(configured)
	if err != nil || p.Threshold() != configuredThr {
		t.Fatalf("configured model: %v at %v", err, p.Threshold())
	}
	set := func(v *float64, sha string) (telemetry.OperatingPoint, error) {
		return r.SetThreshold(ctx, telemetry.SetThresholdCommand{Threshold: v, ModelSHA256: sha})
	}
	site := 0.31

	if _, err := set(&site, strings.Repeat("ab", 32)); err == nil || !strings.Contains(err.Error(), "this device runs vww_96_float") || p.Threshold() != configuredThr {
		t.Errorf("threshold for another model: err %v, threshold now %v", err, p.Threshold())
	}
	op, err := set(&site, strings.ToUpper(floatRef.SHA256))
	if err != nil || op.Threshold != site || op.Source != telemetry.ThresholdSite || op.Model != floatRef || p.Threshold() != site {
		t.Fatalf("set %v: %+v %v; pipeline at %v", site, op, err, p.Threshold())
	}
	if _, err := r.reloadConfigured(configured); err != nil || p.Threshold() != site {
		t.Errorf("after a configuration reload: %v at %v, want the site's %v", err, p.Threshold(), site)
	}
	if thr, src, err := siteOperatingPoint(state, floatRef, configured.Threshold); err != nil || thr == nil || *thr != site || src != telemetry.ThresholdSite {
		t.Errorf("at a restart: %v %s %v, want the site's %v", thr, src, err, site)
	}

	// Another model runs at its own threshold; the site's comes back with its model.
	reload := func(path string) telemetry.ModelRef {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		ref, err := r.ReloadModel(ctx, telemetry.ReloadModelCommand{Path: path, SHA256: hex.EncodeToString(sum[:])})
		if err != nil {
			t.Fatal(err)
		}
		return ref
	}
	int8Ref := reload(testenv.SharedPath(t, "models", "vww_96_int8.tflite"))
	if p.Threshold() != p.Scorer().Threshold() {
		t.Errorf("another model runs at %v, want its own %v", p.Threshold(), p.Scorer().Threshold())
	}
	if op, err := set(nil, int8Ref.SHA256); err != nil || op.Source != telemetry.ThresholdModel {
		t.Errorf("clear for a model without a site threshold: %+v %v", op, err)
	}
	reload(floatPath)
	if p.Threshold() != site {
		t.Errorf("back on the model the site threshold is for: %v, want %v", p.Threshold(), site)
	}
	// Cleared: the float model now runs as a remote model, so at its own threshold.
	op, err = set(nil, floatRef.SHA256)
	if err != nil || op.Source != telemetry.ThresholdModel || p.Threshold() != p.Scorer().Threshold() {
		t.Errorf("clear: %+v %v; pipeline at %v", op, err, p.Threshold())
	}
	if _, err := os.Stat(filepath.Join(state, siteThresholdFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cleared threshold still kept: %v", err)
	}

	// A damaged file is an error that names it, not a silent change of operating point.
	if err := os.WriteFile(filepath.Join(state, siteThresholdFile), []byte(`{"threshold":7,"model_sha256":"x"}`), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, _, err := siteOperatingPoint(state, floatRef, nil); err == nil || !strings.Contains(err.Error(), siteThresholdFile) {
		t.Errorf("damaged threshold file at start: %v", err)
	}
	if _, err := set(nil, floatRef.SHA256); err == nil || !strings.Contains(err.Error(), siteThresholdFile) {
		t.Errorf("clear with a damaged threshold file: %v", err)
	}
	// Setting one replaces it.
	if op, err := set(&site, floatRef.SHA256); err != nil || op.Source != telemetry.ThresholdSite || p.Threshold() != site {
		t.Errorf("set over a damaged file: %+v %v", op, err)
	}
}
