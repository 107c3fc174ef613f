package device

import (
	"errors"
	"strings"
	"testing"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
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
}
