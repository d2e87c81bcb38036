package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"plivo-dlr/storage"
)

// Inbound messages share the callback path with delivery reports (see
// protocol.ParsePosted); this file holds what they add around it: the XML
// answer, their metrics, the opt-out list's routes, the refusal of sends to
// listed numbers and the conversation view.

// emptyPlivoXML answers an inbound message: Plivo reads the body as XML
// instructions, and an empty Response tells it to send no reply.
const emptyPlivoXML = "<Response></Response>"

// sendOptedOut is the plivo_dlr_messages_sent_total result of a send
// refused because a recipient opted out.
const sendOptedOut = "opted_out"

// answerInbound answers a stored (or duplicate) inbound message.
func answerInbound(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationXML)
	return c.SendString(emptyPlivoXML)
}

// Label values of plivo_dlr_inbound_messages_total.
var (
	inboundTypes   = []string{"sms", "mms", "whatsapp", "other"}
	inboundIntents = []string{storage.IntentOptOut, storage.IntentOptIn, storage.IntentHelp, "none"}
)

// inboundMetrics counts inbound messages by type and intent. It is a
// Notifier, like deliveryMetrics: counters resolved up front, no locks.
type inboundMetrics struct {
	counters map[[2]string]prometheus.Counter
}

var _ Notifier = (*inboundMetrics)(nil)

func newInboundMetrics(reg prometheus.Registerer, store *storage.Store) *inboundMetrics {
	f := promauto.With(reg)
	vec := f.NewCounterVec(prometheus.CounterOpts{
		Name: "plivo_dlr_inbound_messages_total",
		Help: "Inbound messages stored (not retries), by type (sms, mms, whatsapp, other) and Plivo's MessageIntent (optout, optin, help, none).",
	}, []string{"type", "intent"})
	m := &inboundMetrics{counters: map[[2]string]prometheus.Counter{}}
	for _, t := range inboundTypes {
		for _, i := range inboundIntents {
			m.counters[[2]string{t, i}] = vec.WithLabelValues(t, i)
		}
	}
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "plivo_dlr_optouts",
		Help: "Numbers on the opt-out list (sends to them are refused).",
	}, func() float64 {
		n, err := store.OptOutCount()
		if err != nil {
			return 0 // the store is closing; the scrape after restart is right
		}
		return float64(n)
	})
	return m
}

// Notify counts one newly stored inbound message.
func (m *inboundMetrics) Notify(ev storage.Event, res storage.ApplyResult) {
	if res.Duplicate || ev.Source != storage.SourceInbound {
		return
	}
	typ := ev.Type
	if _, ok := m.counters[[2]string{typ, "none"}]; !ok {
		typ = "other"
	}
	intent := storage.IntentOf(ev.Payload)
	if intent == "" {
		intent = "none"
	}
	m.counters[[2]string{typ, intent}].Inc()
}

// optOutList is the body of GET /api/optouts.
type optOutList struct {
	OptOuts []storage.OptOut `json:"optouts"`
}

// handleListOptOuts answers GET /api/optouts, newest first.
func (s *Server) handleListOptOuts(c *fiber.Ctx) error {
	list, err := s.store.OptOuts()
	if err != nil {
		return &httpError{Code: fiber.StatusServiceUnavailable, Message: "storage unavailable", Err: err}
	}
	if list == nil {
		list = []storage.OptOut{}
	}
	return c.JSON(optOutList{OptOuts: list})
}

// handleAddOptOut answers POST /api/optouts {number}: 202, source api.
// A number already listed keeps its first reason (still 202).
func (s *Server) handleAddOptOut(c *fiber.Ctx) error {
	var req struct {
		Number string `json:"number"`
	}
	if err := json.Unmarshal(c.Body(), &req); err != nil {
		return &httpError{Code: fiber.StatusBadRequest, Message: "body must be a JSON object {number}"}
	}
	n, ok := normalizeNumber(req.Number)
	if !ok {
		return &httpError{Code: fiber.StatusBadRequest, Message: fmt.Sprintf("number: %s is not a phone number in E.164 form (+ then 8 to 15 digits)", quoteShort(req.Number))}
	}
	ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
	defer cancel()
	if _, err := s.store.AddOptOut(ctx, storage.OptOut{Number: n, Source: storage.OptOutSourceAPI}); err != nil {
		return &httpError{Code: fiber.StatusServiceUnavailable, Message: "storage unavailable", Err: err}
	}
	o, err := s.store.OptedOut(n)
	if err != nil {
		return &httpError{Code: fiber.StatusServiceUnavailable, Message: "storage unavailable", Err: err}
	}
	return c.Status(fiber.StatusAccepted).JSON(o)
}

