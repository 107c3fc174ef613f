package device

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/cxr-edge/cxr-edge/edge/dicom"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// ErrConfig is wrapped by every configuration error; the message names the key and what is
// allowed.
var ErrConfig = errors.New("invalid configuration")

// ByteSize is a size in bytes. In configuration it is written as a plain integer or with a
// unit: "512MiB", "1GiB", "64MB", "100k".
type ByteSize int64

// ParseByteSize parses "123", "64KiB", "64MB", "1.5GiB" (case-insensitive; K/M/G/T are
// decimal, Ki/Mi/Gi/Ti binary).
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') && t[i-1] != '.' {
		i--
	}
	num, unit := strings.TrimSpace(t[:i]), strings.ToLower(strings.TrimSpace(t[i:]))
	mult := map[string]float64{
		"": 1, "b": 1,
		"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
		"ki": 1 << 10, "kib": 1 << 10, "mi": 1 << 20, "mib": 1 << 20, "gi": 1 << 30, "gib": 1 << 30,
		"ti": 1 << 40, "tib": 1 << 40,
	}[unit]
	if mult == 0 || num == "" {
		return 0, fmt.Errorf("size %q: want a number of bytes, optionally with a unit (KiB, MiB, GiB, KB, MB, GB)", s)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || f*mult > 1<<62 {
		return 0, fmt.Errorf("size %q: want a non-negative number of bytes, optionally with a unit", s)
	}
	return ByteSize(f * mult), nil
}

