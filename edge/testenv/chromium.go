package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/chromedp/chromedp"
)

// Chromium returns a chromedp context driving a fresh headless Chromium (Debian's
// /usr/bin/chromium, or $CXR_CHROMIUM) with its own user-data-dir, no network side traffic
// and a 1280×900 window. The browser is closed when the test ends. It skips (locally) or
// fails (CI) when Chromium is not installed.
func Chromium(t testing.TB) context.Context {
	t.Helper()
	path := os.Getenv("CXR_CHROMIUM")
	if path == "" {
		for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
			if p, err := exec.LookPath(name); err == nil {
				path = p
				break
			}
		}
	}
	if path == "" {
		Missing(t, "chromium (apt-get install chromium)")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// Start the browser now, so a broken installation fails here with a clear message. The
	// first run must not carry a timeout: its context owns the browser's lifetime.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium %s: %v", path, err)
	}
	return ctx
}

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// ArtifactDir returns a directory for files a test leaves for people to look at
// (screenshots, reports): $CXR_ARTIFACTS/<test name> when CXR_ARTIFACTS is set, else a
// temporary directory removed after the test. Artifacts are never written into the repository.
func ArtifactDir(t testing.TB) string {
	t.Helper()
	base := os.Getenv("CXR_ARTIFACTS")
	if base == "" {
		return t.TempDir()
	}
	dir := filepath.Join(base, unsafeName.ReplaceAllString(t.Name(), "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifact dir: %v", err)
	}
	return dir
}
