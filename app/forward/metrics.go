package forward

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Results, the label values of plivo_dlr_forward_deliveries_total.
const (
	resultDelivered = "delivered"
	resultRetried   = "retried"
	resultDead      = "dead"
)

// Metrics are the forwarding collectors.
type Metrics struct {
	reg        prometheus.Registerer
	deliveries *prometheus.CounterVec
	duration   *prometheus.HistogramVec
}

// NewMetrics registers the forwarding collectors on reg. Pass it in
// Options.Metrics; every configured sink's series then start at zero.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		reg: reg,
		deliveries: f.NewCounterVec(prometheus.CounterOpts{
			Name: "plivo_dlr_forward_deliveries_total",
			Help: "Forwarding attempts by sink and result: delivered, retried (failed, will retry), dead (dead-lettered).",
		}, []string{"sink", "result"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "plivo_dlr_forward_attempt_duration_seconds",
			Help:    "Time of one forwarding attempt, by sink.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"sink"}),
	}
}

func (m *Metrics) addSink(mgr *Manager, name string) {
	for _, r := range []string{resultDelivered, resultRetried, resultDead} {
		m.deliveries.WithLabelValues(name, r)
	}
	m.duration.WithLabelValues(name)
	// Lag and age are read from the store at scrape time, so they are exact
	// even for a sink that is not running.
	gauge := func(metric, help string, val func(SinkStatus) float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        metric,
			Help:        help,
			ConstLabels: prometheus.Labels{"sink": name},
		}, func() float64 {
			st, err := mgr.status(mgr.byName[name])
			if err != nil {
				return 0
			}
			return val(st)
		}))
	}
	gauge("plivo_dlr_forward_lag_events", "Events stored but not yet delivered to the sink.",
		func(st SinkStatus) float64 { return float64(st.Lag) })
	gauge("plivo_dlr_forward_oldest_pending_seconds", "Age of the oldest event not yet delivered to the sink (0 when none).",
		func(st SinkStatus) float64 { return st.OldestPendingSeconds })
}

func (m *Metrics) result(sink, result string) { m.deliveries.WithLabelValues(sink, result).Inc() }

func (m *Metrics) attempt(sink string, d time.Duration) {
	m.duration.WithLabelValues(sink).Observe(d.Seconds())
}
