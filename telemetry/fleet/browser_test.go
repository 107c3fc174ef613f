package fleet

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// TestBrowserFleetView drives the page in headless Chromium as hospital IT would use it,
// with the dashboard fed by a real Mosquitto and devices connected with Last Wills.
func TestBrowserFleetView(t *testing.T) {
	b := broker(t)
	o := testOptions(t, b.URL())
	o.Alerts.OfflineAfter = 2 * time.Second
	r := start(t, o)
	art := testenv.ArtifactDir(t)
	browser := testenv.Chromium(t)

	now := time.Now()
	devs := map[string]*device{}
	for i, id := range []string{"cxr-01", "cxr-02", "cxr-03"} {
		d := connectDevice(t, b.URL(), "clinic-north", id)
		devs[id] = d
		for k := 12; k >= 0; k-- { // an hour of history, every 5 minutes
			temp := 48 + float64(i*6) + float64(k%4)
			d.health(now.Add(-time.Duration(k)*5*time.Minute), temp, 12-k)
		}
	}
	devs["cxr-01"].result("r-1", telemetry.LabelNormal, 0.12)
	devs["cxr-03"].result("r-2", telemetry.LabelPneumonia, 0.87)
	testenv.WaitFor(t, "devices and results stored", func() bool {
		return r.count("health/accepted") == 39 && r.count("result/accepted") == 2
	})

	run, shot := pageDriver(t, browser, art)
	evalBool := func(what, js string) bool {
		t.Helper()
		ctx, cancel := context.WithTimeout(browser, 10*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
	row := func(id string) string { return `tr[data-device="clinic-north/` + id + `"]` }

	// 1. The page lists the devices, and the live stream is connected.
	run("open fleet page", chromedp.Navigate(r.http.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(row("cxr-01"))), chromedp.WaitVisible(chromedp.CSS(row("cxr-03"))),
		chromedp.WaitVisible(chromedp.CSS("#live.on")))
	if n := evalBool("count rows", `document.querySelectorAll("tr.dev").length === 3`); !n {
		t.Fatal("the fleet table does not list 3 devices")
	}
	// Mark the document: if the page reloaded, the mark would be gone.
	run("mark page", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](`window.__noReload = true`)(ctx, tg)
		return err
	}))

	// 2. A new result appears in the feed without a reload (SSE).
	devs["cxr-02"].result("r-live", telemetry.LabelPneumonia, 0.93)
	run("new result in feed", chromedp.Poll[chromedp.Void](
		`document.querySelector("#feed").innerText.includes("clinic-north / cxr-02")`, chromedp.WithPollingTimeout(10*time.Second)))

	// 3. A device whose connection is cut turns offline (broker's Last Will) within the
	// configured time, and the alert names it.
	cut := time.Now()
	devs["cxr-02"].cut()
	run("device offline", chromedp.Poll[chromedp.Void](
		`document.querySelector('`+row("cxr-02")+`[data-state="offline"]') !== null`, chromedp.WithPollingTimeout(10*time.Second)))
	shown := time.Since(cut)
	run("offline alert", chromedp.Poll[chromedp.Void](
		`document.querySelector("#alerts").innerText.includes("Offline for")`, chromedp.WithPollingTimeout(15*time.Second)))
	t.Logf("offline shown %v after the cut; alert after %v (configured: offline longer than %v)",
		shown.Round(time.Millisecond), time.Since(cut).Round(time.Millisecond), o.Alerts.OfflineAfter)
	if !evalBool("no reload", `window.__noReload === true`) {
		t.Error("the page reloaded; live updates must not reload")
	}
	// Problems first: the offline device is now the first row.
	if !evalBool("problem first", `document.querySelector("tr.dev").dataset.device === "clinic-north/cxr-02"`) {
		t.Error("the offline device is not sorted first")
	}
	shot("fleet-desktop.png")

	// 4. The device page shows history charts and recent results.
	run("device page", chromedp.Navigate(r.http.URL+"/device/clinic-north/cxr-03"),
		chromedp.WaitVisible(chromedp.CSS(".chart polyline")))
	if !evalBool("four charts", `document.querySelectorAll(".chart").length === 4 && document.querySelectorAll(".chart polyline").length >= 4`) {
		t.Error("device page lacks its four history charts")
	}
	if !evalBool("results on device page", `document.body.innerText.includes("pneumonia") && document.body.innerText.includes("0.87")`) {
		t.Error("device page lacks its recent result")
	}
	shot("device-desktop.png")

	// 5. Readable on a phone.
	run("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)), chromedp.Navigate(r.http.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(row("cxr-01"))))
	if !evalBool("no horizontal scroll", `document.documentElement.scrollWidth <= window.innerWidth + 1`) {
		t.Error("the fleet page scrolls sideways on a phone")
	}
	shot("fleet-phone.png")
	t.Logf("screenshots in %s", art)
}

// pageDriver returns helpers that run steps in the browser and save full-page screenshots to
// dir, each with a 20 s limit and failing the test on error.
func pageDriver(t *testing.T, browser context.Context, dir string) (run func(what string, steps ...chromedp.Action[chromedp.Void]), shot func(name string)) {
	run = func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(browser, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	shot = func(name string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(browser, 20*time.Second)
		defer cancel()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return run, shot
}

// TestBrowserOperatingPoint: hospital IT sets a site's operating point from the device page in
// headless Chromium; it reaches the device's real publisher through Mosquitto, the page shows
// the device's answer and the audit trail lists it; a wrong token is refused on the page.
func TestBrowserOperatingPoint(t *testing.T) {
	r, toks, h, _ := commandSetup(t, "clinic-north", "cxr-07", "it-desk")
	tok := toks[0]
	browser := testenv.Chromium(t)
	run, shot := pageDriver(t, browser, testenv.ArtifactDir(t))
	status := func(want string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](`document.getElementById("cmd-status").textContent.includes(`+strconv.Quote(want)+`)`,
			chromedp.WithPollingTimeout(10*time.Second))
	}

	run("device page with the command form", chromedp.Navigate(r.http.URL+"/device/clinic-north/cxr-07"),
		chromedp.WaitVisible(chromedp.CSS("#command-form")), chromedp.WaitVisible(chromedp.CSS("#live.on")))
	run("a threshold outside (0, 1) is refused on the page",
		chromedp.SendKeys(chromedp.CSS("#cmd-token"), tok), chromedp.SetValue(chromedp.CSS("#cmd-threshold"), "1.2"),
		chromedp.Click(chromedp.CSS(`button[data-cmd="set"]`)), status("between 0 and 1"))
	run("set the operating point", chromedp.SetValue(chromedp.CSS("#cmd-threshold"), "0.27"),
		chromedp.Click(chromedp.CSS(`button[data-cmd="set"]`)), status("now applies threshold 0.27 (site)"))
	run("the audit trail lists it live", chromedp.Poll[chromedp.Void](
		`(document.querySelector("table.audit tr.out-ok") || {innerText: ""}).innerText.includes("it-desk")`,
		chromedp.WithPollingTimeout(10*time.Second)))
	if got := h.calls(); len(got) != 1 || got[0] != 0.27 {
		t.Errorf("the device was set to %v, want [0.27]", got)
	}
	shot("device-commands.png")
	run("a wrong token is refused", chromedp.SetValue(chromedp.CSS("#cmd-token"), tok+"x"),
		chromedp.Click(chromedp.CSS(`button[data-cmd="ping"]`)), status("Not sent (401)"))
}
