package main

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/device"
	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// resultLineRe is the demo's line for a scored image.
var resultLineRe = regexp.MustCompile(`^mqtt result ([0-9a-f]{12})  (normal|pneumonia) +score (\d\.\d{4}) (<|>=) +threshold (\d\.\d{4})  (\d+)x(\d+)  decode [\d.]+ ms, preprocess [\d.]+ ms, infer [\d.]+ ms, total [\d.]+ ms$`)

// The newcomer's command: the real daemon with the embedded model and the embedded broker;
// every dropped image's result arrives over MQTT and is printed as one line.
func TestDemoDropsAndPrintsResultsFromMQTT(t *testing.T) {
	fullres := testenv.SharedPath(t, "data", "fullres")
	want := 0
	if err := filepath.WalkDir(fullres, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			want++
		}
		return err
	}); err != nil || want == 0 {
		t.Fatalf("%s: %v, %d files", fullres, err, want)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, "demo", "--drop", fullres, "--exit-after-drop",
		// Port 0: the demo prints and uses the ports the kernel chose.
		"--listen", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0", "--dicom-listen", "127.0.0.1:0")
	cmd.Dir = work // the demo folder defaults to ./cxr-demo
	cmd.Env = append(os.Environ(), "CXR_EDGE_TEST_MAIN=1", "CXR_DEVICE_ID=demo-test")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	// The banner names the ports the kernel chose, not the requested port 0.
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`screen: +http://127\.0\.0\.1:[1-9][0-9]*/`),
		regexp.MustCompile(`MQTT: +tcp://127\.0\.0\.1:[1-9][0-9]*, results on topic`),
		regexp.MustCompile(`DICOM: +AE title CXR-EDGE at 127\.0\.0\.1:[1-9][0-9]* +\(storescu -aec CXR-EDGE 127\.0\.0\.1 [1-9][0-9]* FILE\.dcm\)`),
	} {
		if !re.MatchString(out) {
			t.Errorf("banner does not match %s:\n%s", re, out)
		}
	}
	threshold := modelThreshold(t)
	labels := map[string]int{}
	ids := map[string]bool{}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "mqtt ") {
			continue
		}
		m := resultLineRe.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("result line not in the demo's format: %q", line)
			continue
		}
		n++
		ids[m[1]] = true
		labels[m[2]]++
		if m[5] != fmt.Sprintf("%.4f", threshold) {
			t.Errorf("threshold %s, want the embedded model's own %.4f: %q", m[5], threshold, line)
		}
		if (m[4] == ">=") != (m[2] == telemetry.LabelPneumonia) {
			t.Errorf("label does not follow the score: %q", line)
		}
	}
	if n != want || len(ids) != want {
		t.Errorf("%d result lines with %d distinct ids, want %d\n%s", n, len(ids), want, out)
	}
	// The data holds NORMAL and PNEUMONIA images; a model that called them all one label
	// would be broken, whichever model is embedded.
	if labels[telemetry.LabelNormal] == 0 || labels[telemetry.LabelPneumonia] == 0 {
		t.Errorf("labels %v: want both normal and pneumonia among the results", labels)
	}
	for _, s := range []string{"screen:      http://127.0.0.1:", "hot folder:", "drop more:", device.EmbeddedModelName,
		fmt.Sprintf("dropping %d images", want), fmt.Sprintf("all %d results arrived", want)} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	// Everything the demo wrote is under ./cxr-demo.
	ents, err := os.ReadDir(work)
	if err != nil || len(ents) != 1 || ents[0].Name() != "cxr-demo" {
		t.Errorf("working directory holds %v (%v), want only cxr-demo", ents, err)
	}
	done, err := os.ReadDir(filepath.Join(work, "cxr-demo", "inbox", "done"))
	if err != nil || len(done) != want {
		t.Errorf("inbox/done holds %d files (%v), want %d", len(done), err, want)
	}
}

