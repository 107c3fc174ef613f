package telemetry_test

import (
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/telemetry"
)

func TestCollectorOptionsDefaults(t *testing.T) {
	d := telemetry.CollectorOptions{}.WithDefaults()
	if d.DiskPath != "/" || d.SysRoot != "/sys" || d.Vcgencmd != "vcgencmd" {
		t.Fatalf("defaults %+v", d)
	}
}

// TestCollectorRealMachine reads this machine's figures and checks they are plausible.
func TestCollectorRealMachine(t *testing.T) {
	c := telemetry.NewCollector(telemetry.CollectorOptions{DiskPath: t.TempDir()})
	ctx := context.Background()
	if _, err := c.System(ctx); err != nil {
		t.Fatal(err)
	}
	// Burn a little CPU so the second reading (a delta) has something to measure.
	deadline := time.Now().Add(50 * time.Millisecond)
	for x := 0.0; time.Now().Before(deadline); x += math.Sqrt(x + 1) {
	}
	s, err := c.System(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("system: %+v", s)
	switch {
	case s.UptimeS <= 0:
		t.Errorf("uptime %v", s.UptimeS)
	case s.CPUPct < 0 || s.CPUPct > 100:
		t.Errorf("cpu %v%%", s.CPUPct)
	case s.Load1 < 0:
		t.Errorf("load1 %v", s.Load1)
	case s.MemTotal < 64<<20 || s.MemUsed == 0 || s.MemUsed > s.MemTotal:
		t.Errorf("memory %d of %d", s.MemUsed, s.MemTotal)
	case s.DiskFree == 0:
		t.Errorf("disk free 0")
	}
	if s.TempC != nil && (*s.TempC < -40 || *s.TempC > 150) {
		t.Errorf("temperature %v", *s.TempC)
	}
	_, sysErr := os.Stat("/sys/devices/platform/soc/soc:firmware/get_throttled")
	_, vcErr := exec.LookPath("vcgencmd")
	if sysErr != nil && vcErr != nil && s.Throttled != nil {
		t.Errorf("throttled reported without a Raspberry Pi source: %v", *s.Throttled)
	}
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSoCTemperature(t *testing.T) {
	z := func(i int, f string) string {
		return filepath.Join("class/thermal", "thermal_zone"+string(rune('0'+i)), f)
	}
	cases := []struct {
		name  string
		files map[string]string
		want  *float64
	}{
		{"none", nil, nil},
		{"raspberry pi", map[string]string{z(0, "type"): "cpu-thermal\n", z(0, "temp"): "48312\n"}, ptr(48.312)},
		{"skips other zones", map[string]string{z(0, "type"): "acpitz\n", z(0, "temp"): "30000\n",
			z(1, "type"): "soc\n", z(1, "temp"): "61000\n"}, ptr(61.0)},
		{"only unrelated zones", map[string]string{z(0, "type"): "battery\n", z(0, "temp"): "30000\n"}, nil},
		{"garbage then good", map[string]string{z(0, "type"): "cpu-thermal\n", z(0, "temp"): "n/a\n",
			z(1, "type"): "CPU-therm\n", z(1, "temp"): "-2500\n"}, ptr(-2.5)},
		{"implausible", map[string]string{z(0, "type"): "x86_pkg_temp\n", z(0, "temp"): "1000000\n"}, nil},
	}
	for _, c := range cases {
		root := t.TempDir()
		writeFiles(t, root, c.files)
		got := telemetry.SoCTemperature(root)
		if (got == nil) != (c.want == nil) || got != nil && math.Abs(*got-*c.want) > 1e-9 {
			t.Errorf("%s: got %v want %v", c.name, deref(got), deref(c.want))
		}
	}
}

func TestParseThrottled(t *testing.T) {
	cases := []struct {
		in      string
		want    bool
		wantErr bool
	}{
		{"throttled=0x0\n", false, false},
		{"throttled=0x50000\n", false, false}, // happened before, not now
		{"throttled=0x50005\n", true, false},
		{"4", true, false},
		{"80008", true, false},
		{"throttled=", false, true},
		{"hello", false, true},
		{"", false, true},
	}
	for _, c := range cases {
		got, err := telemetry.ParseThrottled(c.in)
		if (err != nil) != c.wantErr || got != c.want {
			t.Errorf("ParseThrottled(%q) = %v, %v", c.in, got, err)
		}
	}
}

func TestThrottledSources(t *testing.T) {
	ctx := context.Background()
	// sysfs first.
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"devices/platform/soc/soc:firmware/get_throttled": "50005\n"})
	s, _ := telemetry.NewCollector(telemetry.CollectorOptions{SysRoot: root, Vcgencmd: "-"}).System(ctx)
	if s.Throttled == nil || !*s.Throttled {
		t.Fatalf("sysfs throttled: %v", deref(s.Throttled))
	}
	// vcgencmd when sysfs has nothing (a stand-in script: this machine is not a Pi).
	bin := filepath.Join(t.TempDir(), "vcgencmd")
	writeFiles(t, filepath.Dir(bin), map[string]string{"vcgencmd": "#!/bin/sh\n[ \"$1\" = get_throttled ] && echo throttled=0x20000\n"})
	os.Chmod(bin, 0o755)
	s, _ = telemetry.NewCollector(telemetry.CollectorOptions{SysRoot: t.TempDir(), Vcgencmd: bin}).System(ctx)
	if s.Throttled == nil || *s.Throttled {
		t.Fatalf("vcgencmd throttled: %v", deref(s.Throttled))
	}
	// Neither: unknown.
	s, _ = telemetry.NewCollector(telemetry.CollectorOptions{SysRoot: t.TempDir(), Vcgencmd: "-"}).System(ctx)
	if s.Throttled != nil {
		t.Fatalf("throttled without a source: %v", *s.Throttled)
	}
}

