// Package fleet is the central fleet dashboard: it subscribes to the devices' MQTT topics
// (contract v1, package telemetry), keeps the fleet's state and history in an embedded bbolt
// database, derives alerts, and serves a web UI, a JSON API, server-sent events and Prometheus
// metrics.
//
// One Service owns one store directory. Messages flow
//
//	paho handler → bounded queue → processor (one bbolt transaction per batch) → ack → SSE
//
// and are acknowledged to the broker only after their batch is committed, so a crash never
// loses a message the broker thinks was delivered.
package fleet

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/cxr-edge/cxr-edge/telemetry"
)

// Options configure a Service. Zero fields take the defaults of DefaultOptions.
type Options struct {
	MQTT MQTTOptions
	// StoreDir holds fleet.db. Required.
	StoreDir  string
	Retention Retention
	Alerts    Thresholds
	// Commands: operators who may send devices commands from the dashboard (default: none,
	// read-only).
	Commands CommandOptions
	// MaxPayload is the largest accepted payload in bytes (default 64 KiB); larger ones are
	// counted as "oversized" and dropped.
	MaxPayload int
	// QueueSize bounds the messages waiting for the processor (default 10000). When full, the
	// MQTT handler blocks, which back-pressures the broker instead of dropping messages.
	QueueSize int
	// MaxDevices caps the devices the dashboard keeps (default 5000), so a misbehaving
	// publisher cannot grow memory and fleet.db without bound: a message for a device not yet
	// known while this many are is counted as "device_limit" and dropped. Known devices are
	// never affected, and devices already stored stay even if there are more.
	MaxDevices int
	// Logger receives connection events and rate-limited rejections (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock (default time.Now); tests replace it.
	Now func() time.Time
}

// MQTTOptions say where and how to subscribe.
type MQTTOptions struct {
	// Broker is the broker URL: tcp://host:1883, ssl://host:8883 (or mqtts://, tls://).
	// Empty disables MQTT (the API then serves only stored state).
	Broker string
	// ClientID must be stable so the broker keeps the persistent session (default
	// "cxr-dashboard").
	ClientID string
	// TopicPrefix is the contract's topic root (default "cxr").
	TopicPrefix string
	// SharedGroup, when set, subscribes to $share/<group>/<prefix>/+/+/# so several dashboard
	// instances split the messages between them.
	SharedGroup  string
	Username     string
	PasswordFile string
	CAFile       string
	CertFile     string
	KeyFile      string
	// KeepAlive of the dashboard's own connection (default 30s).
	KeepAlive time.Duration
}

// Retention bounds the stored history.
type Retention struct {
	// ResultsMaxAge and ResultsMaxCount bound the result feed (defaults 90 days, 200000).
	ResultsMaxAge   time.Duration
	ResultsMaxCount int
	// HealthMaxAge and HealthMaxPoints bound each device's health history (defaults 7 days,
	// 10080 points).
	HealthMaxAge    time.Duration
	HealthMaxPoints int
	// HealthMinInterval thins the history: a health report closer than this to a stored point
	// of the same device updates the live state but is not stored (default 1m).
	HealthMinInterval time.Duration
	// PruneEvery is how often old history is deleted and silent devices are forgotten
	// (default 5m).
	PruneEvery time.Duration
	// DeviceMaxAge: a device not heard from for this long is forgotten (its record, alerts
	// and health history; its results stay until they age out), so that decommissioned
	// devices do not fill intake.max_devices and keep new ones out (default 90 days).
	DeviceMaxAge time.Duration
}

// Thresholds decide when an alert is raised.
type Thresholds struct {
	// OfflineAfter: a device offline longer than this is alerted (default 5m).
	OfflineAfter time.Duration
	// SilentAfter: an "online" device that sent nothing for this long is alerted (default 5m).
	SilentAfter time.Duration
	// TempC: temperature at or above this is alerted (default 75).
	TempC float64
	// DiskFreeMin: less free disk than this (bytes) is alerted (default 1 GiB).
	DiskFreeMin uint64
	// OutboxMax: an outbox at or above this is alerted (default 50).
	OutboxMax int
	// OutboxGrowth: an outbox that grew across this many consecutive reports is alerted
	// (default 6; 2 to 16, the reports kept per device).
	OutboxGrowth int
	// FailedRise: this many more failed inputs across the recent reports is alerted (default 3).
	FailedRise uint64
}

