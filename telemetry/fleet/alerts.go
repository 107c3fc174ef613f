package fleet

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/cxr-edge/cxr-edge/telemetry"
)

// Alert kinds.
const (
	AlertOffline     = "offline"
	AlertSilent      = "silent"
	AlertTemperature = "temperature"
	AlertThrottled   = "throttled"
	AlertDisk        = "disk"
	AlertOutbox      = "outbox"
	AlertFailed      = "failed"
	AlertModel       = "model"
)

// Severities, worst first.
const (
	SevCritical = "critical"
	SevWarning  = "warning"
)

// Alert is one active problem of one device.
type Alert struct {
	Kind     string    `json:"kind"`
	Severity string    `json:"severity"`
	Site     string    `json:"site"`
	Device   string    `json:"device"`
	Message  string    `json:"message"`
	Since    time.Time `json:"since"`
}

func severityRank(s string) int {
	switch s {
	case SevCritical:
		return 2
	case SevWarning:
		return 1
	}
	return 0
}

// fleetModel is the model most devices run, by sha256 (or name when no hash is known).
type fleetModel struct {
	ref         telemetry.ModelRef
	count, of   int
	hasMajority bool
}

func modelKey(m telemetry.ModelRef) string { return cmp.Or(m.SHA256, m.Name) }

func majorityModel(devs []*deviceState) fleetModel {
	counts := map[string]int{}
	refs := map[string]telemetry.ModelRef{}
	var fm fleetModel
	for _, d := range devs {
		k := modelKey(d.Model)
		if k == "" {
			continue
		}
		counts[k]++
		refs[k] = d.Model
		fm.of++
	}
	best, tie := "", false
	for k, n := range counts {
		switch {
		case n > counts[best]:
			best, tie = k, false
		case n == counts[best] && k != best:
			tie = true
		}
	}
	// A model counts as the fleet's only with a strict majority; a 50/50 fleet gets no alert.
	if best != "" && !tie && 2*counts[best] > fm.of {
		fm.ref, fm.count, fm.hasMajority = refs[best], counts[best], true
	}
	return fm
}