// String formats the size with the largest binary unit that divides it.
func (b ByteSize) String() string {
	for _, u := range []struct {
		s string
		n int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.n == 0 {
			return strconv.FormatInt(int64(b)/u.n, 10) + u.s
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// MarshalYAML writes the size in its readable form.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// Config is the daemon's configuration. Load fills it from defaults, the YAML file,
// CXR_<SECTION>_<KEY> environment variables and flags (weakest to strongest) and validates it.
type Config struct {
	Device    DeviceConfig    `mapstructure:"device" yaml:"device"`
	Model     ModelConfig     `mapstructure:"model" yaml:"model"`
	Intake    IntakeConfig    `mapstructure:"intake" yaml:"intake"`
	Store     StoreConfig     `mapstructure:"store" yaml:"store"`
	MQTT      MQTTConfig      `mapstructure:"mqtt" yaml:"mqtt"`
	Indicator IndicatorConfig `mapstructure:"indicator" yaml:"indicator"`
	Log       LogConfig       `mapstructure:"log" yaml:"log"`

	// File is the configuration file that was read, or "" when none was found.
	File string `mapstructure:"-" yaml:"-"`
}

// DeviceConfig names the device in MQTT topics and results.
type DeviceConfig struct {
	ID   string `mapstructure:"id" yaml:"id"`
	Site string `mapstructure:"site" yaml:"site"`
}

// ModelConfig selects the model and its operating point.
type ModelConfig struct {
	// Path of a .tflite file; "" = the embedded model.
	Path string `mapstructure:"path" yaml:"path"`
	// Threshold is the operating point; nil = the model's own (from its metadata), else 0.5.
	Threshold *float64 `mapstructure:"-" yaml:"threshold"`
	// SHA256 pins the model file (or the embedded model); start-up fails on a mismatch. "" = no pin.
	SHA256 string `mapstructure:"sha256" yaml:"sha256"`
	// Output says how the output tensor becomes a score: auto, probability or logit.
	Output string `mapstructure:"output" yaml:"output"`
	// PositiveIndex is the class whose probability is the score when the output has 2+ classes.
	PositiveIndex int `mapstructure:"positive_index" yaml:"positive_index"`
	// Threads the interpreter uses; 0 = all cores.
	Threads int `mapstructure:"threads" yaml:"threads"`
}

// IntakeConfig configures the hot folder and the HTTP API.
type IntakeConfig struct {
	WatchDir   string `mapstructure:"watch_dir" yaml:"watch_dir"`
	HTTPListen string `mapstructure:"http_listen" yaml:"http_listen"`
	// DICOMListen is the address of the DICOM Store SCP ("" = off); DICOMAETitle its AE
	// title; DICOMAllowedCallers, if set, the only calling AE titles accepted.
	DICOMListen         string   `mapstructure:"dicom_listen" yaml:"dicom_listen"`
	DICOMAETitle        string   `mapstructure:"dicom_ae_title" yaml:"dicom_ae_title"`
	DICOMAllowedCallers []string `mapstructure:"dicom_allowed_callers" yaml:"dicom_allowed_callers"`
	// DICOMTLSCert and DICOMTLSKey, if set, make the Store SCP speak TLS only; with
	// DICOMTLSClientCA it also requires each sender's certificate to be signed by that CA.
	DICOMTLSCert     string        `mapstructure:"dicom_tls_cert" yaml:"dicom_tls_cert"`
	DICOMTLSKey      string        `mapstructure:"dicom_tls_key" yaml:"dicom_tls_key"`
	DICOMTLSClientCA string        `mapstructure:"dicom_tls_client_ca" yaml:"dicom_tls_client_ca"`
	MaxBytes         ByteSize      `mapstructure:"max_bytes" yaml:"max_bytes"`
	MaxPixels        int64         `mapstructure:"max_pixels" yaml:"max_pixels"`
	DecodeTimeout    time.Duration `mapstructure:"decode_timeout" yaml:"decode_timeout"`
	Settle           time.Duration `mapstructure:"settle" yaml:"settle"`
	Rescan           time.Duration `mapstructure:"rescan" yaml:"rescan"`
	KeepDone         bool          `mapstructure:"keep_done" yaml:"keep_done"`
	DoneMaxAge       time.Duration `mapstructure:"done_max_age" yaml:"done_max_age"`
	DoneMaxBytes     ByteSize      `mapstructure:"done_max_bytes" yaml:"done_max_bytes"`
	FailedMaxAge     time.Duration `mapstructure:"failed_max_age" yaml:"failed_max_age"`
	FailedMaxBytes   ByteSize      `mapstructure:"failed_max_bytes" yaml:"failed_max_bytes"`
}

// StoreConfig locates the local result store and bounds it.
type StoreConfig struct {
	Dir          string        `mapstructure:"dir" yaml:"dir"`
	RetentionAge time.Duration `mapstructure:"retention_age" yaml:"retention_age"`
	MaxBytes     ByteSize      `mapstructure:"max_bytes" yaml:"max_bytes"`
}

// MQTTConfig configures publishing to the fleet broker.
type MQTTConfig struct {
	Broker         string        `mapstructure:"broker" yaml:"broker"`
	Username       string        `mapstructure:"username" yaml:"username"`
	PasswordFile   string        `mapstructure:"password_file" yaml:"password_file"`
	CAFile         string        `mapstructure:"ca_file" yaml:"ca_file"`
	CertFile       string        `mapstructure:"cert_file" yaml:"cert_file"`
	KeyFile        string        `mapstructure:"key_file" yaml:"key_file"`
	TopicPrefix    string        `mapstructure:"topic_prefix" yaml:"topic_prefix"`
	HealthInterval time.Duration `mapstructure:"health_interval" yaml:"health_interval"`
	Discovery      bool          `mapstructure:"discovery" yaml:"discovery"`
	Embedded       bool          `mapstructure:"embedded" yaml:"embedded"`
	EmbeddedListen string        `mapstructure:"embedded_listen" yaml:"embedded_listen"`
}

// IndicatorConfig selects the clinician-facing indicator.
type IndicatorConfig struct {
	Kind string     `mapstructure:"kind" yaml:"kind"`
	Pins PinsConfig `mapstructure:"pins" yaml:"pins"`
}

// PinsConfig names the GPIO lines (periph names such as GPIO17) of the LEDs and button.
type PinsConfig struct {
	Green  string `mapstructure:"green" yaml:"green"`
	Amber  string `mapstructure:"amber" yaml:"amber"`
	Red    string `mapstructure:"red" yaml:"red"`
	Button string `mapstructure:"button" yaml:"button"`
}

// LogConfig configures log/slog output.
type LogConfig struct {
	Level  string `mapstructure:"level" yaml:"level"`
	Format string `mapstructure:"format" yaml:"format"`
}

// Defaults of the keys that have one; documented in configs/cxr-edge.yaml.
var defaults = []struct {
	key string
	val any
}{
	{"device.id", ""}, // hostname, sanitised, when empty
	{"device.site", "default"},
	{"model.path", ""},
	{"model.threshold", ""},
	{"model.sha256", ""},
	{"model.output", "auto"},
	{"model.positive_index", 1},
	{"model.threads", 0},
	{"intake.watch_dir", ""},
	{"intake.http_listen", "127.0.0.1:8080"},
	{"intake.dicom_listen", ""},
	{"intake.dicom_ae_title", dicom.DefaultServerOptions().AETitle},
	{"intake.dicom_allowed_callers", []string{}},
	{"intake.dicom_tls_cert", ""},
	{"intake.dicom_tls_key", ""},
	{"intake.dicom_tls_client_ca", ""},
	{"intake.max_bytes", "64MiB"},
	{"intake.max_pixels", 64 << 20},
	{"intake.decode_timeout", "30s"},
	{"intake.settle", "500ms"},
	{"intake.rescan", "10s"},
	{"intake.keep_done", true},
	{"intake.done_max_age", "168h"},
	{"intake.done_max_bytes", "1GiB"},
	{"intake.failed_max_age", "720h"},
	{"intake.failed_max_bytes", "256MiB"},
	{"store.dir", "/var/lib/cxr-edge/store"},
	{"store.retention_age", "2160h"},
	{"store.max_bytes", "512MiB"},
	{"mqtt.broker", ""},
	{"mqtt.username", ""},
	{"mqtt.password_file", ""},
	{"mqtt.ca_file", ""},
	{"mqtt.cert_file", ""},
	{"mqtt.key_file", ""},
	{"mqtt.topic_prefix", telemetry.DefaultTopicPrefix},
	{"mqtt.health_interval", "30s"},
	{"mqtt.discovery", false},
	{"mqtt.embedded", false},
	{"mqtt.embedded_listen", "127.0.0.1:1883"},
	{"indicator.kind", "console"},
	{"indicator.pins.green", "GPIO17"},
	{"indicator.pins.amber", "GPIO27"},
	{"indicator.pins.red", "GPIO22"},
	{"indicator.pins.button", "GPIO23"},
	{"log.level", "info"},
	{"log.format", "text"},
}

// DefaultConfigDirs are searched, in order, for cxr-edge.yaml when no file is named.
var DefaultConfigDirs = []string{".", "/etc/cxr-edge"}

// LoadOptions says where Load looks.
type LoadOptions struct {
	// File is an explicit configuration file (--config); it must exist. "" searches Dirs.
	File string
	// Dirs are searched for cxr-edge.yaml when File is ""; nil = DefaultConfigDirs.
	Dirs []string
	// Env looks up environment variables; nil = os.LookupEnv. Tests pass a map.
	Env func(string) (string, bool)
	// Flags are bound by key: a flag whose Name, with "-" read as "_", is a key's last part
	// is matched through FlagKeys. Only flags the user set override.
	Flags *pflag.FlagSet
	// FlagKeys maps flag names to configuration keys, e.g. "model" → "model.path".
	FlagKeys map[string]string
	// Hostname is used for the default device.id; nil = os.Hostname.
	Hostname func() (string, error)
}

// Load reads and validates the configuration. Every error wraps ErrConfig and names the key.
func Load(opts LoadOptions) (*Config, error) {
	v := viper.New()
	for _, d := range defaults {
		v.SetDefault(d.key, d.val)
	}
	v.SetConfigType("yaml")
	file := opts.File
	if file == "" {
		dirs := opts.Dirs
		if dirs == nil {
			dirs = DefaultConfigDirs
		}
		for _, d := range dirs {
			p := d + "/cxr-edge.yaml"
			if _, err := os.Stat(p); err == nil {
				file = p
				break
			}
		}
	}
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("%w: config file: %w", ErrConfig, err)
		}
		err = v.ReadConfig(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%w: config file %s: %w", ErrConfig, file, err)
		}
		if err := checkKnownKeys(v.AllKeys()); err != nil {
			return nil, fmt.Errorf("%w: config file %s: %w", ErrConfig, file, err)
		}
	}
	// Environment: CXR_<SECTION>_<KEY>. Looked up explicitly (not AutomaticEnv) so tests can
	// pass their own environment.
	lookup := opts.Env
	if lookup == nil {
		lookup = os.LookupEnv
	}
	for _, d := range defaults {
		name := "CXR_" + strings.ToUpper(strings.ReplaceAll(d.key, ".", "_"))
		if val, ok := lookup(name); ok {
			v.Set(d.key, val)
		}
	}
	if opts.Flags != nil {
		var ferr error
		opts.Flags.Visit(func(f *pflag.Flag) {
			key, ok := opts.FlagKeys[f.Name]
			if !ok {
				return
			}
			if f.Value.Type() == "stringArray" || f.Value.Type() == "stringSlice" {
				return
			}
			v.Set(key, f.Value.String())
		})
		// --set key=value pairs, the generic override.
		if f := opts.Flags.Lookup("set"); f != nil && f.Changed {
			vals, _ := opts.Flags.GetStringArray("set")
			for _, kv := range vals {
				key, val, ok := strings.Cut(kv, "=")
				if !ok || !knownKey(key) {
					ferr = fmt.Errorf("%w: --set %q: want key=value with a known key (see cxr-edge config)", ErrConfig, kv)
					break
				}
				v.Set(key, val)
			}
		}
		if ferr != nil {
			return nil, ferr
		}
	}

	cfg := &Config{File: file}
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:           cfg,
		WeaklyTypedInput: true,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			byteSizeHook, durationHook, mapstructure.StringToSliceHookFunc(","), // lists from the environment: A,B
		),
	})
	if err != nil {
		return nil, err
	}
	if err := dec.Decode(v.AllSettings()); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, cleanDecodeError(err))
	}
	// model.threshold: "" (or absent) = the model's own.
	if s := strings.TrimSpace(v.GetString("model.threshold")); s != "" {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: model.threshold %q: want a number in (0, 1), or empty for the model's own", ErrConfig, s)
		}
		cfg.Model.Threshold = &f
	}
	if cfg.Device.ID == "" {
		hn := opts.Hostname
		if hn == nil {
			hn = os.Hostname
		}
		name, err := hn()
		if err != nil {
			name = ""
		}
		cfg.Device.ID = SanitizeID(name)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func knownKey(key string) bool {
	for _, d := range defaults {
		if d.key == key {
			return true
		}
	}
	return false
}

// checkKnownKeys refuses keys the daemon does not know: a typo must not silently keep a default.
func checkKnownKeys(keys []string) error {
	for _, k := range keys {
		if !knownKey(k) {
			return fmt.Errorf("unknown key %q (see configs/cxr-edge.yaml for the keys)", k)
		}
	}
	return nil
}

var (
	byteSizeType = reflect.TypeOf(ByteSize(0))
	durationType = reflect.TypeOf(time.Duration(0))
)

func byteSizeHook(from, to reflect.Type, data any) (any, error) {
	if to != byteSizeType {
		return data, nil
	}
	switch x := data.(type) {
	case string:
		return ParseByteSize(x)
	case int:
		return nonNegativeSize(int64(x))
	case int64:
		return nonNegativeSize(x)
	}
	return data, nil
}

func nonNegativeSize(x int64) (any, error) {
	if x < 0 {
		return nil, fmt.Errorf("size %d: must not be negative", x)
	}
	return ByteSize(x), nil
}

func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != durationType {
		return data, nil
	}
	switch x := data.(type) {
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(x))
		if err != nil {
			return nil, fmt.Errorf("duration %q: want a number with a unit, e.g. 500ms, 30s, 168h", x)
		}
		return d, nil
	case int:
		// A bare number is ambiguous; refuse rather than read nanoseconds.
		return nil, fmt.Errorf("duration %d: want a number with a unit, e.g. 500ms, 30s, 168h", x)
	}
	return data, nil
}

