package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

func TestDecode(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ok := map[string]string{
		"status": `{"schema":"cxr-edge/status/v1","state":"online","ts":"2026-05-01T12:00:00Z","version":"1.0","model":{"name":"m","sha256":"ab"}}`,
		"health": `{"schema":"cxr-edge/health/v1","ts":"2026-05-01T12:00:00Z","disk_free":5,"temp_c":null,"future_field":1}`,
		"result": `{"schema":"cxr-edge/result/v1","id":"r1","scored_at":"2026-05-01T12:00:00Z","label":"normal","score":0.1,"threshold":0.4}`,
	}
	_ = now
	tests := []struct {
		name, topic, payload string
		want                 error // nil: accepted
		kind                 string
	}{
		{"status", "cxr/s1/d1/status", ok["status"], nil, kindStatus},
		{"health with unknown added field", "cxr/s1/d1/health", ok["health"], nil, kindHealth},
		{"result", "cxr/s1/d1/result", ok["result"], nil, kindResult},
		{"wrong prefix", "other/s1/d1/status", ok["status"], ErrBadTopic, kindUnknown},
		{"bad site id", "cxr/s 1/d1/status", ok["status"], ErrBadTopic, kindUnknown},
		{"no leaf", "cxr/s1/d1", ok["status"], ErrBadTopic, kindUnknown},
		{"unknown leaf", "cxr/s1/d1/secrets", ok["status"], ErrBadTopic, kindUnknown},
		{"command is ignored", "cxr/s1/d1/cmd/reload", `{}`, errIgnored, kindUnknown},
		{"command reply is ignored", "cxr/s1/d1/cmd/reload/reply", `{}`, errIgnored, kindUnknown},
		{"not JSON", "cxr/s1/d1/health", `{"schema":`, ErrMalformed, kindHealth},
		{"JSON array", "cxr/s1/d1/health", `[1,2]`, ErrMalformed, kindHealth},
		{"schema v2", "cxr/s1/d1/health", strings.Replace(ok["health"], "/v1", "/v2", 1), ErrUnknownSchema, kindHealth},
		{"schema of another topic", "cxr/s1/d1/health", ok["status"], ErrUnknownSchema, kindHealth},
		{"no schema", "cxr/s1/d1/status", `{"state":"online"}`, ErrUnknownSchema, kindStatus},
		{"bad state", "cxr/s1/d1/status", strings.Replace(ok["status"], `"online"`, `"sleeping"`, 1), ErrInvalid, kindStatus},
		{"zero ts", "cxr/s1/d1/status", `{"schema":"cxr-edge/status/v1","state":"online"}`, ErrInvalid, kindStatus},
		{"wrong field type", "cxr/s1/d1/health", `{"schema":"cxr-edge/health/v1","ts":"2026-05-01T12:00:00Z","queue":"many"}`, ErrInvalid, kindHealth},
		{"negative outbox", "cxr/s1/d1/health", `{"schema":"cxr-edge/health/v1","ts":"2026-05-01T12:00:00Z","outbox":-1}`, ErrInvalid, kindHealth},
		{"result without id", "cxr/s1/d1/result", strings.Replace(ok["result"], `"id":"r1",`, "", 1), ErrInvalid, kindResult},
		{"result bad label", "cxr/s1/d1/result", strings.Replace(ok["result"], `"normal"`, `"covid"`, 1), ErrInvalid, kindResult},
		{"oversized", "cxr/s1/d1/health", `{"schema":"cxr-edge/health/v1","pad":"` + strings.Repeat("x", 70<<10) + `"}`, ErrOversized, kindUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := decode("cxr", tc.topic, []byte(tc.payload), 64<<10)
			if tc.want == nil && err != nil {
				t.Fatalf("decode: %v", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("decode error = %v, want %v", err, tc.want)
			}
			if d.kind != tc.kind {
				t.Errorf("kind = %q, want %q", d.kind, tc.kind)
			}
		})
	}
}

