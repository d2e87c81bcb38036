package app

import (
	"errors"
	"time"

	"github.com/gofiber/fiber/v2"

	"plivo-dlr/storage"
)

// Stats windows.
const (
	defaultStatsWindow = 24 * time.Hour
	maxStatsWindow     = 90 * 24 * time.Hour
	// statsMaxPoints bounds the series: its step is the window over this,
	// rounded up to whole hours (the counters' resolution).
	statsMaxPoints = 48
)

// statsBody is the body of GET /api/stats. Counts describe messages first
// seen in the window (to the hour: counters are hourly), by current status.
type statsBody struct {
	Window string           `json:"window"`
	Counts map[string]int64 `json:"counts"`
	Total  int64            `json:"total"`
	// Inbound counts the inbound messages first seen in the window, apart
	// from Counts and Total: they are not deliveries and never lower the
	// delivery rate.
	Inbound       int64             `json:"inbound"`
	DeliveryRate  float64           `json:"delivery_rate"`
	TimeToDeliver timeToDeliverBody `json:"time_to_deliver"`
	TopErrorCodes []errorCodeBody   `json:"top_error_codes"`
	Series        seriesBody        `json:"series"`
}

// timeToDeliverBody holds percentiles in seconds; null when no message in
// the window has both Plivo timestamps.
type timeToDeliverBody struct {
	P50Seconds *float64 `json:"p50_seconds"`
	P90Seconds *float64 `json:"p90_seconds"`
}

type errorCodeBody struct {
	Code  string `json:"code"`
	Count int64  `json:"count"`
}

// seriesBody is message counts per time step, oldest first, for the chart.
type seriesBody struct {
	StepSeconds int64         `json:"step_seconds"`
	Points      []seriesPoint `json:"points"`
}

// seriesPoint counts the messages first seen in [Time, Time+step) by
// current status.
type seriesPoint struct {
	Time   time.Time        `json:"t"`
	Counts map[string]int64 `json:"counts"`
}

// handleStats answers GET /api/stats?window=24h (1h, 24h, 7d or any Go
// duration up to 90 days).
func (s *Server) handleStats(c *fiber.Ctx) error {
	name := c.Query("window", "24h")
	window, err := parseWindow(name)
	if err != nil {
		return &httpError{Code: fiber.StatusBadRequest, Message: "window: " + err.Error()}
	}
	now := s.now().UTC()
	st, err := s.store.Stats(now.Add(-window))
	if err != nil {
		return &httpError{Code: fiber.StatusServiceUnavailable, Message: "storage unavailable", Err: err}
	}
	inbound := st.Counts[storage.StatusReceived]
	delete(st.Counts, storage.StatusReceived)
	body := statsBody{
		Window:        string([]byte(name)),
		Counts:        st.Counts,
		Total:         st.Total - inbound,
		Inbound:       inbound,
		DeliveryRate:  st.DeliveryRate,
		TopErrorCodes: []errorCodeBody{},
	}
	if st.HaveTimeToDeliver {
		p50, p90 := st.P50ToDeliver.Seconds(), st.P90ToDeliver.Seconds()
		body.TimeToDeliver = timeToDeliverBody{P50Seconds: &p50, P90Seconds: &p90}
	}
	for _, e := range st.TopErrorCodes {
		body.TopErrorCodes = append(body.TopErrorCodes, errorCodeBody{Code: e.Code, Count: e.Count})
	}
	if body.Series, err = s.statsSeries(now, window); err != nil {
		return &httpError{Code: fiber.StatusServiceUnavailable, Message: "storage unavailable", Err: err}
	}
	return c.JSON(body)
}

// parseWindow accepts "7d"-style days or a Go duration, from 1 minute to 90 days.
func parseWindow(v string) (time.Duration, error) {
	var d time.Duration
	var err error
	if n, ok := stripDays(v); ok {
		d = time.Duration(n) * 24 * time.Hour
	} else if d, err = time.ParseDuration(v); err != nil {
		return 0, errBadWindow
	}
	if d < time.Minute || d > maxStatsWindow {
		return 0, errBadWindow
	}
	return d, nil
}

var errBadWindow = errors.New("must be 1h, 24h, 7d or a duration like 36h, up to 90d")

// stripDays parses "7d" as 7.
func stripDays(v string) (int, bool) {
	if len(v) < 2 || v[len(v)-1] != 'd' {
		return 0, false
	}
	n := 0
	for _, ch := range v[:len(v)-1] {
		if ch < '0' || ch > '9' || n > 1000 {
			return 0, false
		}
		n = n*10 + int(ch-'0')
	}
	return n, true
}

// statsSeries splits the window into at most statsMaxPoints steps of whole
// hours, the last beginning at the current hour, read in one transaction
// (Store.StatsRangeRead).
func (s *Server) statsSeries(now time.Time, window time.Duration) (seriesBody, error) {
	step := time.Duration((int64(window/time.Hour) + statsMaxPoints - 1) / statsMaxPoints * int64(time.Hour))
	step = max(step, time.Hour)
	n := int((window + step - 1) / step)
	end := now.Truncate(time.Hour) // start of the current hour: the last step begins here
	first := end.Add(-time.Duration(n-1) * step)
	r, err := s.store.StatsRangeRead(first, now, step)
	if err != nil {
		return seriesBody{}, err
	}
	out := seriesBody{StepSeconds: int64(step / time.Second), Points: make([]seriesPoint, len(r.Points))}
	for i, p := range r.Points {
		out.Points[i] = seriesPoint{Time: p.Start, Counts: p.Counts}
	}
	return out, nil
}
