package storage

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// pendingEntries reads the pending index as MessageUUID → LastSeen, and the
// stored count.
func pendingEntries(tb testing.TB, s *Store) (map[string]time.Time, uint64) {
	tb.Helper()
	got := map[string]time.Time{}
	var n uint64
	err := s.view(func(tx *bolt.Tx) error {
		n = readPendingCount(tx.Bucket(bucketMeta))
		return tx.Bucket(bucketPending).ForEach(func(k, _ []byte) error {
			got[string(k[8:])] = time.Unix(0, int64(binary.BigEndian.Uint64(k))).UTC()
			return nil
		})
	})
	if err != nil {
		tb.Fatalf("read pending index: %v", err)
	}
	return got, n
}

// checkPendingIndex compares the index with the messages' own state: every
// non-terminal message once, at its LastSeen, and the count matching.
func checkPendingIndex(tb testing.TB, s *Store, uuids []string) {
	tb.Helper()
	got, n := pendingEntries(tb, s)
	want := map[string]time.Time{}
	for _, u := range uuids {
		m, _, err := s.GetMessage(u)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			tb.Fatal(err)
		}
		if !IsTerminal(m.Status) {
			want[u] = m.LastSeen
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		tb.Errorf("pending index = %v, want %v", got, want)
	}
	if n != uint64(len(want)) {
		tb.Errorf("pending count = %d, want %d", n, len(want))
	}
}

func TestPendingIndexFollowsStatus(t *testing.T) {
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now})
	const a, b = "aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"
	steps := []struct {
		name        string
		e           Event
		wantPending []string
	}{
		{"queued enters", ev(a, StatusQueued, 1), []string{a}},
		{"second message", ev(b, StatusSent, 2), []string{a, b}},
		{"sent moves the entry", ev(a, StatusSent, 2), []string{a, b}},
		{"duplicate changes nothing", ev(a, StatusSent, 2), []string{a, b}},
		{"delivered leaves", ev(a, StatusDelivered, 3), []string{b}},
		{"late sent does not bring it back", ev(a, StatusSent, 2, "X", "late"), []string{b}},
		{"unknown status stays pending", ev(b, "accepted", 0), []string{b}},
		{"failed leaves", ev(b, StatusFailed, 3, "ErrorCode", "30"), nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			clock.Add(time.Second)
			mustApply(t, s, st.e)
			got, _ := pendingEntries(t, s)
			keys := make([]string, 0, len(got))
			for k := range got {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if fmt.Sprint(keys) != fmt.Sprint(st.wantPending) {
				t.Errorf("pending = %v, want %v", keys, st.wantPending)
			}
			checkPendingIndex(t, s, []string{a, b})
		})
	}
	// The count is stored: it survives a restart.
	s = reopen(t, s, Options{Now: clock.Now})
	checkPendingIndex(t, s, []string{a, b})
}

// TestPendingIndexRandom applies random event sequences, out of order and
// with repeats, concurrently (so they share commits), and checks the index
// against every message's state.
func TestPendingIndexRandom(t *testing.T) {
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now})
	rng := rand.New(rand.NewPCG(1, 2))
	statuses := []string{StatusQueued, StatusSent, StatusDelivered, StatusUndelivered, StatusFailed, StatusRead, "accepted"}
	var uuids []string
	var events []Event
	for i := range 200 {
		u := fmt.Sprintf("%08x-0000-4000-8000-%012d", i, i)
		uuids = append(uuids, u)
		for range 1 + rng.IntN(4) {
			e := ev(u, statuses[rng.IntN(len(statuses))], int64(rng.IntN(4)))
			e.ReceivedAt = clock.Now().Add(time.Duration(rng.IntN(3600)) * time.Second)
			events = append(events, e)
		}
	}
	rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	errs := make(chan error, len(events))
	sem := make(chan struct{}, 32)
	for _, e := range events {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			_, err := s.Apply(t.Context(), e)
			errs <- err
		}()
	}
	for range events {
		if err := <-errs; err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
	checkPendingIndex(t, s, uuids)
}

