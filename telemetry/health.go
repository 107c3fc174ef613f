package telemetry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/host"
	"github.com/shirou/gopsutil/v4/load"
	"github.com/shirou/gopsutil/v4/mem"
)

// CollectorOptions configure a Collector. Zero fields take the documented defaults.
type CollectorOptions struct {
	// DiskPath is a directory on the filesystem whose free space is reported: the store
	// directory. Default "/".
	DiskPath string
	// SysRoot is where sysfs is mounted (thermal zones, Raspberry Pi firmware). Default
	// "/sys"; tests point it at a prepared directory.
	SysRoot string
	// Vcgencmd is the Raspberry Pi firmware tool asked for throttling when sysfs does not
	// say. Default "vcgencmd" looked up on PATH; "-" never runs it.
	Vcgencmd string
}

// WithDefaults returns o with every zero field set to its default.
func (o CollectorOptions) WithDefaults() CollectorOptions {
	if o.DiskPath == "" {
		o.DiskPath = "/"
	}
	if o.SysRoot == "" {
		o.SysRoot = "/sys"
	}
	if o.Vcgencmd == "" {
		o.Vcgencmd = "vcgencmd"
	}
	return o
}

// System are the machine's own health figures.
type System struct {
	UptimeS  float64 // since boot
	CPUPct   float64 // all cores, since the previous call (since boot on the first)
	Load1    float64
	MemUsed  uint64 // total minus available
	MemTotal uint64
	DiskFree uint64   // available to unprivileged users on DiskPath's filesystem
	TempC    *float64 // CPU/SoC temperature; nil when the device has no such sensor
	// Throttled is whether the Raspberry Pi firmware currently reports under-voltage,
	// frequency capping or throttling; nil when not readable (not a Pi).
	Throttled *bool
}

// Collector reads the machine's health with gopsutil and sysfs.
type Collector struct {
	opts CollectorOptions

	mu      sync.Mutex
	prevCPU *cpu.TimesStat // for CPU % between calls
}

// NewCollector returns a collector.
func NewCollector(opts CollectorOptions) *Collector {
	return &Collector{opts: opts.WithDefaults()}
}

// System reads the current figures. Every figure is read independently: when some cannot
// be read the others are still returned, together with an error naming what failed.
func (c *Collector) System(ctx context.Context) (System, error) {
	var s System
	var errs []error
	if up, err := host.UptimeWithContext(ctx); err != nil {
		errs = append(errs, fmt.Errorf("uptime: %w", err))
	} else {
		s.UptimeS = float64(up)
	}
	if pct, err := c.cpuPercent(ctx); err != nil {
		errs = append(errs, fmt.Errorf("cpu: %w", err))
	} else {
		s.CPUPct = pct
	}
	if l, err := load.AvgWithContext(ctx); err != nil {
		errs = append(errs, fmt.Errorf("load: %w", err))
	} else {
		s.Load1 = l.Load1
	}
	if m, err := mem.VirtualMemoryWithContext(ctx); err != nil {
		errs = append(errs, fmt.Errorf("memory: %w", err))
	} else {
		s.MemTotal = m.Total
		s.MemUsed = m.Total - min(m.Available, m.Total)
	}
	if d, err := disk.UsageWithContext(ctx, c.opts.DiskPath); err != nil {
		errs = append(errs, fmt.Errorf("disk %s: %w", c.opts.DiskPath, err))
	} else {
		s.DiskFree = d.Free
	}
	s.TempC = SoCTemperature(c.opts.SysRoot)
	s.Throttled = c.throttled(ctx)
	return s, errors.Join(errs...)
}

func (c *Collector) cpuPercent(ctx context.Context) (float64, error) {
	ts, err := cpu.TimesWithContext(ctx, false)
	if err != nil {
		return 0, err
	}
	if len(ts) == 0 {
		return 0, errors.New("no CPU times")
	}
	cur := ts[0]
	c.mu.Lock()
	prev := c.prevCPU
	c.prevCPU = &cur
	c.mu.Unlock()
	busy := func(t cpu.TimesStat) (busy, total float64) {
		total = t.User + t.System + t.Idle + t.Nice + t.Iowait + t.Irq + t.Softirq + t.Steal
		return total - t.Idle - t.Iowait, total
	}
	b1, t1 := busy(cur)
	if prev != nil {
		b0, t0 := busy(*prev)
		b1, t1 = b1-b0, t1-t0
	}
	if t1 <= 0 {
		return 0, nil
	}
	return math.Max(0, math.Min(100, 100*b1/t1)), nil
}

// socZone reports whether a thermal zone type names the CPU or SoC sensor (Raspberry Pi
// "cpu-thermal", Jetson "CPU-therm", Rockchip "soc-thermal", x86 "x86_pkg_temp", …).
func socZone(typ string) bool {
	t := strings.ToLower(strings.TrimSpace(typ))
	return strings.Contains(t, "cpu") || strings.HasPrefix(t, "soc") || t == "x86_pkg_temp"
}

