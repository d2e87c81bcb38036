package storage

import (
	"fmt"
	"plivo-dlr/internal/testsupport"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// hourRecord returns the encoded stats record of the hour holding the
// clock's time.
func hourRecord(t *testing.T, s *Store, clock *testsupport.Clock) []byte {
	t.Helper()
	var rec []byte
	err := s.view(func(tx *bolt.Tx) error {
		rec = append(rec, tx.Bucket(bucketStats).Get(u64key(uint64(hourOf(clock.Now()))))...)
		return nil
	})
	if err != nil || rec == nil {
		t.Fatalf("read stats hour: %v (record %d bytes)", err, len(rec))
	}
	return rec
}

// The issue-9 attack: thousands of failed messages with unique error codes
// and thousands of distinct unknown statuses in one hour. Before the bound
// every value became a key of the hour's record (2,701 unique 20 KB codes
// grew the DB to 1.68 GB); now the record keeps maxStatsErrorCodes codes
// and the closed status set, the rest counted as "other", totals exact.
func TestStatsRecordBounded(t *testing.T) {
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now})
	const n = 1500
	for i := range n {
		// Codes of the 8 bytes a callback may carry, and a long one from a
		// source that is not length-checked (a reconcile answer).
		code := fmt.Sprintf("%08d", 10000000+i)
		if i%2 == 1 {
			code = fmt.Sprintf("%0200d", i)
		}
		mustApply(t, s, ev(fmt.Sprintf("f%d", i), StatusFailed, 0, "ErrorCode", code))
		mustApply(t, s, ev(fmt.Sprintf("x%d", i), fmt.Sprintf("weird-status-%d", i), 0))
	}
	rec := hourRecord(t, s, clock)
	t.Logf("hour record after %d unique error codes and %d unique statuses: %d bytes", n, n, len(rec))
	// 64 codes of 8 bytes plus varints, 2 statuses: well under 1 KiB.
	if len(rec) > 1024 {
		t.Errorf("hour record = %d bytes after %d unique codes and statuses, want at most 1024", len(rec), n)
	}
	h := newHourStats()
	if err := decodeHourStats(rec, h); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if len(h.errors) > maxStatsErrorCodes || len(h.counts) != 2 {
		t.Errorf("record keys: %d error codes, %d statuses (%v); want at most %d codes and 2 statuses", len(h.errors), len(h.counts), h.counts, maxStatsErrorCodes)
	}
	st, err := s.Stats(clock.Now())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.Counts[StatusFailed] != n || st.Counts[statsOther] != n || st.Total != 2*n {
		t.Errorf("Counts = %v, Total = %d; want failed %d, other %d, total %d", st.Counts, st.Total, n, n, 2*n)
	}
	var codes int64
	for k, v := range h.errors {
		if v < 0 {
			t.Errorf("error code %q count %d, want >= 0", k, v)
		}
		codes += v
	}
	if codes != n {
		t.Errorf("error code counts sum to %d, want %d (one per failed message)", codes, n)
	}

	// A later report (same rank, higher Sequence) turning every failed
	// message delivered takes each out of its error counter, wherever it
	// was counted: nothing stays negative or stranded.
	for i := range n {
		mustApply(t, s, ev(fmt.Sprintf("f%d", i), StatusDelivered, 9))
	}
	h = newHourStats()
	if err := decodeHourStats(hourRecord(t, s, clock), h); err != nil {
		t.Fatalf("decode: %v", err)
	}
	for k, v := range h.errors {
		if v != 0 {
			t.Errorf("after clearing codes: error code %q count %d, want 0", k, v)
		}
	}
}

// A record written before the bound (any number of codes, raw statuses)
// shrinks the next time a commit touches its hour, and keeps its totals.
func TestStatsRecordHealsOldBloat(t *testing.T) {
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now})
	mustApply(t, s, ev("seed", StatusDelivered, 0))
	old := newHourStats()
	old.counts[StatusDelivered] = 1
	for i := range 5000 {
		old.counts[fmt.Sprintf("raw-%d", i)] = 1
		old.errors[fmt.Sprintf("%05d", i)] = int64(1 + i%3)
	}
	var want int64
	for _, v := range old.errors {
		want += v
	}
	hour := u64key(uint64(hourOf(clock.Now())))
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketStats).Put(hour, encodeHourStats(nil, old))
	}); err != nil {
		t.Fatalf("write old record: %v", err)
	}
	before := len(hourRecord(t, s, clock))

	mustApply(t, s, ev("next", StatusQueued, 0))
	rec := hourRecord(t, s, clock)
	t.Logf("old record %d bytes, after one commit %d bytes", before, len(rec))
	if len(rec) > 1024 || len(rec) >= before {
		t.Errorf("record %d bytes after a commit, was %d; want at most 1024", len(rec), before)
	}
	h := newHourStats()
	if err := decodeHourStats(rec, h); err != nil {
		t.Fatalf("decode: %v", err)
	}
	var got int64
	for _, v := range h.errors {
		got += v
	}
	if got != want || len(h.errors) > maxStatsErrorCodes {
		t.Errorf("error codes: %d keys summing to %d, want at most %d keys summing to %d", len(h.errors), got, maxStatsErrorCodes, want)
	}
	if h.counts[statsOther] != 5000 || h.counts[StatusDelivered] != 1 || h.counts[StatusQueued] != 1 {
		t.Errorf("status counts = %v, want other 5000, delivered 1, queued 1", h.counts)
	}
}
