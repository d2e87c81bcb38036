package storage

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// applyHistory stores n distinct events (queued, then sent with growing
// sequences) for uuid and returns their cursors in order.
func applyHistory(tb testing.TB, s *Store, uuid string, n int) []uint64 {
	tb.Helper()
	cursors := make([]uint64, 0, n)
	for i := range n {
		status := StatusSent
		if i == 0 {
			status = StatusQueued
		}
		cursors = append(cursors, mustApply(tb, s, ev(uuid, status, int64(i+1))).Cursor)
	}
	return cursors
}

// pageAll follows GetMessagePage cursors to the end and returns the cursors
// of the events seen, checking each page's size.
func pageAll(tb testing.TB, s *Store, uuid string, limit int, desc bool) []uint64 {
	tb.Helper()
	var got []uint64
	p := EventPage{Limit: limit, Desc: desc}
	for range 1000 {
		page, err := s.GetMessagePage(uuid, p)
		if err != nil {
			tb.Fatalf("GetMessagePage(%s, %+v): %v", uuid, p, err)
		}
		if len(page.Events) > limit || page.NextCursor != "" && len(page.Events) != limit {
			tb.Fatalf("page of %d events with next cursor %q, want %d per page", len(page.Events), page.NextCursor, limit)
		}
		for _, e := range page.Events {
			got = append(got, e.Cursor)
		}
		if page.NextCursor == "" {
			return got
		}
		p.Cursor = page.NextCursor
	}
	tb.Fatal("GetMessagePage never ended")
	return nil
}

func isSpilled(tb testing.TB, s *Store, uuid string) bool {
	tb.Helper()
	var idx eventIndex
	err := s.view(func(tx *bolt.Tx) error {
		var m Message
		return getMessage(tx, messageKey(uuid), &m, &idx)
	})
	if err != nil {
		tb.Fatal(err)
	}
	return idx.spilled
}

func TestLongHistorySpillsAndPages(t *testing.T) {
	s := mustOpenStore(t, Options{NoSync: true})
	const n = 3*inlineEvents + 5
	uuid := "0b1e4c2a-f6d1-11ef-9cd2-0242ac120002"
	want := applyHistory(t, s, uuid, n)
	short := applyHistory(t, s, "short", 3)
	if !isSpilled(t, s, uuid) || isSpilled(t, s, "short") {
		t.Fatalf("spilled: long %v, short %v; want true, false", isSpilled(t, s, uuid), isSpilled(t, s, "short"))
	}
	rev := slices.Clone(want)
	slices.Reverse(rev)
	for _, limit := range []int{1, 7, n, n + 1} {
		if got := pageAll(t, s, uuid, limit, false); !slices.Equal(got, want) {
			t.Errorf("ascending pages of %d = %v, want %v", limit, got, want)
		}
		if got := pageAll(t, s, uuid, limit, true); !slices.Equal(got, rev) {
			t.Errorf("descending pages of %d = %v, want %v", limit, got, rev)
		}
	}
	if got := pageAll(t, s, "short", 2, true); !slices.Equal(got, []uint64{short[2], short[1], short[0]}) {
		t.Errorf("short message descending = %v, want %v reversed", got, short)
	}
	m, evs := mustGet(t, s, uuid)
	if len(evs) != n || m.EventCount != n || evs[0].Cursor != want[0] || evs[n-1].Cursor != want[n-1] {
		t.Errorf("GetMessage = %d events (count %d), want all %d in order", len(evs), m.EventCount, n)
	}
	page, err := s.GetMessagePage(uuid, EventPage{})
	if err != nil || len(page.Events) != DefaultEventPage && len(page.Events) != n || page.Message.EventCount != n {
		t.Errorf("default page = %d events, %v; want min(%d, %d)", len(page.Events), err, DefaultEventPage, n)
	}

	// A retry of an event from before the spill and of one after it is
	// still recognised.
	for _, i := range []int{1, n - 2} {
		res := mustApply(t, s, ev(uuid, StatusSent, int64(i+1)))
		if !res.Duplicate || res.Cursor != want[i] {
			t.Errorf("retry of event %d = %+v, want duplicate of cursor %d", i, res, want[i])
		}
	}

	// Cursors belong to their order and their kind.
	asc, err := s.GetMessagePage(uuid, EventPage{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"nope", asc.NextCursor[:len(asc.NextCursor)-2]} {
		if _, err := s.GetMessagePage(uuid, EventPage{Cursor: c}); !errors.Is(err, ErrBadCursor) {
			t.Errorf("cursor %q: err = %v, want ErrBadCursor", c, err)
		}
	}
	if _, err := s.GetMessagePage(uuid, EventPage{Cursor: asc.NextCursor, Desc: true}); !errors.Is(err, ErrBadCursor) {
		t.Errorf("ascending cursor used descending: err = %v, want ErrBadCursor", err)
	}
	if _, err := s.GetMessagePage("missing", EventPage{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing message: err = %v, want ErrNotFound", err)
	}
}

// Event retention removes events but keeps the index: pages skip the
// removed events, and retries of them are still duplicates.
func TestLongHistoryAfterEventRetention(t *testing.T) {
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now, NoSync: true})
	uuid := "long"
	old := applyHistory(t, s, uuid, inlineEvents+10)
	clock.Add(2 * day)
	var recent []uint64
	for i := range 5 {
		recent = append(recent, mustApply(t, s, ev(uuid, StatusDelivered, int64(1000+i))).Cursor)
	}
	if _, err := s.Sweep(context.Background(), RetentionPolicy{EventsBefore: clock.Now().Add(-day)}); err != nil {
		t.Fatal(err)
	}
	if got := pageAll(t, s, uuid, 3, false); !slices.Equal(got, recent) {
		t.Errorf("pages after event retention = %v, want only %v", got, recent)
	}
	if res := mustApply(t, s, ev(uuid, StatusSent, 3)); !res.Duplicate || res.Cursor != old[2] {
		t.Errorf("retry of a removed event = %+v, want duplicate of %d", res, old[2])
	}
}

// Message retention deletes a spilled history in bounded transactions and
// leaves no index entry behind.
func TestSweepDeletesSpilledHistory(t *testing.T) {
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now, NoSync: true})
	const n = 2*inlineEvents + 3
	applyHistory(t, s, "long-gone", n)
	applyHistory(t, s, "short-gone", 2)
	clock.Add(3 * day)
	mustApply(t, s, ev("kept", StatusDelivered, 1))
	res, err := s.Sweep(context.Background(), RetentionPolicy{MessagesBefore: clock.Now().Add(-day), BatchKeys: 10})
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages != 2 || res.MessageEvents != n+2 || res.Transactions < n/10 {
		t.Errorf("sweep = %+v, want 2 messages, %d events, in at least %d transactions", res, n+2, n/10)
	}
	for _, b := range [][]byte{bucketMessageEvents, bucketMessageHashes} {
		if k := countKeys(t, s, b); k != 0 {
			t.Errorf("%s holds %d keys after the sweep, want 0", b, k)
		}
	}
	if k := countKeys(t, s, bucketEvents); k != 1 {
		t.Errorf("events left = %d, want the kept message's 1", k)
	}
	st, err := s.Stats(time.Time{})
	if err != nil || st.Total != 1 {
		t.Errorf("stats total after sweep = %d, %v; want 1", st.Total, err)
	}
}
