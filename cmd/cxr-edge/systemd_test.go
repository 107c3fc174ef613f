package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
)

// unitForTest copies the unit with ExecStart pointing at an executable that exists here (the
// test binary), since systemd-analyze verify refuses a missing ExecStart binary.
func unitForTest(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "systemd", "cxr-edge.service"))
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit := strings.ReplaceAll(string(src), "/usr/local/bin/cxr-edge", self)
	if unit == string(src) {
		t.Fatal("unit has no ExecStart=/usr/local/bin/cxr-edge")
	}
	path := filepath.Join(t.TempDir(), "cxr-edge.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSystemdUnitVerifies(t *testing.T) {
	sa := testenv.LookPath(t, "systemd-analyze")
	unit := unitForTest(t)
	out, err := exec.Command(sa, "verify", unit).CombinedOutput()
	// Only lines about our unit count: on some hosts verify also complains about unrelated
	// units it loads as dependencies.
	var ours []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(l, "cxr-edge.service") {
			ours = append(ours, l)
		}
	}
	if err != nil || len(ours) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// The hardening is measured by systemd-analyze security; the exposure must stay "OK" (≤ 2.0;
// it was 1.5 when the unit was written).
func TestSystemdUnitExposure(t *testing.T) {
	sa := testenv.LookPath(t, "systemd-analyze")
	unit := unitForTest(t)
	out, err := exec.Command(sa, "security", "--offline=true", "--no-pager", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for cxr-edge.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	level, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("exposure %.1f", level)
	if level > 2.0 {
		t.Errorf("exposure %.1f, want at most 2.0:\n%s", level, out)
	}
}
