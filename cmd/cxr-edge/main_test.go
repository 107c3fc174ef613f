package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/device"
	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// The test binary doubles as the cxr-edge binary for the daemon tests: with
// CXR_EDGE_TEST_MAIN=1 it runs main().
func TestMain(m *testing.M) {
	if os.Getenv("CXR_EDGE_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func runCLI(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	t.Chdir(t.TempDir()) // no ./cxr-edge.yaml from the developer's directory
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func model(t *testing.T) string { return testenv.SharedPath(t, "models", "vww_96_int8.tflite") }

func TestScoreTableAndJSON(t *testing.T) {
	pneu := testenv.SharedPath(t, "data", "fullres", "PNEUMONIA", "person447_virus_921.jpeg")
	dcm := testenv.SharedPath(t, "data", "dicom", "CR-MONO1-10-chest.dcm")
	m := model(t) // before runCLI changes the working directory
	code, out, errs := runCLI(t, nil, "score", "--model", m, pneu, dcm)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "FILE") || !strings.Contains(lines[1], "person447") || !strings.Contains(lines[2], "440x440") {
		t.Errorf("table:\n%s", out)
	}
	code, out, errs = runCLI(t, nil, "score", "--json", "--threshold", "0.25", "--model", m, pneu, "/nonexistent.jpeg")
	if code != exitUnreadable {
		t.Errorf("exit %d with an unreadable input, want %d (%s)", code, exitUnreadable, errs)
	}
	var results []telemetry.Result
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var r telemetry.Result
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("not JSON lines: %v\n%s", err, out)
		}
		results = append(results, r)
	}
	if len(results) != 2 || results[0].Schema != telemetry.SchemaResult || results[0].Threshold != 0.25 ||
		results[0].Model.Name != "vww_96_int8" || results[1].Label != telemetry.LabelUnreadable ||
		!strings.Contains(results[1].Reason, "no such file") {
		t.Errorf("results %+v", results)
	}
}

func TestCLIErrors(t *testing.T) {
	m, storeDir := model(t), t.TempDir()
	for _, tc := range []struct {
		args []string
		env  map[string]string
		code int
		msg  string
	}{
		{[]string{"frobnicate"}, nil, exitUsage, "unknown command"},
		{[]string{"score"}, nil, exitUsage, "no files"},
		{[]string{"score", "--model", "/nonexistent.tflite", "x.jpeg"}, nil, exitUsage, "no such file"},
		{[]string{"score", "--set", "model.sha256=" + strings.Repeat("0", 64), "x.jpeg"}, nil, exitUsage, "model.sha256 pins"},
		{[]string{"demo", "extra"}, nil, exitUsage, "unexpected arguments"},
		{[]string{"run", "--bogus"}, nil, exitUsage, "unknown flag"},
		{[]string{"run", "extra"}, nil, exitUsage, "unexpected arguments"},
		{[]string{"config"}, map[string]string{"CXR_MODEL_THRESHOLD": "2"}, exitUsage, "model.threshold"},
		{[]string{"config", "--config", "/nonexistent.yaml"}, nil, exitUsage, "no such file"},
		{[]string{"run", "--listen", "127.0.0.1:0"}, map[string]string{"CXR_STORE_DIR": "/proc/cxr-edge-test/store"}, exitFailed, "store.dir"},
		// This machine has no GPIO17: a clear start-up error, not a silent console fallback.
		{[]string{"run", "--indicator", "gpio", "--listen", "127.0.0.1:0"}, map[string]string{"CXR_MODEL_PATH": m, "CXR_STORE_DIR": storeDir}, exitFailed, "indicator.kind gpio"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, errs := runCLI(t, tc.env, tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.msg) {
				t.Errorf("exit %d, stderr %q; want %d mentioning %q", code, errs, tc.code, tc.msg)
			}
		})
	}
}

