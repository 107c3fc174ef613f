package fleet

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// msg builds an inbound message as the MQTT handler would.
func msg(t *testing.T, topic string, v any, recv time.Time) inbound {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return inbound{topic: topic, payload: b, recv: recv}
}

// apiFixture is a dashboard without a broker, fed directly through the processor's path.
func apiFixture(t *testing.T) *running {
	t.Helper()
	r := start(t, testOptions(t, ""))
	now := time.Now().UTC()
	hot := healthAt(now.Add(-30*time.Second), 82, 0)
	for _, dev := range []string{"cxr-01", "cxr-02"} {
		tp, _ := telemetry.NewTopics("cxr", "north", dev)
		r.ingest(msg(t, tp.Status(), telemetry.Status{Schema: telemetry.SchemaStatus, State: telemetry.StateOnline, TS: now.Add(-time.Hour), Version: "1.2.0", Model: testModel}, now))
		for i := 3; i >= 1; i-- {
			h := healthAt(now.Add(-time.Duration(i)*time.Minute), 50+float64(i), i)
			r.ingest(msg(t, tp.Health(), h, now))
		}
	}
	tp, _ := telemetry.NewTopics("cxr", "north", "cxr-02")
	r.ingest(msg(t, tp.Health(), hot, now))
	r.ingest(msg(t, tp.Result(), resultMsg("r1", telemetry.LabelNormal, 0.1, now.Add(-3*time.Second)), now))
	r.ingest(msg(t, tp.Result(), resultMsg("r2", telemetry.LabelPneumonia, 0.9, now.Add(-2*time.Second)), now))
	tp1, _ := telemetry.NewTopics("cxr", "north", "cxr-01")
	r.ingest(msg(t, tp1.Result(), resultMsg("r3", telemetry.LabelUnreadable, 0, now.Add(-time.Second)), now))
	r.state.refreshAlerts(now, r.opts.Alerts)
	return r
}

func get(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

func TestAPI(t *testing.T) {
	r := apiFixture(t)
	tests := []struct {
		path     string
		code     int
		contains []string
		check    func(t *testing.T, body string)
	}{
		{"/api/devices", 200, []string{`"site":"north"`, `"state":"online"`}, func(t *testing.T, body string) {
			var ds []DeviceView
			if err := json.Unmarshal([]byte(body), &ds); err != nil || len(ds) != 2 {
				t.Fatalf("devices %v %v", ds, err)
			}
			if ds[0].ID != "cxr-02" || ds[0].Severity != SevWarning || ds[0].Alerts[0].Kind != AlertTemperature {
				t.Errorf("first device %+v, want the hot cxr-02 first", ds[0])
			}
			if ds[1].Model.SHA256 != testModel.SHA256 || ds[1].Health == nil || ds[1].LastSeen.IsZero() {
				t.Errorf("device fields missing: %+v", ds[1])
			}
		}},
		{"/api/devices/north/cxr-01", 200, nil, func(t *testing.T, body string) {
			var d DeviceDetail
			if err := json.Unmarshal([]byte(body), &d); err != nil {
				t.Fatal(err)
			}
			if len(d.History) != 3 || d.History[0].Outbox != 3 || len(d.Results) != 1 || d.Results[0].ID != "r3" {
				t.Errorf("detail %+v", d)
			}
		}},
		{"/api/devices/north/nope", 404, []string{"not known"}, nil},
		{"/api/devices/north/bad%20id", 400, []string{"[a-zA-Z0-9_-]"}, nil},
		{"/api/devices/north/cxr-01?hours=0", 400, []string{"hours"}, nil},
		{"/api/results", 200, nil, func(t *testing.T, body string) {
			var rs []ResultRecord
			if err := json.Unmarshal([]byte(body), &rs); err != nil || len(rs) != 3 || rs[0].ID != "r3" || rs[2].ID != "r1" {
				t.Fatalf("results %+v %v, want newest first", rs, err)
			}
		}},
		{"/api/results?label=pneumonia", 200, []string{`"id":"r2"`}, func(t *testing.T, body string) {
			if strings.Count(body, `"id"`) != 1 {
				t.Errorf("label filter: %s", body)
			}
		}},
		{"/api/results?device=cxr-02&limit=1", 200, []string{`"id":"r2"`}, func(t *testing.T, body string) {
			if strings.Count(body, `"id"`) != 1 {
				t.Errorf("limit: %s", body)
			}
		}},
		{"/api/results?site=south", 200, nil, func(t *testing.T, body string) {
			if strings.TrimSpace(body) != "[]" {
				t.Errorf("want an empty list, got %s", body)
			}
		}},
		{"/api/results?label=maybe", 400, []string{`label \"maybe\"`}, nil},
		{"/api/results?limit=5000", 400, []string{"limit"}, nil},
		{"/api/results?device=a/b", 400, []string{"device"}, nil},
		{"/api/alerts", 200, []string{`"kind":"temperature"`, `"device":"cxr-02"`, "82.0 °C"}, nil},
		{"/api/stats", 200, []string{`"health/accepted":7`, `"result/accepted":3`, `"delay_ms"`}, nil},
		{"/metrics", 200, []string{`cxr_dashboard_messages_total{kind="result",outcome="accepted"} 3`, "cxr_dashboard_devices 2", "go_goroutines"}, nil},
		{"/healthz", 200, []string{"ok"}, nil},
		{"/", 200, []string{"north", "cxr-01", "Latest results", "pneumonia"}, nil},
		{"/device/north/cxr-02", 200, []string{"<svg", "Temperature", "1.2.0", "82.0 °C"}, nil},
		{"/device/north/zzz", 404, nil, nil},
		{"/static/style.css", 200, []string{"@media"}, nil},
		{"/fragment/feed", 200, []string{"r", "north / cxr-01"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			code, _, body := get(t, r.http.URL+tc.path)
			if code != tc.code {
				t.Fatalf("status %d, want %d: %s", code, tc.code, body)
			}
			for _, c := range tc.contains {
				if !strings.Contains(body, c) {
					t.Errorf("body lacks %q:\n%.2000s", c, body)
				}
			}
			if tc.check != nil {
				tc.check(t, body)
			}
		})
	}
	// No identifiers of a study or patient ever reach the API or the page.
	for _, p := range []string{"/api/results", "/", "/device/north/cxr-02", "/api/devices/north/cxr-02"} {
		if _, _, body := get(t, r.http.URL+p); strings.Contains(body, "k:3f9a") {
			t.Errorf("%s exposes the study hash", p)
		}
	}
}

func TestSSEAnnouncesChanges(t *testing.T) {
	r := start(t, testOptions(t, ""))
	resp, err := http.Get(r.http.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	lines := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				lines <- string(buf[:n])
			}
			if err != nil {
				close(lines)
				return
			}
		}
	}()
	<-lines // the "connected" comment
	tp, _ := telemetry.NewTopics("cxr", "s", "d")
	r.ingest(msg(t, tp.Result(), resultMsg("x", telemetry.LabelNormal, 0.1, time.Now()), time.Now()))
	// Reads may split an event; collect until one is complete (it ends in a blank line).
	var got string
	deadline := time.After(testenv.WaitLimit)
	for !strings.Contains(got, "event: change") || !strings.HasSuffix(got, "\n\n") {
		select {
		case chunk, ok := <-lines:
			if !ok {
				t.Fatalf("stream ended after %q", got)
			}
			got += chunk
		case <-deadline:
			t.Fatalf("no complete event after a result; got %q", got)
		}
	}
	if !strings.Contains(got, "data: ") || !strings.Contains(got, "results") {
		t.Errorf("event %q, want a change naming results", got)
	}
}

