package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
	plivo "github.com/plivo/plivo-go/v7"

	"plivo-dlr/storage"
)

// Send limits, checked before Plivo is called so a bad request costs nothing.
const (
	// maxSMSText is Plivo's limit for one SMS text (it splits it into up to
	// ten parts); MMS text has the same limit.
	maxSMSText = 1600
	// maxMedia is Plivo's limit of media URLs per MMS.
	maxMedia = 10
	// maxRecipients bounds one request's "<"-joined dst list.
	maxRecipients = 100
	maxURLLen     = 2048
)

// Send results, the label values of plivo_dlr_messages_sent_total{result}.
const (
	sendAccepted = "accepted"
	sendInvalid  = "invalid"
	sendRejected = "rejected"
	sendError    = "error"
)

// sendRequest is the body of POST /api/messages. To is one number or a
// list; From defaults to plivo.source_number.
type sendRequest struct {
	To        recipients `json:"to"`
	Text      string     `json:"text"`
	MediaURLs []string   `json:"media_urls,omitempty"`
	From      string     `json:"from,omitempty"`
}

// recipients is one number ("+14155550100", or several joined with "<" as
// Plivo does) or a JSON list of numbers.
type recipients []string

// errBadRecipients is what recipients.UnmarshalJSON refuses; its text is the
// 400 reason handleSend gives.
var errBadRecipients = errors.New("to: must be a phone number or a list of phone numbers")

// UnmarshalJSON accepts a string or a list of strings.
func (r *recipients) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*r = nil
		if one != "" {
			*r = strings.Split(one, "<")
		}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errBadRecipients
	}
	*r = many
	return nil
}

// sendResponse is the 202 body of POST /api/messages.
type sendResponse struct {
	MessageUUIDs []string `json:"message_uuids"`
	APIID        string   `json:"api_id"`
}

// sendConfig is the body of GET /api/config: what the dashboard needs to
// offer sending.
type sendConfig struct {
	SendingEnabled bool   `json:"sending_enabled"`
	SourceNumber   string `json:"source_number"`
	CallbackURL    string `json:"callback_url"`
	Sandbox        bool   `json:"sandbox"`
}

// handleConfig tells the dashboard whether sending works and with which
// defaults.
func (s *Server) handleConfig(c *fiber.Ctx) error {
	return c.JSON(sendConfig{
		SendingEnabled: s.plivo != nil,
		SourceNumber:   s.cfg.Plivo.SourceNumber,
		CallbackURL:    s.cfg.CallbackURL(),
		Sandbox:        s.sandbox,
	})
}

// handleSend sends an SMS or MMS through Plivo and records it as queued
// under each message UUID Plivo returns, before any callback arrives.
func (s *Server) handleSend(c *fiber.Ctx) error {
	var req sendRequest
	if err := json.Unmarshal(c.Body(), &req); err != nil {
		s.metrics.messagesSent.WithLabelValues("sms", sendInvalid).Inc()
		var reason string
		if ue := (*json.UnmarshalTypeError)(nil); errors.As(err, &ue) {
			reason = ue.Field + ": wrong type"
		} else if errors.Is(err, errBadRecipients) {
			reason = errBadRecipients.Error()
		} else {
			reason = "body must be a JSON object {to, text, media_urls?, from?}"
		}
		return &httpError{Code: fiber.StatusBadRequest, Message: reason}
	}
	msg, err := s.prepareSend(req)
	if err != nil {
		s.metrics.messagesSent.WithLabelValues(msg.Type, sendInvalid).Inc()
		return &httpError{Code: fiber.StatusBadRequest, Message: err.Error()}
	}
	if err := s.checkOptOuts(msg.to); err != nil {
		s.metrics.messagesSent.WithLabelValues(msg.Type, sendOptedOut).Inc()
		return err
	}
	if s.plivo == nil {
		s.metrics.messagesSent.WithLabelValues(msg.Type, sendError).Inc()
		return &httpError{Code: fiber.StatusServiceUnavailable,
			Message: "sending is disabled: set plivo.auth_id and plivo.auth_token (or run serve --sandbox)"}
	}

	apiID, uuids, err := s.plivo.Send(msg.params)
	if err != nil {
		code, reason := plivoFailure(err)
		result := sendError
		if code < 500 {
			result = sendRejected
		}
		s.metrics.messagesSent.WithLabelValues(msg.Type, result).Inc()
		s.log.Warn("send refused", "status", code, "type", msg.Type, "recipients", len(msg.to), "err", err)
		he := &httpError{Code: code, Message: reason}
		if code < 500 {
			return he
		}
		// 5xx answers are logged by handleError; keep the cause for it.
		he.Err = err
		return he
	}
	s.metrics.messagesSent.WithLabelValues(msg.Type, sendAccepted).Inc()

	principal, _ := c.Locals(localsPrincipal).(string)
	s.recordSent(msg, apiID, uuids, principal)
	return c.Status(fiber.StatusAccepted).JSON(sendResponse{MessageUUIDs: uuids, APIID: apiID})
}

// preparedSend is a validated send request.
type preparedSend struct {
	params plivo.MessageCreateParams
	to     []string
	Type   string
}

