package device

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cxr-edge/cxr-edge/edge/indicator"
	"github.com/cxr-edge/cxr-edge/edge/intake"
	"github.com/cxr-edge/cxr-edge/edge/store"
	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

func TestMakeThumbnail(t *testing.T) {
	for _, tc := range []struct {
		w, h, size, wantW, wantH int
	}{
		{2000, 1000, 320, 320, 160},
		{1000, 2000, 320, 160, 320},
		{100, 50, 320, 100, 50}, // never enlarged
		{5000, 1, 320, 320, 1},  // at least one pixel
	} {
		t.Run(fmt.Sprintf("%dx%d", tc.w, tc.h), func(t *testing.T) {
			img := image.NewGray(image.Rect(0, 0, tc.w, tc.h))
			for i := range img.Pix {
				img.Pix[i] = uint8(i)
			}
			data, err := MakeThumbnail(img, tc.size)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := jpeg.DecodeConfig(bytes.NewReader(data))
			if err != nil || cfg.Width != tc.wantW || cfg.Height != tc.wantH {
				t.Errorf("thumbnail %dx%d (%v), want %dx%d", cfg.Width, cfg.Height, err, tc.wantW, tc.wantH)
			}
		})
	}
	if _, err := MakeThumbnail(image.NewGray(image.Rect(0, 0, 0, 0)), 320); err == nil {
		t.Error("empty image: no error")
	}
}

func TestThumbnailsBounded(t *testing.T) {
	th := newThumbnails(2, discardLogger())
	img := image.NewGray(image.Rect(0, 0, 8, 8))
	for _, id := range []string{"a", "b", "c"} {
		th.Thumbnail(id, img)
	}
	if _, ok := th.get("a"); ok {
		t.Error("oldest thumbnail kept beyond the bound")
	}
	for _, id := range []string{"b", "c"} {
		if d, ok := th.get(id); !ok || len(d) == 0 {
			t.Errorf("thumbnail %s missing", id)
		}
	}
}