// handleRemoveOptOut answers DELETE /api/optouts/{number}: 204, or 404
// when the number is not listed. The number may carry its '+' (%2B) or not.
func (s *Server) handleRemoveOptOut(c *fiber.Ctx) error {
	raw, err := pathNumber(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
	defer cancel()
	switch err := s.store.RemoveOptOut(ctx, raw); {
	case errors.Is(err, storage.ErrNotFound):
		return &httpError{Code: fiber.StatusNotFound, Message: "+" + raw + " is not on the opt-out list"}
	case err != nil:
		return &httpError{Code: fiber.StatusServiceUnavailable, Message: "storage unavailable", Err: err}
	}
	return c.SendStatus(fiber.StatusNoContent)
}

// pathNumber reads the {number} route parameter, unescaped (a '+' comes as
// %2B), as digits without '+'.
func pathNumber(c *fiber.Ctx) (string, error) {
	raw := c.Params("number")
	if u, err := url.PathUnescape(raw); err == nil {
		raw = u
	}
	n, ok := normalizeNumber(raw)
	if !ok {
		return "", &httpError{Code: fiber.StatusBadRequest, Message: fmt.Sprintf("number: %s is not a phone number in E.164 form (+ then 8 to 15 digits)", quoteShort(raw))}
	}
	return n, nil
}

// checkOptOuts refuses a send to any listed number, before Plivo is called:
// a 409 naming the number, when and how it opted out.
func (s *Server) checkOptOuts(to []string) error {
	for _, n := range to {
		o, err := s.store.OptedOut(n)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			continue
		case err != nil:
			return &httpError{Code: fiber.StatusServiceUnavailable, Message: "storage unavailable", Err: err}
		}
		return &httpError{Code: fiber.StatusConflict, Message: optOutReason(o)}
	}
	return nil
}

// optOutReason is the text of a refused send:
// "+14155550123 opted out (STOP on 2026-12-01T10:00:00Z)".
func optOutReason(o storage.OptOut) string {
	how := "STOP"
	switch o.Source {
	case storage.OptOutSourceError200:
		how = "Plivo error 200, destination opted out,"
	case storage.OptOutSourceAPI:
		how = "added through the API"
	}
	return fmt.Sprintf("%s opted out (%s on %s)", o.Number, how, o.Since.UTC().Format(time.RFC3339))
}

// conversation is the body of GET /api/conversations/{number}.
type conversation struct {
	Number string `json:"number"`
	// Messages are oldest first: the newest page of the conversation in
	// reading order.
	Messages []storage.Message `json:"messages"`
	// NextCursor continues with older messages ("" when none are left).
	NextCursor string `json:"next_cursor"`
	// OptedOut is the number's opt-out, null when it is not listed.
	OptedOut *storage.OptOut `json:"opted_out"`
}

// handleConversation answers GET /api/conversations/{number}: the messages
// from or to exactly that number, both directions, in time order (oldest
// first), newest page first with limit (default 50, at most 1000) and
// cursor as for GET /api/messages.
func (s *Server) handleConversation(c *fiber.Ctx) error {
	n, err := pathNumber(c)
	if err != nil {
		return err
	}
	f := storage.ListFilter{Number: n, Cursor: strings.Clone(c.Query("cursor"))}
	if v := c.Query("limit"); v != "" {
		l, err := strconv.Atoi(v)
		if err != nil || l < 1 || l > 1000 {
			return &httpError{Code: fiber.StatusBadRequest, Message: "limit: must be a number from 1 to 1000"}
		}
		f.Limit = l
	}
	msgs, next, err := s.store.ListMessages(f)
	switch {
	case errors.Is(err, storage.ErrBadCursor):
		return &httpError{Code: fiber.StatusBadRequest, Message: "cursor: not a cursor from a previous page"}
	case err != nil:
		return &httpError{Code: fiber.StatusServiceUnavailable, Message: "storage unavailable", Err: err}
	}
	// Listed newest first; a conversation reads oldest first.
	for i, j := 0, len(msgs)-1; i < j; i, j = i+1, j-1 {
		msgs[i], msgs[j] = msgs[j], msgs[i]
	}
	if msgs == nil {
		msgs = []storage.Message{}
	}
	body := conversation{Number: "+" + n, Messages: msgs, NextCursor: next}
	switch o, err := s.store.OptedOut(n); {
	case err == nil:
		body.OptedOut = &o
	case !errors.Is(err, storage.ErrNotFound):
		return &httpError{Code: fiber.StatusServiceUnavailable, Message: "storage unavailable", Err: err}
	}
	return c.JSON(body)
}

// inboundRoutes registers the opt-out and conversation routes under /api.
func (s *Server) inboundRoutes(api fiber.Router) {
	api.Get("/optouts", s.handleListOptOuts)
	api.Post("/optouts", s.handleAddOptOut)
	api.Delete("/optouts/:number", s.handleRemoveOptOut)
	api.Get("/conversations/:number", s.handleConversation)
}
