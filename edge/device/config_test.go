package device

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func host(name string) func() (string, error) {
	return func() (string, error) { return name, nil }
}

func TestLoadDefaults(t *testing.T) {
	cfg, err := Load(LoadOptions{Dirs: []string{t.TempDir()}, Env: env(nil), Hostname: host("xray.clinic-7.local")})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.File != "" {
		t.Errorf("File = %q, want none", cfg.File)
	}
	if cfg.Device.ID != "xray-clinic-7-local" || cfg.Device.Site != "default" {
		t.Errorf("device = %+v", cfg.Device)
	}
	if cfg.Intake.HTTPListen != "127.0.0.1:8080" || cfg.MQTT.TopicPrefix != "cxr" ||
		cfg.MQTT.HealthInterval != 30*time.Second || cfg.Intake.MaxBytes != 64<<20 ||
		cfg.Model.Threshold != nil || cfg.Model.PositiveIndex != 1 || cfg.Indicator.Kind != "console" {
		t.Errorf("defaults wrong: %+v", cfg)
	}
	if got := cfg.Model.EffectiveThreshold(0.5); got != 0.5 {
		t.Errorf("EffectiveThreshold = %v", got)
	}
}

// The shipped file must load and equal the documented defaults where it repeats them.
func TestShippedConfigLoads(t *testing.T) {
	file := filepath.Join(testenv.RepoRoot(t), "configs", "cxr-edge.yaml")
	cfg, err := Load(LoadOptions{File: file, Env: env(nil), Hostname: host("dev1")})
	if err != nil {
		t.Fatal(err)
	}
	def, err := Load(LoadOptions{Dirs: []string{t.TempDir()}, Env: env(nil), Hostname: host("dev1")})
	if err != nil {
		t.Fatal(err)
	}
	def.File, def.Intake.WatchDir = cfg.File, cfg.Intake.WatchDir
	a, _ := cfg.YAML()
	b, _ := def.YAML()
	if string(a) != string(b) {
		t.Errorf("shipped config differs from the defaults:\n%s\nvs\n%s", a, b)
	}
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "cxr-edge.yaml"), "device:\n  site: fromfile\n  id: fileid\nmodel:\n  threshold: 0.3\n")
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.String("site", "", "")
	fs.StringArray("set", nil, "")
	if err := fs.Parse([]string{"--site", "fromflag", "--set", "model.threads=2"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(LoadOptions{
		Dirs:     []string{dir},
		Env:      env(map[string]string{"CXR_DEVICE_SITE": "fromenv", "CXR_DEVICE_ID": "envid", "CXR_MODEL_THREADS": "3"}),
		Flags:    fs,
		FlagKeys: map[string]string{"site": "device.site"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Device.Site != "fromflag" || cfg.Device.ID != "envid" || cfg.Model.Threads != 2 {
		t.Errorf("precedence wrong: %+v %+v", cfg.Device, cfg.Model)
	}
	if cfg.Model.Threshold == nil || *cfg.Model.Threshold != 0.3 {
		t.Errorf("threshold from file lost: %v", cfg.Model.Threshold)
	}
	if cfg.File != filepath.Join(dir, "cxr-edge.yaml") {
		t.Errorf("File = %q", cfg.File)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestValidationRules(t *testing.T) {
	existing := filepath.Join(t.TempDir(), "pw")
	writeFile(t, existing, "secret\n")
	for _, tc := range []struct {
		env  map[string]string
		key  string // the key the error must name
		want string // part of "what is allowed"
	}{
		{map[string]string{"CXR_DEVICE_ID": "bad id"}, "device.id", "[a-zA-Z0-9_-]"},
		{map[string]string{"CXR_DEVICE_SITE": "a/b"}, "device.site", "[a-zA-Z0-9_-]"},
		{map[string]string{"CXR_MODEL_THRESHOLD": "1.5"}, "model.threshold", "(0, 1)"},
		{map[string]string{"CXR_MODEL_THRESHOLD": "0"}, "model.threshold", "(0, 1)"},
		{map[string]string{"CXR_MODEL_THRESHOLD": "high"}, "model.threshold", "(0, 1)"},
		{map[string]string{"CXR_MODEL_SHA256": "abc"}, "model.sha256", "64 hex"},
		{map[string]string{"CXR_MODEL_OUTPUT": "softmax"}, "model.output", "auto, probability or logit"},
		{map[string]string{"CXR_MODEL_POSITIVE_INDEX": "-1"}, "model.positive_index", "0..1023"},
		{map[string]string{"CXR_MODEL_THREADS": "many"}, "model.threads", ""},
		{map[string]string{"CXR_INTAKE_HTTP_LISTEN": "", "CXR_INTAKE_WATCH_DIR": ""}, "intake.watch_dir", "no input"},
		{map[string]string{"CXR_INTAKE_HTTP_LISTEN": "8080"}, "intake.http_listen", "host:port"},
		{map[string]string{"CXR_INTAKE_DICOM_LISTEN": "11112"}, "intake.dicom_listen", "host:port"},
		{map[string]string{"CXR_INTAKE_DICOM_AE_TITLE": "A-TITLE-LONGER-THAN-16"}, "intake.dicom_ae_title", "1-16"},
		{map[string]string{"CXR_INTAKE_DICOM_AE_TITLE": " "}, "intake.dicom_ae_title", "1-16"},
		{map[string]string{"CXR_INTAKE_DICOM_ALLOWED_CALLERS": "XRAY1,BAD\\AE"}, "intake.dicom_allowed_callers", "no backslash"},
		{map[string]string{"CXR_INTAKE_DICOM_TLS_CERT": existing, "CXR_INTAKE_DICOM_TLS_KEY": existing}, "intake.dicom_listen", "need the Store SCP"},
		{map[string]string{"CXR_INTAKE_DICOM_LISTEN": ":11112", "CXR_INTAKE_DICOM_TLS_CERT": existing}, "intake.dicom_tls_cert", "together"},
		{map[string]string{"CXR_INTAKE_DICOM_LISTEN": ":11112", "CXR_INTAKE_DICOM_TLS_CLIENT_CA": existing}, "intake.dicom_tls_cert", "together"},
		{map[string]string{"CXR_INTAKE_DICOM_LISTEN": ":11112", "CXR_INTAKE_DICOM_TLS_CERT": existing, "CXR_INTAKE_DICOM_TLS_KEY": "/nonexistent/key"}, "intake.dicom_tls_key", "readable file"},
		{map[string]string{"CXR_INTAKE_DICOM_LISTEN": ":11112", "CXR_INTAKE_DICOM_TLS_CERT": existing, "CXR_INTAKE_DICOM_TLS_KEY": existing, "CXR_INTAKE_DICOM_TLS_CLIENT_CA": "/nonexistent/ca"}, "intake.dicom_tls_client_ca", "readable file"},
		{map[string]string{"CXR_INTAKE_MAX_BYTES": "12"}, "intake.max_bytes", "1KiB"},
		{map[string]string{"CXR_INTAKE_MAX_BYTES": "lots"}, "intake.max_bytes", "unit"},
		{map[string]string{"CXR_INTAKE_MAX_PIXELS": "0"}, "intake.max_pixels", "positive"},
		{map[string]string{"CXR_INTAKE_DECODE_TIMEOUT": "1ms"}, "intake.decode_timeout", "100ms"},
		{map[string]string{"CXR_INTAKE_DECODE_TIMEOUT": "soon"}, "intake.decode_timeout", "unit"},
		{map[string]string{"CXR_INTAKE_SETTLE": "0s"}, "intake.settle", "10ms"},
		{map[string]string{"CXR_INTAKE_RESCAN": "1ms"}, "intake.rescan", "100ms"},
		{map[string]string{"CXR_INTAKE_DONE_MAX_AGE": "1s"}, "intake.done_max_age", "no age limit"},
		{map[string]string{"CXR_INTAKE_DONE_MAX_BYTES": "0"}, "intake.done_max_bytes", "disk bound"},
		{map[string]string{"CXR_INTAKE_FAILED_MAX_AGE": "5s"}, "intake.failed_max_age", "1m"},
		{map[string]string{"CXR_INTAKE_FAILED_MAX_BYTES": "0"}, "intake.failed_max_bytes", "disk bound"},
		{map[string]string{"CXR_STORE_DIR": ""}, "store.dir", "writable"},
		{map[string]string{"CXR_STORE_RETENTION_AGE": "1m"}, "store.retention_age", "1h"},
		{map[string]string{"CXR_STORE_MAX_BYTES": "1KiB"}, "store.max_bytes", "1MiB"},
		{map[string]string{"CXR_MQTT_BROKER": "localhost:1883"}, "mqtt.broker", "tcp://"},
		{map[string]string{"CXR_MQTT_BROKER": "http://x:1"}, "mqtt.broker", "tcp://"},
		{map[string]string{"CXR_MQTT_BROKER": "tcp://x:1883", "CXR_MQTT_CA_FILE": existing}, "mqtt.broker", "TLS broker URL"},
		{map[string]string{"CXR_MQTT_PASSWORD_FILE": "/nonexistent/pw"}, "mqtt.password_file", "readable file"},
		{map[string]string{"CXR_MQTT_CA_FILE": "/nonexistent/ca"}, "mqtt.ca_file", "readable file"},
		{map[string]string{"CXR_MQTT_CERT_FILE": existing}, "mqtt.cert_file", "together"},
		{map[string]string{"CXR_MQTT_TOPIC_PREFIX": "cxr/"}, "mqtt.topic_prefix", "start or end"},
		{map[string]string{"CXR_MQTT_HEALTH_INTERVAL": "10ms"}, "mqtt.health_interval", "1s"},
		{map[string]string{"CXR_MQTT_EMBEDDED": "true", "CXR_MQTT_EMBEDDED_LISTEN": "1883"}, "mqtt.embedded_listen", "host:port"},
		{map[string]string{"CXR_MQTT_EMBEDDED": "maybe"}, "mqtt.embedded", ""},
		{map[string]string{"CXR_INDICATOR_KIND": "lcd"}, "indicator.kind", "gpio, console or none"},
		{map[string]string{"CXR_INDICATOR_KIND": "gpio", "CXR_INDICATOR_PINS_RED": ""}, "indicator.pins.red", "GPIO17"},
		{map[string]string{"CXR_INDICATOR_KIND": "gpio", "CXR_INDICATOR_PINS_RED": "GPIO17"}, "indicator.pins.red", "already used by indicator.pins.green"},
		{map[string]string{"CXR_LOG_LEVEL": "verbose"}, "log.level", "debug, info"},
		{map[string]string{"CXR_LOG_FORMAT": "xml"}, "log.format", "text or json"},
	} {
		name := tc.key
		for k, v := range tc.env {
			name += " " + k + "=" + v
		}
		t.Run(name, func(t *testing.T) {
			_, err := Load(LoadOptions{Dirs: []string{t.TempDir()}, Env: env(tc.env), Hostname: host("h")})
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error does not wrap ErrConfig: %v", err)
			}
			if !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q should name %s and say %q", err, tc.key, tc.want)
			}
		})
	}
}

func TestValidValuesAccepted(t *testing.T) {
	cfg, err := Load(LoadOptions{Dirs: []string{t.TempDir()}, Hostname: host("h"), Env: env(map[string]string{
		"CXR_MODEL_THRESHOLD":         "0.42",
		"CXR_MODEL_SHA256":            strings.Repeat("ab", 32),
		"CXR_INTAKE_MAX_BYTES":        "2.5MiB",
		"CXR_INTAKE_DONE_MAX_AGE":     "0",
		"CXR_MQTT_BROKER":             "ssl://broker.example:8883",
		"CXR_INDICATOR_KIND":          "gpio",
		"CXR_INDICATOR_PINS_BUTTON":   "",
		"CXR_INTAKE_WATCH_DIR":        "/srv/inbox",
		"CXR_INTAKE_HTTP_LISTEN":      "",
		"CXR_MQTT_PASSWORD_FILE":      existingPW(t),
		"CXR_STORE_MAX_BYTES":         "1073741824",
		"CXR_MQTT_HEALTH_INTERVAL":    "1m",
		"CXR_INTAKE_FAILED_MAX_AGE":   "24h",
		"CXR_INTAKE_FAILED_MAX_BYTES": "10MB",
	})})
	if err != nil {
		t.Fatal(err)
	}
	if *cfg.Model.Threshold != 0.42 || cfg.Intake.MaxBytes != 5<<19 || cfg.Intake.DoneMaxAge != 0 ||
		cfg.Store.MaxBytes != 1<<30 || cfg.MQTT.HealthInterval != time.Minute || cfg.Intake.FailedMaxBytes != 10e6 {
		t.Errorf("values not applied: %+v", cfg)
	}
	out, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "hunter2") || !strings.Contains(string(out), "password_file: "+cfg.MQTT.PasswordFile) {
		t.Errorf("password file content shown or path missing:\n%s", out)
	}
}

func existingPW(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "pw")
	writeFile(t, p, "hunter2\n")
	return p
}

func TestUnknownKeyInFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "c.yaml")
	writeFile(t, f, "model:\n  treshold: 0.4\n")
	_, err := Load(LoadOptions{File: f, Env: env(nil), Hostname: host("h")})
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "model.treshold") {
		t.Errorf("typo not reported: %v", err)
	}
}

