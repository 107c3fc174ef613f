package device

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cxr-edge/cxr-edge/telemetry"
)

// Metrics are the pipeline's Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	Results *prometheus.CounterVec   // cxr_results_total{label}
	Stage   *prometheus.HistogramVec // cxr_stage_seconds{stage}
}

// NewMetrics creates the metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cxr_results_total",
			Help: "Results committed, by label (pneumonia, normal, unreadable).",
		}, []string{"label"}),
		Stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cxr_stage_seconds",
			Help:    "Time per pipeline stage (decode, preprocess, infer, total).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16), // 1 ms … 33 s
		}, []string{"stage"}),
	}
	if reg != nil {
		reg.MustRegister(m.Results, m.Stage)
	}
	return m
}

func (m *Metrics) observe(r telemetry.Result) {
	if m == nil {
		return
	}
	m.Results.WithLabelValues(r.Label).Inc()
	for stage, v := range map[string]float64{
		"decode": r.TimingsMs.Decode, "preprocess": r.TimingsMs.Preprocess,
		"infer": r.TimingsMs.Infer, "total": r.TimingsMs.Total,
	} {
		if v > 0 {
			m.Stage.WithLabelValues(stage).Observe(v / 1000)
		}
	}
}
