package app

import (
	"fmt"
	"sync"
	"time"
)

// reconcileFailingAfter is how many lookups in a row must fail before the
// dashboard says reconciliation is failing: one failed lookup is retried
// with backoff and says little; three in a row usually mean wrong
// credentials or an unreachable Plivo API.
const reconcileFailingAfter = 3

// reconcileHealth remembers whether the latest reconciliation lookups at
// Plivo failed, for GET /api/health.
type reconcileHealth struct {
	mu      sync.Mutex
	failed  int       // lookups failed in a row
	since   time.Time // first of them
	lastErr string
}

// note records one lookup's outcome.
func (h *reconcileHealth) note(now time.Time, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.failed, h.lastErr = 0, ""
		return
	}
	if h.failed == 0 {
		h.since = now
	}
	h.failed++
	h.lastErr = clip(err.Error())
}

func (h *reconcileHealth) problems(time.Time) []Problem {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failed < reconcileFailingAfter {
		return nil
	}
	return []Problem{{
		Kind:   "reconcile_failing",
		Since:  h.since,
		Detail: fmt.Sprintf("Looking up stuck messages at Plivo fails (%d lookups in a row): %s", h.failed, h.lastErr),
		Hint:   "check plivo.auth_id, plivo.auth_token and that the server reaches plivo.api_url",
	}}
}

// sinkProblems reports every forwarding sink whose latest attempts failed:
// its events wait (nothing is lost) until it answers again.
func (s *Server) sinkProblems(now time.Time) []Problem {
	if s.forward == nil {
		return nil
	}
	sts, err := s.forward.Status()
	if err != nil {
		return []Problem{{Kind: "sink_failing", Since: now, Detail: "Forwarding status unavailable: " + clip(err.Error())}}
	}
	var out []Problem
	for _, st := range sts {
		if !st.Failing {
			continue
		}
		since := now
		if st.FailingSince != nil {
			since = *st.FailingSince
		}
		out = append(out, Problem{
			Kind:   "sink_failing",
			Since:  since,
			Detail: fmt.Sprintf("Forwarding to %s fails: %d events wait and are retried (%s)", st.Name, st.Lag, clip(st.LastError)),
			Hint:   "check the receiver of forward sink " + st.Name + "; plivo-dlr forward status shows its cursor and dead letters",
		})
	}
	return out
}
