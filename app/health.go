package app

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"plivo-dlr/app/protocol"
)

// Readiness thresholds. Callbacks are refused (503) when their commit fails;
// readiness says so instead of only pinging, whose one rewritten meta key
// can still fit in pages freed earlier on a full disk.
const (
	// readyMinFree is the free space in the data dir below which the server
	// is not ready: bbolt grows its file in large steps, so the next growth
	// would fail.
	readyMinFree = 32 << 20
	// commitFailWindow is how long a failed event commit keeps the server
	// not ready, unless an event commit succeeds first.
	commitFailWindow = time.Minute
)

// storageProblem returns why storage cannot take callbacks now, "" when it can.
func (s *Server) storageProblem(ctx context.Context) string {
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("readiness check failed", "err", err)
		return "storage not writable"
	}
	if h := s.store.CommitHealth(commitFailWindow); h.Failing {
		return "storage commits failing since " + h.Since.UTC().Format(time.RFC3339) + ": " + clip(h.Err.Error())
	}
	free, err := s.store.FreeBytes()
	if err != nil {
		s.log.Warn("readiness check failed", "err", err)
		return "cannot read free space of the data dir"
	}
	if free < readyMinFree {
		return fmt.Sprintf("data dir nearly full: %d MiB free, need %d MiB", free>>20, readyMinFree>>20)
	}
	return ""
}

// handleReadyz answers readiness: storage can commit callbacks now (a ping
// commits within 3 s, no event commit failed in the last minute, enough free
// space). A stalled or full disk answers 503 with the reason.
func (s *Server) handleReadyz(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if msg := s.storageProblem(ctx); msg != "" {
		return &httpError{Code: fiber.StatusServiceUnavailable, Message: msg}
	}
	return c.SendString("ready")
}

// refusedWindow is how long a refused callback signature stays a problem.
const refusedWindow = 15 * time.Minute

// Problem is one entry of GET /api/health (DESIGN.md "What the operator sees
// when something is wrong").
type Problem struct {
	Kind   string    `json:"kind"`
	Since  time.Time `json:"since"`
	Detail string    `json:"detail"`
	Hint   string    `json:"hint"`
}

// ProblemSource reports the current problems of one part of the server.
// Other parts (the forwarding sinks' sink_failing, reconciliation, storage)
// register theirs with Server.addProblemSource.
type ProblemSource func(now time.Time) []Problem

// refusals remembers recently refused callback signatures for the banner.
type refusals struct {
	mu    sync.Mutex
	first time.Time // first refusal of the current run
	last  time.Time
	count int
	hint  string // the last non-empty diagnosis
}

// note records one refused signature with its diagnosis ("" when none).
func (r *refusals) note(now time.Time, hint string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last.IsZero() || now.Sub(r.last) > refusedWindow {
		r.first, r.count, r.hint = now, 0, ""
	}
	r.last = now
	r.count++
	if hint != "" {
		r.hint = hint
	}
}

func (r *refusals) problems(now time.Time) []Problem {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last.IsZero() || now.Sub(r.last) > refusedWindow {
		return nil
	}
	return []Problem{{
		Kind:   "callbacks_refused",
		Since:  r.first,
		Detail: "Plivo callbacks were refused: their signature did not verify (" + itoa(r.count) + " in the last 15 minutes); messages stay in their last known status",
		Hint:   r.hint,
	}}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// addProblemSource registers a source of problems for GET /api/health.
func (s *Server) addProblemSource(p ProblemSource) {
	s.problemSources = append(s.problemSources, p)
}

// builtinProblems are the problems the server knows of itself.
func (s *Server) builtinProblems(now time.Time) []Problem {
	var out []Problem
	if s.sandbox {
		out = append(out, Problem{Kind: "sandbox", Since: s.started, Detail: "Sandbox: Plivo is simulated; no real messages are sent or delivered"})
	} else if s.verifier == nil || !s.verifier.HasTokens() {
		out = append(out, Problem{Kind: "no_auth_token", Since: s.started, Detail: "No Plivo auth token is set: every callback is refused", Hint: "set plivo.auth_token"})
	}
	if h := s.store.CommitHealth(commitFailWindow); h.Failing {
		out = append(out, Problem{Kind: "storage", Since: h.Since,
			Detail: "Storing callbacks fails: Plivo gets 503 and retries (" + clip(h.Err.Error()) + ")",
			Hint:   "check free space and the disk of server.data_dir"})
	} else if free, err := s.store.FreeBytes(); err == nil && free < readyMinFree {
		out = append(out, Problem{Kind: "storage", Since: now,
			Detail: fmt.Sprintf("The data dir is nearly full (%d MiB free): callbacks will soon be refused", free>>20),
			Hint:   "free space in server.data_dir or shorten retention"})
	}
	return append(out, s.refused.problems(now)...)
}

// handleHealth answers GET /api/health: {"problems": [...]}, [] when healthy.
func (s *Server) handleHealth(c *fiber.Ctx) error {
	now := s.now().UTC()
	problems := []Problem{}
	problems = append(problems, s.builtinProblems(now)...)
	for _, src := range s.problemSources {
		problems = append(problems, src(now)...)
	}
	return c.JSON(fiber.Map{"problems": problems})
}

// urlHint turns a diagnosis into the banner's hint: the full URL that would
// have verified and what to set, or the diagnosis itself.
func urlHint(d protocol.Diagnosis) string {
	if d.Finding == protocol.FoundURLMismatch {
		return "Plivo's signatures match " + d.URL + "; set server.public_url to it"
	}
	return d.Hint
}
