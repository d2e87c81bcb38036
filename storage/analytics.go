package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketStatsMinute: 8-byte big-endian minute start (Unix seconds) →
// hourStats holding only status counts, for series finer than an hour.
// Kept for minuteRetention: the writer deletes older minutes as it goes.
var bucketStatsMinute = []byte("stats_minute")

// minuteRetention is how far back minute counters are kept and updated.
const minuteRetention = 48 * time.Hour

// analyticsCounters switches the counters added for the analytics view
// (per-minute counts, country, carrier, sender, spend) on; benchmarks turn
// it off to measure ingestion without them in the same run.
var analyticsCounters = true

// outcomes counts messages of one analytics key: all of them, the
// delivered (or read) ones and the failed (undelivered, failed, rejected)
// ones; the rest are in flight.
type outcomes [3]int64

const (
	outMessages = iota
	outDelivered
	outFailed
)

// Bounds of the analytics counters of one hour: keys beyond the cap, or
// longer than maxStatsKeyLen, count as statsOther (see hourStats.add).
const (
	maxStatsCountries = 64
	maxStatsCarriers  = 64
	maxStatsSenders   = 32
	maxStatsKeyLen    = 20
	// statsUnknown is the key of a message lacking the field (no MCC yet).
	statsUnknown = "unknown"
	// maxMessageSpend bounds what one message adds to spend (1,000,000.00
	// in micro-units), so hostile amounts cannot overflow an hour's sum.
	maxMessageSpend = 1_000_000_000_000
)

func outcomeOf(status string) int {
	switch {
	case status == StatusDelivered || status == StatusRead:
		return outDelivered
	case isFailing(status):
		return outFailed
	}
	return outMessages
}

// analyticsKey bounds a key: empty is statsUnknown, too long statsOther.
func analyticsKey(v string) string {
	switch {
	case v == "":
		return statsUnknown
	case len(v) > maxStatsKeyLen:
		return statsOther
	}
	return v
}