// TestRobustIntake feeds bad and tricky messages through a real broker and checks that each
// is counted under its reason, and that state stays right.
func TestRobustIntake(t *testing.T) {
	b := broker(t)
	r := start(t, testOptions(t, b.URL()))
	p := publisher(t, b.URL(), "pub-robust")
	tp, _ := telemetry.NewTopics("cxr", "clinic", "dev1")
	now := time.Now().UTC().Truncate(time.Millisecond)

	publish(t, p, tp.Status(), false, telemetry.Status{Schema: telemetry.SchemaStatus, State: telemetry.StateOnline, TS: now, Model: testModel})
	// Out of order: newer health first, then an older one.
	publish(t, p, tp.Health(), false, healthAt(now.Add(2*time.Second), 50, 0))
	publish(t, p, tp.Health(), false, healthAt(now.Add(time.Second), 60, 0))
	// The same result three times (at-least-once delivery).
	for range 3 {
		publish(t, p, tp.Result(), false, resultMsg("r-1", telemetry.LabelPneumonia, 0.9, now))
	}
	publish(t, p, tp.Result(), false, resultMsg("r-2", telemetry.LabelNormal, 0.1, now.Add(time.Second)))
	// Garbage of every kind.
	publish(t, p, tp.Health(), false, `{"schema": "cxr-edge/health/v1", "ts": `)
	publish(t, p, tp.Health(), false, `{"schema":"cxr-edge/health/v9","ts":"2026-01-01T00:00:00Z"}`)
	publish(t, p, "cxr/clinic/dev1/unexpected", false, `{}`)
	publish(t, p, "cxr/bad site/dev1/status", false, `{}`)
	publish(t, p, tp.Health(), false, strings.Repeat("A", 100<<10))
	publish(t, p, tp.Result(), false, `{"schema":"cxr-edge/result/v1","id":"x","label":"maybe","scored_at":"2026-01-01T00:00:00Z"}`)
	publish(t, p, tp.Command("reload"), false, `{"id":"c1"}`)
	// A marker message last: when it is processed, everything before it is.
	publish(t, p, tp.Result(), false, resultMsg("marker", telemetry.LabelNormal, 0.2, now.Add(3*time.Second)))
	testenv.WaitFor(t, "marker result", func() bool { return r.count("result/accepted") == 3 })

	st := r.snapshotStats()
	want := map[string]uint64{
		"status/accepted": 1, "health/accepted": 2, "result/accepted": 3, "result/duplicate": 2,
		"health/malformed": 1, "health/unknown_schema": 1, "unknown/bad_topic": 2, "unknown/oversized": 1,
		"result/invalid": 1, "unknown/ignored": 1,
	}
	for k, n := range want {
		if st.Messages[k] != n {
			t.Errorf("messages[%s] = %d, want %d (all: %v)", k, st.Messages[k], n, st.Messages)
		}
	}
	if st.Rejected["malformed"] != 1 || st.Rejected["oversized"] != 1 || st.Rejected["bad_topic"] != 2 {
		t.Errorf("rejected = %v", st.Rejected)
	}
	_, _, metrics := get(t, r.http.URL+"/metrics")
	for _, line := range []string{`cxr_dashboard_messages_total{kind="unknown",outcome="oversized"} 1`,
		`cxr_dashboard_messages_total{kind="result",outcome="duplicate"} 2`,
		`cxr_dashboard_messages_total{kind="health",outcome="malformed"} 1`} {
		if !strings.Contains(metrics, line) {
			t.Errorf("/metrics lacks %s", line)
		}
	}
	d, ok := r.state.Device("clinic", "dev1")
	if !ok {
		t.Fatal("device missing")
	}
	if d.Health == nil || *d.Health.TempC != 50 || !d.Health.TS.Equal(now.Add(2*time.Second)) {
		t.Errorf("live health = %+v, want the newest report (50 °C)", d.Health)
	}
	if d.Results != 3 {
		t.Errorf("device results = %d, want 3 (duplicates counted once)", d.Results)
	}
	hist, err := r.store.history("clinic", "dev1", now.Add(-time.Hour), 100)
	if err != nil || len(hist) != 2 || !hist[0].TS.Before(hist[1].TS) {
		t.Errorf("history = %v, %v; want both reports in ts order", hist, err)
	}
	res, err := r.store.results(ResultQuery{Limit: 10})
	if err != nil || len(res) != 3 || res[0].ID != "marker" {
		t.Errorf("results = %v, %v; want 3, newest first", res, err)
	}
	for _, rec := range res {
		if strings.Contains(rec.ID, "k:3f9a") {
			t.Error("study hash stored")
		}
	}
}

