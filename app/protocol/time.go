package protocol

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// timeLayouts are the timestamp spellings Plivo uses: callbacks write
// "2024-05-01 10:00:00.123456" (UTC), the message resource adds a zone
// offset, and RFC 3339 is accepted for hand-written fixtures.
var timeLayouts = []string{"2006-01-02 15:04:05.999999999", "2006-01-02 15:04:05.999999999-07:00", time.RFC3339Nano}

// MinTime and MaxTime bound the times the store can keep: it records them
// as int64 nanoseconds since 1970, so anything outside 1677-09-21 ..
// 2262-04-11 would wrap around (9999-12-31 read back as 1816-03-30).
var (
	MinTime = time.Unix(0, math.MinInt64).UTC()
	MaxTime = time.Unix(0, math.MaxInt64).UTC()
)

// ErrTimeOutOfRange means a timestamp parsed but lies outside MinTime ..
// MaxTime.
var ErrTimeOutOfRange = errors.New("time outside 1677-09-21 .. 2262-04-11")

// TimeInRange reports whether t lies within MinTime .. MaxTime.
func TimeInRange(t time.Time) bool { return !t.Before(MinTime) && !t.After(MaxTime) }

// ParseTime parses a Plivo timestamp ("2024-05-01 10:00:00.123456", UTC
// unless it names a zone) into UTC. Empty input yields nil: the field was
// not sent or not reached yet. A time outside MinTime .. MaxTime is an error
// wrapping ErrTimeOutOfRange.
func ParseTime(s string) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	for _, layout := range timeLayouts {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			if !TimeInRange(t) {
				return nil, fmt.Errorf("%w: %s", ErrTimeOutOfRange, quoteShort(s))
			}
			t = t.UTC()
			return &t, nil
		}
	}
	return nil, errors.New("unrecognised time " + strconv.Quote(s))
}