// carrierOf is "MCC-MNC", both all digits, else statsOther.
func carrierOf(mcc, mnc string) string {
	if mcc == "" && mnc == "" {
		return statsUnknown
	}
	if len(mcc) > 3 || len(mnc) > 3 || !allDigits(mcc) || !allDigits(mnc) {
		return statsOther
	}
	return mcc + "-" + mnc
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseMicros reads a decimal amount such as Plivo's TotalAmount "0.00650"
// as micro-units (6500), without floats; false for anything else.
func parseMicros(v string) (int64, bool) {
	whole, frac, _ := strings.Cut(strings.TrimSpace(v), ".")
	if whole == "" && frac == "" || len(whole) > 7 || !allDigits(whole) || !allDigits(frac) {
		return 0, false
	}
	var n int64
	for i := 0; i < len(whole); i++ {
		n = n*10 + int64(whole[i]-'0')
	}
	for i := range 6 {
		n *= 10
		if i < len(frac) {
			n += int64(frac[i] - '0')
		}
	}
	return min(n, maxMessageSpend), true
}

// setAnalytics fills the analytics part of a message's contribution.
func (c *contribution) setAnalytics(m *Message) {
	if !analyticsCounters {
		return
	}
	c.minute = minuteOf(m.FirstSeen)
	if m.Direction == DirectionInbound || m.Status == StatusReceived {
		return
	}
	c.dims = true
	c.country = analyticsKey(countryOf(m.To))
	c.carrier = carrierOf(m.MCC, m.MNC)
	c.sender = analyticsKey(m.From)
	c.outcome = outcomeOf(m.Status)
	if v, ok := parseMicros(m.TotalAmount); ok {
		c.spend = v
	}
}

func minuteOf(t time.Time) int64 {
	s := t.Unix()
	return s - ((s%60)+60)%60
}

// newKeyFits reports whether m, bounded to limit keys, can take a new key:
// it must leave a slot for statsOther, so the record never holds more than
// limit keys (as boundOutcomes leaves it).
func newKeyFits[V any](m map[string]V, limit int) bool {
	room := limit - len(m)
	if _, has := m[statsOther]; !has {
		room--
	}
	return room > 0
}

// addOutcome moves one message of key in m, with the same folding as
// error codes (see hourStats.add).
func addOutcome(m map[string]outcomes, key string, outcome int, sign int64, limit int) {
	o, ok := m[key]
	if !ok && (sign < 0 || !newKeyFits(m, limit)) {
		key = statsOther
		o = m[key]
	}
	o[outMessages] += sign
	if outcome != outMessages {
		o[outcome] += sign
	}
	if o == (outcomes{}) {
		delete(m, key)
		return
	}
	m[key] = o
}

func (h *hourStats) addAnalytics(c contribution, sign int64) {
	if !c.dims {
		return
	}
	addOutcome(h.countries, c.country, c.outcome, sign, maxStatsCountries)
	addOutcome(h.carriers, c.carrier, c.outcome, sign, maxStatsCarriers)
	addOutcome(h.senders, c.sender, c.outcome, sign, maxStatsSenders)
	h.spend += sign * c.spend
}

// boundOutcomes folds keys beyond limit (fewest messages first) into
// statsOther, for records written by anything but this version's add.
func boundOutcomes(m map[string]outcomes, limit int) {
	for k, v := range m {
		if len(k) > maxStatsKeyLen {
			o := m[statsOther]
			for i := range o {
				o[i] += v[i]
			}
			m[statsOther] = o
			delete(m, k)
		}
	}
	if len(m) <= limit {
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		if k != statsOther {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b string) int {
		if m[a][outMessages] != m[b][outMessages] {
			if m[a][outMessages] > m[b][outMessages] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	o := m[statsOther]
	for _, k := range keys[limit-1:] {
		for i := range o {
			o[i] += m[k][i]
		}
		delete(m, k)
	}
	m[statsOther] = o
}

func appendOutcomes(b []byte, m map[string]outcomes) []byte {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if v != (outcomes{}) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
		for _, v := range m[k] {
			b = binary.AppendVarint(b, v)
		}
	}
	return b
}

func readOutcomes(r *reader, m map[string]outcomes) {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return
	}
	for range n {
		k := r.bytes()
		var v outcomes
		for i := range v {
			v[i] = r.varint()
		}
		if r.err != nil {
			return
		}
		o := m[string(k)]
		for i := range o {
			o[i] += v[i]
		}
		m[string(k)] = o
	}
}

// minuteCounts returns the cached minute record, or nil when the minute is
// older than the retention floor (it is not kept).
func (sc *statsCache) minuteCounts(tx *bolt.Tx, minute int64) (*hourStats, error) {
	if minute < sc.minuteFloor {
		return nil, nil
	}
	if h, ok := sc.minutes[minute]; ok {
		return h, nil
	}
	h := &hourStats{counts: map[string]int64{}}
	if v := tx.Bucket(bucketStatsMinute).Get(u64key(uint64(minute))); v != nil {
		h = newHourStats()
		if err := decodeHourStats(v, h); err != nil {
			return nil, fmt.Errorf("decode stats minute %d: %w", minute, err)
		}
		h.bound()
	}
	if sc.minutes == nil {
		sc.minutes = map[int64]*hourStats{}
	}
	sc.minutes[minute] = h
	return h, nil
}

// moveMinute moves a message's status count between minute records.
func (sc *statsCache) moveMinute(tx *bolt.Tx, before, after contribution) error {
	if before.ok && before.minute != 0 {
		h, err := sc.minuteCounts(tx, before.minute)
		if err != nil {
			return err
		}
		if h != nil {
			h.counts[before.status]--
		}
	}
	if after.ok && after.minute != 0 {
		h, err := sc.minuteCounts(tx, after.minute)
		if err != nil {
			return err
		}
		if h != nil {
			h.counts[after.status]++
		}
	}
	return nil
}

// minutePurgeBatch bounds the expired minute records one commit deletes.
const minutePurgeBatch = 256

// flushMinutes writes the cached minute records and deletes those older
// than the retention floor, a few per commit: at most one minute record
// appears per minute, so this keeps up and costs one seek per commit.
func (sc *statsCache) flushMinutes(tx *bolt.Tx) error {
	if len(sc.minutes) == 0 {
		return nil
	}
	b := tx.Bucket(bucketStatsMinute)
	for minute, h := range sc.minutes {
		sc.buf = encodeHourStats(sc.buf[:0], h)
		if err := b.Put(u64key(uint64(minute)), bytes.Clone(sc.buf)); err != nil {
			return fmt.Errorf("put stats minute: %w", err)
		}
	}
	floor := u64key(uint64(max(sc.minuteFloor, 0)))
	c := b.Cursor()
	n := 0
	for k, _ := c.First(); k != nil && n < minutePurgeBatch && bytes.Compare(k, floor) < 0; k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return fmt.Errorf("delete stats minute: %w", err)
		}
		n++
	}
	return nil
}