// TestRetainedOldStatusDoesNotOverride: a stale retained status, delivered on subscribe,
// must not replace the newer status the dashboard already stored.
func TestRetainedOldStatusDoesNotOverride(t *testing.T) {
	b := broker(t)
	o := testOptions(t, b.URL())
	r := start(t, o)
	p := publisher(t, b.URL(), "pub-retained")
	tp, _ := telemetry.NewTopics("cxr", "clinic", "dev2")
	now := time.Now().UTC()
	publish(t, p, tp.Status(), false, telemetry.Status{Schema: telemetry.SchemaStatus, State: telemetry.StateOnline, TS: now})
	testenv.WaitFor(t, "online", func() bool { d, _ := r.state.Device("clinic", "dev2"); return d.State == telemetry.StateOnline })
	r.stop()

	// While the dashboard is away, an old offline status (an hour old) becomes the retained one.
	publish(t, p, tp.Status(), true, telemetry.Status{Schema: telemetry.SchemaStatus, State: telemetry.StateOffline, TS: now.Add(-time.Hour)})
	o.MQTT.ClientID += "-2" // a new session, so the retained message is what it receives
	r2 := start(t, o)
	// A broker sends the retained status again on every (re)subscription, so it may be counted
	// more than once (a loaded CI run saw 2 before the first poll and waited for exactly 1 in
	// vain). If the wait fails, say what the dashboard counted and holds.
	t.Cleanup(func() {
		if t.Failed() {
			d, ok := r2.state.Device("clinic", "dev2")
			t.Logf("messages counted: %v; device known %v: %+v", r2.snapshotStats().Messages, ok, d)
		}
	})
	testenv.WaitFor(t, "stale status counted", func() bool { return r2.count("status/stale") >= 1 })
	if d, _ := r2.state.Device("clinic", "dev2"); d.State != telemetry.StateOnline {
		t.Fatalf("state = %s, want online (the retained status is older)", d.State)
	}
}

// TestRestartKeepsHistory: a restart with the same store.dir keeps devices, history and
// results, and messages published while the dashboard was down arrive through its
// persistent session.
func TestRestartKeepsHistory(t *testing.T) {
	b := broker(t)
	o := testOptions(t, b.URL())
	r := start(t, o)
	dev := connectDevice(t, b.URL(), "clinic", "dev3")
	now := time.Now()
	dev.health(now.Add(-2*time.Second), 41, 0)
	dev.health(now.Add(-time.Second), 42, 0)
	dev.result("before-1", telemetry.LabelNormal, 0.1)
	testenv.WaitFor(t, "first messages", func() bool { return r.count("result/accepted") == 1 && r.count("health/accepted") == 2 })
	r.stop()

	dev.result("while-down", telemetry.LabelPneumonia, 0.8)
	r2 := start(t, o)
	testenv.WaitFor(t, "queued result", func() bool { return r2.count("result/accepted") == 1 })
	d, ok := r2.state.Device("clinic", "dev3")
	if !ok || d.State != telemetry.StateOnline || d.Results != 2 || d.Model.SHA256 != testModel.SHA256 {
		t.Fatalf("device after restart = %+v", d)
	}
	hist, err := r2.store.history("clinic", "dev3", now.Add(-time.Hour), 100)
	if err != nil || len(hist) != 2 {
		t.Fatalf("history after restart: %d points, %v; want 2", len(hist), err)
	}
	res, err := r2.store.results(ResultQuery{Device: "dev3", Limit: 10})
	if err != nil || len(res) != 2 || res[0].ID != "while-down" || res[1].ID != "before-1" {
		t.Fatalf("results after restart = %+v, %v", res, err)
	}
}

