package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// StatsRange is what StatsRangeRead reads in one snapshot: a window's
// summary, its series and the analytics tables.
type StatsRange struct {
	// Stats sums the hours from From's hour to To's (the counters'
	// resolution), as Store.Stats does.
	Stats
	// Points are the series' steps, oldest first.
	Points []StatsPoint
	// Countries, Carriers and Senders count the outbound messages of the
	// window's hours by destination country (ISO region, "unknown",
	// "other"), carrier ("MCC-MNC") and sender number, most messages first.
	Countries, Carriers, Senders []OutcomeCount
	// ErrorCodes counts failing messages by error code, most first.
	ErrorCodes []ErrorCodeCount
	// Spend sums TotalAmount of the window's hours in micro-units (1e-6 of
	// Plivo's currency); SpendByDay splits it by UTC day, oldest first,
	// days without spend left out.
	Spend      int64
	SpendByDay []SpendPoint
}

// StatsPoint counts the messages first seen in [Start, Start+step) by
// current status.
type StatsPoint struct {
	Start  time.Time
	Counts map[string]int64
}

// OutcomeCount is one row of an analytics table: messages of the key, and
// how many of them were delivered and failed; the rest are in flight.
type OutcomeCount struct {
	Key                         string
	Messages, Delivered, Failed int64
}

// SpendPoint is the spend of one UTC day, in micro-units.
type SpendPoint struct {
	Day    time.Time
	Micros int64
}

// maxRangePoints bounds StatsRangeRead's series.
const maxRangePoints = 2000

// ErrBadRange means StatsRangeRead's arguments describe no series it can
// build: to before from, a step that is not whole minutes below an hour or
// whole hours above, minutes older than they are kept, or too many points.
var ErrBadRange = errors.New("bad stats range")

