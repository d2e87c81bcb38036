package storage

import (
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// commitHealth remembers how the writer's recent commits went, for
// readiness: a ping that rewrites one meta key can succeed in pages freed
// earlier while every callback's commit fails for want of space.
type commitHealth struct {
	mu       sync.Mutex
	lastOK   time.Time // last commit that stored at least one event
	lastFail time.Time // last commit that failed as a whole
	lastErr  error
}

// noteCommit records a commit's outcome; events is how many events it held.
func (h *commitHealth) noteCommit(now time.Time, events int, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case err != nil:
		h.lastFail, h.lastErr = now, err
	case events > 0:
		h.lastOK = now
	}
}

// CommitHealth describes the writer's recent commits.
type CommitHealth struct {
	// Failing is true when the last commit holding events failed (no event
	// commit succeeded since) within the window passed to CommitHealth.
	Failing bool
	// Since is when the failing commit happened; Err is its error.
	Since time.Time
	Err   error
}

// CommitHealth reports whether commits storing events have been failing
// within the last window.
func (s *Store) CommitHealth(window time.Duration) CommitHealth {
	h := &s.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lastFail.IsZero() || !h.lastFail.After(h.lastOK) || s.now().Sub(h.lastFail) > window {
		return CommitHealth{}
	}
	return CommitHealth{Failing: true, Since: h.lastFail, Err: h.lastErr}
}

// Dir is the directory holding the database file.
func (s *Store) Dir() string { return filepath.Dir(s.path) }

// FreeBytes returns the space available to this process in the store's
// filesystem.
func (s *Store) FreeBytes() (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(s.Dir(), &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", s.Dir(), err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// countApplies returns how many of rs store an event (not generic writes
// such as a ping).
func countApplies(rs []*request) int {
	n := 0
	for _, r := range rs {
		if r.fn == nil {
			n++
		}
	}
	return n
}