// DefaultOptions returns the documented defaults (StoreDir and MQTT.Broker stay empty).
func DefaultOptions() Options {
	return Options{
		MQTT: MQTTOptions{
			ClientID:    "cxr-dashboard",
			TopicPrefix: telemetry.DefaultTopicPrefix,
			KeepAlive:   30 * time.Second,
		},
		Retention: Retention{
			ResultsMaxAge:     90 * 24 * time.Hour,
			ResultsMaxCount:   200000,
			HealthMaxAge:      7 * 24 * time.Hour,
			HealthMaxPoints:   10080,
			HealthMinInterval: time.Minute,
			PruneEvery:        5 * time.Minute,
			DeviceMaxAge:      90 * 24 * time.Hour,
		},
		Alerts: Thresholds{
			OfflineAfter: 5 * time.Minute,
			SilentAfter:  5 * time.Minute,
			TempC:        75,
			DiskFreeMin:  1 << 30,
			OutboxMax:    50,
			OutboxGrowth: 6,
			FailedRise:   3,
		},
		Commands:   CommandOptions{ReplyTimeout: 30 * time.Second, AuditMax: 10000},
		MaxPayload: 64 << 10,
		QueueSize:  10000,
		MaxDevices: 5000,
	}
}

// withDefaults fills zero fields from DefaultOptions.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	setS := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	setD := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setI := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setS(&o.MQTT.ClientID, d.MQTT.ClientID)
	setS(&o.MQTT.TopicPrefix, d.MQTT.TopicPrefix)
	setD(&o.MQTT.KeepAlive, d.MQTT.KeepAlive)
	setD(&o.Retention.ResultsMaxAge, d.Retention.ResultsMaxAge)
	setI(&o.Retention.ResultsMaxCount, d.Retention.ResultsMaxCount)
	setD(&o.Retention.HealthMaxAge, d.Retention.HealthMaxAge)
	setI(&o.Retention.HealthMaxPoints, d.Retention.HealthMaxPoints)
	setD(&o.Retention.HealthMinInterval, d.Retention.HealthMinInterval)
	setD(&o.Retention.PruneEvery, d.Retention.PruneEvery)
	setD(&o.Retention.DeviceMaxAge, d.Retention.DeviceMaxAge)
	setD(&o.Alerts.OfflineAfter, d.Alerts.OfflineAfter)
	setD(&o.Alerts.SilentAfter, d.Alerts.SilentAfter)
	if o.Alerts.TempC == 0 {
		o.Alerts.TempC = d.Alerts.TempC
	}
	if o.Alerts.DiskFreeMin == 0 {
		o.Alerts.DiskFreeMin = d.Alerts.DiskFreeMin
	}
	setI(&o.Alerts.OutboxMax, d.Alerts.OutboxMax)
	setI(&o.Alerts.OutboxGrowth, d.Alerts.OutboxGrowth)
	if o.Alerts.FailedRise == 0 {
		o.Alerts.FailedRise = d.Alerts.FailedRise
	}
	setD(&o.Commands.ReplyTimeout, d.Commands.ReplyTimeout)
	setI(&o.Commands.AuditMax, d.Commands.AuditMax)
	setI(&o.MaxPayload, d.MaxPayload)
	setI(&o.QueueSize, d.QueueSize)
	setI(&o.MaxDevices, d.MaxDevices)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// ReplyTopic is the filter of every device's command replies: <prefix>/+/+/cmd/+/reply.
func (m MQTTOptions) ReplyTopic() string {
	prefix := m.TopicPrefix
	if prefix == "" {
		prefix = telemetry.DefaultTopicPrefix
	}
	return prefix + "/+/+/cmd/+/reply"
}

// SubscriptionTopic is the filter the dashboard subscribes to: <prefix>/+/+/#, or the shared
// form $share/<group>/<prefix>/+/+/# when a group is set.
func (m MQTTOptions) SubscriptionTopic() string {
	prefix := m.TopicPrefix
	if prefix == "" {
		prefix = telemetry.DefaultTopicPrefix
	}
	t := prefix + "/+/+/#"
	if m.SharedGroup != "" {
		t = "$share/" + m.SharedGroup + "/" + t
	}
	return t
}

func (o Options) validate() error {
	if o.StoreDir == "" {
		return fmt.Errorf("store.dir: required (a directory the dashboard may write)")
	}
	p := o.MQTT.TopicPrefix
	if strings.ContainsAny(p, "+#") || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.HasPrefix(p, "$") {
		return fmt.Errorf("mqtt.topic_prefix %q: must not contain + or #, start with $ or /, or end with /", p)
	}
	if n := o.Alerts.OutboxGrowth; n < 2 || n > recentReports {
		return fmt.Errorf("alerts.outbox_growth_reports %d: want 2 to %d (the reports kept per device)", n, recentReports)
	}
	if g := o.MQTT.SharedGroup; g != "" && !telemetry.ValidID(g) {
		return fmt.Errorf("mqtt.shared_group %q: want 1-64 characters of [a-zA-Z0-9_-]", g)
	}
	return nil
}
