package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
)

func TestParseBench(t *testing.T) {
	t.Setenv("CXR_SHARED", "/data/shared")
	t.Setenv("CXR_LITERT_DIR", "/opt/litert")
	o, err := parseBench(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.Runs != 20 || o.Threads != 0 || o.CPUProfile != "" || o.Models != filepath.Join("/data/shared", "models") || o.LiteRT != "/opt/litert" || !slices.Equal(o.Only, benchModels) {
		t.Fatalf("defaults: %+v", o)
	}
	o, err = parseBench([]string{"--runs", "3", "--threads", "1", "--models", "m", "--litert", "l", "--only", "a.tflite,b.tflite", "--cpuprofile", "p"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.Runs != 3 || o.Threads != 1 || o.Models != "m" || o.LiteRT != "l" || !slices.Equal(o.Only, []string{"a.tflite", "b.tflite"}) || o.CPUProfile != "p" {
		t.Fatalf("flags: %+v", o)
	}
	for _, args := range [][]string{{"--runs", "0"}, {"--threads", "-1"}, {"extra"}, {"--nope"}} {
		if _, err := parseBench(args, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("%q: err = %v, want a usage error", args, err)
		}
	}
}

func TestBenchMissingOracle(t *testing.T) {
	_, err := runBench(context.Background(), benchOptions{Models: t.TempDir(), Only: benchModels, Runs: 1, LiteRT: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "LiteRT.js oracle not found") {
		t.Fatalf("missing oracle: err = %v", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error spans lines: %q", err)
	}
}

func TestBenchUnreadableModel(t *testing.T) {
	testenv.LookPath(t, "node")
	oracle, models := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(oracle, "litert-run.mjs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(models, "bad.tflite"), []byte("not a flatbuffer"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := runBench(context.Background(), benchOptions{Models: models, Only: []string{"bad.tflite"}, Runs: 1, LiteRT: oracle})
	if err == nil || !strings.Contains(err.Error(), "bad.tflite: Go engine") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("unreadable model: err = %v", err)
	}
}

// TestBenchRealRuntimes times the smallest table model in both runtimes for real.
func TestBenchRealRuntimes(t *testing.T) {
	lrt := testenv.LiteRT(t)
	models := testenv.SharedPath(t, "models")
	prof := filepath.Join(t.TempDir(), "cpu.pprof")
	o := benchOptions{Models: models, Only: []string{"vww_96_int8.tflite"}, Runs: 2, Threads: 1, LiteRT: filepath.Dir(lrt[1]), CPUProfile: prof}
	rows, err := runBench(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(prof); err != nil || fi.Size() == 0 {
		t.Fatalf("CPU profile: %v", err)
	}
	if len(rows) != 1 || rows[0].Model != "vww_96_int8" || !(rows[0].GoMs > 0) || !(rows[0].LiteRTMs > 0) {
		t.Fatalf("rows = %+v", rows)
	}
}

func TestWriteBenchTable(t *testing.T) {
	var b bytes.Buffer
	writeBenchTable(&b, benchOptions{Runs: 7, Threads: 1}, []benchRow{{Model: "vww_96_int8", GoMs: 1.5, LiteRTMs: 0.5}})
	out := b.String()
	for _, want := range []string{"GOMAXPROCS=", "engine threads=1", "median of 7 runs", "| model | Go ms | LiteRT.js ms | Go/LiteRT |", "| vww_96_int8 | 1.50 | 0.50 | 3.00 |"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 3}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
