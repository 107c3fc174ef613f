package device

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
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
