package fleet

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// delayWindow is how many recent end-to-end delays the percentiles of /api/stats cover.
const delayWindow = 1 << 15

// stats counts messages by kind and outcome and keeps recent delays, for /api/stats and
// /metrics (a per-service Prometheus registry, no global state).
type stats struct {
	mu        sync.Mutex
	counts    map[[2]string]uint64
	processed uint64
	delays    []float64 // ring of seconds
	next      int
	results   int64 // stored results (approximate after pruning)

	reg      *prometheus.Registry
	messages *prometheus.CounterVec
	delay    prometheus.Histogram
	commands *prometheus.CounterVec
}

func newStats(s *Service) *stats {
	st := &stats{counts: map[[2]string]uint64{}, reg: prometheus.NewRegistry()}
	st.messages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cxr_dashboard_messages_total",
		Help: "MQTT messages by kind (status, health, result, unknown) and outcome (accepted, duplicate, stale, malformed, unknown_schema, invalid, bad_topic, oversized, device_limit, ignored, store_error).",
	}, []string{"kind", "outcome"})
	st.delay = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "cxr_dashboard_delay_seconds",
		Help:    "End-to-end delay from the ts a device embedded in a live message to its commit in the dashboard's store.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2, 5, 10, 30, 60},
	})
	st.commands = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cxr_dashboard_commands_total",
		Help: "Commands sent to devices from the dashboard, by command and outcome (ok, refused, no_reply, not_sent, invalid, denied).",
	}, []string{"command", "outcome"})
	devices := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cxr_dashboard_devices", Help: "Known devices."},
		func() float64 { s.state.mu.RLock(); defer s.state.mu.RUnlock(); return float64(len(s.state.devices)) })
	offline := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cxr_dashboard_devices_offline", Help: "Devices whose status is offline."},
		func() float64 {
			s.state.mu.RLock()
			defer s.state.mu.RUnlock()
			n := 0
			for _, d := range s.state.devices {
				if d.State == "offline" {
					n++
				}
			}
			return float64(n)
		})
	alerts := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cxr_dashboard_alerts", Help: "Active alerts."},
		func() float64 { return float64(len(s.state.Alerts())) })
	queue := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cxr_dashboard_queue", Help: "Messages waiting for the processor."},
		func() float64 { return float64(len(s.in)) })
	connected := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cxr_dashboard_mqtt_connected", Help: "1 while connected to the broker."},
		func() float64 {
			if s.Connected() {
				return 1
			}
			return 0
		})
	st.reg.MustRegister(st.messages, st.delay, st.commands, devices, offline, alerts, queue, connected,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return st
}

func (st *stats) record(outs []outcome, _ time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.delays == nil {
		st.delays = make([]float64, 0, delayWindow)
	}
	for _, o := range outs {
		st.counts[[2]string{o.kind, o.result}]++
		st.processed++
		st.messages.WithLabelValues(o.kind, o.result).Inc()
		if o.delay >= 0 {
			sec := o.delay.Seconds()
			st.delay.Observe(sec)
			if len(st.delays) < delayWindow {
				st.delays = append(st.delays, sec)
			} else {
				st.delays[st.next] = sec
				st.next = (st.next + 1) % delayWindow
			}
		}
	}
}

func (st *stats) addResultCount(n int) {
	st.mu.Lock()
	st.results += int64(n)
	st.mu.Unlock()
}

// Stats is the body of GET /api/stats.
type Stats struct {
	UptimeS   float64 `json:"uptime_s"`
	Connected bool    `json:"mqtt_connected"`
	Devices   int     `json:"devices"`
	Alerts    int     `json:"alerts"`
	Queue     int     `json:"queue"`
	// Processed counts every message handled, whatever its outcome.
	Processed uint64 `json:"processed"`
	// Messages counts by "kind/outcome", e.g. "result/duplicate", "unknown/bad_topic".
	Messages map[string]uint64 `json:"messages"`
	// Rejected sums the outcomes that mean bad input, by outcome.
	Rejected map[string]uint64 `json:"rejected"`
	Delay    DelayStats        `json:"delay_ms"`
	HeapB    uint64            `json:"heap_bytes"`
	RSSB     uint64            `json:"rss_bytes"`
	Gorout   int               `json:"goroutines"`
}

// DelayStats summarise the end-to-end delays of the most recent live messages (up to 32768).
type DelayStats struct {
	Samples int     `json:"samples"`
	P50     float64 `json:"p50"`
	P95     float64 `json:"p95"`
	Max     float64 `json:"max"`
}

func (s *Service) snapshotStats() Stats {
	st := s.stats
	st.mu.Lock()
	out := Stats{Processed: st.processed, Messages: map[string]uint64{}, Rejected: map[string]uint64{}}
	for k, n := range st.counts {
		out.Messages[k[0]+"/"+k[1]] += n
		switch k[1] {
		case outAccepted, outDuplicate, outStale, "ignored":
		default:
			out.Rejected[k[1]] += n
		}
	}
	d := slices.Clone(st.delays)
	st.mu.Unlock()
	out.Delay = percentiles(d)
	out.UptimeS = s.opts.Now().Sub(s.started).Seconds()
	out.Connected = s.Connected()
	s.state.mu.RLock()
	out.Devices = len(s.state.devices)
	s.state.mu.RUnlock()
	out.Alerts = len(s.state.Alerts())
	out.Queue = len(s.in)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	out.HeapB = ms.HeapAlloc
	out.RSSB = rss()
	out.Gorout = runtime.NumGoroutine()
	return out
}

func percentiles(secs []float64) DelayStats {
	if len(secs) == 0 {
		return DelayStats{}
	}
	slices.Sort(secs)
	at := func(q float64) float64 { return 1000 * secs[min(len(secs)-1, int(q*float64(len(secs))))] }
	return DelayStats{Samples: len(secs), P50: at(0.50), P95: at(0.95), Max: 1000 * secs[len(secs)-1]}
}

// rss reads the resident set size from /proc (Linux); 0 elsewhere.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}
