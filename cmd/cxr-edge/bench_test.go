package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
)

// `cxr-edge bench` on a JPEG and a DICOM file prints the Markdown table with every stage
// measured, the peer, throughput and memory.
func TestBenchCommand(t *testing.T) {
	jpg := testenv.SharedPath(t, "data", "fullres", "NORMAL", "IM-0149-0001.jpeg")
	dcm := testenv.SharedPath(t, "data", "dicom", "CR-MONO1-10-chest.dcm")
	m := model(t)
	code, out, errs := runCLI(t, nil, "bench", "--runs", "2", "--model", m, jpg, dcm)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "2 files × 2 runs = 4 images") || !strings.Contains(out, "model vww_96_int8") {
		t.Errorf("header:\n%s", out)
	}
	rowRE := regexp.MustCompile(`(?m)^\| ([^|]+) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|$`)
	rows := map[string][3]float64{}
	for _, m := range rowRE.FindAllStringSubmatch(out, -1) {
		var v [3]float64
		for i := range v {
			v[i], _ = strconv.ParseFloat(m[2+i], 64)
		}
		rows[m[1]] = v
	}
	for _, stage := range []string{"decode", "preprocess", "infer", "thumbnail (beside preprocess + infer)",
		"store (record + commit, fsync)", "**end-to-end**", "peer: image/jpeg decode alone",
		"proposal: box shrink to 2× input, then Grey (vs preprocess)"} {
		v, ok := rows[stage]
		if !ok || v[0] <= 0 || v[0] > v[1] || v[1] > v[2] {
			t.Errorf("stage %q: %v (want 0 < p50 ≤ p95 ≤ max)\n%s", stage, v, out)
		}
	}
	if e2e, dec := rows["**end-to-end**"], rows["decode"]; e2e[2] < dec[2] {
		t.Errorf("end-to-end max %v below decode max %v", e2e[2], dec[2])
	}
	for _, want := range []string{"images/s", "peak RSS (VmHWM): ", "Go heap in use", "bars: "} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "peak RSS (VmHWM): 0.0 MiB") {
		t.Errorf("peak RSS not read:\n%s", out)
	}

	code, out, _ = runCLI(t, nil, "bench", "--runs", "1", "--thumbnails=false", "--model", m, jpg)
	if code != 0 || strings.Contains(out, "thumbnail") {
		t.Errorf("--thumbnails=false: exit %d\n%s", code, out)
	}
}

func TestBenchErrors(t *testing.T) {
	m := model(t)
	jpg := testenv.SharedPath(t, "data", "fullres", "NORMAL", "IM-0149-0001.jpeg")
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"bench", "--model", m}, "no files or folders"},
		{[]string{"bench", "--model", m, "--runs", "0", jpg}, "--runs 0"},
		{[]string{"bench", "--model", m, "/nonexistent-dir"}, "no such file"},
		{[]string{"bench", "--model", m, t.TempDir()}, "no files in"},
		{[]string{"bench", "--model", "/nonexistent.tflite", jpg}, "no such file"},
		{[]string{"bench", "--set", "model.sha256=" + strings.Repeat("0", 64), jpg}, "model.sha256 pins"},
	} {
		t.Run(strings.Join(tc.args[1:], " "), func(t *testing.T) {
			code, _, errs := runCLI(t, nil, tc.args...)
			if code != exitUsage || !strings.Contains(errs, tc.msg) {
				t.Errorf("exit %d, stderr %q; want %d mentioning %q", code, errs, exitUsage, tc.msg)
			}
		})
	}
}
