package telemetry

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricsCollector exposes the health payload's figures to Prometheus, read from the
// HealthSource at each scrape so /metrics and MQTT health never disagree.
type metricsCollector struct {
	src     HealthSource
	timeout time.Duration

	uptime, cpu, load1, memUsed, memTotal, diskFree, temp, throttled *prometheus.Desc
	queue, outbox, scored, failed, infer, indicator                  *prometheus.Desc
}

func newMetricsCollector(src HealthSource) *metricsCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("cxr_"+name, help, labels, nil)
	}
	return &metricsCollector{
		src:       src,
		timeout:   5 * time.Second,
		uptime:    d("uptime_seconds", "Time since the device booted."),
		cpu:       d("cpu_percent", "CPU use over all cores since the previous reading."),
		load1:     d("load1", "One-minute load average."),
		memUsed:   d("memory_used_bytes", "Memory in use (total minus available)."),
		memTotal:  d("memory_total_bytes", "Total memory."),
		diskFree:  d("disk_free_bytes", "Free space on the store's filesystem."),
		temp:      d("soc_temperature_celsius", "CPU/SoC temperature (absent without a sensor)."),
		throttled: d("throttled", "1 when the Raspberry Pi firmware reports throttling now (absent when not readable)."),
		queue:     d("queue_depth", "Inputs waiting to be scored."),
		outbox:    d("outbox_depth", "Results waiting for the broker's acknowledgement."),
		scored:    d("scored_total", "Inputs scored since the daemon started."),
		failed:    d("failed_total", "Inputs that could not be scored since the daemon started."),
		infer:     d("inference_milliseconds", "Inference time over the recent window.", "quantile"),
		indicator: d("indicator_state", "The indicator's current state (1 for the state named).", "state"),
	}
}

func (m *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.uptime, m.cpu, m.load1, m.memUsed, m.memTotal, m.diskFree, m.temp,
		m.throttled, m.queue, m.outbox, m.scored, m.failed, m.infer, m.indicator} {
		ch <- d
	}
}

func (m *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	h, err := m.src.Health(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(m.uptime, err)
		return
	}
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	g(m.uptime, h.UptimeS)
	g(m.cpu, h.CPUPct)
	g(m.load1, h.Load1)
	g(m.memUsed, float64(h.MemUsed))
	g(m.memTotal, float64(h.MemTotal))
	g(m.diskFree, float64(h.DiskFree))
	if h.TempC != nil {
		g(m.temp, *h.TempC)
	}
	if h.Throttled != nil {
		v := 0.0
		if *h.Throttled {
			v = 1
		}
		g(m.throttled, v)
	}
	g(m.queue, float64(h.Queue))
	g(m.outbox, float64(h.Outbox))
	ch <- prometheus.MustNewConstMetric(m.scored, prometheus.CounterValue, float64(h.Scored))
	ch <- prometheus.MustNewConstMetric(m.failed, prometheus.CounterValue, float64(h.Failed))
	g(m.infer, h.InferMsP50, "0.5")
	g(m.infer, h.InferMsP95, "0.95")
	if h.Indicator != "" {
		g(m.indicator, 1, h.Indicator)
	}
}

// NewMetricsRegistry returns a registry (not the global default) holding the device's
// health figures, read from src at each scrape, plus Go runtime and process metrics.
func NewMetricsRegistry(src HealthSource) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newMetricsCollector(src),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// MetricsHandler serves /metrics for src from its own registry.
func MetricsHandler(src HealthSource) http.Handler {
	return promhttp.HandlerFor(NewMetricsRegistry(src), promhttp.HandlerOpts{})
}
