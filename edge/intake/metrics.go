package intake

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the intake's Prometheus counters. A nil *Metrics records nothing.
type Metrics struct {
	Received *prometheus.CounterVec // cxr_intake_received_total{source}
	Rejected *prometheus.CounterVec // cxr_intake_rejected_total{source,reason}
}

// NewMetrics creates the counters and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cxr_intake_received_total",
			Help: "Inputs accepted for scoring, by source.",
		}, []string{"source"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cxr_intake_rejected_total",
			Help: "Inputs refused before scoring (too large, empty, unsupported format), by source and reason.",
		}, []string{"source", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.Received, m.Rejected)
	}
	return m
}

func (m *Metrics) received(source string) {
	if m != nil {
		m.Received.WithLabelValues(source).Inc()
	}
}

func (m *Metrics) rejected(source string, why error) {
	if m == nil {
		return
	}
	reason := "other"
	switch {
	case errors.Is(why, ErrTooLarge):
		reason = "too_large"
	case errors.Is(why, ErrEmpty):
		reason = "empty"
	case errors.Is(why, ErrUnsupported):
		reason = "unsupported"
	}
	m.Rejected.WithLabelValues(source, reason).Inc()
}
