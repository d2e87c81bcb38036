package protocol

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// timeLayouts are the timestamp spellings accepted. Plivo documents
// "2024-05-01 10:00:00.123456" (UTC) for callbacks and adds a zone offset
// in the message resource; RFC 3339 is accepted for hand-written fixtures.
// Spellings seen without being documented (issue 11) are read when they say
// one instant and nothing else: an offset without a colon ("+0000"), an
// offset after a space (" +00:00", " +0000"), "Z", a 'T' separator without
// a zone (UTC, as the documented form), and the names UTC and GMT (see
// ParseTime). Zone abbreviations such as "EST" or "IST" are ambiguous (IST is
// India, Ireland or Israel) and are not guessed.
var timeLayouts = []string{
	"2006-01-02 15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999-0700",
	"2006-01-02 15:04:05.999999999 Z07:00",
	"2006-01-02 15:04:05.999999999 -0700",
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04:05.999999999-0700",
}

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

// zonelessLayouts are the timeLayouts that name no zone.
var zonelessLayouts = []string{"2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999"}

// ParseTime parses a Plivo timestamp ("2024-05-01 10:00:00.123456", UTC
// unless it names a zone; the other spellings are listed at timeLayouts)
// into UTC. Empty input yields nil: the field was not sent or not reached
// yet. A time outside MinTime .. MaxTime is an error wrapping
// ErrTimeOutOfRange; any other error means the spelling is not one we read.
func ParseTime(s string) (*time.Time, error) {
	t, err := parseTimeValue(s)
	if err != nil || t.IsZero() {
		return nil, err
	}
	return &t, nil
}

// parseTimeValue is ParseTime returning the time itself (zero for empty
// input), so that a caller parsing several can place them in one
// allocation.
func parseTimeValue(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	layouts := timeLayouts
	v := s
	// UTC and GMT name no offset but zero; Go's layouts would accept any
	// abbreviation in their place and invent an offset for it. Only a time
	// without an offset of its own may carry them ("+02:00 UTC" says two
	// different things).
	if base, ok := strings.CutSuffix(s, " UTC"); ok {
		v, layouts = base, zonelessLayouts
	} else if base, ok := strings.CutSuffix(s, " GMT"); ok {
		v, layouts = base, zonelessLayouts
	}
	for _, layout := range layouts {
		if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
			if !TimeInRange(t) {
				return time.Time{}, fmt.Errorf("%w: %s", ErrTimeOutOfRange, quoteShort(s))
			}
			return t.UTC(), nil
		}
	}
	return time.Time{}, errors.New("unrecognised time " + quoteShort(s))
}
