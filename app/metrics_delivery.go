package app

import (
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"plivo-dlr/app/protocol"
	"plivo-dlr/storage"
)

// Label values of plivo_dlr_status_events_total and
// plivo_dlr_messages_final_total: Plivo's message states plus statusOther,
// so a carrier inventing a status cannot grow the label set.
var (
	metricStatuses = []string{
		storage.StatusQueued, storage.StatusSent, storage.StatusDelivered, storage.StatusUndelivered,
		storage.StatusFailed, storage.StatusRejected, storage.StatusRead, "received", statusOther,
	}
	finalStatuses = []string{
		storage.StatusDelivered, storage.StatusUndelivered, storage.StatusFailed, storage.StatusRejected,
		storage.StatusRead, statusOther,
	}
)

const statusOther = "other"

// Pending age buckets: the label values of plivo_dlr_messages_pending and
// their upper bounds (the last is open).
var (
	pendingAgeLabels = []string{"under_5m", "5m_to_30m", "30m_to_24h", "over_24h"}
	pendingAgeBounds = []time.Duration{5 * time.Minute, 30 * time.Minute, 24 * time.Hour}
)

// pendingRefresh is how long counted pending messages are reused: scrapes
// come every 15–60 s and the gauge is about messages stuck for minutes.
const pendingRefresh = 30 * time.Second

// deliveryMetrics counts what stored events mean for delivery. It is the
// metrics Notifier: Notify runs on the callback's goroutine after the
// commit, so it only does map lookups and atomic adds on counters resolved
// up front.
type deliveryMetrics struct {
	statusEvents  map[string]prometheus.Counter
	messagesFinal map[string]prometheus.Counter
	errorCodes    map[string]prometheus.Counter
	timeToDeliver prometheus.Histogram
}

var _ Notifier = (*deliveryMetrics)(nil)

// newDeliveryMetrics registers the event counters, the store-backed gauges
// and the Go and process collectors on reg.
func newDeliveryMetrics(reg prometheus.Registerer, store *storage.Store, now func() time.Time, log *slog.Logger) *deliveryMetrics {
	f := promauto.With(reg)
	statusEvents := f.NewCounterVec(prometheus.CounterOpts{
		Name: "plivo_dlr_status_events_total",
		Help: "Status events stored (callbacks, sends, reconciliation lookups; not duplicates), by status.",
	}, []string{"status"})
	final := f.NewCounterVec(prometheus.CounterOpts{
		Name: "plivo_dlr_messages_final_total",
		Help: "Messages that reached a final status, counted once per message, by that status.",
	}, []string{"status"})
	codes := f.NewCounterVec(prometheus.CounterOpts{
		Name: "plivo_dlr_error_codes_total",
		Help: "Messages that reached a final status with a Plivo error code, by code (other: not in Plivo's documented table).",
	}, []string{"code"})
	d := &deliveryMetrics{
		statusEvents:  map[string]prometheus.Counter{},
		messagesFinal: map[string]prometheus.Counter{},
		errorCodes:    map[string]prometheus.Counter{},
		timeToDeliver: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "plivo_dlr_time_to_deliver_seconds",
			Help:    "Time from Plivo queueing a message to its delivery report, from Plivo's own timestamps (delivered messages only).",
			Buckets: []float64{1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600},
		}),
	}
	// Resolving every series now also exports zeros from the start, so
	// rate() and ratios work before the first event of a kind.
	for _, s := range metricStatuses {
		d.statusEvents[s] = statusEvents.WithLabelValues(s)
	}
	for _, s := range finalStatuses {
		d.messagesFinal[s] = final.WithLabelValues(s)
	}
	for c := range protocol.ErrorCodes {
		d.errorCodes[c] = codes.WithLabelValues(c)
	}
	d.errorCodes[protocol.ErrorCodeOther] = codes.WithLabelValues(protocol.ErrorCodeOther)

	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "plivo_dlr_db_size_bytes",
		Help: "Size of the bbolt database file.",
	}, func() float64 { return float64(store.Size()) })
	// The store hands stored events to the server over a bounded channel
	// that never makes a commit wait; under overload it drops (the events
	// are stored; only their notifications are lost). The counters above
	// then undercount and stream clients are resynced: this says so.
	f.NewCounterFunc(prometheus.CounterOpts{
		Name: "plivo_dlr_applied_events_dropped_total",
		Help: "Stored events whose notification (metrics, stream, forwarding wake-up) was dropped because the consumer fell behind.",
	}, func() float64 { return float64(store.AppliedDropped()) })
	reg.MustRegister(
		&pendingCollector{store: store, now: now, log: log, desc: prometheus.NewDesc(
			"plivo_dlr_messages_pending",
			"Messages without a final status, by time since their last event (counted at most every 30 s).",
			[]string{"age"}, nil)},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return d
}