// TestTLSClientCertificate: the dashboard reaches a broker that requires TLS client
// certificates, using mqtt.ca_file, cert_file and key_file.
func TestTLSClientCertificate(t *testing.T) {
	b := testenv.MosquittoTLS(t)
	o := testOptions(t, b.TLSURL())
	o.MQTT.CAFile, o.MQTT.CertFile, o.MQTT.KeyFile = b.CAFile, b.ClientCert, b.ClientKey
	r := start(t, o)
	p := publisher(t, b.URL(), "pub-tls")
	tp, _ := telemetry.NewTopics("cxr", "clinic", "tls1")
	publish(t, p, tp.Result(), false, resultMsg("t1", telemetry.LabelNormal, 0.1, time.Now()))
	testenv.WaitFor(t, "result over TLS", func() bool { return r.count("result/accepted") == 1 })

	// A certificate from another CA is refused: the dashboard never gets connected.
	o2 := testOptions(t, b.TLSURL())
	o2.MQTT.CAFile, o2.MQTT.CertFile, o2.MQTT.KeyFile = b.CAFile, b.OtherCert, b.OtherKey
	svc, err := New(o2)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := svc.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if svc.Connected() {
		t.Error("connected with a certificate from an unknown CA")
	}
}

// TestSharedSubscription: two dashboards in one shared group split the messages; together
// they see every message once.
func TestSharedSubscription(t *testing.T) {
	b := broker(t)
	var rs []*running
	for i := range 2 {
		o := testOptions(t, b.URL())
		o.MQTT.ClientID = fmt.Sprintf("dash-shared-%d", i)
		o.MQTT.SharedGroup = "dashboards"
		rs = append(rs, start(t, o))
	}
	p := publisher(t, b.URL(), "pub-shared")
	tp, _ := telemetry.NewTopics("cxr", "clinic", "shared")
	for i := range 40 {
		publish(t, p, tp.Result(), false, resultMsg(fmt.Sprint("s", i), telemetry.LabelNormal, 0.1, time.Now()))
	}
	total := func() uint64 { return rs[0].count("result/accepted") + rs[1].count("result/accepted") }
	testenv.WaitFor(t, "40 results across both", func() bool { return total() >= 40 })
	time.Sleep(200 * time.Millisecond) // any double delivery would show up now
	a, c := rs[0].count("result/accepted"), rs[1].count("result/accepted")
	if a+c != 40 || a == 0 || c == 0 {
		t.Errorf("instances accepted %d and %d, want 40 split between both", a, c)
	}
}

func TestRateLog(t *testing.T) {
	rl := newRateLog(10 * time.Second)
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	if ok, _ := rl.allow("malformed", t0); !ok {
		t.Fatal("first line suppressed")
	}
	for i := range 5 {
		if ok, _ := rl.allow("malformed", t0.Add(time.Duration(i)*time.Second)); ok {
			t.Fatal("line within the interval logged")
		}
	}
	if ok, _ := rl.allow("oversized", t0); !ok {
		t.Fatal("another reason suppressed")
	}
	if ok, quiet := rl.allow("malformed", t0.Add(11*time.Second)); !ok || quiet != 5 {
		t.Fatalf("after the interval: ok=%v suppressed=%d, want true 5", ok, quiet)
	}
}

