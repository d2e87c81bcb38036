package app

import (
	"context"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/gofiber/fiber/v2"

	"plivo-dlr/app/protocol"
	"plivo-dlr/storage"
)

// replayState is the Server's replay-protection bookkeeping.
type replayState struct {
	// seenV3: a V3-signed callback verified since start.
	seenV3 atomic.Bool
	// fullLogged: Unix second of the last "window full" log line.
	fullLogged atomic.Int64
}

// callbackNonces are the nonces a verified callback uses up, all expiring
// at exp and tagged with the request's sum, so that the same request again
// (a retry) can be told from a replay.
func callbackNonces(v protocol.Verification, exp time.Time, sum uint64) []storage.Nonce {
	nonces := make([]storage.Nonce, 0, len(v.Nonces))
	for _, n := range v.Nonces {
		// n is part of the copied headers, never fasthttp's buffer.
		nonces = append(nonces, storage.Nonce{Value: n, ExpiresAt: exp, Sum: sum})
	}
	return nonces
}

// requestSum is a 64-bit hash (xxHash64) of what makes a signed callback
// the same request: URL, body and every signature header. A nonce seen
// again with the same sum is Plivo retrying that request (answered 200,
// duplicate); with another sum it is a replay (403). A collision could only
// make a replay look like a retry, which stores nothing. Each field goes
// in behind its length, so no two different requests hash the same bytes.
// (Until this version the sum was FNV-1a, a sixth as fast on a callback's
// 1.5 KB: a retry straddling the upgrade, within plivo.nonce_ttl, of a
// callback stored before it is answered 403 instead of 200; its event is
// stored either way.)
func requestSum(body []byte, req protocol.SignedRequest) uint64 {
	var d xxhash.Digest
	d.Reset()
	var n [8]byte
	length := func(l int) {
		binary.LittleEndian.PutUint64(n[:], uint64(l))
		_, _ = d.Write(n[:])
	}
	for _, v := range [...]string{req.Method, req.URL} {
		length(len(v))
		_, _ = d.WriteString(v)
	}
	length(len(body))
	_, _ = d.Write(body)
	hd := req.Headers
	for _, v := range [...]string{hd.V2, hd.MaV2, hd.V2Nonce, hd.V3, hd.MaV3, hd.V3Nonce} {
		length(len(v))
		_, _ = d.WriteString(v)
	}
	return d.Sum64()
}

// refuseMalformed answers a correctly signed callback whose body is not a
// delivery report: 400, after using up its nonces. Otherwise its signed
// headers could be sent again at once with a body of the sender's choice
// (V2 does not sign the body). The same request again stays a 400; another
// request with those nonces is a replay (403). If the nonces cannot be
// recorded the answer is 503: nothing was accepted.
func (s *Server) refuseMalformed(ctx context.Context, c *fiber.Ctx, nonces []storage.Nonce, cause error) (string, error) {
	err := s.store.ConsumeNonces(ctx, nonces...)
	switch {
	case err == nil:
		return resultMalformed, &httpError{Code: fiber.StatusBadRequest, Message: cause.Error()}
	case errors.Is(err, storage.ErrReplayed):
		if ok, suppressed := s.rejections.allow(s.now()); ok {
			s.log.Warn("callback rejected: nonce replayed (malformed body)", "remote_addr", c.IP(), "suppressed", suppressed)
		}
		return resultReplayed, &httpError{Code: fiber.StatusForbidden, Message: "nonce already used"}
	case errors.Is(err, storage.ErrNonceCapacity):
		s.logNonceCapacity(s.now())
	}
	return resultError, &httpError{Code: fiber.StatusServiceUnavailable, Message: "storage unavailable, retry later", Err: err}
}

// checkScheme applies plivo.require_v3 to a verified callback and notes
// V2-only callbacks from an account that has sent V3: V2 signs neither the
// body nor the time, so once plivo.nonce_ttl has passed captured V2 headers
// verify again with any body. A non-nil result is the refusal to answer.
func (s *Server) checkScheme(c *fiber.Ctx, v protocol.Verification) *httpError {
	if v.Scheme == protocol.SchemeV3 {
		s.replay.seenV3.Store(true)
		return nil
	}
	if s.cfg.Plivo.RequireV3 {
		if ok, suppressed := s.rejections.allow(s.now()); ok {
			s.log.Warn("callback rejected: V2-only signature and plivo.require_v3 is set", "remote_addr", c.IP(), "suppressed", suppressed)
		}
		return &httpError{Code: fiber.StatusForbidden, Message: "invalid signature: V3 signature required (plivo.require_v3)"}
	}
	if s.replay.seenV3.Load() {
		if ok, suppressed := s.rejections.allow(s.now()); ok {
			s.log.Warn("callback with only a V2 signature although V3 ones came before: a replay of captured V2 headers looks like this; set plivo.require_v3 if Plivo always sends V3",
				"remote_addr", c.IP(), "suppressed", suppressed)
		}
	}
	return nil
}

// logNonceCapacity reports, at most once a minute, that callbacks are
// refused because the replay window is full.
func (s *Server) logNonceCapacity(now time.Time) {
	last := s.replay.fullLogged.Load()
	if now.Unix()-last < 60 || !s.replay.fullLogged.CompareAndSwap(last, now.Unix()) {
		return
	}
	st := s.store.NonceStats()
	s.log.Error("callbacks refused (503): the replay-protection window is full; lower plivo.nonce_ttl",
		"nonces", st.Entries, "max", st.Max, "nonce_ttl", s.cfg.Plivo.NonceTTL.D().String())
}
