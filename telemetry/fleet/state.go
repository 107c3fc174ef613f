package fleet

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cxr-edge/cxr-edge/telemetry"
)

// Device states shown by the dashboard; "unknown" until a status arrives.
const stateUnknown = "unknown"

// willGrace: a device's Last Will is registered when it connects, so the will's ts is the
// connect time and predates the "online" status it ends. An offline status up to this much
// older than the start of the current online stretch is therefore still accepted.
const willGrace = 2 * time.Minute

// clockSkew bounds how far in the future a device's timestamp may lie; later ones are clamped
// so one device with a wrong clock cannot freeze its own state.
const clockSkew = time.Minute

// recentReports is how many health reports per device are kept in memory for trend alerts.
const recentReports = 16

// deviceState is what the dashboard knows of one device; persisted as JSON in bbolt.
type deviceState struct {
	Site string `json:"site"`
	ID   string `json:"id"`

	Status      *telemetry.Status `json:"status,omitempty"`
	StatusTS    time.Time         `json:"status_ts"`              // newest status ts accepted
	State       string            `json:"state"`                  // online, offline, unknown
	Since       time.Time         `json:"since"`                  // state since (estimate)
	OnlineSince time.Time         `json:"online_since,omitempty"` // ts of the first online of this stretch

	Health   *telemetry.Health  `json:"health,omitempty"` // newest by ts
	LastSeen time.Time          `json:"last_seen"`        // newest message ts, clamped to arrival
	FirstAt  time.Time          `json:"first_at"`         // first message at the dashboard
	Model    telemetry.ModelRef `json:"model"`

	Results    uint64    `json:"results"`
	LastResult time.Time `json:"last_result,omitempty"`

	Recent []report `json:"recent,omitempty"` // last health reports by ts, for trends
}

// report is the part of a health report the trend alerts need.
type report struct {
	TS     time.Time `json:"ts"`
	Outbox int       `json:"outbox"`
	Failed uint64    `json:"failed"`
}

func deviceKey(site, id string) string { return site + "/" + id }

// effTS clamps a device timestamp to the arrival time plus clockSkew.
func effTS(ts, recv time.Time) time.Time {
	if lim := recv.Add(clockSkew); ts.After(lim) {
		return lim
	}
	return ts
}

func (d *deviceState) seen(ts, recv time.Time) {
	if ts.After(recv) {
		ts = recv
	}
	if ts.After(d.LastSeen) {
		d.LastSeen = ts
	}
}

// applyStatus applies a status if it is not older than what is known and reports whether it
// changed anything. Ties go to offline: a Last Will with the same ts as the online it ends wins,
// a replayed online with the ts of an accepted will loses.
func (d *deviceState) applyStatus(st *telemetry.Status, recv time.Time) bool {
	ts := effTS(st.TS, recv)
	offline := st.State == telemetry.StateOffline
	accept := false
	switch {
	case d.Status == nil || ts.After(d.StatusTS):
		accept = true
	case ts.Equal(d.StatusTS):
		accept = offline || d.State == st.State
	case offline && d.State == telemetry.StateOnline && !ts.Before(d.OnlineSince.Add(-willGrace)):
		accept = true // the Last Will of the current connection
	}
	lastMsg := d.LastSeen
	d.seen(ts, recv)
	if !accept {
		return false
	}
	if ts.After(d.StatusTS) {
		d.StatusTS = ts
	}
	cp := *st
	d.Status = &cp
	if st.Model.SHA256 != "" || st.Model.Name != "" {
		d.Model = st.Model
	}
	if d.State != st.State {
		since := ts
		if offline && lastMsg.After(since) {
			// The device was provably alive at its last message; the will's ts is older.
			since = lastMsg
		}
		if since.After(recv) {
			since = recv
		}
		d.State, d.Since = st.State, since
		if !offline {
			d.OnlineSince = ts
		}
	}
	return true
}

