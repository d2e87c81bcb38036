package app

import (
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// initMetrics turns the delivery metrics on when metrics.enabled: the
// notifier counting stored events and the store-backed collectors. With
// metrics off nothing is counted per callback and /metrics is not served.
func (s *Server) initMetrics() {
	if !s.cfg.Metrics.Enabled {
		return
	}
	s.AddNotifier(newDeliveryMetrics(s.registry, s.store, s.now, s.log.With("component", "metrics")))
	s.AddNotifier(newInboundMetrics(s.registry, s.store))
}

// metricsRoutes serves /metrics on the main listener, unless metrics are off
// or metrics.listen gives them a listener of their own (see MetricsHandler).
func (s *Server) metricsRoutes() {
	if !s.cfg.Metrics.Enabled || s.cfg.Metrics.Listen != "" {
		return
	}
	h := fasthttpadaptor.NewFastHTTPHandler(s.MetricsHandler())
	s.fiber.Get("/metrics", func(c *fiber.Ctx) error {
		h(c.Context())
		return nil
	})
}

// MetricsHandler serves the server's registry in the Prometheus exposition
// format, behind metrics.token when one is set. main mounts it on the
// metrics.listen listener.
func (s *Server) MetricsHandler() http.Handler {
	h := promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{
		// A failing collector must not hide every other metric.
		ErrorHandling: promhttp.ContinueOnError,
	})
	token := []byte(s.cfg.Metrics.Token)
	if len(token) == 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(got), token) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"metrics token required"}` + "\n"))
			return
		}
		h.ServeHTTP(w, r)
	})
}
