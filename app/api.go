package app

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"plivo-dlr/app/protocol"
	"plivo-dlr/storage"
)

// messageList is the body of GET /api/messages.
type messageList struct {
	Messages   []storage.Message `json:"messages"`
	NextCursor string            `json:"next_cursor"`
}

// messageDetail is the body of GET /api/messages/{uuid}.
type messageDetail struct {
	Message storage.Message `json:"message"`
	Events  []storage.Event `json:"events"`
	// EventsNextCursor continues the events in the same order, "" at the end.
	EventsNextCursor string `json:"events_next_cursor"`
}

// handleListMessages lists messages newest first with filters and a cursor.
func (s *Server) handleListMessages(c *fiber.Ctx) error {
	f, err := listFilterFromQuery(c)
	if err != nil {
		return err
	}
	msgs, next, err := s.store.ListMessages(f)
	switch {
	case errors.Is(err, storage.ErrBadCursor):
		return &httpError{Code: fiber.StatusBadRequest, Message: "cursor: not a cursor from a previous page"}
	case err != nil:
		return &httpError{Code: fiber.StatusServiceUnavailable, Message: "storage unavailable", Err: err}
	}
	if msgs == nil {
		msgs = []storage.Message{}
	}
	return c.JSON(messageList{Messages: msgs, NextCursor: next})
}

// listFilterFromQuery reads the list filters; a bad value is a 400 naming it.
func listFilterFromQuery(c *fiber.Ctx) (storage.ListFilter, error) {
	f := storage.ListFilter{
		Status: strings.TrimSpace(c.Query("status")),
		Query:  strings.TrimSpace(c.Query("q")),
		Cursor: c.Query("cursor"),
	}
	bad := func(key, problem string) error {
		return &httpError{Code: fiber.StatusBadRequest, Message: key + ": " + problem}
	}
	// A misspelt status would match nothing and look like "no messages".
	if f.Status != "" && f.Status != storage.StatusPending && f.Status != storage.StatusReceived && storage.StatusRank(f.Status) == 0 {
		return f, bad("status", fmt.Sprintf("unknown status %q (one of queued, sent, delivered, undelivered, failed, rejected, read, pending, received)", f.Status))
	}
	switch d := storage.Direction(c.Query("direction")); d {
	case "", "both":
	case storage.DirectionInbound, storage.DirectionOutbound:
		f.Direction = d
	default:
		return f, bad("direction", fmt.Sprintf("must be inbound, outbound or both (got %s)", quoteShort(string(d))))
	}
	var err error
	if v := c.Query("since"); v != "" {
		if f.Since, err = parseTimeParam(v); err != nil {
			return f, bad("since", err.Error())
		}
	}
	if v := c.Query("until"); v != "" {
		if f.Until, err = parseTimeParam(v); err != nil {
			return f, bad("until", err.Error())
		}
	}
	if v := c.Query("older_than"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return f, bad("older_than", "must be a duration like 30m")
		}
		f.OlderThan = d
	}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return f, bad("limit", "must be a number from 1 to 1000")
		}
		f.Limit = n
	}
	// Copy strings out of Fiber's reusable buffers before they outlive the handler.
	f.Status, f.Query, f.Cursor = strings.Clone(f.Status), strings.Clone(f.Query), strings.Clone(f.Cursor)
	return f, nil
}

// parseTimeParam accepts RFC 3339 or a relative duration back from now ("24h").
// A time the store cannot hold (outside 1677-09-21 .. 2262-04-11) is refused:
// it would wrap around and match the wrong messages (since=3000-01-01 did).
func parseTimeParam(v string) (time.Time, error) {
	t, err := parseTimeValue(v)
	if err == nil && !protocol.TimeInRange(t) {
		return time.Time{}, errors.New("must lie between 1677-09-21 and 2262-04-11")
	}
	return t, err
}

func parseTimeValue(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return time.Now().Add(-d).UTC(), nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Unix(n, 0).UTC(), nil
	}
	return time.Time{}, errors.New("must be an RFC 3339 time, unix seconds or a duration like 24h")
}

// handleGetMessage returns one message's current state and a page of its
// history: events_limit (1–1000, default 100), events_order (asc, the
// default, or desc), events_cursor (a previous page's events_next_cursor).
func (s *Server) handleGetMessage(c *fiber.Ctx) error {
	uuid := strings.Clone(c.Params("uuid"))
	p := storage.EventPage{Cursor: c.Query("events_cursor")}
	if v := c.Query("events_limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > storage.MaxEventPage {
			return &httpError{Code: fiber.StatusBadRequest, Message: fmt.Sprintf("events_limit: must be 1 to %d", storage.MaxEventPage)}
		}
		p.Limit = n
	}
	switch c.Query("events_order", "asc") {
	case "asc":
	case "desc":
		p.Desc = true
	default:
		return &httpError{Code: fiber.StatusBadRequest, Message: "events_order: must be asc or desc"}
	}
	page, err := s.store.GetMessagePage(uuid, p)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return &httpError{Code: fiber.StatusNotFound, Message: "no message " + strconv.Quote(uuid)}
	case errors.Is(err, storage.ErrBadCursor):
		return &httpError{Code: fiber.StatusBadRequest, Message: "events_cursor: not a cursor from a previous page in this order"}
	case err != nil:
		return &httpError{Code: fiber.StatusServiceUnavailable, Message: "storage unavailable", Err: err}
	}
	if page.Events == nil {
		page.Events = []storage.Event{}
	}
	return c.JSON(messageDetail{Message: page.Message, Events: page.Events, EventsNextCursor: page.NextCursor})
}
