package storage

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestAppliedFeed(t *testing.T) {
	s := mustOpenStore(t, Options{NoSync: true})
	mustApply(t, s, ev("before", StatusQueued, 1)) // before the claim: not sent
	ch, err := s.Applied()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Applied(); !errors.Is(err, ErrAppliedClaimed) {
		t.Fatalf("second Applied() = %v, want ErrAppliedClaimed", err)
	}
	want := []uint64{
		mustApply(t, s, ev("a", StatusQueued, 1)).Cursor,
		mustApply(t, s, ev("a", StatusSent, 2)).Cursor,
	}
	if res := mustApply(t, s, ev("a", StatusSent, 2)); !res.Duplicate {
		t.Fatalf("retry = %+v, want duplicate", res)
	}
	want = append(want, mustApply(t, s, ev("b", StatusDelivered, 1)).Cursor)
	for i, c := range want {
		select {
		case a := <-ch:
			if a.Event.Cursor != c || a.Result.Cursor != c || a.Missed != 0 {
				t.Errorf("applied %d = cursor %d (result %d, missed %d), want %d", i, a.Event.Cursor, a.Result.Cursor, a.Missed, c)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("applied %d never came", i)
		}
	}
	select {
	case a := <-ch:
		t.Fatalf("unexpected applied event %+v (a duplicate?)", a.Event)
	default:
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-ch; ok {
		t.Error("feed still open after Close")
	}
	if _, err := s.Applied(); !errors.Is(err, ErrClosed) {
		t.Errorf("Applied() after Close = %v, want ErrClosed", err)
	}
}

// A consumer that never reads cannot stall commits: events past the bound
// are dropped and counted, and the next delivered one says how many.
func TestAppliedFeedNeverStallsCommits(t *testing.T) {
	s := mustOpenStore(t, Options{NoSync: true, AppliedBuffer: 2})
	ch, err := s.Applied()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 10 {
		if _, err := s.Apply(ctx, ev("u", StatusSent, int64(i+1))); err != nil {
			t.Fatalf("Apply %d with a stuck consumer: %v", i, err)
		}
	}
	if d := s.AppliedDropped(); d != 8 {
		t.Errorf("dropped = %d, want 8 of 10 with a buffer of 2", d)
	}
	for i := range 2 {
		if a := <-ch; a.Missed != 0 || a.Event.Sequence != int64(i+1) {
			t.Errorf("buffered event %d = seq %d missed %d, want seq %d missed 0", i, a.Event.Sequence, a.Missed, i+1)
		}
	}
	last := mustApply(t, s, ev("u", StatusDelivered, 11))
	if a := <-ch; a.Event.Cursor != last.Cursor || a.Missed != 8 {
		t.Errorf("next event = cursor %d missed %d, want cursor %d missed 8", a.Event.Cursor, a.Missed, last.Cursor)
	}
}
