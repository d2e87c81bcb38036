package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Stats summarises the messages first seen in a time window.
type Stats struct {
	// Counts maps each current status to its number of messages.
	Counts map[string]int64
	// Total is the number of messages in the window.
	Total int64
	// DeliveryRate is delivered (and read) over all messages with a terminal
	// status; 0 when there are none.
	DeliveryRate float64
	// P50ToDeliver and P90ToDeliver are time-to-deliver percentiles from
	// Plivo's QueuedTime and DeliveryReportTime, meaningful only when
	// HaveTimeToDeliver is true.
	P50ToDeliver, P90ToDeliver time.Duration
	HaveTimeToDeliver          bool
	// TopErrorCodes lists the most frequent error codes of failed,
	// undelivered and rejected messages, most frequent first.
	TopErrorCodes []ErrorCodeCount
}

// ErrorCodeCount is one entry of Stats.TopErrorCodes.
type ErrorCodeCount struct {
	Code  string
	Count int64
}

// topErrorCodes bounds Stats.TopErrorCodes.
const topErrorCodes = 10

// Time-to-deliver histogram: bucket 0 holds [0, ttdBase); bucket i ≥ 1 holds
// [ttdBase·√2^(i-1), ttdBase·√2^i); the last bucket is open-ended. With
// ttdBase = 250 ms and 48 buckets the top bound is ≈ 4 days, and a
// percentile interpolated within a bucket is off by at most ~20%.
const (
	ttdBuckets = 48
	ttdBase    = 250 * time.Millisecond
)

func ttdLower(i int) time.Duration {
	if i == 0 {
		return 0
	}
	return time.Duration(float64(ttdBase) * math.Pow(math.Sqrt2, float64(i-1)))
}

func ttdUpper(i int) time.Duration {
	return time.Duration(float64(ttdBase) * math.Pow(math.Sqrt2, float64(i)))
}

func ttdBucket(d time.Duration) int {
	if d < ttdBase {
		return 0
	}
	i := 1 + int(2*math.Log2(float64(d)/float64(ttdBase)))
	// Guard float rounding at bucket edges.
	for i > 1 && d < ttdLower(i) {
		i--
	}
	for i < ttdBuckets-1 && d >= ttdUpper(i) {
		i++
	}
	return min(i, ttdBuckets-1)
}

// hourStats is the value of one `stats` bucket entry: what the messages first
// seen in that hour look like now.
type hourStats struct {
	counts map[string]int64 // by current status
	ttd    [ttdBuckets]int64
	errors map[string]int64 // by error code, failing statuses only
	// The analytics counters (analytics.go), outbound messages only, each
	// bounded per hour: by destination country, carrier (MCC-MNC) and
	// sender number; spend is the sum of TotalAmount in micro-units.
	countries, carriers, senders map[string]outcomes
	spend                        int64
}

func newHourStats() *hourStats {
	return &hourStats{counts: map[string]int64{}, errors: map[string]int64{},
		countries: map[string]outcomes{}, carriers: map[string]outcomes{}, senders: map[string]outcomes{}}
}

// Hour record layout. Format 1 (older versions): counts, ttd, errors, one
// after the other. Format 2: a format byte, a uvarint field count, then
// that many length-prefixed fields (counts, ttd, errors, countries,
// carriers, senders, spend): a reader skips fields it does not know, and
// a record with fewer fields (format 1 included) decodes with the rest
// zero.
const (
	hourFormatV1 byte = 1
	hourFormatV2 byte = 2
	hourFields        = 7
)

func encodeHourStats(b []byte, h *hourStats) []byte {
	b = append(b, hourFormatV2)
	b = binary.AppendUvarint(b, hourFields)
	b = appendField(b, func(b []byte) []byte { return appendCounts(b, h.counts) })
	b = appendField(b, func(b []byte) []byte { return appendTTD(b, &h.ttd) })
	b = appendField(b, func(b []byte) []byte { return appendCounts(b, h.errors) })
	b = appendField(b, func(b []byte) []byte { return appendOutcomes(b, h.countries) })
	b = appendField(b, func(b []byte) []byte { return appendOutcomes(b, h.carriers) })
	b = appendField(b, func(b []byte) []byte { return appendOutcomes(b, h.senders) })
	return appendField(b, func(b []byte) []byte { return binary.AppendVarint(b, h.spend) })
}