func TestPrune(t *testing.T) {
	o := testOptions(t, "")
	o.Retention.ResultsMaxCount = 3
	o.Retention.HealthMaxPoints = 2
	r := start(t, o)
	now := time.Now().UTC()
	tp, _ := telemetry.NewTopics("cxr", "s", "d")
	for i := range 5 {
		r.ingest(msg(t, tp.Result(), resultMsg(fmt.Sprint("r", i), telemetry.LabelNormal, 0.1, now), now))
		r.ingest(msg(t, tp.Health(), healthAt(now.Add(time.Duration(i)*time.Second), 40, 0), now))
	}
	// An old result and health point beyond the age limits.
	r.ingest(msg(t, tp.Health(), healthAt(now.Add(-30*24*time.Hour), 40, 0), now))
	ps, err := r.store.prune(now, r.opts.Retention)
	if err != nil {
		t.Fatal(err)
	}
	res, _ := r.store.results(ResultQuery{Limit: 100})
	hist, _ := r.store.history("s", "d", time.Time{}, 100)
	if ps.Results != 2 || len(res) != 3 || res[2].ID != "r2" {
		t.Errorf("pruned %d results, kept %+v; want the newest 3", ps.Results, res)
	}
	if byDev, _ := r.store.results(ResultQuery{Site: "s", Device: "d", Limit: 100}); len(byDev) != 3 || byDev[0].ID != "r4" {
		t.Errorf("device index after prune: %+v, want the newest 3", byDev)
	}
	if len(hist) != 2 || !hist[1].TS.Equal(now.Add(4*time.Second)) {
		t.Errorf("kept history %+v, want the newest 2 points", hist)
	}
	// A pruned id may come back later: it is stored again rather than lost.
	r.ingest(msg(t, tp.Result(), resultMsg("r0", telemetry.LabelNormal, 0.1, now), now))
	if n := r.count("result/accepted"); n != 6 {
		t.Errorf("accepted %d, want 6", n)
	}
}