// cleanDecodeError turns mapstructure's "decoding failed due to ..." into "key: problem".
func cleanDecodeError(err error) error {
	var de *mapstructure.DecodeError
	if errors.As(err, &de) {
		return fmt.Errorf("%s: %w", de.Name(), de.Unwrap())
	}
	return err
}

var sanitizeRe = regexp.MustCompile(`[^a-zA-Z0-9_-]+`)

// SanitizeID maps a host name to a valid device id: characters outside [a-zA-Z0-9_-] become
// "-", and the result is cut to 64 characters. An empty result becomes "cxr-edge".
func SanitizeID(s string) string {
	s = strings.Trim(sanitizeRe.ReplaceAllString(s, "-"), "-")
	if len(s) > 64 {
		s = s[:64]
	}
	if s == "" {
		return "cxr-edge"
	}
	return s
}

func bad(key string, val any, want string) error {
	return fmt.Errorf("%w: %s = %v: %s", ErrConfig, key, val, want)
}

// Validate checks every value; the first problem is returned, naming the key and what is allowed.
func (c *Config) Validate() error {
	if !telemetry.ValidID(c.Device.ID) {
		return bad("device.id", strconv.Quote(c.Device.ID), "want 1-64 characters of [a-zA-Z0-9_-]")
	}
	if !telemetry.ValidID(c.Device.Site) {
		return bad("device.site", strconv.Quote(c.Device.Site), "want 1-64 characters of [a-zA-Z0-9_-]")
	}
	if t := c.Model.Threshold; t != nil && !(*t > 0 && *t < 1) {
		return bad("model.threshold", *t, "want a number in (0, 1), or empty for the model's own")
	}
	if s := c.Model.SHA256; s != "" {
		if !telemetry.IsSHA256Hex(s) {
			return bad("model.sha256", strconv.Quote(s), "want 64 hex digits, or empty for no pin")
		}
	}
	if !oneOf(c.Model.Output, "auto", "probability", "logit") {
		return bad("model.output", strconv.Quote(c.Model.Output), "want auto, probability or logit")
	}
	if c.Model.PositiveIndex < 0 || c.Model.PositiveIndex > 1023 {
		return bad("model.positive_index", c.Model.PositiveIndex, "want a class index 0..1023")
	}
	if c.Model.Threads < 0 || c.Model.Threads > 256 {
		return bad("model.threads", c.Model.Threads, "want 0 (all cores) .. 256")
	}
	if c.Intake.WatchDir == "" && c.Intake.HTTPListen == "" && c.Intake.DICOMListen == "" {
		return bad("intake.watch_dir", `""`, "want a folder, or set intake.http_listen or intake.dicom_listen: with none the daemon has no input")
	}
	if l := c.Intake.DICOMListen; l != "" {
		if _, _, err := net.SplitHostPort(l); err != nil {
			return bad("intake.dicom_listen", strconv.Quote(l), "want host:port, e.g. 0.0.0.0:11112, or empty to disable the DICOM Store SCP")
		}
	}
	if !dicom.ValidAETitle(c.Intake.DICOMAETitle) {
		return bad("intake.dicom_ae_title", strconv.Quote(c.Intake.DICOMAETitle), "want 1-16 printable ASCII characters, no backslash")
	}
	if err := c.Intake.checkDICOMTLS(); err != nil {
		return err
	}
	for _, ae := range c.Intake.DICOMAllowedCallers {
		if !dicom.ValidAETitle(ae) {
			return bad("intake.dicom_allowed_callers", strconv.Quote(ae), "want AE titles of 1-16 printable ASCII characters, no backslash")
		}
	}
	if l := c.Intake.HTTPListen; l != "" {
		if _, port, err := net.SplitHostPort(l); err != nil || port == "" {
			return bad("intake.http_listen", strconv.Quote(l), "want host:port, e.g. 127.0.0.1:8080, or empty to disable HTTP")
		}
	}
	if c.Intake.MaxBytes < 1024 {
		return bad("intake.max_bytes", c.Intake.MaxBytes, "want at least 1KiB")
	}
	if c.Intake.MaxPixels < 1 {
		return bad("intake.max_pixels", c.Intake.MaxPixels, "want a positive number of pixels")
	}
	for _, d := range []struct {
		key      string
		v, lo    time.Duration
		zeroOK   bool
		loString string
	}{
		{"intake.decode_timeout", c.Intake.DecodeTimeout, 100 * time.Millisecond, false, "100ms"},
		{"intake.settle", c.Intake.Settle, 10 * time.Millisecond, false, "10ms"},
		{"intake.rescan", c.Intake.Rescan, 100 * time.Millisecond, false, "100ms"},
		{"intake.done_max_age", c.Intake.DoneMaxAge, time.Minute, true, "1m"},
		{"intake.failed_max_age", c.Intake.FailedMaxAge, time.Minute, true, "1m"},
		{"store.retention_age", c.Store.RetentionAge, time.Hour, false, "1h"},
		{"mqtt.health_interval", c.MQTT.HealthInterval, time.Second, false, "1s"},
	} {
		if d.zeroOK && d.v == 0 {
			continue
		}
		if d.v < d.lo {
			want := "want a duration of at least " + d.loString
			if d.zeroOK {
				want += " (or 0 for no age limit)"
			}
			return bad(d.key, d.v, want)
		}
	}
	// Kept inputs are bounded by bytes so that a busy clinic cannot fill the disk.
	if c.Intake.KeepDone && c.Intake.DoneMaxBytes <= 0 {
		return bad("intake.done_max_bytes", c.Intake.DoneMaxBytes, "want a positive size (the disk bound of done/), or keep_done: false")
	}
	if c.Intake.FailedMaxBytes <= 0 {
		return bad("intake.failed_max_bytes", c.Intake.FailedMaxBytes, "want a positive size (the disk bound of failed/)")
	}
	if c.Store.Dir == "" {
		return bad("store.dir", `""`, "want a writable folder")
	}
	if c.Store.MaxBytes < 1<<20 {
		return bad("store.max_bytes", c.Store.MaxBytes, "want at least 1MiB")
	}
	if b := c.MQTT.Broker; b != "" {
		u, err := url.Parse(b)
		if err != nil || u.Host == "" || !oneOf(u.Scheme, "tcp", "mqtt", "ssl", "tls", "mqtts", "tcps") {
			return bad("mqtt.broker", strconv.Quote(b), "want tcp://host:port or ssl://host:port (also mqtt, tls, mqtts, tcps), or empty for none")
		}
		if !oneOf(u.Scheme, "ssl", "tls", "mqtts", "tcps") && (c.MQTT.CAFile != "" || c.MQTT.CertFile != "" || c.MQTT.KeyFile != "") {
			return bad("mqtt.broker", strconv.Quote(b), "TLS files (mqtt.ca_file, cert_file, key_file) need a TLS broker URL: ssl://host:8883")
		}
	}
	if err := checkFiles([]configFile{
		{"mqtt.password_file", c.MQTT.PasswordFile}, {"mqtt.ca_file", c.MQTT.CAFile},
		{"mqtt.cert_file", c.MQTT.CertFile}, {"mqtt.key_file", c.MQTT.KeyFile},
	}); err != nil {
		return err
	}
	if (c.MQTT.CertFile == "") != (c.MQTT.KeyFile == "") {
		return bad("mqtt.cert_file", strconv.Quote(c.MQTT.CertFile), "set mqtt.cert_file and mqtt.key_file together")
	}
	if _, err := telemetry.NewTopics(c.MQTT.TopicPrefix, c.Device.Site, c.Device.ID); err != nil {
		return bad("mqtt.topic_prefix", strconv.Quote(c.MQTT.TopicPrefix), err.Error())
	}
	if c.MQTT.Embedded {
		if _, _, err := net.SplitHostPort(c.MQTT.EmbeddedListen); err != nil {
			return bad("mqtt.embedded_listen", strconv.Quote(c.MQTT.EmbeddedListen), "want host:port, e.g. 127.0.0.1:1883")
		}
	}
	switch c.Indicator.Kind {
	case "gpio":
		seen := map[string]string{}
		for _, p := range []struct{ key, pin string }{
			{"indicator.pins.green", c.Indicator.Pins.Green}, {"indicator.pins.amber", c.Indicator.Pins.Amber},
			{"indicator.pins.red", c.Indicator.Pins.Red}, {"indicator.pins.button", c.Indicator.Pins.Button},
		} {
			if p.pin == "" && p.key == "indicator.pins.button" {
				continue // the button is optional
			}
			if p.pin == "" {
				return bad(p.key, `""`, "want a GPIO line name such as GPIO17")
			}
			if other, dup := seen[p.pin]; dup {
				return bad(p.key, strconv.Quote(p.pin), "already used by "+other+"; each pin once")
			}
			seen[p.pin] = p.key
		}
	case "console", "none":
	default:
		return bad("indicator.kind", strconv.Quote(c.Indicator.Kind), "want gpio, console or none")
	}
	if !oneOf(c.Log.Level, "debug", "info", "warn", "error") {
		return bad("log.level", strconv.Quote(c.Log.Level), "want debug, info, warn or error")
	}
	if !oneOf(c.Log.Format, "text", "json") {
		return bad("log.format", strconv.Quote(c.Log.Format), "want text or json")
	}
	return nil
}