func TestLatencies(t *testing.T) {
	l := telemetry.NewLatencies(0)
	if p := l.Percentiles(50, 95); p[0] != 0 || p[1] != 0 {
		t.Fatalf("empty window: %v", p)
	}
	for i := 100; i >= 1; i-- { // order must not matter
		l.Observe(time.Duration(i) * time.Millisecond)
	}
	if p := l.Percentiles(50, 95, 100, 0); p[0] != 50 || p[1] != 95 || p[2] != 100 || p[3] != 1 {
		t.Fatalf("1..100 ms: %v", p)
	}
	// The ring forgets old values: window 10 after 1..20 holds 11..20.
	w := telemetry.NewLatencies(10)
	for i := 1; i <= 20; i++ {
		w.Observe(time.Duration(i) * time.Millisecond)
	}
	if p := w.Percentiles(50, 95); p[0] != 15 || p[1] != 20 {
		t.Fatalf("window of 10 after 1..20: %v", p)
	}
	one := telemetry.NewLatencies(4)
	one.Observe(1500 * time.Microsecond)
	if p := one.Percentiles(50, 95); p[0] != 1.5 || p[1] != 1.5 {
		t.Fatalf("single value: %v", p)
	}
}

func TestNewHealth(t *testing.T) {
	temp, thr := 50.5, false
	ts := time.Date(2026, 5, 1, 12, 0, 0, 0, time.FixedZone("x", 3600))
	h := telemetry.NewHealth(ts, telemetry.System{UptimeS: 9, CPUPct: 12, MemUsed: 1, MemTotal: 2, DiskFree: 3, TempC: &temp, Throttled: &thr},
		telemetry.Counters{Queue: 4, Outbox: 5, Scored: 6, Failed: 7, InferMsP50: 8, InferMsP95: 9, Indicator: "busy"})
	if h.Schema != telemetry.SchemaHealth || h.TS.Location() != time.UTC || h.Outbox != 5 || *h.TempC != 50.5 || h.Indicator != "busy" || h.InferMsP95 != 9 {
		t.Fatalf("health %+v", h)
	}
}

type healthFunc func() telemetry.Health

func (f healthFunc) Health(context.Context) (telemetry.Health, error) { return f(), nil }

func TestMetricsHandler(t *testing.T) {
	temp := 51.5
	h := telemetry.Health{UptimeS: 10, CPUPct: 5, MemUsed: 100, MemTotal: 200, DiskFree: 300, TempC: &temp,
		Queue: 1, Outbox: 2, Scored: 30, Failed: 3, InferMsP50: 40, InferMsP95: 95, Indicator: "pneumonia"}
	srv := httptest.NewServer(telemetry.MetricsHandler(healthFunc(func() telemetry.Health { return h })))
	defer srv.Close()
	scrape := func() string {
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		return string(b)
	}
	body := scrape()
	for _, line := range []string{
		"cxr_outbox_depth 2", "cxr_queue_depth 1", "cxr_scored_total 30", "cxr_failed_total 3",
		`cxr_inference_milliseconds{quantile="0.95"} 95`, `cxr_indicator_state{state="pneumonia"} 1`,
		"cxr_soc_temperature_celsius 51.5", "cxr_disk_free_bytes 300", "go_goroutines",
	} {
		if !strings.Contains(body, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if strings.Contains(body, "cxr_throttled ") {
		t.Error("throttled exported although unknown")
	}
	// Figures are read at each scrape.
	h.Outbox, h.TempC = 7, nil
	body = scrape()
	if !strings.Contains(body, "cxr_outbox_depth 7") || strings.Contains(body, "cxr_soc_temperature_celsius ") {
		t.Error("metrics not refreshed at scrape")
	}
	// Registries are independent: a second one does not collide with the first.
	telemetry.NewMetricsRegistry(healthFunc(func() telemetry.Health { return h }))
}

func FuzzParseThrottled(f *testing.F) {
	f.Add("throttled=0x50005\n")
	f.Fuzz(func(t *testing.T, s string) {
		now, err := telemetry.ParseThrottled(s)
		if err != nil && now {
			t.Fatalf("error with throttled=true for %q", s)
		}
	})
}

func FuzzParseMilliCelsius(f *testing.F) {
	f.Add("48312\n")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := telemetry.ParseMilliCelsius(s)
		if err == nil && (c < -40 || c > 150 || math.IsNaN(c)) {
			t.Fatalf("accepted implausible %v from %q", c, s)
		}
	})
}

func ptr(v float64) *float64 { return &v }

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}
