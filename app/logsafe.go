package app

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"time"
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
// log. At most limit lines a second are written; the count of lines left out
// goes on the next line written.
type rejectionLog struct {
	limit      perSecond
	suppressed atomic.Int64
}

// allow reports whether a rejection line may be written now and, if so, how
// many were suppressed since the last one.
func (r *rejectionLog) allow(now time.Time) (ok bool, suppressed int64) {
	if !r.limit.allow(now) {
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