// Notify counts one stored event. Duplicates carry no news and are counted
// only in plivo_dlr_callbacks_total.
func (d *deliveryMetrics) Notify(ev storage.Event, res storage.ApplyResult) {
	if res.Duplicate {
		return
	}
	d.statusEvents[statusLabel(d.statusEvents, ev.Status)].Inc()
	if !res.BecameTerminal {
		return
	}
	m := &res.Message
	d.messagesFinal[statusLabel(d.messagesFinal, m.Status)].Inc()
	if code := protocol.NormalizeErrorCode(m.ErrorCode); code != "" {
		d.errorCodes[code].Inc()
	}
	if m.Status == storage.StatusDelivered {
		if ttd, ok := m.TimeToDeliver(); ok {
			d.timeToDeliver.Observe(ttd.Seconds())
		}
	}
}

// statusLabel returns status if it has a series in set, else statusOther.
func statusLabel(set map[string]prometheus.Counter, status string) string {
	if _, ok := set[status]; ok {
		return status
	}
	return statusOther
}

// NewCommitObserver registers plivo_dlr_storage_commit_duration_seconds on
// reg and returns the storage.Options.OnCommit hook that feeds it. main opens
// the store before the server exists, hence a separate constructor.
func NewCommitObserver(reg prometheus.Registerer) func(time.Duration, int) {
	h := promauto.With(reg).NewHistogram(prometheus.HistogramOpts{
		Name: "plivo_dlr_storage_commit_duration_seconds",
		Help: "Duration of one group commit of the storage writer (apply, commit, fsync), whatever the number of events it holds.",
		// An fsync'd bbolt commit is two fsyncs: about a millisecond on a
		// healthy disk, hundreds on a failing or overloaded one.
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5},
	})
	return func(d time.Duration, _ int) { h.Observe(d.Seconds()) }
}

// pendingCollector exports plivo_dlr_messages_pending from the store's
// pending index, recounted at most every pendingRefresh so a scrape costs a
// range count of the last day's pending messages at most twice a minute.
type pendingCollector struct {
	store *storage.Store
	now   func() time.Time
	log   *slog.Logger
	desc  *prometheus.Desc

	mu      sync.Mutex
	counted time.Time // when counts were taken; zero before the first count
	counts  []int
}

// Describe implements prometheus.Collector.
func (p *pendingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- p.desc }

// Collect implements prometheus.Collector.
func (p *pendingCollector) Collect(ch chan<- prometheus.Metric) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if p.counts == nil || now.Sub(p.counted) >= pendingRefresh || now.Before(p.counted) {
		counts, err := p.store.PendingByAge(now, pendingAgeBounds)
		if err != nil {
			// Keep exporting the last counts; a closed store ends the process soon.
			p.log.Warn("count pending messages", "err", err)
		} else {
			p.counts, p.counted = counts, now
		}
	}
	for i, n := range p.counts {
		ch <- prometheus.MustNewConstMetric(p.desc, prometheus.GaugeValue, float64(n), pendingAgeLabels[i])
	}
}