// StatsRangeRead reads, in one read transaction, the counters of the hours
// from from's hour to to's, and the series in steps of step from from
// (truncated to the minute, or to the hour for steps of an hour or more) up
// to the step holding to. Steps under an hour come from the minute counters,
// kept for the last 48 hours. It never scans messages: the cost grows with
// the window's hours (and minutes), not with the messages stored.
func (s *Store) StatsRangeRead(from, to time.Time, step time.Duration) (StatsRange, error) {
	if to.Before(from) || step < time.Minute || step%time.Minute != 0 || step > time.Hour && step%time.Hour != 0 ||
		step < time.Hour && time.Hour%step != 0 {
		return StatsRange{}, fmt.Errorf("stats range: %w", ErrBadRange)
	}
	fine := step < time.Hour
	start := from.Truncate(time.Minute)
	if !fine {
		start = time.Unix(hourOf(from), 0)
	}
	n := int(to.Sub(start)/step) + 1 // up to the step holding to
	if n > maxRangePoints || fine && start.Before(s.now().Add(-minuteRetention-time.Hour)) {
		return StatsRange{}, fmt.Errorf("stats range: %w", ErrBadRange)
	}
	stepSec := int64(step / time.Second)
	startSec := start.Unix()
	points := make([]map[string]int64, n)
	sum := newHourStats()
	spend := map[int64]int64{}
	pointOf := func(at int64) int {
		if at < startSec {
			return -1
		}
		i := int((at - startSec) / stepSec)
		if i >= n {
			return -1
		}
		return i
	}
	addPoint := func(i int, counts map[string]int64) {
		if points[i] == nil {
			points[i] = map[string]int64{}
		}
		for k, v := range counts {
			if v != 0 {
				points[i][statsStatus(k)] += v
			}
		}
	}
	err := s.view(func(tx *bolt.Tx) error {
		lo, hi := uint64(max(hourOf(from), 0)), uint64(max(hourOf(to), 0))
		c := tx.Bucket(bucketStats).Cursor()
		h := newHourStats()
		for k, v := c.Seek(u64key(lo)); k != nil && binary.BigEndian.Uint64(k) <= hi; k, v = c.Next() {
			hour := int64(binary.BigEndian.Uint64(k))
			clearHour(h)
			if err := decodeHourStats(v, h); err != nil {
				return fmt.Errorf("decode stats hour %d: %w", hour, err)
			}
			mergeHour(sum, h)
			spend[hour-((hour%86400)+86400)%86400] += h.spend
			if !fine {
				if i := pointOf(hour); i >= 0 {
					addPoint(i, h.counts)
				}
			}
		}
		if !fine {
			return nil
		}
		c = tx.Bucket(bucketStatsMinute).Cursor()
		end := uint64(startSec + int64(n)*stepSec)
		for k, v := c.Seek(u64key(uint64(max(startSec, 0)))); k != nil && binary.BigEndian.Uint64(k) < end; k, v = c.Next() {
			clearHour(h)
			if err := decodeHourStats(v, h); err != nil {
				return fmt.Errorf("decode stats minute: %w", err)
			}
			if i := pointOf(int64(binary.BigEndian.Uint64(k))); i >= 0 {
				addPoint(i, h.counts)
			}
		}
		return nil
	})
	if err != nil {
		return StatsRange{}, fmt.Errorf("stats range: %w", err)
	}
	out := StatsRange{Stats: summarise(sum), Points: make([]StatsPoint, n), Spend: sum.spend}
	for i := range points {
		counts := points[i]
		if counts == nil {
			counts = map[string]int64{}
		}
		out.Points[i] = StatsPoint{Start: time.Unix(startSec+int64(i)*stepSec, 0).UTC(), Counts: counts}
	}
	out.Countries = outcomeRows(sum.countries)
	out.Carriers = outcomeRows(sum.carriers)
	out.Senders = outcomeRows(sum.senders)
	for code, v := range sum.errors {
		if v > 0 {
			out.ErrorCodes = append(out.ErrorCodes, ErrorCodeCount{Code: code, Count: v})
		}
	}
	slices.SortFunc(out.ErrorCodes, func(a, b ErrorCodeCount) int {
		if a.Count != b.Count {
			if a.Count > b.Count {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Code, b.Code)
	})
	for day, v := range spend {
		if v != 0 {
			out.SpendByDay = append(out.SpendByDay, SpendPoint{Day: time.Unix(day, 0).UTC(), Micros: v})
		}
	}
	slices.SortFunc(out.SpendByDay, func(a, b SpendPoint) int { return a.Day.Compare(b.Day) })
	return out, nil
}

func clearHour(h *hourStats) {
	clear(h.counts)
	clear(h.errors)
	clear(h.countries)
	clear(h.carriers)
	clear(h.senders)
	h.ttd = [ttdBuckets]int64{}
	h.spend = 0
}

// mergeHour adds h to sum. Summed tables are not bounded: a window of many
// hours may name more keys than one hour may, up to the caps times hours.
func mergeHour(sum, h *hourStats) {
	for k, v := range h.counts {
		sum.counts[k] += v
	}
	for i, v := range h.ttd {
		sum.ttd[i] += v
	}
	for k, v := range h.errors {
		sum.errors[k] += v
	}
	for _, p := range [...][2]map[string]outcomes{{sum.countries, h.countries}, {sum.carriers, h.carriers}, {sum.senders, h.senders}} {
		for k, v := range p[1] {
			o := p[0][k]
			for i := range o {
				o[i] += v[i]
			}
			p[0][k] = o
		}
	}
	sum.spend += h.spend
}

func outcomeRows(m map[string]outcomes) []OutcomeCount {
	rows := make([]OutcomeCount, 0, len(m))
	for k, v := range m {
		if v[outMessages] > 0 {
			rows = append(rows, OutcomeCount{Key: k, Messages: v[outMessages], Delivered: v[outDelivered], Failed: v[outFailed]})
		}
	}
	slices.SortFunc(rows, func(a, b OutcomeCount) int {
		if a.Messages != b.Messages {
			if a.Messages > b.Messages {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Key, b.Key)
	})
	return rows
}