func TestConfigAndVersion(t *testing.T) {
	code, out, errs := runCLI(t, map[string]string{"CXR_DEVICE_SITE": "clinic-7"}, "config", "--set", "model.threshold=0.4", "--device-id", "pi-01")
	if code != 0 || !strings.Contains(out, "site: clinic-7") || !strings.Contains(out, "threshold: 0.4") || !strings.Contains(out, "id: pi-01") {
		t.Errorf("config: %d %s %s", code, out, errs)
	}
	code, out, _ = runCLI(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "cxr-edge ") || len(strings.TrimSpace(out)) <= len("cxr-edge ") {
		t.Errorf("version: %d %q", code, out)
	}
	data, err := device.EmbeddedModel()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if !strings.Contains(out, "model "+device.EmbeddedModelName+"\n") || !strings.Contains(out, "sha256 "+hex.EncodeToString(sum[:])+"\n") {
		t.Errorf("version does not name the embedded model and its sha256:\n%s", out)
	}
}

// Asking for help is not an error: usage on stdout, exit 0.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		code, out, errs := runCLI(t, nil, args...)
		if code != exitOK || !strings.HasPrefix(out, "usage:") || !strings.Contains(out, "cxr-edge demo") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	for _, cmd := range []string{"run", "score", "config", "bench", "demo"} {
		code, _, errs := runCLI(t, nil, cmd, "--help")
		if code != exitOK || !strings.Contains(errs, "--config") {
			t.Errorf("%s --help: exit %d, %q", cmd, code, errs)
		}
	}
}

// Without --model, score uses the embedded model and its own operating point.
func TestScoreEmbeddedModel(t *testing.T) {
	img := testenv.SharedPath(t, "data", "fullres", "PNEUMONIA", "person447_virus_921.jpeg")
	code, out, errs := runCLI(t, nil, "score", "--json", img)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var r telemetry.Result
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	ref, err := device.EmbeddedModelRef()
	if err != nil {
		t.Fatal(err)
	}
	if r.Model != ref || r.Threshold != modelThreshold(t) || r.Score < 0 || r.Score > 1 || r.Label == telemetry.LabelUnreadable {
		t.Errorf("result %+v, want model %+v with its threshold %v", r, ref, modelThreshold(t))
	}
}

// notifySocket collects sd_notify messages sent to a unixgram socket.
type notifySocket struct {
	path string
	mu   sync.Mutex
	msgs []string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	ns := &notifySocket{path: filepath.Join(t.TempDir(), "notify.sock")}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: ns.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			ns.mu.Lock()
			ns.msgs = append(ns.msgs, string(buf[:n]))
			ns.mu.Unlock()
		}
	}()
	return ns
}

