package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
)

var cliBuild struct {
	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}

// buildCLI builds the cxr-quantize binary once per test process, to test what users run:
// exit status, stderr and stdout.
func buildCLI(t *testing.T) string {
	t.Helper()
	goTool := testenv.LookPath(t, "go")
	cliBuild.once.Do(func() {
		cliBuild.dir, cliBuild.err = os.MkdirTemp("", "cxr-quantize-test")
		if cliBuild.err != nil {
			return
		}
		cliBuild.path = filepath.Join(cliBuild.dir, "cxr-quantize")
		cliBuild.out, cliBuild.err = exec.Command(goTool, "build", "-o", cliBuild.path, ".").CombinedOutput()
	})
	if cliBuild.err != nil {
		t.Fatalf("go build: %v\n%s", cliBuild.err, cliBuild.out)
	}
	return cliBuild.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if cliBuild.dir != "" {
		os.RemoveAll(cliBuild.dir)
	}
	os.Exit(code)
}

type cliResult struct {
	stdout, stderr string
	code           int
}

func runCLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(buildCLI(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return cliResult{stdout.String(), stderr.String(), code}
}

// runDoc is the part of the runners' JSON that the tests compare.
type runDoc struct {
	Model  string `json:"model"`
	Inputs []struct {
		Name  string `json:"name"`
		DType string `json:"dtype"`
		Shape []int  `json:"shape"`
	} `json:"inputs"`
	Outputs  json.RawMessage `json:"outputs"`
	MedianMs *float64        `json:"median_ms"`
}

func compact(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// golden returns LiteRT's outputs for a shared model, as recorded in models/golden.
func golden(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(testenv.SharedPath(t, "models", "golden", strings.TrimSuffix(name, ".tflite")+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		LiteRT struct {
			Outputs json.RawMessage `json:"outputs"`
		} `json:"litert"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return compact(t, doc.LiteRT.Outputs)
}

// TestRunMatchesLiteRT: run's JSON has the oracle runners' shape, and for int8 models and
// float32-in/out int8 models its outputs are LiteRT's, printed the same way.
func TestRunMatchesLiteRT(t *testing.T) {
	for _, name := range []string{"vww_96_int8.tflite", "toycar_ae_int8_floatio.tflite", "split_concat_uint8.tflite", "ops/softmax_int8.tflite"} {
		t.Run(name, func(t *testing.T) {
			model := testenv.SharedPath(t, "models", name)
			r := runCLI(t, "run", "--model", model)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			var doc runDoc
			if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
				t.Fatalf("%v: %s", err, r.stdout)
			}
			if doc.Model != filepath.Base(name) || len(doc.Inputs) == 0 || doc.MedianMs != nil {
				t.Errorf("document %+v", doc)
			}
			want := golden(t, strings.ReplaceAll(name, "ops/", "ops_"))
			if got := compact(t, doc.Outputs); got != want {
				t.Errorf("outputs differ from LiteRT's:\n got  %.300s\n want %.300s", got, want)
			}
		})
	}
}

// TestRunInputFiles: an input file holding the deterministic pattern gives the same outputs
// as no file; --out and --bench work.
func TestRunInputFiles(t *testing.T) {
	model := testenv.SharedPath(t, "models", "vww_96_int8.tflite")
	dir := t.TempDir()
	in := make([]byte, 96*96*3)
	for i := range in {
		in[i] = byte(int8(i*37%256 - 128))
	}
	inPath := filepath.Join(dir, "in.bin")
	if err := os.WriteFile(inPath, in, 0o644); err != nil {
		t.Fatal(err)
	}
	outPath := filepath.Join(dir, "out.json")
	r := runCLI(t, "run", "--model", model, "--input", inPath, "--bench", "3", "--threads", "1", "--out", outPath)
	if r.code != 0 || r.stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
	}
	data, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc runDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if got, want := compact(t, doc.Outputs), golden(t, "vww_96_int8.tflite"); got != want {
		t.Errorf("outputs %s, want %s", got, want)
	}
	if doc.MedianMs == nil || *doc.MedianMs <= 0 {
		t.Errorf("median_ms %v with --bench 3", doc.MedianMs)
	}
	if len(doc.Inputs) != 1 || doc.Inputs[0].DType != "int8" || len(doc.Inputs[0].Shape) != 4 {
		t.Errorf("inputs %+v", doc.Inputs)
	}
}

// TestCLIErrors: bad files and inputs give one line on stderr and exit status 1, usage
// mistakes exit 2; never a stack trace.
func TestCLIErrors(t *testing.T) {
	model := testenv.SharedPath(t, "models", "vww_96_int8.tflite")
	dir := t.TempDir()
	data, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.tflite")
	if err := os.WriteFile(truncated, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short.bin")
	if err := os.WriteFile(short, make([]byte, 100), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"run truncated model", []string{"run", "--model", truncated}, 1, "truncated"},
		{"inspect truncated model", []string{"inspect", truncated}, 1, "truncated"},
		{"wrong-size input", []string{"run", "--model", model, "--input", short}, 1, "short.bin: 100 bytes, tensor \"input_1_int8\" (int8 [1 96 96 3]) needs 27648"},
		{"too many inputs", []string{"run", "--model", model, "--input", short, "--input", short}, 1, "model has 1 inputs, got 2 --input files"},
		{"missing input file", []string{"run", "--model", model, "--input", filepath.Join(dir, "nope.bin")}, 1, "no such file"},
		{"missing model", []string{"inspect", filepath.Join(dir, "nope.tflite")}, 1, "no such file"},
		{"not a model", []string{"run", "--model", short}, 1, "not a .tflite model"},
		{"run without --model", []string{"run"}, 2, "run needs --model"},
		{"inspect without model", []string{"inspect"}, 2, "inspect takes one MODEL argument"},
		{"bad flag", []string{"run", "--model", model, "--bench", "-1"}, 2, "--bench must be at least 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", r.code, tc.code, r.stderr)
			}
			first, _, _ := strings.Cut(r.stderr, "\n")
			if !strings.HasPrefix(first, "cxr-quantize: ") || !strings.Contains(first, tc.want) {
				t.Errorf("stderr %q, want one line containing %q", r.stderr, tc.want)
			}
			if tc.code == 1 && strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("stderr is not one line: %q", r.stderr)
			}
			if strings.Contains(r.stderr, "goroutine") || strings.Contains(r.stderr, "panic") {
				t.Errorf("stack trace on stderr: %s", r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q on error", r.stdout)
			}
		})
	}
}

func TestInspectCLI(t *testing.T) {
	r := runCLI(t, "inspect", testenv.SharedPath(t, "models", "ops", "conv2d_int8_perchannel.tflite"))
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"CONV_2D", "per-channel", "parameters:", "MACs:", "arena:"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
}