func TestMissingExplicitFile(t *testing.T) {
	_, err := Load(LoadOptions{File: "/nonexistent/cxr-edge.yaml", Env: env(nil)})
	if !errors.Is(err, ErrConfig) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v", err)
	}
}

func TestBadSetFlag(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.StringArray("set", nil, "")
	_ = fs.Parse([]string{"--set", "nosuch.key=1"})
	_, err := Load(LoadOptions{Dirs: []string{t.TempDir()}, Env: env(nil), Flags: fs, Hostname: host("h")})
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "nosuch.key") {
		t.Errorf("err = %v", err)
	}
}

func TestSanitizeID(t *testing.T) {
	for in, want := range map[string]string{
		"pi-01":                 "pi-01",
		"xray.clinic.local":     "xray-clinic-local",
		"":                      "cxr-edge",
		"...":                   "cxr-edge",
		"Ünïcode host_name":     "n-code-host_name",
		strings.Repeat("a", 70): strings.Repeat("a", 64),
	} {
		if got := SanitizeID(in); got != want {
			t.Errorf("SanitizeID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{
		"0": 0, "1024": 1024, "1KiB": 1024, "64MiB": 64 << 20, "1GB": 1e9, "1.5 GiB": 3 << 29, "10k": 10000,
	} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1XB", "1e30GiB"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", in)
		}
	}
	if s := ByteSize(64 << 20).String(); s != "64MiB" {
		t.Errorf("String = %q", s)
	}
}

