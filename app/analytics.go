package app

import (
	"errors"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"plivo-dlr/storage"
)

// analyticsWindows are the windows of GET /api/analytics and the step of
// each one's series: minutes for the last hour, hours up to a week, days
// for a month (UTC days).
var analyticsWindows = map[string]struct {
	window, step time.Duration
}{
	"1h":  {time.Hour, time.Minute},
	"24h": {24 * time.Hour, time.Hour},
	"7d":  {7 * 24 * time.Hour, time.Hour},
	"30d": {30 * 24 * time.Hour, 24 * time.Hour},
}

// analyticsRows bounds each table of the body: a window of many hours may
// name up to the per-hour caps times its hours; the rest is one "other" row.
const analyticsRows = 50

// analyticsBody is the body of GET /api/analytics.
type analyticsBody struct {
	Window      string          `json:"window"`
	StepSeconds int64           `json:"step_seconds"`
	Series      []seriesPoint   `json:"series"`
	Totals      analyticsTotals `json:"totals"`
	Countries   []outcomeRow    `json:"countries"`
	Carriers    []outcomeRow    `json:"carriers"`
	Senders     []outcomeRow    `json:"senders"`
	ErrorCodes  []errorCodeRow  `json:"error_codes"`
	Spend       analyticsSpend  `json:"spend"`
}

// analyticsTotals counts the window's messages by outcome. DeliveryRate is
// null until a message is final.
type analyticsTotals struct {
	Messages     int64    `json:"messages"`
	Delivered    int64    `json:"delivered"`
	Failed       int64    `json:"failed"`
	InFlight     int64    `json:"in_flight"`
	Inbound      int64    `json:"inbound"`
	DeliveryRate *float64 `json:"delivery_rate"`
}

type outcomeRow struct {
	Key          string   `json:"key"`
	Sent         int64    `json:"sent"`
	Delivered    int64    `json:"delivered"`
	Failed       int64    `json:"failed"`
	DeliveryRate *float64 `json:"delivery_rate"`
}

// errorCodeRow counts the failed messages of one error code; Share is of
// all failed messages of the window.
type errorCodeRow struct {
	Code   string  `json:"code"`
	Failed int64   `json:"failed"`
	Share  float64 `json:"share"`
}

// analyticsSpend is Plivo's TotalAmount summed, as decimal strings (the
// account's currency) and micro-units.
type analyticsSpend struct {
	Total  string         `json:"total"`
	Micros int64          `json:"micros"`
	ByDay  []spendDayBody `json:"by_day"`
}

type spendDayBody struct {
	Day    string `json:"day"`
	Amount string `json:"amount"`
	Micros int64  `json:"micros"`
}

var errBadAnalyticsWindow = errors.New("must be 1h, 24h, 7d or 30d")

// handleAnalytics answers GET /api/analytics?window=24h from the counters
// kept at write time, in one read transaction (Store.StatsRangeRead):
// the cost grows with the window's steps, never with the messages stored.
// Tables are to the hour, like /api/stats; the 1h series and its totals
// are to the minute.
func (s *Server) handleAnalytics(c *fiber.Ctx) error {
	name := string([]byte(c.Query("window", "24h")))
	w, ok := analyticsWindows[name]
	if !ok {
		return &httpError{Code: fiber.StatusBadRequest, Message: "window: " + errBadAnalyticsWindow.Error()}
	}
	now := s.now().UTC()
	from := now.Add(-w.window + w.step)
	if w.step == 24*time.Hour {
		from = from.Truncate(24 * time.Hour) // UTC days
	}
	r, err := s.store.StatsRangeRead(from, now, w.step)
	if err != nil {
		return &httpError{Code: fiber.StatusServiceUnavailable, Message: "storage unavailable", Err: err}
	}
	body := analyticsBody{
		Window:      name,
		StepSeconds: int64(w.step / time.Second),
		Series:      make([]seriesPoint, len(r.Points)),
		Countries:   outcomeRows(r.Countries),
		Carriers:    outcomeRows(r.Carriers),
		Senders:     outcomeRows(r.Senders),
		ErrorCodes:  []errorCodeRow{},
		Spend:       analyticsSpend{Total: formatMicros(r.Spend), Micros: r.Spend, ByDay: []spendDayBody{}},
	}
	for i, p := range r.Points {
		body.Series[i] = seriesPoint{Time: p.Start, Counts: p.Counts}
	}
	t := &body.Totals
	counts := r.Counts
	if w.step < time.Hour {
		// The minute series is exact to the minute: the totals follow it
		// rather than the hours the window overlaps.
		counts = map[string]int64{}
		for _, p := range r.Points {
			for status, n := range p.Counts {
				counts[status] += n
			}
		}
	}
	for status, n := range counts {
		switch {
		case status == storage.StatusReceived:
			t.Inbound += n
			continue
		case status == storage.StatusDelivered || status == storage.StatusRead:
			t.Delivered += n
		case status == storage.StatusUndelivered || status == storage.StatusFailed || status == storage.StatusRejected:
			t.Failed += n
		default:
			t.InFlight += n
		}
		t.Messages += n
	}
	t.DeliveryRate = deliveryRate(t.Delivered, t.Failed)
	for _, e := range r.ErrorCodes {
		if len(body.ErrorCodes) == analyticsRows {
			break
		}
		row := errorCodeRow{Code: e.Code, Failed: e.Count}
		if t.Failed > 0 {
			row.Share = float64(e.Count) / float64(t.Failed)
		}
		body.ErrorCodes = append(body.ErrorCodes, row)
	}
	for _, d := range r.SpendByDay {
		body.Spend.ByDay = append(body.Spend.ByDay, spendDayBody{Day: d.Day.Format(time.DateOnly), Amount: formatMicros(d.Micros), Micros: d.Micros})
	}
	return c.JSON(body)
}

func deliveryRate(delivered, failed int64) *float64 {
	if delivered+failed == 0 {
		return nil
	}
	r := float64(delivered) / float64(delivered+failed)
	return &r
}

// outcomeRows converts a table, folding the rows past analyticsRows into
// one "other" row.
func outcomeRows(in []storage.OutcomeCount) []outcomeRow {
	out := make([]outcomeRow, 0, min(len(in), analyticsRows))
	var other storage.OutcomeCount
	for i, r := range in {
		if i >= analyticsRows-1 && len(in) > analyticsRows || r.Key == "other" {
			other.Messages += r.Messages
			other.Delivered += r.Delivered
			other.Failed += r.Failed
			continue
		}
		out = append(out, outcomeRow{Key: r.Key, Sent: r.Messages, Delivered: r.Delivered, Failed: r.Failed, DeliveryRate: deliveryRate(r.Delivered, r.Failed)})
	}
	if other.Messages > 0 {
		out = append(out, outcomeRow{Key: "other", Sent: other.Messages, Delivered: other.Delivered, Failed: other.Failed,
			DeliveryRate: deliveryRate(other.Delivered, other.Failed)})
	}
	return out
}

// formatMicros writes micro-units as a decimal amount, at least two
// decimals: 6500 → "0.0065", 1_250_000 → "1.25".
func formatMicros(v int64) string {
	neg := v < 0
	if neg {
		v = -v
	}
	frac := strconv.FormatInt(1_000_000+v%1_000_000, 10)[1:]
	for len(frac) > 2 && frac[len(frac)-1] == '0' {
		frac = frac[:len(frac)-1]
	}
	s := strconv.FormatInt(v/1_000_000, 10) + "." + frac
	if neg {
		s = "-" + s
	}
	return s
}