// appendField appends what fn writes, prefixed by its length. The length
// takes one byte for short fields; longer ones are moved to make room.
func appendField(b []byte, fn func([]byte) []byte) []byte {
	start := len(b)
	b = append(b, 0)
	b = fn(b)
	n := len(b) - start - 1
	if n < 0x80 {
		b[start] = byte(n)
		return b
	}
	var hdr [binary.MaxVarintLen64]byte
	h := binary.PutUvarint(hdr[:], uint64(n))
	b = append(b, hdr[:h-1]...)
	copy(b[start+h:], b[start+1:start+1+n])
	copy(b[start:], hdr[:h])
	return b
}

func appendTTD(b []byte, ttd *[ttdBuckets]int64) []byte {
	var n uint64
	for _, c := range ttd {
		if c != 0 {
			n++
		}
	}
	b = binary.AppendUvarint(b, n)
	for i, c := range ttd {
		if c != 0 {
			b = binary.AppendUvarint(b, uint64(i))
			b = binary.AppendVarint(b, c)
		}
	}
	return b
}

func appendCounts(b []byte, m map[string]int64) []byte {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if v != 0 {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
		b = binary.AppendVarint(b, m[k])
	}
	return b
}

// decodeHourStats adds the encoded stats in b to h.
func decodeHourStats(b []byte, h *hourStats) error {
	r := reader{b: b}
	switch r.byte() {
	case hourFormatV1:
		readCounts(&r, h.counts)
		readTTD(&r, h)
		readCounts(&r, h.errors)
		return r.err
	case hourFormatV2:
	default:
		return errCorrupt
	}
	n := r.uvarint()
	for i := uint64(0); i < n && r.err == nil; i++ {
		f := reader{b: r.bytes()}
		if r.err != nil {
			break
		}
		switch i {
		case 0:
			readCounts(&f, h.counts)
		case 1:
			readTTD(&f, h)
		case 2:
			readCounts(&f, h.errors)
		case 3:
			readOutcomes(&f, h.countries)
		case 4:
			readOutcomes(&f, h.carriers)
		case 5:
			readOutcomes(&f, h.senders)
		case 6:
			h.spend += f.varint()
		}
		if f.err != nil {
			return f.err
		}
	}
	return r.err
}

func readTTD(r *reader, h *hourStats) {
	n := r.uvarint()
	for range n {
		i := r.uvarint()
		c := r.varint()
		if r.err != nil || i >= ttdBuckets {
			r.fail()
			return
		}
		h.ttd[i] += c
	}
}

func readCounts(r *reader, m map[string]int64) {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return
	}
	for range n {
		k := r.bytes()
		v := r.varint()
		if r.err != nil {
			return
		}
		m[string(k)] += v
	}
}

// contribution is what one message adds to the stats of the hour it was
// first seen in. Apply subtracts a message's old contribution and adds its
// new one, so the counters always describe current states.
type contribution struct {
	ok      bool
	hour    int64 // Unix seconds of the hour start
	status  string
	ttd     int // histogram bucket, -1 when unknown
	errCode string
	// The analytics part (analytics.go): the minute first seen (0 when the
	// counters are off) and, for outbound messages (dims), the keys.
	minute                   int64
	dims                     bool
	country, carrier, sender string
	outcome                  int
	spend                    int64
}

func contributionOf(m *Message) contribution {
	if m.MessageUUID == "" {
		return contribution{}
	}
	c := contribution{ok: true, hour: hourOf(m.FirstSeen), status: statsStatus(m.Status), ttd: -1}
	// Only delivered messages have a time to deliver: an undelivered one's
	// DeliveryReportTime is when it failed.
	if m.Status == StatusDelivered || m.Status == StatusRead {
		if d, ok := m.TimeToDeliver(); ok {
			c.ttd = ttdBucket(d)
		}
	}
	if isFailing(m.Status) {
		c.errCode = m.ErrorCode
		if len(c.errCode) > maxStatsCodeLen {
			c.errCode = statsOther
		}
	}
	c.setAnalytics(m)
	return c
}