func oneOf(s string, set ...string) bool {
	for _, x := range set {
		if s == x {
			return true
		}
	}
	return false
}

// YAML renders the configuration in the layout of configs/cxr-edge.yaml. It holds no secrets:
// the MQTT password is only ever read from mqtt.password_file, whose path (not content) is shown.
func (c Config) YAML() ([]byte, error) {
	return yaml.Marshal(&c)
}

// RestartKeys lists, sorted, the keys whose values differ between c and next, other than the
// model section (a reload applies that): they take effect only when the daemon restarts, and
// the daemon says so on a reload rather than let an edited file look applied.
func (c Config) RestartKeys(next Config) ([]string, error) {
	a, err := flatConfig(c)
	if err != nil {
		return nil, err
	}
	b, err := flatConfig(next)
	if err != nil {
		return nil, err
	}
	var keys []string
	for k, v := range b {
		if old, ok := a[k]; (!ok || old != v) && !strings.HasPrefix(k, "model.") {
			keys = append(keys, k)
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok && !strings.HasPrefix(k, "model.") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys, nil
}

// flatConfig is the configuration as dotted key → rendered value, through its YAML layout (the
// keys of configs/cxr-edge.yaml).
func flatConfig(c Config) (map[string]string, error) {
	raw, err := c.YAML()
	if err != nil {
		return nil, err
	}
	var tree map[string]any
	if err := yaml.Unmarshal(raw, &tree); err != nil {
		return nil, err
	}
	flat := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m, ok := v.(map[string]any); ok {
			for k, sub := range m {
				walk(prefix+k+".", sub)
			}
			return
		}
		flat[strings.TrimSuffix(prefix, ".")] = fmt.Sprint(v)
	}
	walk("", tree)
	return flat, nil
}

// EffectiveThreshold is the configured operating point, or def (the model's own) when none is set.
func (c ModelConfig) EffectiveThreshold(def float64) float64 {
	if c.Threshold != nil {
		return *c.Threshold
	}
	return def
}

// configFile is a file named by a config key.
type configFile struct{ key, path string }

// checkFiles fails on the first named file that cannot be found ("" names none).
func checkFiles(fs []configFile) error {
	for _, f := range fs {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return bad(f.key, strconv.Quote(f.path), "want a readable file: "+err.Error())
		}
	}
	return nil
}

// checkDICOMTLS: the TLS files of the Store SCP go together and need the SCP.
func (c IntakeConfig) checkDICOMTLS() error {
	if c.DICOMTLSCert == "" && c.DICOMTLSKey == "" && c.DICOMTLSClientCA == "" {
		return nil
	}
	if c.DICOMListen == "" {
		return bad("intake.dicom_listen", `""`, "the DICOM TLS files (intake.dicom_tls_cert, dicom_tls_key, dicom_tls_client_ca) need the Store SCP: set intake.dicom_listen")
	}
	if c.DICOMTLSCert == "" || c.DICOMTLSKey == "" {
		return bad("intake.dicom_tls_cert", strconv.Quote(c.DICOMTLSCert), "set intake.dicom_tls_cert and intake.dicom_tls_key together (intake.dicom_tls_client_ca needs both)")
	}
	return checkFiles([]configFile{
		{"intake.dicom_tls_cert", c.DICOMTLSCert}, {"intake.dicom_tls_key", c.DICOMTLSKey},
		{"intake.dicom_tls_client_ca", c.DICOMTLSClientCA},
	})
}
