package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/intake"
	"github.com/cxr-edge/cxr-edge/edge/testenv"
)

// replaceFile swaps path's content atomically, as an operator installing a model should.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path+".new", data, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// SIGHUP reloads the model at model.path while images keep arriving: every upload is scored
// (none refused or lost), later results carry the new model, and a corrupt model file is
// refused with the running model kept.
func TestDaemonSIGHUPReloadsModel(t *testing.T) {
	int8Model, err := os.ReadFile(model(t))
	if err != nil {
		t.Fatal(err)
	}
	floatModel, err := os.ReadFile(testenv.SharedPath(t, "models", "vww_96_float.tflite"))
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	modelPath := filepath.Join(state, "model.tflite")
	replaceFile(t, modelPath, int8Model)
	d := startDaemon(t, []string{
		"CXR_MODEL_PATH=" + modelPath,
		"CXR_STORE_DIR=" + filepath.Join(state, "store"),
		"CXR_INDICATOR_KIND=none",
	})
	running := func() string {
		var s intake.ScreenState
		getJSON(t, d.url+"/v1/screen", &s)
		return s.Model.SHA256
	}
	if got := running(); got != sha(int8Model) {
		t.Fatalf("model at start %s, want the int8 file's %s", got, sha(int8Model))
	}

	// Uploads run throughout the reload.
	var imgs [][]byte
	for _, class := range []string{"NORMAL", "PNEUMONIA"} {
		dir := testenv.SharedPath(t, "data", "fullres", class)
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents[:6] {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			imgs = append(imgs, b)
		}
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		models = map[string]int{}
		failed []string
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, img := range imgs {
			resp, err := http.Post(d.url+"/v1/studies", "image/jpeg", bytes.NewReader(img))
			mu.Lock()
			if err != nil {
				failed = append(failed, err.Error())
			} else {
				if resp.StatusCode != http.StatusOK {
					failed = append(failed, resp.Status)
				}
				resp.Body.Close()
			}
			mu.Unlock()
		}
	}()
	time.Sleep(100 * time.Millisecond)
	replaceFile(t, modelPath, floatModel)
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the float model running", func() bool { return running() == sha(floatModel) })
	wg.Wait()
	if len(failed) > 0 {
		t.Errorf("uploads during the reload failed: %v", failed)
	}
	var list struct {
		Results []struct {
			Model struct{ SHA256 string }
		}
	}
	getJSON(t, d.url+"/v1/results?limit=100", &list)
	for _, r := range list.Results {
		models[r.Model.SHA256]++
	}
	if len(list.Results) != len(imgs) {
		t.Errorf("%d results for %d uploads", len(list.Results), len(imgs))
	}
	t.Logf("results by model across the reload: int8 %d, float %d", models[sha(int8Model)], models[sha(floatModel)])

	// A corrupt file is refused; the float model keeps running and scoring.
	replaceFile(t, modelPath, floatModel[:len(floatModel)/2])
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refused reload in the log", func() bool { return strings.Contains(d.logText(), "model reload failed") })
	if got := running(); got != sha(floatModel) {
		t.Errorf("after a corrupt model: running %s, want the float model kept", got)
	}
	if r := postImage(t, d.url, "NORMAL", "NORMAL2-IM-1136-0001.jpeg"); r.Model.SHA256 != sha(floatModel) {
		t.Errorf("scored with %s after the refused reload", r.Model.SHA256)
	}
	d.stop(t)
}