// SoCTemperature reads the CPU/SoC temperature in °C from the thermal zones under
// sysRoot/class/thermal, or nil when there is no such zone or no plausible reading.
func SoCTemperature(sysRoot string) *float64 {
	zones, _ := filepath.Glob(filepath.Join(sysRoot, "class", "thermal", "thermal_zone*"))
	slices.Sort(zones)
	for _, z := range zones {
		typ, err := os.ReadFile(filepath.Join(z, "type"))
		if err != nil || !socZone(string(typ)) {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(z, "temp"))
		if err != nil {
			continue
		}
		if c, err := ParseMilliCelsius(string(raw)); err == nil {
			return &c
		}
	}
	return nil
}

// ParseMilliCelsius parses a sysfs thermal reading (millidegrees Celsius, e.g. "48312\n")
// and rejects values no working sensor gives (below -40 °C or above 150 °C).
func ParseMilliCelsius(s string) (float64, error) {
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("thermal reading %q: %w", s, err)
	}
	c := float64(v) / 1000
	if c < -40 || c > 150 {
		return 0, fmt.Errorf("thermal reading %q: %.1f °C is implausible", s, c)
	}
	return c, nil
}

// throttledNow are the get_throttled bits that describe the present (under-voltage, ARM
// frequency capped, throttled, soft temperature limit); higher bits say "has occurred".
const throttledNow = 0xF

// ParseThrottled parses the Raspberry Pi firmware's throttling word, from vcgencmd
// ("throttled=0x50005") or sysfs ("50005"), and reports whether it is throttled now.
func ParseThrottled(s string) (bool, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimPrefix(t, "throttled=")
	t = strings.TrimPrefix(strings.TrimPrefix(t, "0x"), "0X")
	v, err := strconv.ParseUint(t, 16, 32)
	if err != nil || t == "" {
		return false, fmt.Errorf("throttled word %q: not hexadecimal", s)
	}
	return v&throttledNow != 0, nil
}

func (c *Collector) throttled(ctx context.Context) *bool {
	if raw, err := os.ReadFile(filepath.Join(c.opts.SysRoot, "devices", "platform", "soc", "soc:firmware", "get_throttled")); err == nil {
		if v, err := ParseThrottled(string(raw)); err == nil {
			return &v
		}
	}
	if c.opts.Vcgencmd == "-" {
		return nil
	}
	bin, err := exec.LookPath(c.opts.Vcgencmd)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "get_throttled").Output()
	if err != nil {
		return nil
	}
	if v, err := ParseThrottled(string(out)); err == nil {
		return &v
	}
	return nil
}

// Counters are the daemon's own figures that go into a health payload.
type Counters struct {
	Queue      int    // inputs waiting to be scored
	Outbox     int    // results waiting for the broker
	Scored     uint64 // since start
	Failed     uint64 // since start
	InferMsP50 float64
	InferMsP95 float64
	Indicator  string // indicator state name
}

// NewHealth combines system figures and the daemon's counters into a health payload.
func NewHealth(ts time.Time, s System, c Counters) Health {
	return Health{Schema: SchemaHealth, TS: ts.UTC(), UptimeS: s.UptimeS, CPUPct: s.CPUPct, Load1: s.Load1,
		MemUsed: s.MemUsed, MemTotal: s.MemTotal, DiskFree: s.DiskFree, TempC: s.TempC, Throttled: s.Throttled,
		Queue: c.Queue, Outbox: c.Outbox, Scored: c.Scored, Failed: c.Failed,
		InferMsP50: c.InferMsP50, InferMsP95: c.InferMsP95, Indicator: c.Indicator}
}

// DefaultLatencyWindow is the number of recent inference times Latencies keeps.
const DefaultLatencyWindow = 256

// Latencies keeps the most recent inference durations in a fixed-size ring, so
// percentiles describe current behaviour in constant memory. Safe for concurrent use.
type Latencies struct {
	mu   sync.Mutex
	ring []float64 // milliseconds
	n    int       // filled entries
	next int
}

// NewLatencies returns a ring of the given size (<= 0: DefaultLatencyWindow).
func NewLatencies(size int) *Latencies {
	if size <= 0 {
		size = DefaultLatencyWindow
	}
	return &Latencies{ring: make([]float64, size)}
}

// Observe records one duration.
func (l *Latencies) Observe(d time.Duration) {
	l.mu.Lock()
	l.ring[l.next] = float64(d) / float64(time.Millisecond)
	l.next = (l.next + 1) % len(l.ring)
	l.n = min(l.n+1, len(l.ring))
	l.mu.Unlock()
}

// Percentiles returns the nearest-rank percentiles (0–100) of the window in milliseconds,
// in the order asked; zeros when nothing was observed.
func (l *Latencies) Percentiles(ps ...float64) []float64 {
	l.mu.Lock()
	v := slices.Clone(l.ring[:l.n])
	l.mu.Unlock()
	out := make([]float64, len(ps))
	if len(v) == 0 {
		return out
	}
	slices.Sort(v)
	for i, p := range ps {
		rank := int(math.Ceil(p / 100 * float64(len(v))))
		out[i] = v[min(max(rank, 1), len(v))-1]
	}
	return out
}

// HealthFunc adapts a function to HealthSource.
type HealthFunc func(ctx context.Context) (Health, error)

// Health implements HealthSource.
func (f HealthFunc) Health(ctx context.Context) (Health, error) { return f(ctx) }
