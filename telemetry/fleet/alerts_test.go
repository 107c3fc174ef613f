package fleet

import (
	"strings"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/telemetry"
)

func TestEvaluateAlerts(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	th := DefaultOptions().Alerts
	f := func(v float64) *float64 { return &v }
	yes := true
	healthy := func() *telemetry.Health {
		return &telemetry.Health{TS: now, DiskFree: 10 << 30, TempC: f(50)}
	}
	reports := func(outbox []int, failed []uint64) []report {
		var r []report
		for i := range outbox {
			r = append(r, report{TS: now.Add(time.Duration(i-len(outbox)) * 10 * time.Second), Outbox: outbox[i], Failed: failed[i]})
		}
		return r
	}
	base := func(mod func(d *deviceState)) *deviceState {
		d := &deviceState{Site: "s", ID: "d", State: telemetry.StateOnline, Since: now.Add(-time.Hour), LastSeen: now, Health: healthy(), Model: testModel}
		mod(d)
		return d
	}
	tests := []struct {
		name string
		dev  *deviceState
		want string // kind, "" for none
		text string // part of the message
	}{
		{"healthy", base(func(*deviceState) {}), "", ""},
		{"offline briefly", base(func(d *deviceState) { d.State, d.Since = telemetry.StateOffline, now.Add(-time.Minute) }), "", ""},
		{"offline too long", base(func(d *deviceState) { d.State, d.Since = telemetry.StateOffline, now.Add(-12*time.Minute) }), AlertOffline, "Offline for 12 min"},
		{"silent", base(func(d *deviceState) { d.LastSeen = now.Add(-20 * time.Minute) }), AlertSilent, "No message for 20 min"},
		{"hot", base(func(d *deviceState) { d.Health.TempC = f(81) }), AlertTemperature, "81.0 °C"},
		{"no sensor", base(func(d *deviceState) { d.Health.TempC = nil }), "", ""},
		{"throttled", base(func(d *deviceState) { d.Health.Throttled = &yes }), AlertThrottled, "throttled"},
		{"disk low", base(func(d *deviceState) { d.Health.DiskFree = 300e6 }), AlertDisk, "0.3 GB free"},
		{"outbox full", base(func(d *deviceState) { d.Recent = reports([]int{60}, []uint64{0}) }), AlertOutbox, "holds 60"},
		{"outbox growing", base(func(d *deviceState) { d.Recent = reports([]int{0, 1, 2, 4, 6, 9}, make([]uint64, 6)) }), AlertOutbox, "0 → 9"},
		{"outbox up and down", base(func(d *deviceState) { d.Recent = reports([]int{0, 1, 2, 1, 6, 9}, make([]uint64, 6)) }), "", ""},
		{"failed rising", base(func(d *deviceState) { d.Recent = reports([]int{0, 0, 0}, []uint64{2, 3, 7}) }), AlertFailed, "5 more"},
		{"failed steady", base(func(d *deviceState) { d.Recent = reports([]int{0, 0, 0}, []uint64{7, 7, 8}) }), "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := evaluate(now, []*deviceState{tc.dev}, th)["s/d"]
			if tc.want == "" {
				if len(got) != 0 {
					t.Fatalf("alerts %+v, want none", got)
				}
				return
			}
			if len(got) != 1 || got[0].Kind != tc.want || !strings.Contains(got[0].Message, tc.text) {
				t.Fatalf("alerts %+v, want one %s containing %q", got, tc.want, tc.text)
			}
		})
	}
}

func TestModelMajority(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	other := telemetry.ModelRef{Name: "cxr-pneumonia", Version: "2", SHA256: "ffff000011112222"}
	mk := func(id string, m telemetry.ModelRef) *deviceState {
		return &deviceState{Site: "s", ID: id, State: telemetry.StateOnline, LastSeen: now, Model: m}
	}
	th := DefaultOptions().Alerts
	got := evaluate(now, []*deviceState{mk("a", testModel), mk("b", testModel), mk("c", other)}, th)
	if len(got) != 1 || len(got["s/c"]) != 1 || got["s/c"][0].Kind != AlertModel || !strings.Contains(got["s/c"][0].Message, "2 of 3 devices") {
		t.Errorf("alerts %+v, want one model alert on c", got)
	}
	// A 50/50 fleet has no majority and no alert.
	if got := evaluate(now, []*deviceState{mk("a", testModel), mk("c", other)}, th); len(got) != 0 {
		t.Errorf("alerts %+v on a split fleet, want none", got)
	}
}

func TestRefreshAlertsKeepsSince(t *testing.T) {
	s := newState()
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	temp := 90.0
	d := s.device("s", "d", t0)
	d.State, d.LastSeen = telemetry.StateOnline, t0
	d.Health = &telemetry.Health{TS: t0, TempC: &temp, DiskFree: 10 << 30}
	th := DefaultOptions().Alerts
	if !s.refreshAlerts(t0, th) {
		t.Fatal("first alert not reported as a change")
	}
	if s.refreshAlerts(t0.Add(time.Second), th) {
		t.Error("unchanged alerts reported as a change")
	}
	if a := s.Alerts(); len(a) != 1 || !a[0].Since.Equal(t0) {
		t.Errorf("alerts %+v, want since %v", a, t0)
	}
	temp = 40
	d.Health = &telemetry.Health{TS: t0, TempC: &temp, DiskFree: 10 << 30}
	if !s.refreshAlerts(t0.Add(2*time.Second), th) || len(s.Alerts()) != 0 {
		t.Error("cleared alert not removed")
	}
}