func TestPendingByAge(t *testing.T) {
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now})
	now := clock.Now()
	// Last seen this long before now; the delivered one is never counted.
	ages := []time.Duration{0, 4 * time.Minute, 5 * time.Minute, 29 * time.Minute, 2 * time.Hour, 24 * time.Hour, 72 * time.Hour, 400 * time.Hour}
	for i, age := range ages {
		e := ev(fmt.Sprintf("%08x-0000-4000-8000-000000000000", i), StatusSent, 0)
		e.ReceivedAt = now.Add(-age)
		mustApply(t, s, e)
	}
	done := ev("dddddddd-0000-4000-8000-000000000000", StatusDelivered, 0)
	done.ReceivedAt = now.Add(-time.Minute)
	mustApply(t, s, done)

	bounds := []time.Duration{5 * time.Minute, 30 * time.Minute, 24 * time.Hour}
	tests := []struct {
		name  string
		later time.Duration
		want  []int
	}{
		{"now", 0, []int{2, 2, 1, 3}},
		{"ten minutes later", 10 * time.Minute, []int{0, 3, 2, 3}},
		{"a day later", 24 * time.Hour, []int{0, 0, 0, 8}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.PendingByAge(now.Add(tc.later), bounds)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("PendingByAge = %v, want %v", got, tc.want)
			}
		})
	}
	if got, err := s.PendingByAge(now, nil); err != nil || fmt.Sprint(got) != "[8]" {
		t.Errorf("PendingByAge(no bounds) = %v, %v, want [8]", got, err)
	}
}

// TestPendingMigration turns a store back into a version 1 file (no pending
// index) and checks that Open builds the index.
func TestPendingMigration(t *testing.T) {
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now})
	var uuids []string
	for i := range 40 {
		u := fmt.Sprintf("%08x-0000-4000-8000-%012d", i, i)
		uuids = append(uuids, u)
		mustApply(t, s, ev(u, []string{StatusQueued, StatusSent, StatusDelivered, StatusUndelivered}[i%4], 0))
		clock.Add(time.Second)
	}
	err := s.update(t.Context(), func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketPending); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Delete([]byte(metaPendingCount)); err != nil {
			return err
		}
		return meta.Put([]byte(metaSchemaVersion), u64key(1))
	})
	if err != nil {
		t.Fatalf("make version 1 file: %v", err)
	}
	s = reopen(t, s, Options{Now: clock.Now})
	checkPendingIndex(t, s, uuids)
	if _, n := pendingEntries(t, s); n != 20 {
		t.Errorf("pending after migration = %d, want 20", n)
	}
	v, err := s.GetMeta(metaSchemaVersion)
	if err != nil || binary.BigEndian.Uint64(v) != schemaVersion {
		t.Errorf("schema version after open = %x, %v, want %d", v, err, schemaVersion)
	}
}

