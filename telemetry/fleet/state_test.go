package fleet

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/telemetry"
)

func st(state string, ts time.Time) *telemetry.Status {
	return &telemetry.Status{Schema: telemetry.SchemaStatus, State: state, TS: ts}
}

// TestApplyStatusOrdering covers the ordering rules of status messages, including the Last
// Will whose ts (the connect time) is older than the online status it ends.
func TestApplyStatusOrdering(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	on, off := telemetry.StateOnline, telemetry.StateOffline
	type step struct {
		state string
		ts    time.Time
		apply bool
	}
	tests := []struct {
		name  string
		steps []step
		final string
	}{
		{"newer wins", []step{{on, t0, true}, {off, t0.Add(time.Minute), true}}, off},
		{"older online ignored", []step{{off, t0.Add(time.Minute), true}, {on, t0, false}}, off},
		{"will with connect ts ends the online", []step{{on, t0.Add(time.Second), true}, {off, t0, true}}, off},
		{"will after a later online republish", []step{{on, t0.Add(time.Second), true}, {on, t0.Add(time.Hour), true}, {off, t0, true}}, off},
		{"stale offline from an earlier session ignored", []step{{on, t0.Add(time.Hour), true}, {off, t0, false}}, on},
		{"tie goes to offline", []step{{on, t0, true}, {off, t0, true}}, off},
		{"online replay after accepted will ignored", []step{{on, t0.Add(time.Second), true}, {off, t0, true}, {on, t0.Add(time.Second), false}}, off},
		{"reconnect", []step{{on, t0, true}, {off, t0, true}, {on, t0.Add(time.Minute), true}}, on},
		{"duplicate online accepted idempotently", []step{{on, t0, true}, {on, t0, true}}, on},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &deviceState{State: stateUnknown}
			recv := t0.Add(2 * time.Hour)
			for i, s := range tc.steps {
				if got := d.applyStatus(st(s.state, s.ts), recv); got != s.apply {
					t.Fatalf("step %d (%s at %v): applied = %v, want %v", i, s.state, s.ts, got, s.apply)
				}
			}
			if d.State != tc.final {
				t.Errorf("final state %s, want %s", d.State, tc.final)
			}
		})
	}
}

func TestOfflineSinceUsesLastMessage(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	d := &deviceState{State: stateUnknown}
	d.applyStatus(st(telemetry.StateOnline, t0.Add(time.Second)), t0.Add(time.Second))
	h := healthAt(t0.Add(10*time.Minute), 40, 0)
	d.applyHealth(&h, t0.Add(10*time.Minute))
	d.applyStatus(st(telemetry.StateOffline, t0), t0.Add(11*time.Minute)) // the will
	if want := t0.Add(10 * time.Minute); !d.Since.Equal(want) {
		t.Errorf("offline since %v, want the last message %v (the will's ts is the connect time)", d.Since, want)
	}
}

func TestFutureTimestampClamped(t *testing.T) {
	recv := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	d := &deviceState{State: stateUnknown}
	d.applyStatus(st(telemetry.StateOnline, recv.Add(24*365*time.Hour)), recv) // clock far ahead
	// A later message from a device whose clock is now right must still be applied.
	if !d.applyStatus(st(telemetry.StateOffline, recv.Add(2*time.Minute)), recv.Add(2*time.Minute)) {
		t.Fatal("a device with a once-wrong clock is frozen")
	}
	if d.LastSeen.After(recv.Add(2 * time.Minute)) {
		t.Errorf("last seen %v lies in the future", d.LastSeen)
	}
}

