package intake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cxr-edge/cxr-edge/telemetry"
)

func newServer(t *testing.T, maxBytes int64, health func(context.Context) error) (*httptest.Server, *decodeProc) {
	t.Helper()
	proc := newDecodeProc()
	reg := prometheus.NewRegistry()
	h, err := NewHTTPHandler(HTTPOptions{
		Processor: proc, Results: proc, MaxBytes: maxBytes, Health: health,
		Counters: NewMetrics(reg), Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, proc
}

func do(t *testing.T, method, url string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func TestHTTPPostAndGet(t *testing.T) {
	img := fullres(t, "PNEUMONIA", "person45_bacteria_221.jpeg")
	srv, _ := newServer(t, 0, nil)
	code, body := do(t, "POST", srv.URL+"/v1/studies", img)
	if code != http.StatusOK {
		t.Fatalf("POST = %d %s", code, body)
	}
	var res telemetry.Result
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	if res.Schema != telemetry.SchemaResult || res.Source != SourceHTTP || res.Image.Format != "jpeg" || res.Image.Width == 0 || len(res.ID) != 64 {
		t.Errorf("result = %+v", res)
	}
	code, body = do(t, "GET", srv.URL+"/v1/results/"+res.ID, nil)
	var got telemetry.Result
	if code != http.StatusOK || json.Unmarshal(body, &got) != nil || got.ID != res.ID {
		t.Errorf("GET result = %d %s", code, body)
	}
	// A second image, then the list: newest first, limit honoured.
	img2 := fullres(t, "NORMAL", "NORMAL2-IM-1024-0001.jpeg")
	if code, body := do(t, "POST", srv.URL+"/v1/studies", img2); code != http.StatusOK {
		t.Fatalf("POST 2 = %d %s", code, body)
	}
	code, body = do(t, "GET", srv.URL+"/v1/results?limit=1", nil)
	var list struct{ Results []telemetry.Result }
	if code != http.StatusOK || json.Unmarshal(body, &list) != nil || len(list.Results) != 1 || list.Results[0].ID == res.ID {
		t.Errorf("list = %d %s", code, body)
	}
	code, body = do(t, "GET", srv.URL+"/v1/results", nil)
	if code != http.StatusOK || json.Unmarshal(body, &list) != nil || len(list.Results) != 2 {
		t.Errorf("list = %d %s", code, body)
	}
	// The screen page and its state: without a Screen, the newest result and no broker.
	code, body = do(t, "GET", srv.URL+"/", nil)
	if code != http.StatusOK || !bytes.Contains(body, []byte(`<script src="/screen.js"`)) {
		t.Errorf("screen page = %d\n%s", code, body)
	}
	code, body = do(t, "GET", srv.URL+"/v1/screen", nil)
	var st ScreenState
	if code != http.StatusOK || json.Unmarshal(body, &st) != nil || st.Latest == nil || st.Latest.ID != list.Results[0].ID ||
		st.Broker != BrokerNone || st.State != "ready" || st.Thumbnail != "" || st.Title != "cxr-edge" {
		t.Errorf("screen state = %d %s", code, body)
	}
}

func TestScreenRoutesWithoutScreen(t *testing.T) {
	srv, _ := newServer(t, 0, nil)
	id := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		method, path string
		code         int
		ctype        string
	}{
		{"GET", "/screen.js", 200, "text/javascript; charset=utf-8"},
		{"GET", "/screen.css", 200, "text/css; charset=utf-8"},
		{"POST", "/v1/ack", http.StatusNotImplemented, "application/json"},
		{"GET", "/v1/thumbnails/" + id, http.StatusNotFound, "application/json"},
		{"GET", "/v1/thumbnails/nothex", http.StatusBadRequest, "application/json"},
		{"GET", "/v1/ack", http.StatusMethodNotAllowed, ""},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code || (tc.ctype != "" && resp.Header.Get("Content-Type") != tc.ctype) {
			t.Errorf("%s %s = %d %q, want %d %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), tc.code, tc.ctype)
		}
	}
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Errorf("CSP %q", csp)
	}
}

func TestHTTPErrors(t *testing.T) {
	img := fullres(t, "NORMAL", "NORMAL2-IM-1111-0001.jpeg")
	srv, proc := newServer(t, int64(len(img)), nil)
	for _, tc := range []struct {
		name, method, path string
		body               []byte
		code               int
		msg                string
	}{
		{"too large", "POST", "/v1/studies", append(bytes.Clone(img), 0), 413, "too large"},
		{"empty", "POST", "/v1/studies", nil, 400, "empty"},
		{"not an image", "POST", "/v1/studies", []byte("%PDF-1.4 hello"), 415, "unsupported format"},
		{"undecodable", "POST", "/v1/studies", img[:len(img)/2], 422, `"unreadable"`},
		{"bad id", "GET", "/v1/results/xyz", nil, 400, "64 lowercase hex"},
		{"unknown id", "GET", "/v1/results/" + strings.Repeat("0", 64), nil, 404, "no result"},
		{"bad limit", "GET", "/v1/results?limit=0", nil, 400, "limit"},
		{"limit too big", "GET", "/v1/results?limit=5000", nil, 400, "1 to 1000"},
		{"wrong method", "GET", "/v1/studies", nil, 405, ""},
		{"unknown path", "GET", "/v2/x", nil, 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(t, tc.method, srv.URL+tc.path, tc.body)
			if code != tc.code || !strings.Contains(string(body), tc.msg) {
				t.Errorf("%s %s = %d %s; want %d mentioning %q", tc.method, tc.path, code, body, tc.code, tc.msg)
			}
		})
	}
	if _, calls := proc.snapshot(); calls != 1 { // only the undecodable JPEG reached the processor
		t.Errorf("processor called %d times, want 1", calls)
	}
	// The rejections are counted.
	_, body := do(t, "GET", srv.URL+"/metrics", nil)
	for _, want := range []string{
		`cxr_intake_rejected_total{reason="too_large",source="http"} 1`,
		`cxr_intake_rejected_total{reason="unsupported",source="http"} 1`,
		`cxr_intake_rejected_total{reason="empty",source="http"} 1`,
		`cxr_intake_received_total{source="http"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s:\n%s", want, body)
		}
	}
}

// A chunked body (no Content-Length) over the limit is cut off by the reader, not the header check.
func TestHTTPChunkedTooLarge(t *testing.T) {
	srv, _ := newServer(t, 2048, nil)
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write(append([]byte{0xFF, 0xD8, 0xFF}, make([]byte, 4096)...))
		pw.Close()
	}()
	resp, err := http.Post(srv.URL+"/v1/studies", "image/jpeg", pr)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d, want 413", resp.StatusCode)
	}
}

func TestHTTPHealthz(t *testing.T) {
	var healthErr error
	srv, _ := newServer(t, 0, func(context.Context) error { return healthErr })
	if code, body := do(t, "GET", srv.URL+"/healthz", nil); code != 200 || !strings.Contains(string(body), `"ok"`) {
		t.Errorf("healthy: %d %s", code, body)
	}
	healthErr = errors.New("model not loaded")
	if code, body := do(t, "GET", srv.URL+"/healthz", nil); code != 503 || !strings.Contains(string(body), "model not loaded") {
		t.Errorf("unhealthy: %d %s", code, body)
	}
}

type failingProc struct{}

func (failingProc) Process(context.Context, Input) (telemetry.Result, error) {
	return telemetry.Result{}, errors.New("store: closed")
}

func TestHTTPProcessorFailureIs503(t *testing.T) {
	proc := newDecodeProc()
	h, err := NewHTTPHandler(HTTPOptions{Processor: failingProc{}, Results: proc})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	code, body := do(t, "POST", srv.URL+"/v1/studies", fullres(t, "NORMAL", "NORMAL2-IM-1113-0001.jpeg"))
	if code != 503 || !strings.Contains(string(body), "store: closed") {
		t.Errorf("got %d %s", code, body)
	}
	if code, _ := do(t, "GET", srv.URL+"/metrics", nil); code != 404 {
		t.Errorf("/metrics without a registry = %d, want 404", code)
	}
	if _, err := NewHTTPHandler(HTTPOptions{}); err == nil {
		t.Error("handler without processor accepted")
	}
}
