package device

import (
	"context"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
)

// A start-up error after the hot folder started (the HTTP port is taken) must not leave the
// folder's goroutine running past Run: it would keep handing files to a closed store.
func TestRunStartupErrorStopsTasks(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	state := t.TempDir()
	cfg, err := Load(LoadOptions{Dirs: []string{t.TempDir()}, Env: env(map[string]string{
		"CXR_MODEL_PATH":         testenv.SharedPath(t, "models", "vww_96_int8.tflite"),
		"CXR_STORE_DIR":          filepath.Join(state, "store"),
		"CXR_INTAKE_WATCH_DIR":   filepath.Join(state, "inbox"),
		"CXR_INTAKE_HTTP_LISTEN": busy.Addr().String(),
		"CXR_INDICATOR_KIND":     "none",
	}), Hostname: host("test")})
	if err != nil {
		t.Fatal(err)
	}
	err = Run(context.Background(), cfg, DaemonOptions{Version: "test", Logger: discardLogger(),
		Notify: func(string) error { return nil }})
	if err == nil || !strings.Contains(err.Error(), "intake.http_listen") {
		t.Fatalf("Run = %v, want an intake.http_listen error", err)
	}
	buf := make([]byte, 1<<20)
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "intake.(*Folder).Run") {
		t.Errorf("the hot folder still runs after Run returned:\n%s", stacks)
	}
}
