// Package testenv finds the shared data and the real external components (LiteRT.js,
// Mosquitto, dcmtk, Chromium) that the project's tests use.
//
// A test that needs a component it cannot find is skipped on a developer machine, but fails
// when CXR_REQUIRE_ORACLES=1, which .ci/run sets: in CI nothing is silently skipped.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Required reports whether missing components must fail tests instead of skipping them.
func Required() bool { return os.Getenv("CXR_REQUIRE_ORACLES") == "1" }

// Missing skips t, or fails it when components are required.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("required component missing: "+format, args...)
	}
	t.Skipf("component missing: "+format, args...)
}

// RepoRoot returns the directory holding go.mod, searching upward from the working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Shared returns the path of the shared/ folder (data, models, oracle): $CXR_SHARED, or
// ../shared beside the repository.
func Shared(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("CXR_SHARED")
	if dir == "" {
		dir = filepath.Join(RepoRoot(t), "..", "shared")
	}
	if _, err := os.Stat(filepath.Join(dir, "models")); err != nil {
		Missing(t, "shared folder %s: %v", dir, err)
	}
	return dir
}

// SharedPath joins elem to the shared folder.
func SharedPath(t testing.TB, elem ...string) string {
	t.Helper()
	return filepath.Join(append([]string{Shared(t)}, elem...)...)
}

// LiteRT returns the command prefix that runs the LiteRT.js oracle script
// (node DIR/litert-run.mjs). The oracle is installed by ../shared/oracle/setup-litert.sh into
// $CXR_LITERT_DIR (default ~/.cache/litert-oracle).
func LiteRT(t testing.TB) []string {
	t.Helper()
	dir := os.Getenv("CXR_LITERT_DIR")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "litert-oracle")
	}
	script := filepath.Join(dir, "litert-run.mjs")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@litertjs", "core")); err != nil {
		Missing(t, "LiteRT.js oracle in %s (run ../shared/oracle/setup-litert.sh %s)", dir, dir)
	}
	node := LookPath(t, "node")
	return []string{node, script}
}

// LookPath returns the path of an executable, or skips/fails the test when it is absent.
func LookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%s not on PATH", name)
	}
	return p
}