// screenScores scores a few full-resolution images with the test model and returns the
// highest- and the lowest-scoring one, so that a threshold between them makes one
// "pneumonia" and the other "normal" whatever the model.
func screenScores(t *testing.T) (hi, lo []byte, hiScore, loScore float64) {
	t.Helper()
	p, err := NewPipeline(PipelineOptions{Scorer: testModel(t, "vww_96_int8.tflite", ModelConfig{}), Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	hiScore, loScore = -1, 2
	for _, f := range []string{"PNEUMONIA/person45_bacteria_221.jpeg", "PNEUMONIA/person515_bacteria_2187.jpeg",
		"NORMAL/IM-0149-0001.jpeg", "NORMAL/NORMAL2-IM-1111-0001.jpeg"} {
		data := readShared(t, "data", "fullres", f)
		r, err := p.Process(context.Background(), intake.Input{Source: "test", Data: data})
		if err != nil || r.Label == telemetry.LabelUnreadable {
			t.Fatalf("%s: %v %+v", f, err, r)
		}
		if r.Score > hiScore {
			hi, hiScore = data, r.Score
		}
		if r.Score < loScore {
			lo, loScore = data, r.Score
		}
	}
	if hiScore <= loScore {
		t.Fatalf("the test images all score %v; cannot place a threshold between them", hiScore)
	}
	return hi, lo, hiScore, loScore
}

// startTestDaemon runs the daemon in this process with an HTTP listener on a free port and
// returns its URL and a function that stops it (it also stops when the test ends).
func startTestDaemon(t *testing.T, threshold float64) (string, func()) {
	t.Helper()
	l, stop := runTestDaemon(t, map[string]string{
		"CXR_MODEL_PATH":         testenv.SharedPath(t, "models", "vww_96_int8.tflite"),
		"CXR_MODEL_THRESHOLD":    fmt.Sprint(threshold),
		"CXR_INTAKE_HTTP_LISTEN": "127.0.0.1:0",
		"CXR_DEVICE_SITE":        "ward-3",
		"CXR_DEVICE_ID":          "cart-1",
	})
	return "http://" + l.HTTP, stop
}

// runTestDaemon runs the daemon in this process configured by the environment vars (over a
// fresh store, no indicator) and returns where it listens and a function that stops it (it
// also stops when the test ends).
func runTestDaemon(t *testing.T, vars map[string]string) (Listening, func()) {
	t.Helper()
	all := map[string]string{"CXR_STORE_DIR": filepath.Join(t.TempDir(), "store"), "CXR_INDICATOR_KIND": "none"}
	maps.Copy(all, vars)
	cfg, err := Load(LoadOptions{Dirs: []string{t.TempDir()}, Env: env(all), Hostname: host("test")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Listening, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, DaemonOptions{Version: "test", Logger: discardLogger(),
			Ready: func(l Listening) { ready <- l }, Notify: func(string) error { return nil }})
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("daemon: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	select {
	case l := <-ready:
		return l, stop
	case err := <-done:
		t.Fatalf("daemon did not start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("daemon did not start within 60 s")
	}
	return Listening{}, stop
}

func screenState(t *testing.T, url string) intake.ScreenState {
	t.Helper()
	resp, err := http.Get(url + "/v1/screen")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s intake.ScreenState
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /v1/screen: %d %v", resp.StatusCode, err)
	}
	return s
}

func post(t *testing.T, url string, data []byte) telemetry.Result {
	t.Helper()
	resp, err := http.Post(url+"/v1/studies", "application/octet-stream", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r telemetry.Result
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("POST: %d %v", resp.StatusCode, err)
	}
	return r
}

// The kiosk screen in headless Chromium at 800×480: a suspected pneumonia turns it amber with
// the score and a thumbnail; Acknowledge clears the amber (and the indicator); a normal result
// turns it green; an unreadable image turns it red. Screenshots go to testenv.ArtifactDir.
func TestScreenInChromium(t *testing.T) {
	hi, lo, hiScore, loScore := screenScores(t)
	threshold := (hiScore + loScore) / 2
	url, stopDaemon := startTestDaemon(t, threshold)
	browser := testenv.Chromium(t)
	art := testenv.ArtifactDir(t)

	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(browser, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(browser, 10*time.Second)
		defer cancel()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	shot := func(name string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(browser, 20*time.Second)
		defer cancel()
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(art, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	state := func(s string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](`document.body.dataset.state === "`+s+`"`, chromedp.WithPollingTimeout(25*time.Second))
	}
	thumbShown := chromedp.Poll[chromedp.Void](`(() => { const i = document.getElementById("thumb");
		return !i.hidden && i.complete && i.naturalWidth > 0 })()`, chromedp.WithPollingTimeout(25*time.Second))

	run("open the screen at 800×480", chromedp.EmulateViewport(800, 480), chromedp.Navigate(url+"/"), state("ready"))
	if h := text("#headline"); h != "READY" {
		t.Errorf("idle headline %q", h)
	}
	shot("0-idle.png")

	res := post(t, url, hi)
	if res.Label != telemetry.LabelPneumonia {
		t.Fatalf("high-scoring image: %+v", res)
	}
	run("amber with thumbnail", state("pneumonia"), thumbShown, chromedp.WaitVisible(chromedp.CSS("#ack")))
	if s, want := text("#score"), fmt.Sprintf("%.2f", res.Score); s != want {
		t.Errorf("score shown %q, want %q", s, want)
	}
	if h := text("#headline"); h != "PNEUMONIA SUSPECTED" {
		t.Errorf("headline %q", h)
	}
	if m := text("#model"); m == "" || m == "–" {
		t.Errorf("model not shown: %q", m)
	}
	shot("1-pneumonia.png")
	if s := screenState(t, url); s.State != "pneumonia" || s.Latest == nil || s.Latest.ID != res.ID {
		t.Fatalf("screen state before acknowledge: %+v", s)
	}

	run("acknowledge", chromedp.Click(chromedp.CSS("#ack")), state("ready"), chromedp.WaitNotVisible(chromedp.CSS("#ack")))
	if s := screenState(t, url); s.State != "ready" {
		t.Errorf("indicator after acknowledge: %q, want ready", s.State)
	}
	shot("2-acknowledged.png")

	res = post(t, url, lo)
	if res.Label != telemetry.LabelNormal {
		t.Fatalf("low-scoring image: %+v", res)
	}
	run("green", state("normal"), chromedp.Poll[chromedp.Void](
		`document.getElementById("score").textContent === "`+fmt.Sprintf("%.2f", res.Score)+`"`, chromedp.WithPollingTimeout(10*time.Second)), thumbShown)
	shot("3-normal.png")

	bad := bytes.Clone(hi[:len(hi)/3]) // a truncated JPEG
	if r := post(t, url, bad); r.Label != telemetry.LabelUnreadable {
		t.Fatalf("truncated image: %+v", r)
	}
	run("red", state("fault"))
	if h := text("#headline"); h != "IMAGE NOT ASSESSED" {
		t.Errorf("headline %q", h)
	}
	shot("4-unreadable.png")

	// The daemon gone: the screen must not keep showing a stale state.
	stopDaemon()
	run("no contact", state("offline"))
	if h := text("#headline"); h != "NO CONTACT" {
		t.Errorf("headline %q", h)
	}
	shot("5-offline.png")
	t.Logf("screenshots in %s (scores %.3f / %.3f, threshold %.3f)", art, hiScore, loScore, threshold)
}

// Thumbnails are made again from the stored input once they left memory, and an unknown id
// is 404; acknowledging from another origin is refused.
func TestScreenHTTP(t *testing.T) {
	hi, _, hiScore, loScore := screenScores(t)
	url, _ := startTestDaemon(t, (hiScore+loScore)/2)
	res := post(t, url, hi)
	get := func(path string) (int, []byte) {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.Bytes()
	}
	code, body := get("/v1/thumbnails/" + res.ID)
	if cfg, err := jpeg.DecodeConfig(bytes.NewReader(body)); code != 200 || err != nil || max(cfg.Width, cfg.Height) != ThumbnailSize {
		t.Errorf("thumbnail: %d %v %+v", code, err, cfg)
	}
	if code, _ := get("/v1/thumbnails/" + string(bytes.Repeat([]byte("0"), 64))); code != http.StatusNotFound {
		t.Errorf("unknown thumbnail: %d, want 404", code)
	}
	req, _ := http.NewRequest("POST", url+"/v1/ack", nil)
	req.Header.Set("Origin", "http://evil.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || screenState(t, url).State != "pneumonia" {
		t.Errorf("cross-origin acknowledge: %d, state %q", resp.StatusCode, screenState(t, url).State)
	}
	resp, err = http.Post(url+"/v1/ack", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || screenState(t, url).State != "ready" {
		t.Errorf("acknowledge: %d, state %q", resp.StatusCode, screenState(t, url).State)
	}
}

// A thumbnail that is not in memory (after a restart) is made again from the stored input.
func TestScreenThumbnailFromStore(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p, err := NewPipeline(PipelineOptions{Scorer: testModel(t, "vww_96_int8.tflite", ModelConfig{}), Store: st, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Process(context.Background(), intake.Input{Source: "test", Data: readShared(t, "data", "dicom", "CR-MONO1-10-chest.dcm")})
	if err != nil || res.Label == telemetry.LabelUnreadable {
		t.Fatalf("%v %+v", err, res)
	}
	sc := newScreen(indicator.NewNone(), st, p, nil, newThumbnails(ThumbnailsKept, discardLogger()), discardLogger())
	data, err := sc.Thumbnail(context.Background(), res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := jpeg.DecodeConfig(bytes.NewReader(data)); err != nil || cfg.Width != ThumbnailSize || cfg.Height != ThumbnailSize {
		t.Errorf("thumbnail of the 440×440 DICOM: %+v %v", cfg, err)
	}
	if _, ok := sc.thumbs.get(res.ID); !ok {
		t.Error("thumbnail made again but not cached")
	}
	if _, err := sc.Thumbnail(context.Background(), strings.Repeat("0", 64)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown id: %v, want store.ErrNotFound", err)
	}
	s, err := sc.ScreenState(context.Background())
	if err != nil || s.State != "ready" || s.Broker != intake.BrokerNone || s.Latest == nil || s.Latest.ID != res.ID || s.Model.Name != "vww_96_int8" {
		t.Errorf("screen state %+v %v", s, err)
	}
}

func TestBoxShrink(t *testing.T) {
	// 4×2 → 2×1: each output is the rounded mean of a 2×2 block; stride wider than the row.
	src := []uint8{
		0, 10, 100, 201, 99,
		20, 30, 100, 200, 99,
	}
	got := BoxShrink(src, 5, 4, 2, 2, 1)
	if want := []uint8{15, 150}; !bytes.Equal(got, want) {
		t.Errorf("BoxShrink = %v, want %v", got, want)
	}
	// 3×3 → 2×2, uneven blocks (columns and rows {0} and {1,2}): {1}, {2,3}, {4,7}, {5,6,8,9}.
	got = BoxShrink([]uint8{1, 2, 3, 4, 5, 6, 7, 8, 9}, 3, 3, 3, 2, 2)
	if want := []uint8{1, 3, 6, 7}; !bytes.Equal(got, want) {
		t.Errorf("BoxShrink 3×3 = %v, want %v", got, want)
	}
}
