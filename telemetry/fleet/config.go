package fleet

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/viper"
)

// Config is the dashboard's whole configuration: the service options plus where to listen.
type Config struct {
	Options
	// HTTPListen is the address of the web UI and API (default 127.0.0.1:8090).
	HTTPListen string
}

// DefaultHTTPListen is where the UI listens unless configured: loopback only, so exposing the
// dashboard is a deliberate choice (reverse proxy or http.listen).
const DefaultHTTPListen = "127.0.0.1:8090"

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid configuration")

// configDefaults is every configuration key with its default.
func configDefaults() map[string]any {
	d := DefaultOptions()
	return map[string]any{
		"mqtt.broker":                   "",
		"mqtt.client_id":                d.MQTT.ClientID,
		"mqtt.topic_prefix":             d.MQTT.TopicPrefix,
		"mqtt.shared_group":             "",
		"mqtt.username":                 "",
		"mqtt.password_file":            "",
		"mqtt.ca_file":                  "",
		"mqtt.cert_file":                "",
		"mqtt.key_file":                 "",
		"mqtt.keepalive":                d.MQTT.KeepAlive.String(),
		"http.listen":                   DefaultHTTPListen,
		"commands.operators_file":       "",
		"commands.reply_timeout":        d.Commands.ReplyTimeout.String(),
		"commands.audit_max":            d.Commands.AuditMax,
		"store.dir":                     "",
		"intake.max_payload_kb":         d.MaxPayload >> 10,
		"intake.max_devices":            d.MaxDevices,
		"retention.results_max_age":     d.Retention.ResultsMaxAge.String(),
		"retention.results_max_count":   d.Retention.ResultsMaxCount,
		"retention.health_max_age":      d.Retention.HealthMaxAge.String(),
		"retention.health_max_points":   d.Retention.HealthMaxPoints,
		"retention.health_min_interval": d.Retention.HealthMinInterval.String(),
		"retention.prune_every":         d.Retention.PruneEvery.String(),
		"retention.device_max_age":      d.Retention.DeviceMaxAge.String(),
		"alerts.offline_after":          d.Alerts.OfflineAfter.String(),
		"alerts.silent_after":           d.Alerts.SilentAfter.String(),
		"alerts.temp_c":                 d.Alerts.TempC,
		"alerts.disk_free_min_mb":       d.Alerts.DiskFreeMin >> 20,
		"alerts.outbox_max":             d.Alerts.OutboxMax,
		"alerts.outbox_growth_reports":  d.Alerts.OutboxGrowth,
		"alerts.failed_rise":            d.Alerts.FailedRise,
	}
}

// SetConfigDefaults registers every configuration key with its default on v, so environment
// variables (CXR_MQTT_BROKER, CXR_HTTP_LISTEN, …) and flags bound to the keys are seen.
func SetConfigDefaults(v *viper.Viper) {
	v.SetEnvPrefix("CXR")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	for k, val := range configDefaults() {
		v.SetDefault(k, val)
	}
}

