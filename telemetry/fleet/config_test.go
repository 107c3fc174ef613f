package fleet

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/viper"
)

func TestLoadConfigDefaults(t *testing.T) {
	v := viper.New()
	SetConfigDefaults(v)
	v.Set("store.dir", t.TempDir())
	c, err := LoadConfig(v)
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultOptions()
	if c.HTTPListen != DefaultHTTPListen || c.MQTT.TopicPrefix != "cxr" || c.MQTT.ClientID != d.MQTT.ClientID ||
		c.Alerts != d.Alerts || c.Retention != d.Retention || c.Commands != d.Commands || c.MaxPayload != 64<<10 || c.MaxDevices != 5000 {
		t.Errorf("defaults differ from DefaultOptions: %+v", c)
	}
	if got := c.MQTT.SubscriptionTopic(); got != "cxr/+/+/#" {
		t.Errorf("topic %q", got)
	}
}

// TestShippedConfigLoads keeps configs/cxr-dashboard.yaml valid and equal to the defaults.
func TestShippedConfigLoads(t *testing.T) {
	v := viper.New()
	SetConfigDefaults(v)
	v.SetConfigFile(filepath.Join("..", "..", "configs", "cxr-dashboard.yaml"))
	if err := v.ReadInConfig(); err != nil {
		t.Fatal(err)
	}
	if got := v.GetString("store.dir"); got != "/var/lib/cxr-dashboard" {
		t.Errorf("store.dir %q, want the systemd state directory", got)
	}
	v.Set("store.dir", t.TempDir())
	c, err := LoadConfig(v)
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultOptions()
	if c.Alerts != d.Alerts || c.Retention != d.Retention || c.Commands != d.Commands || c.MaxPayload != d.MaxPayload || c.MaxDevices != d.MaxDevices {
		t.Errorf("shipped config differs from the documented defaults:\n%+v\n%+v", c.Alerts, d.Alerts)
	}
}

func TestLoadConfigEnv(t *testing.T) {
	t.Setenv("CXR_MQTT_BROKER", "ssl://broker.example:8883")
	t.Setenv("CXR_HTTP_LISTEN", "0.0.0.0:9000")
	t.Setenv("CXR_STORE_DIR", t.TempDir())
	t.Setenv("CXR_ALERTS_OFFLINE_AFTER", "90s")
	t.Setenv("CXR_MQTT_SHARED_GROUP", "dash")
	v := viper.New()
	SetConfigDefaults(v)
	c, err := LoadConfig(v)
	if err != nil {
		t.Fatal(err)
	}
	if c.MQTT.Broker != "ssl://broker.example:8883" || c.HTTPListen != "0.0.0.0:9000" || c.Alerts.OfflineAfter != 90*time.Second {
		t.Errorf("env not applied: %+v", c)
	}
	if got := c.MQTT.SubscriptionTopic(); got != "$share/dash/cxr/+/+/#" {
		t.Errorf("shared topic %q", got)
	}
}

// TestLoadConfigZeroMinInterval: health_min_interval 0 stores every report; it must not
// turn into the 1-minute default that a zero Options field stands for.
func TestLoadConfigZeroMinInterval(t *testing.T) {
	v := viper.New()
	SetConfigDefaults(v)
	v.Set("store.dir", t.TempDir())
	v.Set("retention.health_min_interval", "0s")
	c, err := LoadConfig(v)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Options.withDefaults().Retention.HealthMinInterval; got != time.Nanosecond {
		t.Fatalf("health_min_interval 0 became %v, want every report stored (1ns)", got)
	}
}

func TestLoadConfigInvalid(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", "")
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key, value, want string
	}{
		{"mqtt.broker", "broker:1883", "mqtt.broker"},
		{"mqtt.broker", "http://broker:1883", "tcp://host:port"},
		{"mqtt.topic_prefix", "cxr/#", "mqtt.topic_prefix"},
		{"mqtt.shared_group", "a b", "mqtt.shared_group"},
		{"mqtt.ca_file", "/nonexistent/ca.pem", "mqtt.ca_file"},
		{"mqtt.cert_file", pw, "set both"},
		{"mqtt.keepalive", "fast", "mqtt.keepalive"},
		{"http.listen", "8090", "http.listen"},
		{"store.dir", "", "store.dir: required"}, // STATE_DIRECTORY is unset in tests
		{"alerts.offline_after", "5 minutes", "want a duration"},
		{"alerts.offline_after", "0s", "want a duration from 1s"},
		{"alerts.outbox_growth_reports", "17", "from 2 to 16"},
		{"alerts.temp_c", "hot", "alerts.temp_c"},
		{"alerts.temp_c", "500", "from 20 to 150"},
		{"alerts.disk_free_min_mb", "-1", "alerts.disk_free_min_mb"},
		{"retention.results_max_count", "1.5", "whole number"},
		{"retention.device_max_age", "10m", "retention.device_max_age"},
		{"intake.max_payload_kb", "0", "intake.max_payload_kb"},
		{"intake.max_devices", "0", "intake.max_devices"},
		{"commands.operators_file", "/nonexistent/operators", "commands.operators_file"},
		{"commands.reply_timeout", "0s", "commands.reply_timeout"},
		{"commands.audit_max", "5", "commands.audit_max"},
		{"alerts.temperature", "80", `unknown key "alerts.temperature"`},
	}
	for _, tc := range tests {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			v := viper.New()
			SetConfigDefaults(v)
			v.Set("store.dir", t.TempDir())
			v.Set(tc.key, tc.value)
			_, err := LoadConfig(v)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrConfig mentioning %q", err, tc.want)
			}
		})
	}
}
