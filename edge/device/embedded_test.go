package device

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/imaging"
	"github.com/cxr-edge/cxr-edge/edge/intake"
	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/edge/tflite"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// embeddedFacts reads what the embedded model says about itself, independently of LoadModel:
// its sha256, the first line of its description and its cxr_threshold metadata (or the
// default). The model file is replaced by better ones, so expectations come from it.
func embeddedFacts(t *testing.T) (digest, version string, threshold float64) {
	t.Helper()
	data, err := EmbeddedModel()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	tm, err := tflite.Read(data)
	if err != nil {
		t.Fatalf("embedded model does not parse: %v", err)
	}
	threshold = DefaultThreshold
	if b, ok := tm.MetadataByName(imaging.ThresholdMetadata); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
		if err != nil || f <= 0 || f >= 1 {
			t.Fatalf("embedded model's %s metadata %q is not a threshold in (0,1)", imaging.ThresholdMetadata, b)
		}
		threshold = f
	}
	version = strings.TrimSpace(strings.SplitN(tm.Description, "\n", 2)[0])
	return hex.EncodeToString(sum[:]), version, threshold
}

// The default configuration (model.path empty) loads the embedded model and scores a
// full-resolution chest X-ray with the model's own operating point.
func TestDefaultConfigUsesEmbeddedModel(t *testing.T) {
	cfg, err := Load(LoadOptions{Dirs: []string{t.TempDir()}, Env: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Model.Path != "" {
		t.Fatalf("default model.path = %q, want empty (the embedded model)", cfg.Model.Path)
	}
	m, err := LoadModel(cfg.Model)
	if err != nil {
		t.Fatal(err)
	}
	digest, version, threshold := embeddedFacts(t)
	ref := m.Ref()
	if ref.Name != EmbeddedModelName || ref.SHA256 != digest || ref.Version != version || len(ref.Version) > 120 {
		t.Errorf("ref %+v, want name %q sha256 %s version %q", ref, EmbeddedModelName, digest, version)
	}
	if m.Threshold() != threshold {
		t.Errorf("threshold %v, want %v from the model's metadata", m.Threshold(), threshold)
	}
	if s := m.Spec(); s.Width < 1 || s.Height < 1 || (s.Channels != 1 && s.Channels != 3) {
		t.Errorf("spec %+v", s)
	}
	byRef, err := EmbeddedModelRef()
	if err != nil || byRef != ref {
		t.Errorf("EmbeddedModelRef = %+v, %v; want %+v", byRef, err, ref)
	}

	pipe, err := NewPipeline(PipelineOptions{
		Scorer: m, Threshold: cfg.Model.Threshold, MaxBytes: int64(cfg.Intake.MaxBytes),
		MaxPixels: cfg.Intake.MaxPixels, DecodeTimeout: cfg.Intake.DecodeTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, class := range []string{"NORMAL", "PNEUMONIA"} {
		dir := testenv.SharedPath(t, "data", "fullres", class)
		ents, err := os.ReadDir(dir)
		if err != nil || len(ents) == 0 {
			t.Fatalf("%s: %v (%d files)", dir, err, len(ents))
		}
		data := readShared(t, "data", "fullres", class, ents[0].Name())
		res, err := pipe.Process(context.Background(), intake.Input{Source: "test", Format: intake.Sniff(data), Data: data, ReceivedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if res.Label == telemetry.LabelUnreadable || res.Score < 0 || res.Score > 1 || res.Threshold != threshold ||
			res.Model.Name != EmbeddedModelName || res.Image.Width < 512 {
			t.Errorf("%s/%s: %+v", class, ents[0].Name(), res)
		}
		wantLabel := telemetry.LabelNormal
		if res.Score >= threshold {
			wantLabel = telemetry.LabelPneumonia
		}
		if res.Label != wantLabel {
			t.Errorf("%s/%s: label %q for score %v at threshold %v", class, ents[0].Name(), res.Label, res.Score, threshold)
		}
	}
}

// model.sha256 pins the embedded model too.
func TestEmbeddedModelPin(t *testing.T) {
	digest, _, _ := embeddedFacts(t)
	for _, tc := range []struct {
		name, pin string
		ok        bool
	}{
		{"none", "", true},
		{"matching", digest, true},
		{"matching upper case", strings.ToUpper(digest), true},
		{"other", strings.Repeat("0", 64), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadModel(ModelConfig{SHA256: tc.pin, Output: "auto", PositiveIndex: 1})
			if tc.ok && err != nil {
				t.Fatal(err)
			}
			if !tc.ok && (!errors.Is(err, ErrModel) || !strings.Contains(err.Error(), "model.sha256 pins") ||
				!strings.Contains(err.Error(), EmbeddedModelName)) {
				t.Fatalf("err = %v, want a pin mismatch naming the embedded model", err)
			}
		})
	}
}