// Bounds of one hour's stats record, which is decoded and rewritten by every
// commit touching the hour: whatever reaches the store (a signed but hostile
// callback, a reconcile answer), the record stays a few hundred bytes.
// Statuses are a closed set: an unknown one is counted as statsOther (the
// message and its events keep it). Error codes keep their own counter up to
// maxStatsErrorCodes distinct codes an hour (Plivo documents about twenty);
// further codes, and any longer than maxStatsCodeLen, count as statsOther.
const (
	statsOther         = "other"
	maxStatsErrorCodes = 64
	maxStatsCodeLen    = 16
)

// statsStatus is the counter a message's current status goes to.
// StatusReceived (inbound messages) ranks 0 but is one of ours: it keeps its
// counter, which the API reports apart from the delivery counts.
func statsStatus(status string) string {
	if StatusRank(status) == 0 && status != StatusReceived {
		return statsOther
	}
	return status
}

// bound folds what an older version may have written (unknown statuses, any
// number of error codes) into statsOther, so such a record shrinks the next
// time it is rewritten. It keeps the most frequent codes.
func (h *hourStats) bound() {
	for k, v := range h.counts {
		if k != statsOther && statsStatus(k) == statsOther {
			h.counts[statsOther] += v
			delete(h.counts, k)
		}
	}
	for k, v := range h.errors {
		if len(k) > maxStatsCodeLen {
			h.errors[statsOther] += v
			delete(h.errors, k)
		}
	}
	boundOutcomes(h.countries, maxStatsCountries)
	boundOutcomes(h.carriers, maxStatsCarriers)
	boundOutcomes(h.senders, maxStatsSenders)
	if len(h.errors) <= maxStatsErrorCodes {
		return
	}
	codes := make([]ErrorCodeCount, 0, len(h.errors))
	for k, v := range h.errors {
		if k != statsOther {
			codes = append(codes, ErrorCodeCount{Code: k, Count: v})
		}
	}
	slices.SortFunc(codes, func(a, b ErrorCodeCount) int {
		if a.Count != b.Count {
			if a.Count > b.Count {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Code, b.Code)
	})
	for _, c := range codes[maxStatsErrorCodes-1:] {
		h.errors[statsOther] += c.Count
		delete(h.errors, c.Code)
	}
}

func isFailing(status string) bool {
	return status == StatusFailed || status == StatusUndelivered || status == StatusRejected
}

func hourOf(t time.Time) int64 {
	s := t.Unix()
	return s - ((s%3600)+3600)%3600
}

func (h *hourStats) add(c contribution, sign int64) {
	h.counts[c.status] += sign
	if c.ttd >= 0 {
		h.ttd[c.ttd] += sign
	}
	if c.errCode != "" {
		// A code without its own counter (the hour already has
		// maxStatsErrorCodes) was added to, and is taken from, statsOther.
		// Should a counter for it appear later, its removals may land there
		// instead: totals stay exact, attribution is approximate under abuse.
		code := c.errCode
		if _, ok := h.errors[code]; !ok && (sign < 0 || !newKeyFits(h.errors, maxStatsErrorCodes)) {
			code = statsOther
		}
		h.errors[code] += sign
	}
	h.addAnalytics(c, sign)
}

// statsCache holds the hour entries touched by one write transaction, so a
// batch of events decodes and encodes each hour once.
type statsCache struct {
	hours map[int64]*hourStats
	buf   []byte
	// minutes are the minute records touched (analytics.go); minuteFloor
	// (Unix seconds) is the oldest minute kept, set by reset from now.
	minutes     map[int64]*hourStats
	minuteFloor int64
	now         func() time.Time
}

func (sc *statsCache) reset() {
	clear(sc.hours)
	clear(sc.minutes)
	if sc.now != nil {
		sc.minuteFloor = minuteOf(sc.now().Add(-minuteRetention))
	}
}

func (sc *statsCache) get(b *bolt.Bucket, hour int64) (*hourStats, error) {
	if h, ok := sc.hours[hour]; ok {
		return h, nil
	}
	h := newHourStats()
	if v := b.Get(u64key(uint64(hour))); v != nil {
		if err := decodeHourStats(v, h); err != nil {
			return nil, fmt.Errorf("decode stats hour %d: %w", hour, err)
		}
		h.bound()
	}
	if sc.hours == nil {
		sc.hours = map[int64]*hourStats{}
	}
	sc.hours[hour] = h
	return h, nil
}

// move updates the counters for a message whose contribution changed.
func (sc *statsCache) move(b *bolt.Bucket, before, after contribution) error {
	if before == after {
		return nil
	}
	if before.ok {
		h, err := sc.get(b, before.hour)
		if err != nil {
			return err
		}
		h.add(before, -1)
	}
	if after.ok {
		h, err := sc.get(b, after.hour)
		if err != nil {
			return err
		}
		h.add(after, +1)
	}
	if before.minute != after.minute || before.status != after.status {
		return sc.moveMinute(b.Tx(), before, after)
	}
	return nil
}

func (sc *statsCache) flush(b *bolt.Bucket) error {
	for hour, h := range sc.hours {
		sc.buf = encodeHourStats(sc.buf[:0], h)
		if err := b.Put(u64key(uint64(hour)), bytes.Clone(sc.buf)); err != nil {
			return fmt.Errorf("put stats hour: %w", err)
		}
	}
	return sc.flushMinutes(b.Tx())
}

// Stats sums the hourly counters of messages first seen from since's hour up
// to now. It never scans messages: cost grows with the window in hours.
func (s *Store) Stats(since time.Time) (Stats, error) {
	sum := newHourStats()
	from := uint64(max(hourOf(since), 0))
	to := uint64(max(hourOf(s.now()), 0))
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketStats).Cursor()
		for k, v := c.Seek(u64key(from)); k != nil && binary.BigEndian.Uint64(k) <= to; k, v = c.Next() {
			if err := decodeHourStats(v, sum); err != nil {
				return fmt.Errorf("decode stats hour: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("stats: %w", err)
	}
	return summarise(sum), nil
}

func summarise(h *hourStats) Stats {
	st := Stats{Counts: map[string]int64{}}
	for k, v := range h.counts {
		if v != 0 {
			// Hours written before statuses were folded may hold raw ones.
			k = statsStatus(k)
			st.Counts[k] += v
			st.Total += v
		}
	}
	ok := st.Counts[StatusDelivered] + st.Counts[StatusRead]
	final := ok + st.Counts[StatusUndelivered] + st.Counts[StatusFailed] + st.Counts[StatusRejected]
	if final > 0 {
		st.DeliveryRate = float64(ok) / float64(final)
	}
	var n int64
	for _, c := range h.ttd {
		n += c
	}
	if n > 0 {
		st.HaveTimeToDeliver = true
		st.P50ToDeliver = percentile(&h.ttd, n, 0.50)
		st.P90ToDeliver = percentile(&h.ttd, n, 0.90)
	}
	for code, c := range h.errors {
		if c > 0 {
			st.TopErrorCodes = append(st.TopErrorCodes, ErrorCodeCount{Code: code, Count: c})
		}
	}
	slices.SortFunc(st.TopErrorCodes, func(a, b ErrorCodeCount) int {
		if a.Count != b.Count {
			if a.Count > b.Count {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Code, b.Code)
	})
	if len(st.TopErrorCodes) > topErrorCodes {
		st.TopErrorCodes = st.TopErrorCodes[:topErrorCodes]
	}
	return st
}

// percentile interpolates linearly within the histogram bucket holding the
// q-th observation.
func percentile(hist *[ttdBuckets]int64, n int64, q float64) time.Duration {
	rank := q * float64(n)
	var cum float64
	for i, c := range hist {
		if c <= 0 {
			continue
		}
		if cum+float64(c) >= rank {
			lo, hi := ttdLower(i), ttdUpper(i)
			frac := (rank - cum) / float64(c)
			return lo + time.Duration(frac*float64(hi-lo))
		}
		cum += float64(c)
	}
	return ttdUpper(ttdBuckets - 1)
}