// applyHealth keeps the newest report by ts as the live health and the recent reports for
// trends. It reports whether the live health changed.
func (d *deviceState) applyHealth(h *telemetry.Health, recv time.Time) bool {
	ts := effTS(h.TS, recv)
	d.seen(ts, recv)
	r := report{TS: ts, Outbox: h.Outbox, Failed: h.Failed}
	i, found := slices.BinarySearchFunc(d.Recent, ts, func(a report, t time.Time) int { return a.TS.Compare(t) })
	if !found {
		rec := slices.Insert(slices.Clone(d.Recent), i, r)
		if len(rec) > recentReports {
			rec = rec[len(rec)-recentReports:]
		}
		d.Recent = rec
	}
	if d.Health != nil && !ts.After(d.Health.TS) {
		return false
	}
	cp := *h
	cp.TS = ts
	d.Health = &cp
	return true
}

// state is the in-memory fleet, written only by the processor.
type state struct {
	mu      sync.RWMutex
	devices map[string]*deviceState
	alerts  map[string][]Alert // device key → active alerts
	since   map[string]time.Time
}

func newState() *state {
	return &state{devices: map[string]*deviceState{}, alerts: map[string][]Alert{}, since: map[string]time.Time{}}
}

// device returns (creating) the device; the caller holds mu.
func (s *state) device(site, id string, now time.Time) *deviceState {
	k := deviceKey(site, id)
	d := s.devices[k]
	if d == nil {
		d = &deviceState{Site: site, ID: id, State: stateUnknown, FirstAt: now}
		s.devices[k] = d
	}
	return d
}

// admit reports (as an ErrDeviceLimit error) whether a message of the device may be applied:
// a known device always, a new one only while fewer than limit are known. Checked before
// device() so a rejected message creates nothing in memory or in the store. The caller holds mu.
func (s *state) admit(site, id string, limit int) error {
	if _, ok := s.devices[deviceKey(site, id)]; ok || len(s.devices) < limit {
		return nil
	}
	return fmt.Errorf("%w: %d devices known (intake.max_devices), %s not admitted", ErrDeviceLimit, len(s.devices), deviceKey(site, id))
}

// DeviceView is one device as the API and UI show it.
type DeviceView struct {
	Site       string             `json:"site"`
	ID         string             `json:"id"`
	State      string             `json:"state"`
	Since      time.Time          `json:"since"`
	LastSeen   time.Time          `json:"last_seen"`
	Version    string             `json:"version,omitempty"`
	Model      telemetry.ModelRef `json:"model"`
	Health     *telemetry.Health  `json:"health,omitempty"`
	Results    uint64             `json:"results"`
	LastResult *time.Time         `json:"last_result,omitempty"`
	Alerts     []Alert            `json:"alerts"`
	// Severity is the worst active alert: "critical", "warning" or "" (fine).
	Severity string `json:"severity"`
}

func (s *state) view(d *deviceState) DeviceView {
	v := DeviceView{Site: d.Site, ID: d.ID, State: d.State, Since: d.Since, LastSeen: d.LastSeen,
		Model: d.Model, Health: d.Health, Results: d.Results, Alerts: s.alerts[deviceKey(d.Site, d.ID)]}
	if d.Status != nil {
		v.Version = d.Status.Version
	}
	if !d.LastResult.IsZero() {
		t := d.LastResult
		v.LastResult = &t
	}
	if v.Alerts == nil {
		v.Alerts = []Alert{}
	}
	for _, a := range v.Alerts {
		if severityRank(a.Severity) > severityRank(v.Severity) {
			v.Severity = a.Severity
		}
	}
	return v
}

// Devices returns every device, problems first: by worst alert, then offline, then by name.
func (s *state) Devices() []DeviceView {
	s.mu.RLock()
	out := make([]DeviceView, 0, len(s.devices))
	for _, d := range s.devices {
		out = append(out, s.view(d))
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b DeviceView) int {
		if c := cmp.Compare(severityRank(b.Severity), severityRank(a.Severity)); c != 0 {
			return c
		}
		if c := cmp.Compare(stateRank(b.State), stateRank(a.State)); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.Site, b.Site), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// Device returns one device.
func (s *state) Device(site, id string) (DeviceView, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, ok := s.devices[deviceKey(site, id)]
	if !ok {
		return DeviceView{}, false
	}
	return s.view(d), true
}

func stateRank(st string) int {
	switch st {
	case telemetry.StateOffline:
		return 2
	case stateUnknown:
		return 1
	}
	return 0
}
