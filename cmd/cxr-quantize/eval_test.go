package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
)

func TestEvalWritesReport(t *testing.T) {
	data := testenv.SharedPath(t, "data", "chest_xray")
	out := t.TempDir()
	scores := filepath.Join(out, "scores.csv")
	var stdout bytes.Buffer
	// No --model: the embedded default model, found from the repository root.
	err := runEval(context.Background(), []string{"--data", data, "--out", out, "--scores", scores, "--limit", "30", "--bootstrap", "200"}, &stdout)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"report.md", "metrics.json", "roc.png", "pr.png", "calibration.png", "confusion.png"} {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(name, ".png") && !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
			t.Errorf("%s is not a PNG", name)
		}
	}
	md, _ := os.ReadFile(filepath.Join(out, "report.md"))
	if !bytes.HasPrefix(stdout.Bytes(), md[:200]) || !strings.Contains(string(md), "| AUC |") || !strings.Contains(string(md), defaultModel) {
		t.Errorf("report.md and stdout differ or lack the table:\n%s\n---\n%s", md, stdout.String())
	}
	var m struct {
		Images    int `json:"images"`
		Positives int `json:"positives"`
		Bootstrap int `json:"bootstrap"`
		Int8      struct {
			Threshold float64 `json:"threshold"`
			Accuracy  struct{ Value, Lo, Hi float64 }
		} `json:"int8"`
	}
	js, _ := os.ReadFile(filepath.Join(out, "metrics.json"))
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	if m.Images != 30 || m.Bootstrap != 200 || m.Int8.Threshold <= 0 || m.Int8.Accuracy.Lo > m.Int8.Accuracy.Value || m.Int8.Accuracy.Hi < m.Int8.Accuracy.Value {
		t.Errorf("metrics.json %+v", m)
	}
	rows := readCSV(t, scores)
	if len(rows) != 31 || strings.Join(rows[0], ",") != "file,truth,score,predicted" {
		t.Fatalf("scores.csv: %d rows, header %v", len(rows), rows[0])
	}
	pos := 0
	for _, r := range rows[1:] {
		if len(r) != 4 || !strings.HasPrefix(r[0], r[1]+"/") || (r[3] != "NORMAL" && r[3] != "PNEUMONIA") {
			t.Fatalf("bad row %v", r)
		}
		if _, err := os.Stat(filepath.Join(data, "test", r[0])); err != nil {
			t.Fatalf("row %v names no test image: %v", r, err)
		}
		if r[1] == "PNEUMONIA" {
			pos++
		}
	}
	if pos != m.Positives {
		t.Errorf("CSV has %d pneumonia rows, metrics.json %d", pos, m.Positives)
	}
}

// A site chooses its operating point on its own labelled films (here the official 16-image val
// split stands in for them): the threshold printed is the highest that keeps the sensitivity,
// it is the exact score of a film (so that film stays flagged on the device), and the command
// to apply it names the model's sha256. The test split is refused.
func TestEvalSiteOperatingPoint(t *testing.T) {
	data := testenv.SharedPath(t, "data", "chest_xray")
	scores := filepath.Join(t.TempDir(), "site.csv")
	var stdout bytes.Buffer
	err := runEval(context.Background(), []string{"--data", data, "--split", "val", "--bootstrap", "0",
		"--site-sensitivity", "0.75", "--scores", scores}, &stdout)
	if err != nil {
		t.Fatal(err)
	}
	out := stdout.String()
	m := regexp.MustCompile(`threshold with sensitivity ≥ 75% is \*\*([0-9.e-]+)\*\*`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "cmd/set-threshold") || !strings.Contains(out, `{"threshold":`+m[1]+`,"model_sha256":"`) {
		t.Fatalf("no site operating point in the report:\n%s", out)
	}
	th, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	if float64(float32(th)) != th {
		t.Errorf("threshold %s is not exactly a float32 score", m[1])
	}
	rows := readCSV(t, scores)
	// The CSV rounds scores to 6 decimals: compare with that tolerance.
	var flagged, above, pos int // above: flagged even at a slightly higher threshold
	for _, r := range rows[1:] {
		if r[1] != "PNEUMONIA" {
			continue
		}
		s, _ := strconv.ParseFloat(r[2], 64)
		pos++
		if s >= th-1e-6 {
			flagged++
		}
		if s > th+1e-6 {
			above++
		}
	}
	if pos != 8 || flagged < 6 || above >= 6 {
		t.Errorf("threshold %v flags %d of %d pneumonias (%d above it), want the highest threshold flagging at least 6", th, flagged, pos, above)
	}

	err = runEval(context.Background(), []string{"--data", data, "--site-sensitivity", "0.95", "--limit", "4"}, &bytes.Buffer{})
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "test split") {
		t.Errorf("site threshold on the test split: %v, want a usage error", err)
	}
	err = runEval(context.Background(), []string{"--data", data, "--split", "val", "--site-sensitivity", "1.5"}, &bytes.Buffer{})
	if !errors.Is(err, errUsage) {
		t.Errorf("--site-sensitivity 1.5: %v, want a usage error", err)
	}
}

// readCSV reads a scores CSV written by eval --scores.
func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestEvalErrors(t *testing.T) {
	data := testenv.SharedPath(t, "data", "chest_xray")
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.tflite")
	if err := os.WriteFile(junk, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		usage bool
		want  string
	}{
		{"unknown flag", []string{"--nope"}, true, "nope"},
		{"extra argument", []string{"model.tflite"}, true, "unexpected argument"},
		{"negative limit", []string{"--limit", "-1"}, true, "--limit"},
		{"missing model", []string{"--model", filepath.Join(dir, "gone.tflite"), "--data", data}, false, "gone.tflite"},
		{"not a model", []string{"--model", junk, "--data", data, "--limit", "4"}, false, "junk.tflite"},
		{"no dataset", []string{"--data", dir, "--limit", "4"}, false, "bad dataset"},
		{"missing float", []string{"--float", filepath.Join(dir, "none.model"), "--data", data}, false, "none.model"},
	}
	for _, tt := range tests {
		out := filepath.Join(dir, "out-"+strings.ReplaceAll(tt.name, " ", "-"))
		err := runEval(context.Background(), append(tt.args, "--out", out), &bytes.Buffer{})
		if err == nil || errors.Is(err, errUsage) != tt.usage || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want usage=%v mentioning %q", tt.name, err, tt.usage, tt.want)
		}
		if _, statErr := os.Stat(out); statErr == nil {
			t.Errorf("%s: output folder written despite the error", tt.name)
		}
	}
}

// The command as users run it: exit status 2 and the usage text for a bad flag.
func TestEvalCLIUsage(t *testing.T) {
	cmd := exec.Command(buildCLI(t), "eval", "--bootstrap", "x")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), "eval") {
		t.Fatalf("exit %v, stderr:\n%s", err, stderr.String())
	}
}
