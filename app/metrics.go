package app

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"plivo-dlr/app/protocol"
)

// Callback results, the label values of plivo_dlr_callbacks_total.
const (
	resultStored           = "stored"
	resultDuplicate        = "duplicate"
	resultInvalidSignature = "invalid_signature"
	resultReplayed         = "replayed"
	resultMalformed        = "malformed"
	resultError            = "error"
)

// serverMetrics holds the collectors of plivo-dlr, registered on the registerer
// given to newServerMetrics so each test can use a fresh registry.
type serverMetrics struct {
	callbacks *prometheus.CounterVec
	// callbackResults holds callbacks' counter of each result, looked up
	// once: WithLabelValues hashes the label and takes a lock per call.
	callbackResults   map[string]prometheus.Counter
	signatureFailures *prometheus.CounterVec
	callbackDuration  prometheus.Histogram
	websocketClients  prometheus.Gauge
	messagesSent      *prometheus.CounterVec
	reconciles        *prometheus.CounterVec
	unparsedTimes     *prometheus.CounterVec
}

// callbackResult is the plivo_dlr_callbacks_total counter of result.
func (m *serverMetrics) callbackResult(result string) prometheus.Counter {
	if c, ok := m.callbackResults[result]; ok {
		return c
	}
	return m.callbacks.WithLabelValues(result)
}

// newServerMetrics creates and registers the collectors on reg.
func newServerMetrics(reg prometheus.Registerer) *serverMetrics {
	f := promauto.With(reg)
	m := &serverMetrics{
		callbacks: f.NewCounterVec(prometheus.CounterOpts{
			Name: "plivo_dlr_callbacks_total",
			Help: "Delivery-status callbacks received, by outcome.",
		}, []string{"result"}),
		signatureFailures: f.NewCounterVec(prometheus.CounterOpts{
			Name: "plivo_dlr_signature_failures_total",
			Help: "Callbacks rejected by the signature check, by header set checked and likely cause (missing, url_mismatch, token_or_forgery).",
		}, []string{"header_set", "cause"}),
		callbackDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "plivo_dlr_callback_duration_seconds",
			Help:    "Time from receiving a callback to answering it, including the durable commit.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 8},
		}),
		messagesSent: f.NewCounterVec(prometheus.CounterOpts{
			Name: "plivo_dlr_messages_sent_total",
			Help: "Send requests, by message type (sms, mms) and result (accepted, invalid, rejected by Plivo, error reaching Plivo, opted_out: a recipient is on the opt-out list).",
		}, []string{"type", "result"}),
		reconciles: f.NewCounterVec(prometheus.CounterOpts{
			Name: "plivo_dlr_reconcile_total",
			Help: "Message lookups at Plivo for messages whose callbacks did not come, by result.",
		}, []string{"result"}),
		unparsedTimes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "plivo_dlr_callback_unparsed_times_total",
			Help: "Timestamps of stored callbacks in a spelling plivo-dlr does not read, by field: stored empty, the raw value kept in the event's payload.",
		}, []string{"field"}),
	}
	m.websocketClients = f.NewGauge(prometheus.GaugeOpts{
		Name: "plivo_dlr_websocket_clients",
		Help: "Dashboard WebSocket clients connected now.",
	})
	// Every known label combination exists at zero from the start.
	// Prometheus takes a new series' first sample as its baseline, so a
	// series created on first use hides that first increment from
	// increase(): after a restart the alerts would miss the very events
	// (a few bad signatures, one accepted send) they exist for.
	m.callbackResults = make(map[string]prometheus.Counter)
	for _, r := range []string{resultStored, resultDuplicate, resultInvalidSignature, resultReplayed, resultMalformed, resultError} {
		m.callbackResults[r] = m.callbacks.WithLabelValues(r)
	}
	for _, hs := range signatureHeaderSets {
		for _, c := range signatureCauses {
			m.signatureFailures.WithLabelValues(hs, c)
		}
	}
	for _, typ := range []string{"sms", "mms"} {
		for _, r := range []string{sendAccepted, sendInvalid, sendRejected, sendError, sendOptedOut} {
			m.messagesSent.WithLabelValues(typ, r)
		}
	}
	for _, r := range []string{reconcileResolved, reconcilePending, reconcileGaveUp, reconcileNotFound, reconcileError} {
		m.reconciles.WithLabelValues(r)
	}
	for _, f := range protocol.TimeFields {
		m.unparsedTimes.WithLabelValues(f)
	}
	return m
}

// The label values of plivo_dlr_signature_failures_total (see rejectSignature).
var (
	signatureHeaderSets = []string{"none", protocol.SchemeV2, protocol.SchemeV3}
	signatureCauses     = []string{causeMissing, causeURLMismatch, causeTokenOrForgery, causeUndiagnosed}
)

const (
	causeMissing        = "missing"
	causeURLMismatch    = "url_mismatch"
	causeTokenOrForgery = "token_or_forgery"
	causeUndiagnosed    = "undiagnosed"
)
