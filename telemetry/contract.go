// Package telemetry holds the MQTT contract between devices and the fleet dashboard
// (topics and payloads, version 1), device health collection, and MQTT publishing.
//
// Payloads carry no personal data: no patient names or ids, no dates of birth, no
// images. Study identifiers travel only as keyed hashes.
package telemetry

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Schema identifiers of the version 1 payloads. Fields are only ever added within a version.
const (
	SchemaStatus = "cxr-edge/status/v1"
	SchemaHealth = "cxr-edge/health/v1"
	SchemaResult = "cxr-edge/result/v1"
	SchemaReply  = "cxr-edge/reply/v1"
)

// DefaultTopicPrefix is the topic root used when none is configured.
const DefaultTopicPrefix = "cxr"

// Labels of a result.
const (
	LabelPneumonia  = "pneumonia"
	LabelNormal     = "normal"
	LabelUnreadable = "unreadable"
)

// Device states in a status payload.
const (
	StateOnline  = "online"
	StateOffline = "offline"
)

var idPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// ValidID reports whether s may be used as a site or device id in a topic.
func ValidID(s string) bool { return idPattern.MatchString(s) }

// Topics builds the topic names of one device: <prefix>/<site>/<device>/<leaf>.
type Topics struct {
	Prefix, Site, Device string
}

// NewTopics validates the ids and returns the device's topics.
func NewTopics(prefix, site, device string) (Topics, error) {
	if prefix == "" {
		prefix = DefaultTopicPrefix
	}
	if strings.ContainsAny(prefix, "+#") || strings.HasPrefix(prefix, "/") || strings.HasSuffix(prefix, "/") {
		return Topics{}, fmt.Errorf("topic prefix %q: must not contain + or # nor start or end with /", prefix)
	}
	if !ValidID(site) {
		return Topics{}, fmt.Errorf("site id %q: want 1-64 characters of [a-zA-Z0-9_-]", site)
	}
	if !ValidID(device) {
		return Topics{}, fmt.Errorf("device id %q: want 1-64 characters of [a-zA-Z0-9_-]", device)
	}
	return Topics{Prefix: prefix, Site: site, Device: device}, nil
}

func (t Topics) leaf(s string) string { return t.Prefix + "/" + t.Site + "/" + t.Device + "/" + s }

// Status is the retained online/offline topic; the Last Will publishes offline.
func (t Topics) Status() string { return t.leaf("status") }

// Health is the retained periodic health topic.
func (t Topics) Health() string { return t.leaf("health") }

// Result is the per-image result topic.
func (t Topics) Result() string { return t.leaf("result") }

// Command is the topic a command arrives on; CommandReply is where it is answered.
func (t Topics) Command(name string) string { return t.leaf("cmd/" + name) }

// CommandReply is the topic a command's reply is published on.
func (t Topics) CommandReply(name string) string { return t.leaf("cmd/" + name + "/reply") }

// ParseTopic splits <prefix>/<site>/<device>/<leaf...> into its parts. It returns ok=false for
// topics outside the contract.
func ParseTopic(prefix, topic string) (site, device, leaf string, ok bool) {
	if prefix == "" {
		prefix = DefaultTopicPrefix
	}
	rest, found := strings.CutPrefix(topic, prefix+"/")
	if !found {
		return "", "", "", false
	}
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) != 3 || !ValidID(parts[0]) || !ValidID(parts[1]) || parts[2] == "" {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// ModelRef identifies the model a device runs.
type ModelRef struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	SHA256  string `json:"sha256"`
}

// Status is the payload of …/status.
type Status struct {
	Schema  string    `json:"schema"`
	State   string    `json:"state"`
	TS      time.Time `json:"ts"`
	Version string    `json:"version"`
	Model   ModelRef  `json:"model"`
}

// Health is the payload of …/health.
type Health struct {
	Schema     string    `json:"schema"`
	TS         time.Time `json:"ts"`
	UptimeS    float64   `json:"uptime_s"`
	CPUPct     float64   `json:"cpu_pct"`
	Load1      float64   `json:"load1"`
	MemUsed    uint64    `json:"mem_used"`
	MemTotal   uint64    `json:"mem_total"`
	DiskFree   uint64    `json:"disk_free"`
	TempC      *float64  `json:"temp_c"`    // nil when the device has no readable sensor
	Throttled  *bool     `json:"throttled"` // nil when not readable (non-Raspberry Pi)
	Queue      int       `json:"queue"`
	Outbox     int       `json:"outbox"`
	Scored     uint64    `json:"scored"`
	Failed     uint64    `json:"failed"`
	InferMsP50 float64   `json:"infer_ms_p50"`
	InferMsP95 float64   `json:"infer_ms_p95"`
	Indicator  string    `json:"indicator"`
}

// Timings are the per-stage durations of one result, in milliseconds.
type Timings struct {
	Decode     float64 `json:"decode"`
	Preprocess float64 `json:"preprocess"`
	Infer      float64 `json:"infer"`
	Total      float64 `json:"total"`
}

// ImageInfo describes the scored image (never its pixels).
type ImageInfo struct {
	Format string `json:"format"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
}

// Result is the payload of …/result.
type Result struct {
	Schema     string    `json:"schema"`
	ID         string    `json:"id"` // the device's keyed hash of the input bytes (see edge/store)
	ReceivedAt time.Time `json:"received_at"`
	ScoredAt   time.Time `json:"scored_at"`
	Source     string    `json:"source"`          // "folder", "http", "dicom", …
	Study      string    `json:"study,omitempty"` // keyed hash of the study UID, or absent
	Label      string    `json:"label"`
	Score      float64   `json:"score"`
	Threshold  float64   `json:"threshold"`
	Reason     string    `json:"reason,omitempty"` // why an input is unreadable
	Model      ModelRef  `json:"model"`
	TimingsMs  Timings   `json:"timings_ms"`
	Image      ImageInfo `json:"image"`
}

// Reply is the payload of …/cmd/<name>/reply.
type Reply struct {
	Schema string    `json:"schema"`
	TS     time.Time `json:"ts"`
	ID     string    `json:"id,omitempty"` // echoes the command's id, if it had one
	OK     bool      `json:"ok"`
	Error  string    `json:"error,omitempty"`
	Detail any       `json:"detail,omitempty"`
}