func TestDevicesSortProblemsFirst(t *testing.T) {
	s := newState()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, id := range []string{"a-fine", "b-offline", "c-hot", "d-unknown"} {
		s.device("site", id, now)
	}
	s.devices["site/a-fine"].State = telemetry.StateOnline
	s.devices["site/b-offline"].State = telemetry.StateOffline
	s.devices["site/c-hot"].State = telemetry.StateOnline
	s.alerts["site/c-hot"] = []Alert{{Kind: AlertTemperature, Severity: SevWarning}}
	s.alerts["site/b-offline"] = []Alert{{Kind: AlertOffline, Severity: SevCritical}}
	var got []string
	for _, v := range s.Devices() {
		got = append(got, v.ID)
	}
	if want := "b-offline c-hot d-unknown a-fine"; strings.Join(got, " ") != want {
		t.Errorf("order %v, want %s", got, want)
	}
}

// A device silent for DeviceMaxAge is forgotten (record, alerts, health history), frees its
// place under MaxDevices and stays forgotten across a restart; its results stay.
func TestForgetSilentDevices(t *testing.T) {
	if got := DefaultOptions().Retention.DeviceMaxAge; got != 90*24*time.Hour {
		t.Errorf("default DeviceMaxAge %v, want 90 days", got)
	}
	o := testOptions(t, "")
	o.MaxDevices = 2
	o.Retention.DeviceMaxAge = 24 * time.Hour
	svc, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	old, recent := now.Add(-48*time.Hour), now.Add(-time.Hour)
	topics := func(device string) telemetry.Topics {
		tp, err := telemetry.NewTopics("cxr", "clinic", device)
		if err != nil {
			t.Fatal(err)
		}
		return tp
	}
	d1, d2, d3 := topics("d1"), topics("d2"), topics("d3")
	svc.ingest(
		msg(t, d1.Status(), telemetry.Status{Schema: telemetry.SchemaStatus, State: telemetry.StateOffline, TS: old, Model: testModel}, old),
		msg(t, d1.Health(), healthAt(old, 40, 0), old),
		msg(t, d1.Result(), resultMsg("r1", telemetry.LabelNormal, 0.1, old), old),
		msg(t, d2.Health(), healthAt(recent, 40, 0), recent),
		msg(t, d3.Health(), healthAt(now, 40, 0), now))
	if n := svc.snapshotStats().Messages["health/device_limit"]; n != 1 {
		t.Fatalf("third device: %d health messages refused by the device limit, want 1", n)
	}
	svc.state.refreshAlerts(now, svc.opts.Alerts) // d1 is offline: alerted
	if _, ok := svc.state.alerts["clinic/d1"]; !ok {
		t.Fatal("the offline device has no alert to forget")
	}

	if n := svc.expireDevices(now); n != 1 {
		t.Fatalf("forgot %d devices, want 1 (d1)", n)
	}
	if n := svc.expireDevices(now); n != 0 {
		t.Fatalf("second pass forgot %d more", n)
	}
	if _, ok := svc.state.Device("clinic", "d1"); ok {
		t.Error("d1 still listed")
	}
	if _, ok := svc.state.alerts["clinic/d1"]; ok {
		t.Error("d1's alerts kept")
	}
	if h, err := svc.store.history("clinic", "d1", time.Time{}, 100); err != nil || len(h) != 0 {
		t.Errorf("d1 health history after forgetting: %d points, %v", len(h), err)
	}
	if rs, err := svc.store.results(ResultQuery{Site: "clinic", Device: "d1", Limit: 10}); err != nil || len(rs) != 1 {
		t.Errorf("d1 results after forgetting: %d, %v; want its 1 result kept", len(rs), err)
	}
	// Its place is free: the third device is admitted now.
	svc.ingest(msg(t, d3.Health(), healthAt(now.Add(time.Second), 41, 0), now.Add(time.Second)))
	if n := svc.snapshotStats().Messages["health/accepted"]; n != 3 {
		t.Errorf("%d health messages accepted, want 3 (d1, d2, then d3)", n)
	}
	if err := svc.Close(); err != nil {
		t.Fatal(err)
	}

	again, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	var ids []string
	for _, d := range again.state.Devices() {
		ids = append(ids, d.ID)
	}
	if slices.Sort(ids); !slices.Equal(ids, []string{"d2", "d3"}) {
		t.Errorf("after a restart the fleet is %v, want [d2 d3]", ids)
	}
}