func (ns *notifySocket) has(msg string) bool {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	for _, m := range ns.msgs {
		if m == msg {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, what, cond)
}

type daemonProc struct {
	cmd    *exec.Cmd
	url    string
	stderr *bytes.Buffer
	done   chan error
}

// logAddrRE finds the address logged with the message msg in the daemon's text or JSON log.
func logAddrRE(msg string) *regexp.Regexp {
	return regexp.MustCompile(regexp.QuoteMeta(msg) + `[^\n]*?addr"?[=:]"?(127\.0\.0\.1:[0-9]+)`)
}

// listeningRE finds the daemon's HTTP address in its log.
var listeningRE = logAddrRE("HTTP API listening")

func startDaemon(t *testing.T, env []string) *daemonProc {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "run")
	cmd.Dir = t.TempDir()
	// Port 0, and the address read from the log: a port picked here and bound later by the
	// child can be taken meanwhile on a busy machine.
	cmd.Env = append(os.Environ(), "CXR_EDGE_TEST_MAIN=1", "CXR_INTAKE_HTTP_LISTEN=127.0.0.1:0")
	cmd.Env = append(cmd.Env, env...)
	d := &daemonProc{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = &lockedWriter{w: d.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.stderr)
		}
	})
	waitFor(t, "the daemon's HTTP address in its log", func() bool {
		m := listeningRE.FindStringSubmatch(d.logText())
		if m == nil {
			return false
		}
		d.url = "http://" + m[1]
		return true
	})
	waitFor(t, "the daemon's /healthz", func() bool {
		resp, err := http.Get(d.url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return d
}

func (d *daemonProc) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("daemon exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(45 * time.Second):
		_ = d.cmd.Process.Signal(syscall.SIGQUIT) // the goroutine dump goes to the log below
		<-d.done
		t.Fatal("daemon did not stop within 45 s of SIGTERM")
	}
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	return resp.StatusCode
}

// The daemon end to end: HTTP and hot folder into one store, systemd notifications, SIGTERM
// exits 0, and results survive a restart.
func TestDaemon(t *testing.T) {
	stateDir := t.TempDir()
	inbox := filepath.Join(stateDir, "inbox")
	ns := listenNotify(t)
	env := []string{
		"CXR_MODEL_PATH=" + model(t),
		"CXR_STORE_DIR=" + filepath.Join(stateDir, "store"),
		"CXR_INTAKE_WATCH_DIR=" + inbox,
		"CXR_INTAKE_SETTLE=100ms",
		"CXR_INDICATOR_KIND=console",
		"NOTIFY_SOCKET=" + ns.path,
		"WATCHDOG_USEC=400000", // pings every 200 ms
	}
	d := startDaemon(t, env)
	waitFor(t, "READY=1", func() bool { return ns.has("READY=1") })
	waitFor(t, "WATCHDOG=1", func() bool { return ns.has("WATCHDOG=1") })

	posted := postImage(t, d.url, "PNEUMONIA", "person496_virus_1003.jpeg")
	if posted.Label == telemetry.LabelUnreadable || posted.Source != "http" || posted.Model.Name != "vww_96_int8" {
		t.Errorf("posted %+v", posted)
	}

	// The hot folder: a file renamed in.
	img2, err := os.ReadFile(testenv.SharedPath(t, "data", "fullres", "NORMAL", "NORMAL2-IM-1136-0001.jpeg"))
	if err != nil {
		t.Fatal(err)
	}
	dropFile(t, inbox, "study.jpeg", img2)
	waitFor(t, "study.jpeg in done/", func() bool {
		_, err := os.Stat(filepath.Join(inbox, "done", "study.jpeg"))
		return err == nil
	})
	// DICOM Part 10 made by dcmtk from a JPEG, dropped in without an extension: recognised by
	// content, decoded by edge/dicom.
	dcm := filepath.Join(t.TempDir(), "x.dcm")
	src := testenv.SharedPath(t, "data", "fullres", "NORMAL", "IM-0365-0001.jpeg")
	if out, err := exec.Command(testenv.LookPath(t, "img2dcm"), src, dcm).CombinedOutput(); err != nil {
		t.Fatalf("img2dcm: %v\n%s", err, out)
	}
	dcmData, err := os.ReadFile(dcm)
	if err != nil {
		t.Fatal(err)
	}
	dropFile(t, inbox, "IM0001", dcmData)
	waitFor(t, "IM0001 in done/", func() bool {
		_, err := os.Stat(filepath.Join(inbox, "done", "IM0001"))
		return err == nil
	})
	var list struct{ Results []telemetry.Result }
	if code := getJSON(t, d.url+"/v1/results?limit=10", &list); code != 200 || len(list.Results) != 3 || list.Results[2].ID != posted.ID || list.Results[1].Source != "folder" {
		t.Fatalf("results: %d %+v", code, list)
	}
	if r := list.Results[0]; r.Image.Format != "dicom" || r.Label == telemetry.LabelUnreadable || r.Image.Width == 0 {
		t.Errorf("DICOM result %+v", r)
	}
	resp, err := http.Get(d.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`cxr_intake_received_total{source="folder"} 2`, `cxr_intake_received_total{source="http"} 1`, `cxr_stage_seconds_bucket{stage="infer"`, "cxr_disk_free_bytes ", "cxr_scored_total 3", `cxr_indicator_state{state="`} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}

	d.stop(t)
	if !ns.has("STOPPING=1") {
		t.Error("no STOPPING=1")
	}

	// Restart on the same state: the result is still there.
	d2 := startDaemon(t, env[:5])
	var got telemetry.Result
	if code := getJSON(t, d2.url+"/v1/results/"+posted.ID, &got); code != 200 || got.Score != posted.Score {
		t.Errorf("after restart: %d %+v", code, got)
	}
	d2.stop(t)
}