// prepareSend validates req and builds Plivo's parameters. Errors are plain
// reasons for a 400. The returned Type is set even on error (for metrics).
func (s *Server) prepareSend(req sendRequest) (preparedSend, error) {
	p := preparedSend{Type: plivo.SMS}
	if len(req.MediaURLs) > 0 {
		p.Type = plivo.MMS
	}
	seen := map[string]bool{}
	for _, raw := range req.To {
		n, ok := normalizeNumber(raw)
		if !ok {
			return p, fmt.Errorf("to: %s is not a phone number in E.164 form (+ then 8 to 15 digits)", quoteShort(raw))
		}
		if !seen[n] {
			seen[n] = true
			p.to = append(p.to, n)
		}
	}
	switch {
	case len(p.to) == 0:
		return p, errors.New("to: required")
	case len(p.to) > maxRecipients:
		return p, fmt.Errorf("to: at most %d recipients per request (got %d)", maxRecipients, len(p.to))
	}

	from := strings.TrimSpace(req.From)
	if from == "" {
		from = s.cfg.Plivo.SourceNumber
	}
	if from == "" {
		return p, errors.New("from: required (no plivo.source_number configured)")
	}
	src, ok := normalizeSender(from)
	if !ok {
		return p, fmt.Errorf("from: %s is not a phone number, short code or alphanumeric sender id", quoteShort(from))
	}

	textLen := utf8.RuneCountInString(req.Text)
	switch {
	case !utf8.ValidString(req.Text):
		return p, errors.New("text: not valid UTF-8")
	case p.Type == plivo.SMS && strings.TrimSpace(req.Text) == "":
		return p, errors.New("text: required for SMS (or give media_urls to send MMS)")
	case textLen > maxSMSText:
		return p, fmt.Errorf("text: at most %d characters (got %d)", maxSMSText, textLen)
	case len(req.MediaURLs) > maxMedia:
		return p, fmt.Errorf("media_urls: at most %d per message (got %d)", maxMedia, len(req.MediaURLs))
	}
	for _, m := range req.MediaURLs {
		u, err := url.Parse(m)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(m) > maxURLLen {
			return p, fmt.Errorf("media_urls: %s is not an http(s) URL", quoteShort(m))
		}
	}
	p.params = plivo.MessageCreateParams{
		Src:       src,
		Dst:       strings.Join(p.to, "<"),
		Text:      req.Text,
		Type:      p.Type,
		URL:       s.cfg.CallbackURL(),
		Method:    http.MethodPost,
		MediaUrls: req.MediaURLs,
	}
	return p, nil
}

// normalizeNumber strips the formatting people type ("+1 (415) 555-0100")
// and checks E.164: an optional +, then 8 to 15 digits, not starting with 0.
// The result has no "+", the form Plivo reports numbers in callbacks.
func normalizeNumber(s string) (string, bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "+")
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == ' ' || r == '-' || r == '(' || r == ')' || r == '.':
		default:
			return "", false
		}
	}
	n := b.String()
	if len(n) < 8 || len(n) > 15 || n[0] == '0' {
		return "", false
	}
	return n, true
}

// normalizeSender accepts a phone number, a short code (3 to 8 digits) or an
// alphanumeric sender id (up to 11 letters, digits and spaces, with a letter).
func normalizeSender(s string) (string, bool) {
	if n, ok := normalizeNumber(s); ok {
		return n, true
	}
	digits, letters := 0, 0
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
			letters++
		case r == ' ':
		default:
			return "", false
		}
	}
	switch {
	case letters == 0 && digits >= 3 && digits <= 8 && len(s) == digits:
		return s, true
	case letters > 0 && len(s) <= 11:
		return s, true
	}
	return "", false
}

// recordSent stores one queued event per message UUID, so the message shows
// before its first callback, then tells the notifiers. Plivo has accepted
// the send by now: a storage failure is logged, not returned, because a
// retried request would send the message twice; callbacks will still
// record the message.
func (s *Server) recordSent(msg preparedSend, apiID string, uuids []string, principal string) {
	now := s.now().UTC()
	for i, uuid := range uuids {
		to := msg.params.Dst
		// Plivo answers one UUID per destination, in dst order.
		if len(uuids) == len(msg.to) {
			to = msg.to[i]
		}
		ev := storage.Event{
			MessageUUID: uuid,
			Status:      storage.StatusQueued,
			Source:      storage.SourceSend,
			ReceivedAt:  now,
			Payload: map[string]string{
				"api_id":  apiID,
				"sent_by": principal,
				"from":    msg.params.Src,
				"to":      to,
				"type":    msg.Type,
			},
			Details: storage.Details{From: msg.params.Src, To: to, Type: msg.Type},
			Content: storage.Content{Text: msg.params.Text, MediaURLs: msg.params.MediaUrls},
		}
		ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
		// The store's writer tells the notifiers, in cursor order.
		_, err := s.store.Apply(ctx, ev)
		cancel()
		if err != nil {
			s.log.Error("record sent message", "message_uuid", uuid, "err", err)
		}
	}
}
