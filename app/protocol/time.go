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
	if t, ok := parseDocumentedTime(s); ok {
		return t, nil
	}
	return parseTimeLayouts(s)
}

// parseTimeLayouts is parseTimeValue by timeLayouts alone.
func parseTimeLayouts(s string) (time.Time, error) {
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

// parseDocumentedTime reads the spelling Plivo documents and sends on every
// callback, "2006-01-02 15:04:05" with an optional fraction of 1 to 9
// digits, in UTC, without time.Parse's layout interpretation (a fifth of a
// callback's parsing CPU went there). It reports false for anything else,
// including a date that does not exist or a year outside MinTime ..
// MaxTime, and parseTimeValue then decides by the layouts, so the result is
// always what time.ParseInLocation with the first layout gives
// (FuzzParseTime checks this).
func parseDocumentedTime(s string) (time.Time, bool) {
	// "2006-01-02 15:04:05" is 19 bytes; a fraction adds '.' and 1-9 digits.
	if len(s) < 19 || len(s) == 20 || len(s) > 29 ||
		s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	year, ok1 := digits(s[0:4])
	month, ok2 := digits(s[5:7])
	day, ok3 := digits(s[8:10])
	hour, ok4 := digits(s[11:13])
	minute, ok5 := digits(s[14:16])
	sec, ok6 := digits(s[17:19])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 ||
		month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if len(s) > 19 {
		if s[19] != '.' {
			return time.Time{}, false
		}
		frac, ok := digits(s[20:])
		if !ok {
			return time.Time{}, false
		}
		for range 29 - len(s) {
			frac *= 10
		}
		nsec = frac
	}
	// The years MinTime and MaxTime fall in are left to the layouts and
	// their range check.
	if year <= minTimeYear || year >= maxTimeYear {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if t.Day() != day {
		return time.Time{}, false // 31 April, 29 February of a common year
	}
	return t, true
}

// minTimeYear and maxTimeYear are MinTime's and MaxTime's years, computed
// once rather than on every callback's timestamps.
var minTimeYear, maxTimeYear = MinTime.Year(), MaxTime.Year()

// digits parses s, all ASCII digits, as a decimal number.
func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, len(s) > 0
}