// LoadConfig reads and validates the configuration held by v (file, env, flags, defaults; call
// SetConfigDefaults first). An invalid value stops start-up with an error naming the key and
// what is allowed.
func LoadConfig(v *viper.Viper) (Config, error) {
	known := configDefaults()
	for _, k := range v.AllKeys() {
		if _, ok := known[k]; !ok {
			// A misspelt key would otherwise be ignored silently.
			return Config{}, fmt.Errorf("%w: unknown key %q (see configs/cxr-dashboard.yaml for the keys)", ErrConfig, k)
		}
	}
	r := reader{v: v}
	var c Config
	o := &c.Options
	o.MQTT.Broker = r.str("mqtt.broker")
	o.MQTT.ClientID = r.str("mqtt.client_id")
	o.MQTT.TopicPrefix = r.str("mqtt.topic_prefix")
	o.MQTT.SharedGroup = r.str("mqtt.shared_group")
	o.MQTT.Username = r.str("mqtt.username")
	o.MQTT.PasswordFile = r.file("mqtt.password_file")
	o.MQTT.CAFile = r.file("mqtt.ca_file")
	o.MQTT.CertFile = r.file("mqtt.cert_file")
	o.MQTT.KeyFile = r.file("mqtt.key_file")
	o.MQTT.KeepAlive = r.duration("mqtt.keepalive", time.Second, 24*time.Hour)
	c.HTTPListen = r.str("http.listen")
	o.Commands.OperatorsFile = r.file("commands.operators_file")
	o.Commands.ReplyTimeout = r.duration("commands.reply_timeout", time.Second, 10*time.Minute)
	o.Commands.AuditMax = r.integer("commands.audit_max", 10, 1<<24)
	o.StoreDir = r.str("store.dir")
	if o.StoreDir == "" {
		// systemd's StateDirectory= exports the directory it created for the service.
		o.StoreDir = os.Getenv("STATE_DIRECTORY")
	}
	o.MaxPayload = r.integer("intake.max_payload_kb", 1, 256<<10) << 10
	o.MaxDevices = r.integer("intake.max_devices", 1, 1<<24) // 0 would silently mean the default
	o.Retention.ResultsMaxAge = r.duration("retention.results_max_age", time.Hour, 100*365*24*time.Hour)
	o.Retention.ResultsMaxCount = r.integer("retention.results_max_count", 100, 1<<30)
	o.Retention.HealthMaxAge = r.duration("retention.health_max_age", time.Hour, 100*365*24*time.Hour)
	o.Retention.HealthMaxPoints = r.integer("retention.health_max_points", 10, 1<<24)
	o.Retention.HealthMinInterval = r.duration("retention.health_min_interval", 0, 24*time.Hour)
	if o.Retention.HealthMinInterval == 0 {
		// 0 asks to store every report; in Options a zero field means "the default" (1m).
		o.Retention.HealthMinInterval = time.Nanosecond
	}
	o.Retention.PruneEvery = r.duration("retention.prune_every", time.Second, 24*time.Hour)
	o.Retention.DeviceMaxAge = r.duration("retention.device_max_age", time.Hour, 100*365*24*time.Hour)
	o.Alerts.OfflineAfter = r.duration("alerts.offline_after", time.Second, 30*24*time.Hour) // 0 would silently mean the default
	o.Alerts.SilentAfter = r.duration("alerts.silent_after", time.Second, 30*24*time.Hour)
	o.Alerts.TempC = r.float("alerts.temp_c", 20, 150)
	o.Alerts.DiskFreeMin = uint64(r.integer("alerts.disk_free_min_mb", 1, 1<<30)) << 20
	o.Alerts.OutboxMax = r.integer("alerts.outbox_max", 1, 1<<30)
	o.Alerts.OutboxGrowth = r.integer("alerts.outbox_growth_reports", 2, recentReports) // only that many are kept
	o.Alerts.FailedRise = uint64(r.integer("alerts.failed_rise", 1, 1<<30))
	if r.err != nil {
		return Config{}, r.err
	}
	if o.MQTT.Broker != "" {
		u, err := url.Parse(o.MQTT.Broker)
		if err != nil || u.Host == "" || !validScheme(u.Scheme) {
			return Config{}, fmt.Errorf("%w: mqtt.broker %q: want tcp://host:port, ssl://host:port, mqtts://, tls://, ws:// or wss://", ErrConfig, o.MQTT.Broker)
		}
	}
	if (o.MQTT.CertFile == "") != (o.MQTT.KeyFile == "") {
		return Config{}, fmt.Errorf("%w: mqtt.cert_file and mqtt.key_file: set both for a client certificate, or neither", ErrConfig)
	}
	if _, _, err := net.SplitHostPort(c.HTTPListen); err != nil {
		return Config{}, fmt.Errorf("%w: http.listen %q: want host:port, e.g. 127.0.0.1:8090", ErrConfig, c.HTTPListen)
	}
	if err := o.validate(); err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return c, nil
}

func validScheme(s string) bool {
	switch s {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
		return true
	}
	return false
}

// reader collects the first error while reading typed keys.
type reader struct {
	v   *viper.Viper
	err error
}

func (r *reader) fail(key string, val any, want string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s %q: %s", ErrConfig, key, fmt.Sprint(val), want)
	}
}

func (r *reader) str(key string) string { return strings.TrimSpace(r.v.GetString(key)) }

func (r *reader) file(key string) string {
	p := r.str(key)
	if p == "" {
		return ""
	}
	if _, err := os.Stat(p); err != nil {
		r.fail(key, p, "file not readable: "+err.Error())
	}
	return p
}

func (r *reader) duration(key string, lo, hi time.Duration) time.Duration {
	return inRange(r, key, lo, hi, time.ParseDuration, "want a duration from %v to %v, e.g. 5m or 30s")
}

func (r *reader) integer(key string, lo, hi int) int {
	return inRange(r, key, lo, hi, strconv.Atoi, "want a whole number from %d to %d")
}

func (r *reader) float(key string, lo, hi float64) float64 {
	parse := func(s string) (float64, error) { return strconv.ParseFloat(s, 64) }
	return inRange(r, key, lo, hi, parse, "want a number from %g to %g")
}

// inRange parses key and records a failure, with want formatted with lo and hi, when it
// does not parse or lies outside [lo, hi].
func inRange[T time.Duration | int | float64](r *reader, key string, lo, hi T, parse func(string) (T, error), want string) T {
	raw := r.str(key)
	v, err := parse(raw)
	if err != nil || v < lo || v > hi {
		r.fail(key, raw, fmt.Sprintf(want, lo, hi))
	}
	return v
}