func modelThreshold(t *testing.T) float64 {
	t.Helper()
	m, err := device.LoadModel(device.ModelConfig{Output: "auto", PositiveIndex: 1})
	if err != nil {
		t.Fatal(err)
	}
	return m.Threshold()
}

// Problems found before the daemon starts exit with a message naming the flag to change.
func TestDemoErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	foreign := t.TempDir()
	if err := os.WriteFile(filepath.Join(foreign, "notes.txt"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	const free = "127.0.0.1:0" // any port: these starts are refused before binding
	demoDir := func() string { return filepath.Join(t.TempDir(), "demo") }
	untouched := demoDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"http port busy", []string{"--dir", untouched, "--listen", busy.Addr().String(), "--mqtt-listen", free, "--dicom-listen", free}, exitFailed, "choose another address with --listen"},
		{"mqtt port busy", []string{"--dir", demoDir(), "--listen", free, "--mqtt-listen", busy.Addr().String(), "--dicom-listen", free}, exitFailed, "--mqtt-listen"},
		{"dicom port busy", []string{"--dir", demoDir(), "--listen", free, "--mqtt-listen", free, "--dicom-listen", busy.Addr().String()}, exitFailed, "--dicom-listen"},
		{"foreign dir", []string{"--dir", foreign, "--listen", free, "--mqtt-listen", free, "--dicom-listen", free}, exitUsage, "was not made by cxr-edge demo"},
		{"exit without drop", []string{"--exit-after-drop"}, exitUsage, "needs --drop"},
		{"drop missing", []string{"--drop", "/nonexistent-cxr-demo"}, exitUsage, "no such file"},
		{"drop no images", []string{"--drop", foreign}, exitUsage, "no JPEG, PNG or DICOM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runCLI(t, nil, append([]string{"demo"}, tc.args...)...)
			if code != tc.code || !strings.Contains(errs, tc.msg) {
				t.Errorf("exit %d, stderr %q; want %d mentioning %q", code, errs, tc.code, tc.msg)
			}
		})
	}
	// A refused start makes no demo folder, and leaves a foreign one as it was.
	if _, err := os.Stat(untouched); !os.IsNotExist(err) {
		t.Errorf("demo folder made although the port was busy: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(foreign, "notes.txt")); err != nil || string(b) != "mine" {
		t.Errorf("foreign --dir changed: %q %v", b, err)
	}
}

// --drop takes images by content, in a stable order, once each.
func TestDemoImages(t *testing.T) {
	src := testenv.SharedPath(t, "data", "fullres", "NORMAL", "IM-0149-0001.jpeg")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for name, b := range map[string][]byte{
		"b/x.jpeg": data, "a/x-copy.bin": data, "c/notes.txt": []byte("not an image"), ".hidden.jpeg": data,
		"c/other.png": append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 64)...),
	} {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var log bytes.Buffer
	got, err := demoImages(root, &log)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(root, "a", "x-copy.bin"), filepath.Join(root, "c", "other.png")}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("images %v, want %v", got, want)
	}
	for _, s := range []string{"notes.txt: not a JPEG", "x.jpeg: same content as"} {
		if !strings.Contains(log.String(), s) {
			t.Errorf("log lacks %q:\n%s", s, log.String())
		}
	}
	inbox := t.TempDir()
	n, err := dropImages(context.Background(), got, root, inbox)
	if err != nil || n != 2 {
		t.Fatalf("dropped %d: %v", n, err)
	}
	ents, _ := os.ReadDir(inbox)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "a_x-copy.bin,c_other.png" {
		t.Errorf("inbox holds %v, want the sub-folder in each name and no temporary files", names)
	}
}

// A folder made by an earlier demo is reset, so every run scores its drops afresh.
func TestResetDemoDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	if err := resetDemoDir(dir); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(dir, "store", "old")
	if err := os.MkdirAll(old, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := resetDemoDir(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("earlier demo state kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, demoMarker)); err != nil {
		t.Errorf("marker: %v", err)
	}
}
