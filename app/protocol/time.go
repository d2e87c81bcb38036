package protocol

import (
	"errors"
	"strconv"
	"time"
)

// timeLayouts are the timestamp spellings Plivo uses: callbacks write
// "2024-05-01 10:00:00.123456" (UTC), the message resource adds a zone
// offset, and RFC 3339 is accepted for hand-written fixtures.
var timeLayouts = []string{"2006-01-02 15:04:05.999999999", "2006-01-02 15:04:05.999999999-07:00", time.RFC3339Nano}

// ParseTime parses a Plivo timestamp ("2024-05-01 10:00:00.123456", UTC
// unless it names a zone) into UTC. Empty input yields nil: the field was
// not sent or not reached yet.
func ParseTime(s string) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	for _, layout := range timeLayouts {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			t = t.UTC()
			return &t, nil
		}
	}
	return nil, errors.New("unrecognised time " + strconv.Quote(s))
}