func shortSHA(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func modelLabel(m telemetry.ModelRef) string {
	name := cmp.Or(m.Name, "unnamed model")
	if m.Version != "" {
		name += " " + m.Version
	}
	if m.SHA256 != "" {
		name += " (sha256 " + shortSHA(m.SHA256) + "…)"
	}
	return name
}

func gb(b uint64) string { return fmt.Sprintf("%.1f GB", float64(b)/1e9) }

func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%.1f h", d.Hours())
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

// evaluate derives the active alerts of every device at now. Since is filled by the caller,
// except for offline alerts whose start is the device's own offline time.
func evaluate(now time.Time, devs []*deviceState, th Thresholds) map[string][]Alert {
	out := map[string][]Alert{}
	fm := majorityModel(devs)
	for _, d := range devs {
		var as []Alert
		add := func(kind, sev, format string, args ...any) {
			as = append(as, Alert{Kind: kind, Severity: sev, Site: d.Site, Device: d.ID, Message: fmt.Sprintf(format, args...)})
		}
		switch {
		case d.State == telemetry.StateOffline && now.Sub(d.Since) >= th.OfflineAfter:
			add(AlertOffline, SevCritical, "Offline for %s (since %s UTC) — longer than the %s allowed",
				ago(now.Sub(d.Since)), d.Since.UTC().Format("2006-01-02 15:04"), th.OfflineAfter)
			as[len(as)-1].Since = d.Since
		case d.State != telemetry.StateOffline && !d.LastSeen.IsZero() && now.Sub(d.LastSeen) >= th.SilentAfter:
			add(AlertSilent, SevCritical, "No message for %s although the device is not reported offline (last %s UTC)",
				ago(now.Sub(d.LastSeen)), d.LastSeen.UTC().Format("2006-01-02 15:04"))
		}
		if h := d.Health; h != nil {
			if h.TempC != nil && *h.TempC >= th.TempC {
				add(AlertTemperature, SevWarning, "Temperature %.1f °C, at or above the %.0f °C limit", *h.TempC, th.TempC)
			}
			if h.Throttled != nil && *h.Throttled {
				add(AlertThrottled, SevWarning, "CPU throttled (overheating or under-voltage): scoring is slower")
			}
			if h.DiskFree < th.DiskFreeMin {
				add(AlertDisk, SevCritical, "Disk low: %s free, below %s", gb(h.DiskFree), gb(th.DiskFreeMin))
			}
		}
		if msg := outboxTrend(d, th); msg != "" {
			add(AlertOutbox, SevWarning, "%s", msg)
		}
		if n := len(d.Recent); n >= 2 {
			first, last := d.Recent[0], d.Recent[n-1]
			if last.Failed >= first.Failed+th.FailedRise {
				add(AlertFailed, SevWarning, "Failed inputs rising: %d more in the last %s (%d reports)",
					last.Failed-first.Failed, ago(last.TS.Sub(first.TS)), n)
			}
		}
		if fm.hasMajority && modelKey(d.Model) != "" && modelKey(d.Model) != modelKey(fm.ref) {
			add(AlertModel, SevWarning, "Model %s differs from the fleet majority %s (%d of %d devices)",
				modelLabel(d.Model), modelLabel(fm.ref), fm.count, fm.of)
		}
		if len(as) > 0 {
			out[deviceKey(d.Site, d.ID)] = as
		}
	}
	return out
}

// outboxTrend explains an outbox that is too full or has grown across the last reports.
func outboxTrend(d *deviceState, th Thresholds) string {
	n := len(d.Recent)
	if n == 0 {
		return ""
	}
	last := d.Recent[n-1]
	if last.Outbox >= th.OutboxMax {
		return fmt.Sprintf("Outbox holds %d results (limit %d): results are not reaching the broker", last.Outbox, th.OutboxMax)
	}
	if n < th.OutboxGrowth {
		return ""
	}
	tail := d.Recent[n-th.OutboxGrowth:]
	for i := 1; i < len(tail); i++ {
		if tail[i].Outbox <= tail[i-1].Outbox {
			return ""
		}
	}
	return fmt.Sprintf("Outbox growing: %d → %d over the last %d reports", tail[0].Outbox, last.Outbox, len(tail))
}

// refreshAlerts re-evaluates alerts, keeping each alert's first-seen time. It reports whether
// the set of alerts changed. The caller must not hold s.mu.
func (s *state) refreshAlerts(now time.Time, th Thresholds) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	devs := make([]*deviceState, 0, len(s.devices))
	for _, d := range s.devices {
		devs = append(devs, d)
	}
	next := evaluate(now, devs, th)
	changed := len(next) != len(s.alerts)
	seen := map[string]bool{}
	for dk, as := range next {
		prev := s.alerts[dk]
		if len(prev) != len(as) {
			changed = true
		}
		for i := range as {
			k := dk + "/" + as[i].Kind
			seen[k] = true
			if as[i].Since.IsZero() {
				if t, ok := s.since[k]; ok {
					as[i].Since = t
				} else {
					as[i].Since = now
				}
			}
			s.since[k] = as[i].Since
			if i >= len(prev) || prev[i].Kind != as[i].Kind {
				changed = true
			}
		}
	}
	for k := range s.since {
		if !seen[k] {
			delete(s.since, k)
		}
	}
	s.alerts = next
	return changed
}

// Alerts returns every active alert, worst and oldest first.
func (s *state) Alerts() []Alert {
	s.mu.RLock()
	out := []Alert{}
	for _, as := range s.alerts {
		out = append(out, as...)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Alert) int {
		return cmp.Or(cmp.Compare(severityRank(b.Severity), severityRank(a.Severity)), a.Since.Compare(b.Since),
			cmp.Compare(a.Site, b.Site), cmp.Compare(a.Device, b.Device), cmp.Compare(a.Kind, b.Kind))
	})
	return out
}
