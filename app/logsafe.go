package app

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// maxLoggedValue bounds every attacker-controlled value written to the log
// (usernames, URLs, UUIDs from bodies): without it, 300 logins with 1 MiB
// usernames wrote 314 MB of log in under three seconds.
const maxLoggedValue = 200

// clip returns v cut to maxLoggedValue bytes, saying how long it was.
func clip(v string) string {
	if len(v) <= maxLoggedValue {
		return v
	}
	return fmt.Sprintf("%s…(%d bytes)", v[:maxLoggedValue], len(v))
}

// rejectionLog samples log lines about refused requests (bad signatures,
// replays, failed logins): a flood of forgeries must not become a flood of
// log. At most perSecond lines a second are written (a token bucket holding
// one second's worth); the count of lines left out goes on the next line
// written.
type rejectionLog struct {
	limit      *rate.Limiter
	suppressed atomic.Int64
}

// newRejectionLog writes at most perSecond lines a second.
func newRejectionLog(perSecond int) *rejectionLog {
	return &rejectionLog{limit: rate.NewLimiter(rate.Limit(perSecond), perSecond)}
}

// allow reports whether a rejection line may be written now and, if so, how
// many were suppressed since the last one.
func (r *rejectionLog) allow(now time.Time) (ok bool, suppressed int64) {
	if !r.limit.AllowN(now, 1) {
		r.suppressed.Add(1)
		return false, 0
	}
	return true, r.suppressed.Swap(0)
}

// quoteShort quotes s for an error message, cut to a readable length.
func quoteShort(s string) string {
	const limit = 40
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + "..."
	}
	return strconv.Quote(s)
}
