package device

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

func TestReloadModelFromURL(t *testing.T) {
	data := readShared(t, "models", "person_detect_int8_qdim0_DERIVED.tflite")
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/models/pd.tflite" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(data)
	}))
	defer srv.Close()

	state := t.TempDir()
	p, err := NewPipeline(PipelineOptions{Scorer: testModel(t, "vww_96_int8.tflite", ModelConfig{}), Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	r := &modelReloader{cfg: ModelConfig{Output: "auto", PositiveIndex: 1}, stateDir: state, pipe: p, client: srv.Client()}
	ctx := context.Background()
	for _, tc := range []struct {
		cmd  telemetry.ReloadModelCommand
		want string
	}{
		{telemetry.ReloadModelCommand{URL: srv.URL + "/models/missing.tflite", SHA256: digest}, "404"},
		{telemetry.ReloadModelCommand{URL: "ftp://x/y", SHA256: digest}, "http(s)"},
		{telemetry.ReloadModelCommand{URL: srv.URL + "/models/pd.tflite", SHA256: strings.Repeat("1", 64)}, "pins"},
		{telemetry.ReloadModelCommand{Path: filepath.Join(state, "nope.tflite"), SHA256: digest}, "no such file"},
	} {
		if _, err := r.ReloadModel(ctx, tc.cmd); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err %v, want %q", tc.cmd, err, tc.want)
		}
	}
	// The error is the MQTT reply: a password in the URL must not be in it.
	withPassword := strings.Replace(srv.URL, "://", "://fleet:s3cret@", 1) + "/models/missing.tflite"
	if _, err := r.ReloadModel(ctx, telemetry.ReloadModelCommand{URL: withPassword, SHA256: digest}); err == nil ||
		!strings.Contains(err.Error(), "404") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("URL with a password: err %v, want a 404 without the password", err)
	}
	if got := p.Scorer().Ref().Name; got != "vww_96_int8" {
		t.Fatalf("a failed reload changed the model to %s", got)
	}
	if path, err := ActiveModelPath(state); err != nil || path != "" {
		t.Fatalf("a failed reload left an active model: %q %v", path, err)
	}
	ref, err := r.ReloadModel(ctx, telemetry.ReloadModelCommand{URL: srv.URL + "/models/pd.tflite", SHA256: digest})
	if err != nil || ref.SHA256 != digest || ref.Name != "pd" || p.Scorer().Ref().SHA256 != digest {
		t.Fatalf("reload: %+v %v", ref, err)
	}
	// The choice survives a restart: activeModelConfig points at the kept file, pinned.
	mc, ok, err := activeModelConfig(ModelConfig{Path: "/configured.tflite", Output: "auto", PositiveIndex: 1}, state)
	if err != nil || !ok || mc.SHA256 != digest || !strings.HasSuffix(mc.Path, digest+"-pd.tflite") {
		t.Fatalf("active model %+v %v %v", mc, ok, err)
	}
	m, err := LoadModel(mc)
	if err != nil || m.Ref().Name != "pd" {
		t.Fatalf("reloading the kept model: %v", err)
	}
}

func TestActiveModelPathRejectsBadFile(t *testing.T) {
	state := t.TempDir()
	if err := os.MkdirAll(filepath.Join(state, modelsDir), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, modelsDir, activeModelFile), []byte("../../etc/passwd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ActiveModelPath(state); err == nil {
		t.Error("a path outside models/ accepted")
	}
}

func TestLoadStudyKey(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadStudyKey(dir)
	if err != nil || len(k1) != 32 {
		t.Fatalf("%x %v", k1, err)
	}
	fi, err := os.Stat(filepath.Join(dir, StudyKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, %v", fi.Mode(), err)
	}
	k2, err := LoadStudyKey(dir)
	if err != nil || string(k1) != string(k2) {
		t.Error("key not kept")
	}
	if err := os.WriteFile(filepath.Join(dir, StudyKeyFile), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadStudyKey(dir); err == nil {
		t.Error("short key accepted")
	}
}

func TestTaskGroupNamesStuckTasks(t *testing.T) {
	var g taskGroup
	release := make(chan struct{})
	g.run("quick", func() {})
	g.run("stuck", func() { <-release })
	// Polled, not one short wait: on a loaded machine "quick" may not have been scheduled yet.
	testenv.WaitFor(t, "only the stuck task running", func() bool {
		got := g.wait(time.Millisecond)
		return len(got) == 1 && got[0] == "stuck"
	})
	close(release)
	if got := g.wait(5 * time.Second); got != nil {
		t.Errorf("after release: %v", got)
	}
}
