package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

const day = 24 * time.Hour

// countKeys returns how many keys bucket name holds.
func countKeys(tb testing.TB, s *Store, name []byte) int {
	tb.Helper()
	n := 0
	err := s.view(func(tx *bolt.Tx) error {
		n = tx.Bucket(name).Stats().KeyN
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func TestSweepTwoTiers(t *testing.T) {
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now, NoSync: true})
	t0 := clock.Now()

	// Day 0: old messages (one still pending) and the start of a message
	// that stays active.
	for i := range 30 {
		mustApply(t, s, ev(fmt.Sprintf("old-%02d", i), StatusSent, 1))
		mustApply(t, s, ev(fmt.Sprintf("old-%02d", i), StatusDelivered, 2))
	}
	mustApply(t, s, ev("old-pending", StatusQueued, 1))
	mustApply(t, s, ev("long-lived", StatusQueued, 1))
	// Day 1: messages whose events will go but whose summaries stay.
	clock.Add(day)
	for i := range 20 {
		mustApply(t, s, ev(fmt.Sprintf("mid-%02d", i), StatusSent, 1))
		mustApply(t, s, ev(fmt.Sprintf("mid-%02d", i), StatusFailed, 2, "ErrorCode", "30"))
	}
	// Day 2.4: new messages, and the long-lived one gets a late report.
	clock.Add(day + 10*time.Hour)
	for i := range 10 {
		mustApply(t, s, ev(fmt.Sprintf("new-%02d", i), StatusDelivered, 1))
	}
	mustApply(t, s, ev("long-lived", StatusDelivered, 2))
	clock.Add(2 * time.Hour) // now = t0 + 2.5 days

	now := clock.Now()
	// retention.events_days = 1, retention.days = 2.
	policy := RetentionPolicy{EventsBefore: now.Add(-day), MessagesBefore: now.Add(-2 * day), BatchKeys: 7}
	before, err := s.Stats(t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if before.Total != 62 {
		t.Fatalf("stats total before sweep = %d, want 62", before.Total)
	}

	res, err := s.Sweep(context.Background(), policy)
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	// Events older than a day: 61 of the old messages, 1 of long-lived, 40
	// of mid. The old messages go with whatever events they have left (none).
	if res.Events != 102 || res.Messages != 31 || res.MessageEvents != 0 {
		t.Errorf("sweep = %+v, want 102 events, 31 messages, 0 message events", res)
	}
	if res.Transactions < 10 {
		t.Errorf("sweep used %d transactions, want many (batches of 7 keys)", res.Transactions)
	}

	for _, tc := range []struct {
		uuid       string
		gone       bool
		events     int // events still stored
		eventCount int // the message's total
	}{
		{uuid: "old-00", gone: true},
		{uuid: "old-29", gone: true},
		{uuid: "old-pending", gone: true},
		{uuid: "mid-00", events: 0, eventCount: 2},
		{uuid: "mid-19", events: 0, eventCount: 2},
		{uuid: "new-00", events: 1, eventCount: 1},
		{uuid: "long-lived", events: 1, eventCount: 2},
	} {
		t.Run(tc.uuid, func(t *testing.T) {
			m, evs, err := s.GetMessage(tc.uuid)
			if tc.gone {
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("GetMessage = %v, want ErrNotFound", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("GetMessage: %v", err)
			}
			if len(evs) != tc.events || m.EventCount != tc.eventCount {
				t.Errorf("got %d events, event_count %d; want %d, %d", len(evs), m.EventCount, tc.events, tc.eventCount)
			}
		})
	}
	if m, _ := mustGet(t, s, "mid-03"); m.Status != StatusFailed || m.ErrorCode != "30" {
		t.Errorf("mid-03 summary = %s %q, want failed \"30\"", m.Status, m.ErrorCode)
	}
	if got := countKeys(t, s, bucketByTime); got != 31 {
		t.Errorf("time index has %d entries, want 31", got)
	}
	if got := countKeys(t, s, bucketEvents); got != 11 {
		t.Errorf("event log has %d events, want 11", got)
	}
	pending, err := s.PendingByAge(now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pending[0] != 0 {
		t.Errorf("pending count = %d, want 0 (old-pending deleted, long-lived delivered)", pending[0])
	}
	after, err := s.Stats(t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	wantCounts := map[string]int64{StatusDelivered: 11, StatusFailed: 20}
	if fmt.Sprint(after.Counts) != fmt.Sprint(wantCounts) {
		t.Errorf("stats after sweep = %v, want %v (only stored messages)", after.Counts, wantCounts)
	}

	// Nothing more to delete: a second sweep is a no-op.
	res, err = s.Sweep(context.Background(), policy)
	if err != nil || res.Events+res.Messages+res.StatsHours != 0 {
		t.Errorf("second sweep = %+v, %v; want nothing deleted", res, err)
	}
	// A day later the mid messages go, and their hour with them; the
	// long-lived message keeps its day-0 hour.
	clock.Add(day)
	now = clock.Now()
	res, err = s.Sweep(context.Background(), RetentionPolicy{EventsBefore: now.Add(-day), MessagesBefore: now.Add(-2 * day)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages != 20 || res.StatsHours != 1 {
		t.Errorf("third sweep = %+v, want 20 messages and 1 stats hour", res)
	}
	if got := countKeys(t, s, bucketStats); got != 2 {
		t.Errorf("%d stats hours left, want 2 (long-lived's and the new messages')", got)
	}
	after, err = s.Stats(t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	wantCounts = map[string]int64{StatusDelivered: 11}
	if fmt.Sprint(after.Counts) != fmt.Sprint(wantCounts) {
		t.Errorf("stats after third sweep = %v, want %v", after.Counts, wantCounts)
	}
}

// TestSweepWhileIngesting deletes a large backlog while writers keep
// applying events: every Apply must succeed (each bounded by a deadline) and
// every acknowledged event must be stored afterwards.
func TestSweepWhileIngesting(t *testing.T) {
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now})
	const old = 20_000
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < old; i = next.Add(1) - 1 {
				if _, err := s.Apply(context.Background(), ev(fmt.Sprintf("old-%06d", i), StatusDelivered, 1)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	clock.Add(3 * day)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu    sync.Mutex
		acked []string
	)
	errc := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil && i < 100_000; i++ {
				uuid := fmt.Sprintf("new-%d-%06d", w, i)
				actx, acancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := s.Apply(actx, ev(uuid, StatusDelivered, 1))
				acancel()
				if err != nil {
					errc <- fmt.Errorf("Apply %s during sweep: %w", uuid, err)
					return
				}
				mu.Lock()
				acked = append(acked, uuid)
				mu.Unlock()
			}
		}()
	}
	now := clock.Now()
	res, err := s.Sweep(context.Background(), RetentionPolicy{EventsBefore: now.Add(-day), MessagesBefore: now.Add(-2 * day)})
	cancel()
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if res.Messages != old || res.Events != old {
		t.Errorf("sweep = %+v, want %d messages and %d events", res, old, old)
	}
	if len(acked) == 0 {
		t.Fatal("no Apply completed during the sweep")
	}
	t.Logf("%d events applied during a sweep of %d transactions", len(acked), res.Transactions)
	if got := countKeys(t, s, bucketMessages); got != len(acked) {
		t.Errorf("%d messages stored, want the %d applied during the sweep", got, len(acked))
	}
	for _, uuid := range acked[:min(len(acked), 200)] {
		mustGet(t, s, uuid)
	}
}

func TestSweepCancelled(t *testing.T) {
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now, NoSync: true})
	for i := range 50 {
		mustApply(t, s, ev(fmt.Sprintf("m-%02d", i), StatusDelivered, 1))
	}
	clock.Add(3 * day)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := s.Sweep(ctx, RetentionPolicy{MessagesBefore: clock.Now().Add(-day)})
	if !errors.Is(err, context.Canceled) || res.Messages != 0 {
		t.Errorf("got %+v, %v; want nothing deleted and context.Canceled", res, err)
	}
}