// TestMaxDevices: with room for 3 devices, messages of a 4th (and 5th) new device are
// dropped without creating anything in memory or in fleet.db, counted as "device_limit" in
// /api/stats and /metrics, and logged; the known devices keep updating, also after a restart.
func TestMaxDevices(t *testing.T) {
	t.Run("default is 5000", func(t *testing.T) {
		if got := DefaultOptions().MaxDevices; got != 5000 {
			t.Errorf("DefaultOptions().MaxDevices = %d, want 5000", got)
		}
		if got := (Options{}).withDefaults().MaxDevices; got != 5000 {
			t.Errorf("zero MaxDevices became %d, want the default 5000", got)
		}
	})

	o := testOptions(t, "")
	o.MaxDevices = 3
	logs := new(testenv.LogBuffer)
	o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	r := start(t, o)
	t0 := time.Now().UTC().Truncate(time.Millisecond).Add(-time.Hour)
	// message builds the step's message of the given kind; i keeps ts and result ids unique.
	message := func(t *testing.T, device, kind string, i int) inbound {
		tp, err := telemetry.NewTopics("cxr", "clinic", device)
		if err != nil {
			t.Fatal(err)
		}
		ts := t0.Add(time.Duration(i) * time.Second)
		switch kind {
		case kindStatus:
			return msg(t, tp.Status(), telemetry.Status{Schema: telemetry.SchemaStatus, State: telemetry.StateOnline, TS: ts, Model: testModel}, ts)
		case kindHealth:
			return msg(t, tp.Health(), healthAt(ts, 40+float64(i), 0), ts)
		default:
			return msg(t, tp.Result(), resultMsg(fmt.Sprint("r", i), telemetry.LabelNormal, 0.1, ts), ts)
		}
	}
	steps := []struct {
		name, device, kind, want string
	}{
		{"first device", "d1", kindStatus, outAccepted},
		{"second device", "d2", kindHealth, outAccepted},
		{"third device fills the fleet", "d3", kindResult, outAccepted},
		{"fourth device rejected", "d4", kindStatus, "device_limit"},
		{"fourth device rejected again", "d4", kindResult, "device_limit"},
		{"known device health", "d1", kindHealth, outAccepted},
		{"known device result", "d2", kindResult, outAccepted},
		{"known device status", "d3", kindStatus, outAccepted},
		{"fifth device rejected", "d5", kindHealth, "device_limit"},
		{"known device after rejections", "d1", kindResult, outAccepted},
	}
	for i, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			key := s.kind + "/" + s.want
			before := r.count(key)
			r.ingest(message(t, s.device, s.kind, i))
			if got := r.count(key) - before; got != 1 {
				t.Fatalf("%s of %s: %s counted %d times, want once (all: %v)", s.kind, s.device, key, got, r.snapshotStats().Messages)
			}
			if _, ok := r.state.Device("clinic", s.device); ok != (s.want == outAccepted) {
				t.Errorf("device %s known = %v after a %s message", s.device, ok, s.want)
			}
		})
	}

	var st Stats
	_, _, body := get(t, r.http.URL+"/api/stats")
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/api/stats: %v", err)
	}
	if st.Devices != 3 || st.Rejected["device_limit"] != 3 {
		t.Errorf("/api/stats devices %d, rejected %v; want 3 devices, 3 device_limit", st.Devices, st.Rejected)
	}
	_, _, metrics := get(t, r.http.URL+"/metrics")
	for _, line := range []string{`cxr_dashboard_messages_total{kind="status",outcome="device_limit"} 1`,
		`cxr_dashboard_messages_total{kind="result",outcome="device_limit"} 1`,
		`cxr_dashboard_messages_total{kind="health",outcome="device_limit"} 1`,
		`cxr_dashboard_devices 3`} {
		if !strings.Contains(metrics, line) {
			t.Errorf("/metrics lacks %s", line)
		}
	}
	if got := logs.String(); !strings.Contains(got, "reason=device_limit") || !strings.Contains(got, ErrDeviceLimit.Error()) {
		t.Errorf("no rejection logged for the device limit:\n%s", got)
	}
	if d, _ := r.state.Device("clinic", "d1"); d.Health == nil || d.Results != 1 {
		t.Errorf("known device d1 not updated: %+v", d)
	}
	stored, err := r.store.loadDevices()
	if err != nil || len(stored) != 3 {
		t.Errorf("fleet.db holds %d devices (%v), want 3", len(stored), err)
	}
	if h, err := r.store.history("clinic", "d5", t0.Add(-time.Hour), 10); err != nil || len(h) != 0 {
		t.Errorf("health of rejected device stored: %v, %v", h, err)
	}
	if res, err := r.store.results(ResultQuery{Device: "d4", Limit: 10}); err != nil || len(res) != 0 {
		t.Errorf("result of rejected device stored: %v, %v", res, err)
	}

	// After a restart the stored devices count against the cap, even a lower one, and keep
	// updating.
	r.stop()
	o.MaxDevices = 2
	r2 := start(t, o)
	r2.ingest(message(t, "d4", kindHealth, 100), message(t, "d3", kindHealth, 101))
	if r2.count("health/device_limit") != 1 || r2.count("health/accepted") != 1 {
		t.Errorf("after restart with 3 stored devices and a cap of 2: %v, want d4 rejected and d3 accepted", r2.snapshotStats().Messages)
	}
}