func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"64MiB", "1.5 GiB", "10k", "0", "-1", "1e400", "GiB", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseByteSize(s)
		if err == nil && b < 0 {
			t.Fatalf("ParseByteSize(%q) = %d", s, b)
		}
	})
}

// A configuration file is outside data: whatever it holds, Load returns a config or an
// ErrConfig error, never panics.
func FuzzConfigFile(f *testing.F) {
	f.Add("device:\n  site: a\n")
	f.Add("model:\n  threshold: 0.4\nintake:\n  max_bytes: 1GiB\n")
	f.Add("intake: [1, 2]\n")
	f.Add("mqtt:\n  health_interval: 5\n")
	f.Add(": : :\n\t- x")
	f.Fuzz(func(t *testing.T, content string) {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(LoadOptions{File: path, Env: env(nil), Hostname: host("h")})
		if err != nil && !errors.Is(err, ErrConfig) {
			t.Fatalf("error does not wrap ErrConfig: %v", err)
		}
		if err == nil {
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("Load returned an invalid config: %v", verr)
			}
		}
	})
}

// What `cxr-edge config` prints is itself a valid configuration file with the same values.
func TestConfigYAMLRoundTrip(t *testing.T) {
	thr := 0.42
	cfg, err := Load(LoadOptions{Dirs: []string{t.TempDir()}, Hostname: host("h"), Env: env(map[string]string{
		"CXR_MODEL_THRESHOLD": "0.42", "CXR_INTAKE_DONE_MAX_BYTES": "3MB", "CXR_INTAKE_SETTLE": "1.5s",
	})})
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "c.yaml")
	writeFile(t, path, string(out))
	again, err := Load(LoadOptions{File: path, Env: env(nil), Hostname: host("other")})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	again.File = cfg.File
	out2, _ := again.YAML()
	if string(out) != string(out2) || *again.Model.Threshold != thr {
		t.Errorf("round trip differs:\n%s\nvs\n%s", out, out2)
	}
}

