package app

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

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
		return &HTTPError{Code: fiber.StatusBadRequest, Message: "cursor: not a cursor from a previous page"}
	case err != nil:
		return &HTTPError{Code: fiber.StatusServiceUnavailable, Message: "storage unavailable", Err: err}
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
		return &HTTPError{Code: fiber.StatusBadRequest, Message: key + ": " + problem}
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
func parseTimeParam(v string) (time.Time, error) {
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

// handleGetMessage returns one message's current state and full history.
func (s *Server) handleGetMessage(c *fiber.Ctx) error {
	uuid := strings.Clone(c.Params("uuid"))
	msg, events, err := s.store.GetMessage(uuid)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return &HTTPError{Code: fiber.StatusNotFound, Message: "no message " + strconv.Quote(uuid)}
	case err != nil:
		return &HTTPError{Code: fiber.StatusServiceUnavailable, Message: "storage unavailable", Err: err}
	}
	if events == nil {
		events = []storage.Event{}
	}
	return c.JSON(messageDetail{Message: msg, Events: events})
}
