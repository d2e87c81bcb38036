package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"plivo-dlr/app/protocol"
	"plivo-dlr/storage"
)

// applyTimeout bounds how long a callback waits for its commit. Plivo gives
// up after 8 s and retries; answering 503 before that is better than a
// timeout, and dedupe absorbs the retry if the commit did land.
const applyTimeout = 6 * time.Second

// handleCallback receives one Plivo delivery-status callback: signature
// first, then parsing, then a durable commit, and only then 200.
func (s *Server) handleCallback(c *fiber.Ctx) error {
	start := time.Now()
	result, inbound, err := s.ingestCallback(c)
	if s.cfg.Metrics.Enabled {
		s.metrics.callbacks.WithLabelValues(result).Inc()
		s.metrics.callbackDuration.Observe(time.Since(start).Seconds())
	}
	if err != nil {
		return err
	}
	if inbound {
		return answerInbound(c)
	}
	return c.SendString("OK")
}

// ingestCallback does the work of handleCallback and returns the result
// label and whether the body was an inbound message (answered in XML).
func (s *Server) ingestCallback(c *fiber.Ctx) (string, bool, error) {
	body := c.Body()
	if len(body) > protocol.MaxCallbackBody {
		return resultMalformed, false, &HTTPError{Code: fiber.StatusRequestEntityTooLarge, Message: "callback body too large"}
	}
	method := c.Method()
	rawQuery := string(c.Request().URI().QueryString())
	// The parameters are needed for the V3 check; a body that does not parse
	// can still carry a valid V2 signature, so its error waits until after
	// the signature verdict.
	params, paramsErr := protocol.CallbackParams(method, c.Get(fiber.HeaderContentType), body, rawQuery)

	req := protocol.SignedRequest{
		Method: method,
		// Signatures cover the URL Plivo was given, which is our public URL:
		// never the Host header, which differs behind NAT, tunnels or proxies.
		URL: s.publicURL + string(c.Request().URI().PathOriginal()),
		// Copies: c.Get aliases fasthttp's request buffer, which the
		// connection reuses for its next request, and the nonces go to the
		// store's writer, which may still hold them after we answer.
		Headers: protocol.SignatureHeaders{
			V2:      strings.Clone(c.Get("X-Plivo-Signature-V2")),
			MaV2:    strings.Clone(c.Get("X-Plivo-Signature-Ma-V2")),
			V2Nonce: strings.Clone(c.Get("X-Plivo-Signature-V2-Nonce")),
			V3:      strings.Clone(c.Get("X-Plivo-Signature-V3")),
			MaV3:    strings.Clone(c.Get("X-Plivo-Signature-Ma-V3")),
			V3Nonce: strings.Clone(c.Get("X-Plivo-Signature-V3-Nonce")),
		},
	}
	if rawQuery != "" {
		req.URL += "?" + rawQuery
	}
	if method == fiber.MethodPost && paramsErr == nil {
		req.Params = params
	}
	verification, err := s.verifier.Verify(req)
	if err != nil {
		s.rejectSignature(c, req, err)
		return resultInvalidSignature, false, &HTTPError{Code: fiber.StatusForbidden, Message: "invalid signature", Err: err}
	}
	for _, n := range verification.Nonces {
		if len(n) > storage.MaxNonceLen {
			return resultMalformed, false, &HTTPError{Code: fiber.StatusBadRequest, Message: fmt.Sprintf("signature nonce longer than %d bytes", storage.MaxNonceLen)}
		}
	}
	if paramsErr != nil {
		return resultMalformed, false, &HTTPError{Code: fiber.StatusBadRequest, Message: paramsErr.Error()}
	}
	// Delivery reports and inbound messages share the path.
	ev, err := protocol.ParsePosted(params)
	if err != nil {
		return resultMalformed, false, &HTTPError{Code: fiber.StatusBadRequest, Message: err.Error()}
	}

	now := s.now()
	ev.ReceivedAt = now.UTC()
	nonces := make([]storage.Nonce, 0, len(verification.Nonces))
	for _, n := range verification.Nonces {
		// n is part of the copied header above, never fasthttp's buffer.
		nonces = append(nonces, storage.Nonce{Value: n, ExpiresAt: now.Add(s.cfg.Plivo.NonceTTL.D())})
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.applyTimeout)
	defer cancel()
	res, err := s.store.Apply(ctx, ev, nonces...)
	switch {
	case errors.Is(err, storage.ErrReplayed):
		if ok, suppressed := s.rejections.allow(now); ok {
			s.log.Warn("callback rejected: nonce replayed", "message_uuid", clip(ev.MessageUUID), "remote_addr", c.IP(), "suppressed", suppressed)
		}
		return resultReplayed, false, &HTTPError{Code: fiber.StatusForbidden, Message: "nonce already used"}
	case err != nil:
		// 503 makes Plivo retry; nothing was acknowledged, so nothing is lost.
		// A timed-out request is never written later (see storage.Apply),
		// so the retry is not refused as a replay of its nonce.
		return resultError, false, &HTTPError{Code: fiber.StatusServiceUnavailable, Message: "storage unavailable, retry later", Err: err}
	}
	// The notifiers (stream, metrics) heard of this event from the store's
	// writer, in cursor order, before Apply returned.
	inbound := ev.Source == storage.SourceInbound
	if res.Duplicate {
		return resultDuplicate, inbound, nil
	}
	return resultStored, inbound, nil
}

// rejectSignature logs a failed signature check with what the operator needs
// to fix it: which header set was checked and, when a variant of the URL
// would have matched, which one. Tokens and bodies are never logged.
func (s *Server) rejectSignature(c *fiber.Ctx, req protocol.SignedRequest, err error) {
	headerSet := "none"
	switch {
	case req.Headers.V3 != "" || req.Headers.MaV3 != "":
		headerSet = protocol.SchemeV3
	case req.Headers.V2 != "" || req.Headers.MaV2 != "":
		headerSet = protocol.SchemeV2
	}
	cause, hint := causeTokenOrForgery, ""
	switch {
	case errors.Is(err, protocol.ErrMissingSignature):
		cause = causeMissing
	case !s.diagnoseLimit.allow(s.now()):
		// Diagnose costs a few hundred HMACs: a flood of forgeries must not
		// turn it into a CPU amplifier, and a few hints a second are plenty.
		cause = causeUndiagnosed
	default:
		hint = s.verifier.Diagnose(req, string(c.Request().Host()))
		if strings.Contains(hint, "would verify with URL") {
			cause = causeURLMismatch
		}
	}
	s.metrics.signatureFailures.WithLabelValues(headerSet, cause).Inc()
	s.refused.note(s.now().UTC(), urlHint(hint))
	ok, suppressed := s.rejections.allow(s.now())
	if !ok {
		return
	}
	attrs := []any{"header_set", headerSet, "cause", cause, "url", clip(req.URL), "remote_addr", c.IP(), "err", err}
	if hint != "" {
		attrs = append(attrs, "hint", clip(hint))
	}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	s.log.Warn("callback rejected: bad signature", attrs...)
}

// perSecond lets at most limit callers through in each one-second window.
type perSecond struct {
	limit  int
	mu     sync.Mutex
	window int64 // unix second of the current window
	used   int
}

func (p *perSecond) allow(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if sec := now.Unix(); sec != p.window {
		p.window, p.used = sec, 0
	}
	if p.used >= p.limit {
		return false
	}
	p.used++
	return true
}