// A reload applies the model section; every other changed key is named for a restart.
func TestRestartKeys(t *testing.T) {
	load := func(vars map[string]string) Config {
		t.Helper()
		cfg, err := Load(LoadOptions{Dirs: []string{t.TempDir()}, Env: env(vars), Hostname: host("h")})
		if err != nil {
			t.Fatal(err)
		}
		return *cfg
	}
	base := load(nil)
	for _, tc := range []struct {
		name string
		vars map[string]string
		want string
	}{
		{"unchanged", nil, ""},
		{"model only", map[string]string{"CXR_MODEL_THRESHOLD": "0.3", "CXR_MODEL_PATH": "/m.tflite"}, ""},
		{"others", map[string]string{"CXR_MODEL_THRESHOLD": "0.3", "CXR_INTAKE_SETTLE": "2s", "CXR_MQTT_BROKER": "tcp://b:1883",
			"CXR_INDICATOR_PINS_RED": "GPIO5"}, "indicator.pins.red,intake.settle,mqtt.broker"},
		{"set from empty", map[string]string{"CXR_INTAKE_WATCH_DIR": "/srv/inbox"}, "intake.watch_dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := base.RestartKeys(load(tc.vars))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(keys, ","); got != tc.want {
				t.Errorf("RestartKeys = %q, want %q", got, tc.want)
			}
		})
	}
}
