package app

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
		s.metrics.callbackResult(result).Inc()
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
		return resultMalformed, false, &httpError{Code: fiber.StatusRequestEntityTooLarge, Message: "callback body too large"}
	}
	method := c.Method()
	rawQuery := string(c.Request().URI().QueryString())
	// The parameters are needed for the V3 check; a body that does not parse
	// can still carry a valid V2 signature, so its error waits until after
	// the signature verdict.
	params, paramsErr := protocol.CallbackParams(method, c.Get(fiber.HeaderContentType), body, rawQuery)

	// Signatures cover the URL Plivo was given, which is our public URL:
	// never the Host header, which differs behind NAT, tunnels or proxies.
	signedURL := s.callbackURL
	if path := c.Request().URI().PathOriginal(); string(path) != s.cfg.Plivo.CallbackPath {
		// Another spelling the router accepts (a trailing slash, case).
		signedURL = s.publicURL + string(path)
	}
	req := protocol.SignedRequest{
		Method: method,
		URL:    signedURL,
		// Copies: c.Get aliases fasthttp's request buffer, which the
		// connection reuses for its next request, and the nonces go to the
		// store's writer, which may still hold them after we answer.
		Headers: copySignatureHeaders(
			c.Get("X-Plivo-Signature-V2"), c.Get("X-Plivo-Signature-Ma-V2"), c.Get("X-Plivo-Signature-V2-Nonce"),
			c.Get("X-Plivo-Signature-V3"), c.Get("X-Plivo-Signature-Ma-V3"), c.Get("X-Plivo-Signature-V3-Nonce")),
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
		return resultInvalidSignature, false, &httpError{Code: fiber.StatusForbidden, Message: "invalid signature", Err: err}
	}
	if refusal := s.checkScheme(c, verification); refusal != nil {
		return resultInvalidSignature, false, refusal
	}
	for _, n := range verification.Nonces {
		if len(n) > storage.MaxNonceLen {
			return resultMalformed, false, &httpError{Code: fiber.StatusBadRequest, Message: fmt.Sprintf("signature nonce longer than %d bytes", storage.MaxNonceLen)}
		}
	}
	now := s.now()
	nonces := callbackNonces(verification, now.Add(s.cfg.Plivo.NonceTTL.D()), requestSum(body, req))
	ctx, cancel := context.WithTimeout(context.Background(), s.applyTimeout)
	defer cancel()
	if paramsErr != nil {
		result, err := s.refuseMalformed(ctx, c, nonces, paramsErr)
		return result, false, err
	}
	// Delivery reports and inbound messages share the path.
	ev, notes, err := protocol.ParsePostedNotes(params)
	if err != nil {
		result, err := s.refuseMalformed(ctx, c, nonces, err)
		return result, false, err
	}
	if len(notes.UnparsedTimes) > 0 {
		s.noteUnparsedTimes(ev, notes)
	}

	ev.ReceivedAt = now.UTC()
	res, err := s.store.Apply(ctx, ev, nonces...)
	switch {
	case errors.Is(err, storage.ErrReplayed):
		if ok, suppressed := s.rejections.allow(now); ok {
			s.log.Warn("callback rejected: nonce replayed", "message_uuid", clip(ev.MessageUUID), "remote_addr", c.IP(), "suppressed", suppressed)
		}
		return resultReplayed, false, &httpError{Code: fiber.StatusForbidden, Message: "nonce already used"}
	case errors.Is(err, storage.ErrNonceCapacity):
		s.logNonceCapacity(now)
		fallthrough
	case err != nil:
		// 503 makes Plivo retry; nothing was acknowledged, so nothing is lost.
		// A timed-out request is never written later (see storage.Apply),
		// so the retry is not refused as a replay of its nonce.
		return resultError, false, &httpError{Code: fiber.StatusServiceUnavailable, Message: "storage unavailable, retry later", Err: err}
	}
	// The notifiers (stream, metrics, forwarding) hear of the stored event
	// from the store's applied-event feed, in cursor order, on their own
	// goroutine. res.Retry (the same signed request again, nonce included)
	// is a duplicate too.
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
	cause, diag := causeTokenOrForgery, protocol.Diagnosis{}
	switch {
	case errors.Is(err, protocol.ErrMissingSignature):
		cause = causeMissing
	case !s.diagnoseLimit.AllowN(s.now(), 1):
		// Diagnose costs a few hundred HMACs: a flood of forgeries must not
		// turn it into a CPU amplifier, and a few hints a second are plenty.
		cause = causeUndiagnosed
	default:
		diag = s.verifier.Diagnose(req, string(c.Request().Host()))
		if diag.Finding == protocol.FoundURLMismatch {
			cause = causeURLMismatch
		}
	}
	hint := diag.Hint
	s.metrics.signatureFailures.WithLabelValues(headerSet, cause).Inc()
	s.refused.note(s.now().UTC(), urlHint(diag))
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

// noteUnparsedTimes counts and logs (sampled) timestamps stored empty because
// their spelling is not one protocol.ParseTime reads: the report is kept
// rather than refused, and the operator learns of a new Plivo spelling.
func (s *Server) noteUnparsedTimes(ev storage.Event, notes protocol.ParseNotes) {
	for _, f := range notes.UnparsedTimes {
		s.metrics.unparsedTimes.WithLabelValues(f).Inc()
	}
	ok, suppressed := s.unparsedTimesLog.allow(s.now())
	if !ok {
		return
	}
	f := notes.UnparsedTimes[0]
	s.log.Warn("callback stored without a time it could not read", "message_uuid", ev.MessageUUID,
		"field", f, "value", strconv.Quote(clip(ev.Payload[f])), "fields", len(notes.UnparsedTimes), "suppressed", suppressed)
}

// copySignatureHeaders copies the six signature headers into one new
// string (one allocation instead of six) and returns them sliced from it.
func copySignatureHeaders(v2, maV2, v2Nonce, v3, maV3, v3Nonce string) protocol.SignatureHeaders {
	var b strings.Builder
	b.Grow(len(v2) + len(maV2) + len(v2Nonce) + len(v3) + len(maV3) + len(v3Nonce))
	for _, h := range [...]string{v2, maV2, v2Nonce, v3, maV3, v3Nonce} {
		b.WriteString(h)
	}
	all := b.String()
	next := func(h string) string {
		s := all[:len(h)]
		all = all[len(h):]
		return s
	}
	return protocol.SignatureHeaders{
		V2: next(v2), MaV2: next(maV2), V2Nonce: next(v2Nonce),
		V3: next(v3), MaV3: next(maV3), V3Nonce: next(v3Nonce),
	}
}