// TestListPendingUsesIndex lists stuck messages among many delivered ones
// and compares with a brute-force filter over every message.
func TestListPendingUsesIndex(t *testing.T) {
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now})
	rng := rand.New(rand.NewPCG(3, 4))
	var all []string
	start := clock.Now()
	for i := range 300 {
		u := fmt.Sprintf("%08x-0000-4000-8000-%012d", i, i)
		all = append(all, u)
		mustApply(t, s, ev(u, StatusQueued, 1))
		switch rng.IntN(4) {
		case 0: // stays queued
		case 1:
			clock.Add(time.Duration(rng.IntN(600)) * time.Second)
			mustApply(t, s, ev(u, StatusSent, 2))
		default:
			mustApply(t, s, ev(u, StatusDelivered, 3))
		}
		clock.Add(time.Duration(rng.IntN(120)) * time.Second)
	}
	end := clock.Now()
	mid := start.Add(end.Sub(start) / 2)

	filters := []struct {
		name string
		f    ListFilter
	}{
		{"all pending", ListFilter{Status: StatusPending, Limit: 7}},
		{"older than 30m", ListFilter{Status: StatusPending, OlderThan: 30 * time.Minute, Limit: 9}},
		{"since", ListFilter{Status: StatusPending, Since: mid, Limit: 5}},
		{"until", ListFilter{Status: StatusPending, Until: mid, Limit: 11}},
		{"older than and uuid query", ListFilter{Status: StatusPending, OlderThan: time.Hour, Query: "0000001"}},
	}
	for _, tc := range filters {
		t.Run(tc.name, func(t *testing.T) {
			// Brute force: every message's state, newest LastSeen first.
			var want []Message
			for _, u := range all {
				m, _ := mustGet(t, s, u)
				if IsTerminal(m.Status) ||
					tc.f.OlderThan > 0 && !m.LastSeen.Before(clock.Now().Add(-tc.f.OlderThan)) ||
					!tc.f.Since.IsZero() && m.FirstSeen.Before(tc.f.Since) ||
					!tc.f.Until.IsZero() && !m.FirstSeen.Before(tc.f.Until) ||
					tc.f.Query != "" && !hasPrefixFold([]byte(m.MessageUUID), []byte(tc.f.Query)) {
					continue
				}
				want = append(want, m)
			}
			slices.SortFunc(want, func(a, b Message) int {
				if c := b.LastSeen.Compare(a.LastSeen); c != 0 {
					return c
				}
				return -cmp.Compare(a.MessageUUID, b.MessageUUID)
			})
			if len(want) == 0 {
				t.Fatal("fixture has no matching message; the test would prove nothing")
			}
			var got []Message
			f := tc.f
			for page := 0; ; page++ {
				if page > 100 {
					t.Fatal("more than 100 pages")
				}
				msgs, next, err := s.ListMessages(f)
				if err != nil {
					t.Fatalf("ListMessages: %v", err)
				}
				if f.Limit > 0 && len(msgs) > f.Limit {
					t.Fatalf("page of %d, limit %d", len(msgs), f.Limit)
				}
				got = append(got, msgs...)
				if next == "" {
					break
				}
				f.Cursor = next
			}
			if uuidsOf(got) != uuidsOf(want) {
				t.Errorf("listed %d messages %s,\nwant %d %s", len(got), uuidsOf(got), len(want), uuidsOf(want))
			}
		})
	}

	t.Run("cursor of another listing is refused", func(t *testing.T) {
		_, next, err := s.ListMessages(ListFilter{Limit: 1})
		if err != nil || next == "" {
			t.Fatalf("first page: %q, %v", next, err)
		}
		if _, _, err := s.ListMessages(ListFilter{Status: StatusPending, Cursor: next}); err == nil {
			t.Error("pending listing accepted a time-index cursor, want ErrBadCursor")
		}
	})
}

func uuidsOf(msgs []Message) string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.MessageUUID[:8]
	}
	return fmt.Sprint(out)
}

func TestOnCommitHook(t *testing.T) {
	var commits, requests atomic.Int64
	var slowest atomic.Int64
	s := mustOpenStore(t, Options{OnCommit: func(d time.Duration, n int) {
		commits.Add(1)
		requests.Add(int64(n))
		if int64(d) > slowest.Load() {
			slowest.Store(int64(d))
		}
	}})
	for i := range 5 {
		mustApply(t, s, ev(fmt.Sprintf("%08x-0000-4000-8000-000000000000", i), StatusSent, 0))
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := commits.Load(); got != 6 {
		t.Errorf("commits = %d, want 6 (one per sequential request)", got)
	}
	if got := requests.Load(); got != 6 {
		t.Errorf("requests = %d, want 6", got)
	}
	if slowest.Load() <= 0 {
		t.Errorf("slowest commit = %v, want > 0", time.Duration(slowest.Load()))
	}
}
