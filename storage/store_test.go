package storage

import (
	bolt "go.etcd.io/bbolt"

	"context"
	"errors"
	"fmt"
	"path/filepath"
	"plivo-dlr/internal/testsupport"
	"testing"
	"time"
)

// newTestClock is the settable clock the storage tests give Options.Now.
func newTestClock() *testsupport.Clock {
	return testsupport.NewClock(time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC))
}

// mustOpenStore opens a store in a fresh temporary directory and closes it
// when the test ends.
func mustOpenStore(tb testing.TB, opts ...Options) *Store {
	tb.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	return mustOpenPath(tb, filepath.Join(tb.TempDir(), "dlr.db"), o)
}

func mustOpenPath(tb testing.TB, path string, o Options) *Store {
	tb.Helper()
	s, err := Open(path, o)
	if err != nil {
		tb.Fatalf("Open(%s): %v", path, err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, ErrClosed) {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

// reopen closes s and opens its file again.
func reopen(tb testing.TB, s *Store, o Options) *Store {
	tb.Helper()
	if err := s.Close(); err != nil {
		tb.Fatalf("Close: %v", err)
	}
	return mustOpenPath(tb, s.Path(), o)
}

// ev builds a callback event the way the app would from Plivo's form fields.
func ev(uuid, status string, seq int64, extra ...string) Event {
	e := Event{
		MessageUUID: uuid,
		Status:      status,
		Sequence:    seq,
		Source:      SourceCallback,
		Payload:     map[string]string{"MessageUUID": uuid, "Status": status},
		Details:     Details{To: "+14155550100", From: "+14155550199"},
	}
	if seq != 0 {
		e.Payload["Sequence"] = fmt.Sprint(seq)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		e.Payload[extra[i]] = extra[i+1]
		switch extra[i] {
		case "ErrorCode":
			e.ErrorCode = extra[i+1]
		case "To":
			e.To = extra[i+1]
		case "From":
			e.From = extra[i+1]
		}
	}
	return e
}

func mustApply(tb testing.TB, s *Store, e Event, nonces ...Nonce) ApplyResult {
	tb.Helper()
	res, err := s.Apply(context.Background(), e, nonces...)
	if err != nil {
		tb.Fatalf("Apply(%s %s): %v", e.MessageUUID, e.Status, err)
	}
	return res
}

// mustCommit commits the journaled transaction (an empty write does), so
// a test can shape commits as one per call.
func mustCommit(tb testing.TB, s *Store) {
	tb.Helper()
	if err := s.update(context.Background(), func(*bolt.Tx) error { return nil }); err != nil {
		tb.Fatalf("commit: %v", err)
	}
}

func mustGet(tb testing.TB, s *Store, uuid string) (Message, []Event) {
	tb.Helper()
	m, evs, err := s.GetMessage(uuid)
	if err != nil {
		tb.Fatalf("GetMessage(%s): %v", uuid, err)
	}
	return m, evs
}

func TestApplyGetSmoke(t *testing.T) {
	s := mustOpenStore(t)
	res := mustApply(t, s, ev("u1", StatusQueued, 0))
	if res.Cursor != 1 || res.Message.Status != StatusQueued || res.PreviousStatus != "" || !res.StatusChanged {
		t.Fatalf("Apply result = %+v, want cursor 1, queued, changed from empty", res)
	}
	m, evs := mustGet(t, s, "u1")
	if m.Status != StatusQueued || len(evs) != 1 || evs[0].Cursor != 1 {
		t.Fatalf("GetMessage = %+v %+v, want queued with event 1", m, evs)
	}
}

func permutations(items []string) [][]string {
	if len(items) <= 1 {
		return [][]string{append([]string(nil), items...)}
	}
	var out [][]string
	for i := range items {
		rest := append(append([]string(nil), items[:i]...), items[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]string{items[i]}, p...))
		}
	}
	return out
}

func TestApplyPermutationsEndDelivered(t *testing.T) {
	seqOf := map[string]int64{StatusQueued: 1, StatusSent: 2, StatusDelivered: 3}
	perms := permutations([]string{StatusQueued, StatusSent, StatusDelivered})
	if len(perms) != 6 {
		t.Fatalf("permutations = %d, want 6", len(perms))
	}
	s := mustOpenStore(t)
	for _, withSeq := range []bool{false, true} {
		for i, order := range perms {
			name := fmt.Sprintf("seq=%v/%v", withSeq, order)
			t.Run(name, func(t *testing.T) {
				uuid := fmt.Sprintf("perm-%v-%d", withSeq, i)
				for _, status := range order {
					var seq int64
					if withSeq {
						seq = seqOf[status]
					}
					mustApply(t, s, ev(uuid, status, seq))
				}
				m, evs := mustGet(t, s, uuid)
				if m.Status != StatusDelivered {
					t.Errorf("status = %q, want %q", m.Status, StatusDelivered)
				}
				if len(evs) != 3 || m.EventCount != 3 {
					t.Errorf("events = %d, EventCount = %d, want 3 and 3", len(evs), m.EventCount)
				}
				for j, e := range evs {
					if e.Status != order[j] {
						t.Errorf("event %d status = %q, want %q (arrival order)", j, e.Status, order[j])
					}
					if j > 0 && e.Cursor <= evs[j-1].Cursor {
						t.Errorf("event cursors %d then %d, want ascending", evs[j-1].Cursor, e.Cursor)
					}
				}
			})
		}
	}
}

func TestApplyPrecedence(t *testing.T) {
	type step struct {
		status, code string
		seq          int64
	}
	tests := []struct {
		name       string
		steps      []step
		wantStatus string
		wantCode   string
	}{
		{"late sent never overwrites delivered", []step{{StatusQueued, "", 0}, {StatusDelivered, "", 0}, {StatusSent, "", 0}}, StatusDelivered, ""},
		{"late sent with higher sequence still loses", []step{{StatusDelivered, "", 3}, {StatusSent, "", 9}}, StatusDelivered, ""},
		{"undelivered keeps error code", []step{{StatusQueued, "", 0}, {StatusSent, "", 0}, {StatusUndelivered, "30007", 0}}, StatusUndelivered, "30007"},
		{"sequence 10 beats 9 numerically", []step{{StatusDelivered, "", 10}, {StatusUndelivered, "30003", 9}}, StatusDelivered, ""},
		{"sequence 10 beats 9 arriving later", []step{{StatusUndelivered, "30003", 9}, {StatusDelivered, "", 10}}, StatusDelivered, ""},
		{"read after delivered", []step{{StatusRead, "", 0}, {StatusDelivered, "", 0}}, StatusRead, ""},
		{"failed from queued", []step{{StatusQueued, "", 0}, {StatusFailed, "40001", 0}}, StatusFailed, "40001"},
	}
	s := mustOpenStore(t)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			uuid := fmt.Sprintf("prec-%d", i)
			for _, st := range tc.steps {
				e := ev(uuid, st.status, st.seq, "ErrorCode", st.code)
				mustApply(t, s, e)
			}
			m, evs := mustGet(t, s, uuid)
			if m.Status != tc.wantStatus || m.ErrorCode != tc.wantCode {
				t.Errorf("state = %q/%q, want %q/%q", m.Status, m.ErrorCode, tc.wantStatus, tc.wantCode)
			}
			if len(evs) != len(tc.steps) {
				t.Errorf("events = %d, want %d (every event kept)", len(evs), len(tc.steps))
			}
		})
	}
}

func TestApplyResultFlags(t *testing.T) {
	s := mustOpenStore(t)
	tests := []struct {
		status                       string
		wantPrev                     string
		wantChanged, wantBecameFinal bool
	}{
		{StatusQueued, "", true, false},
		{StatusDelivered, StatusQueued, true, true},
		{StatusSent, StatusDelivered, false, false},
		{StatusUndelivered, StatusDelivered, true, false},
		{StatusRead, StatusUndelivered, true, false},
	}
	for _, tc := range tests {
		res := mustApply(t, s, ev("flags", tc.status, 0))
		if res.PreviousStatus != tc.wantPrev || res.StatusChanged != tc.wantChanged || res.BecameTerminal != tc.wantBecameFinal {
			t.Errorf("apply %s: prev=%q changed=%v becameTerminal=%v, want %q %v %v",
				tc.status, res.PreviousStatus, res.StatusChanged, res.BecameTerminal, tc.wantPrev, tc.wantChanged, tc.wantBecameFinal)
		}
	}
}

func TestApplyStoresEventFields(t *testing.T) {
	s := mustOpenStore(t)
	qt := time.Date(2025, 3, 10, 11, 59, 0, 0, time.UTC)
	in := ev("fields", StatusSent, 4, "MessageUUID", "fields", "Units", "2", "ErrorCode", "")
	in.Units, in.Type, in.QueuedTime, in.MCC = 2, "sms", &qt, "310"
	in.Text, in.MediaURLs, in.Source = "hello", []string{"https://example.com/a.png"}, SourceSend
	res := mustApply(t, s, in)
	m, evs := mustGet(t, s, "fields")
	if fmt.Sprint(m) != fmt.Sprint(res.Message) && !m.LastSeen.Equal(res.Message.LastSeen) {
		t.Errorf("stored message = %+v, want Apply's %+v", m, res.Message)
	}
	got := evs[0]
	if got.Cursor != res.Cursor || got.Status != StatusSent || got.Sequence != 4 || got.Source != SourceSend ||
		got.Payload["Units"] != "2" || got.Units != 2 || got.Type != "sms" || got.MCC != "310" ||
		got.QueuedTime == nil || !got.QueuedTime.Equal(qt) || got.Text != "hello" || len(got.MediaURLs) != 1 {
		t.Errorf("stored event = %+v, want the applied fields %+v", got, in)
	}
	if m.Text != "hello" || m.Units != 2 || m.QueuedTime == nil || !m.QueuedTime.Equal(qt) || m.StatusSequence != 4 {
		t.Errorf("message = %+v, want text, units, queued time and sequence folded", m)
	}
	if !got.ReceivedAt.Equal(m.FirstSeen) || got.ReceivedAt.IsZero() {
		t.Errorf("event ReceivedAt = %v, FirstSeen = %v, want equal and set", got.ReceivedAt, m.FirstSeen)
	}
}

func TestApplyInvalid(t *testing.T) {
	s := mustOpenStore(t)
	for _, e := range []Event{{Status: StatusSent}, {MessageUUID: "x"}} {
		if _, err := s.Apply(context.Background(), e); err == nil {
			t.Errorf("Apply(%+v) = nil error, want validation error", e)
		}
	}
	if c, _ := s.LastCursor(); c != 0 {
		t.Errorf("LastCursor = %d, want 0", c)
	}
}

func TestGetMessageNotFound(t *testing.T) {
	s := mustOpenStore(t)
	_, _, err := s.GetMessage("nope")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetMessage error = %v, want ErrNotFound", err)
	}
}

func TestDedupeAndNonces(t *testing.T) {
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now})
	ctx := context.Background()
	exp := clock.Now().Add(10 * time.Minute)

	first := mustApply(t, s, ev("d1", StatusDelivered, 0, "ErrorCode", "000"), Nonce{Value: "n1", ExpiresAt: exp})
	clock.Add(time.Minute)
	retry := mustApply(t, s, ev("d1", StatusDelivered, 0, "ErrorCode", "000"), Nonce{Value: "n2", ExpiresAt: exp})
	if !retry.Duplicate || retry.Cursor != first.Cursor || retry.StatusChanged || retry.BecameTerminal {
		t.Errorf("retry = %+v, want Duplicate with cursor %d, no change", retry, first.Cursor)
	}
	m, evs := mustGet(t, s, "d1")
	if len(evs) != 1 || m.EventCount != 1 {
		t.Errorf("after retry: events = %d, EventCount = %d, want 1 and 1", len(evs), m.EventCount)
	}

	// The duplicate's nonce was recorded.
	if _, err := s.Apply(ctx, ev("d2", StatusQueued, 0), Nonce{Value: "n2", ExpiresAt: exp}); !errors.Is(err, ErrReplayed) {
		t.Errorf("reuse of duplicate's nonce: error = %v, want ErrReplayed", err)
	}
	// A replayed nonce stores nothing, not even a new message.
	before, _ := s.LastCursor()
	if _, err := s.Apply(ctx, ev("d3", StatusQueued, 0), Nonce{Value: "fresh", ExpiresAt: exp}, Nonce{Value: "n1", ExpiresAt: exp}); !errors.Is(err, ErrReplayed) {
		t.Errorf("replayed nonce: error = %v, want ErrReplayed", err)
	}
	if after, _ := s.LastCursor(); after != before {
		t.Errorf("LastCursor after replay = %d, want %d", after, before)
	}
	for _, uuid := range []string{"d2", "d3"} {
		if _, _, err := s.GetMessage(uuid); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetMessage(%s) after replay: error = %v, want ErrNotFound", uuid, err)
		}
	}
	// "fresh" came with a replayed nonce: it was not recorded either.
	mustApply(t, s, ev("d4", StatusQueued, 0), Nonce{Value: "fresh", ExpiresAt: exp})

	// Nonces survive a reopen.
	s = reopen(t, s, Options{Now: clock.Now})
	if _, err := s.Apply(ctx, ev("d5", StatusQueued, 0), Nonce{Value: "n1", ExpiresAt: exp}); !errors.Is(err, ErrReplayed) {
		t.Errorf("after reopen: error = %v, want ErrReplayed", err)
	}

	// Once expired, a nonce is accepted again.
	clock.Add(10 * time.Minute)
	mustApply(t, s, ev("d6", StatusQueued, 0), Nonce{Value: "n1", ExpiresAt: clock.Now().Add(10 * time.Minute)})
}

func TestPurgeNonces(t *testing.T) {
	clock := newTestClock()
	// NoSync: this test is about purge bookkeeping, not durability, and
	// applies thousands of events one by one.
	s := mustOpenStore(t, Options{Now: clock.Now, NoSync: true})
	t0 := clock.Now()
	for i := range 2500 {
		nonces := []Nonce{{Value: fmt.Sprintf("old-%d", i), ExpiresAt: t0.Add(time.Minute)}}
		if i < 10 {
			nonces = append(nonces, Nonce{Value: fmt.Sprintf("new-%d", i), ExpiresAt: t0.Add(time.Hour)})
		}
		mustApply(t, s, ev(fmt.Sprintf("p%d", i), StatusQueued, 0), nonces...)
		mustCommit(t, s) // one nonce log group per event
	}
	clock.Add(2 * time.Minute)
	// old-0 expired and was used again: its new expiry must survive the purge.
	mustApply(t, s, ev("p-again", StatusQueued, 0), Nonce{Value: "old-0", ExpiresAt: clock.Now().Add(time.Hour)})

	n, err := s.PurgeNonces(clock.Now(), 1200)
	if err != nil || n != 1200 {
		t.Fatalf("PurgeNonces(max 1200) = %d, %v, want 1200, nil", n, err)
	}
	// The first 10 commits' groups also hold a new-i nonce, live for an
	// hour: they stay, whole, until it expires.
	n, err = s.PurgeNonces(clock.Now(), 0)
	if err != nil || n != 1290 {
		t.Fatalf("PurgeNonces(no max) = %d, %v, want 1290, nil", n, err)
	}
	// What is left on disk rebuilds the same window.
	s = reopen(t, s, Options{Now: clock.Now, NoSync: true})
	ctx := context.Background()
	for _, nonce := range []string{"old-0", "new-3"} {
		if _, err := s.Apply(ctx, ev("x", StatusQueued, 0), Nonce{Value: nonce, ExpiresAt: clock.Now().Add(time.Hour)}); !errors.Is(err, ErrReplayed) {
			t.Errorf("nonce %s after purge: error = %v, want ErrReplayed (still live)", nonce, err)
		}
	}
	mustApply(t, s, ev("y", StatusQueued, 0), Nonce{Value: "old-7", ExpiresAt: clock.Now().Add(time.Hour)})
}

func TestEventsAfter(t *testing.T) {
	s := mustOpenStore(t)
	for i := range 10 {
		mustApply(t, s, ev(fmt.Sprintf("e%d", i%3), benchStatuses[i%3], int64(i+1)))
	}
	tests := []struct {
		after uint64
		limit int
		want  []uint64
	}{
		{0, 0, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{0, 3, []uint64{1, 2, 3}},
		{7, 0, []uint64{8, 9, 10}},
		{10, 5, nil},
		{^uint64(0), 5, nil},
	}
	for _, tc := range tests {
		evs, err := s.EventsAfter(tc.after, tc.limit)
		if err != nil {
			t.Fatalf("EventsAfter(%d, %d): %v", tc.after, tc.limit, err)
		}
		var got []uint64
		for _, e := range evs {
			got = append(got, e.Cursor)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("EventsAfter(%d, %d) cursors = %v, want %v", tc.after, tc.limit, got, tc.want)
		}
	}
	if c, err := s.LastCursor(); err != nil || c != 10 {
		t.Errorf("LastCursor = %d, %v, want 10", c, err)
	}
}

func TestMessageKeys(t *testing.T) {
	s := mustOpenStore(t)
	uuids := []string{
		"db3ce55a-7f1d-11e1-8ea7-1231380bc196", // Plivo's version-1 UUIDs
		"DB3CE55A-7F1D-11E1-8EA7-1231380BC196",
		"7f1d11e1-db3c-e55a-8ea7-1231380bc196",
		"f47ac10b-58cc-4372-a567-0e02b2c3d479", // version 4
		"\x01" + "11e17f1ddb3ce55a8ea71231380bc196",
		"\x00\x01x",
		"\x01x",
		"plain",
	}
	for i, u := range uuids {
		mustApply(t, s, ev(u, StatusQueued, int64(i+1)))
	}
	for i, u := range uuids {
		m, evs := mustGet(t, s, u)
		if m.MessageUUID != u || len(evs) != 1 || evs[0].Sequence != int64(i+1) {
			t.Errorf("GetMessage(%q) = %q with %d events (seq %v), want itself with 1 event seq %d", u, m.MessageUUID, len(evs), evs, i+1)
		}
	}
	msgs, _, err := s.ListMessages(ListFilter{Query: "db3ce55a-7f1d"})
	if err != nil || len(msgs) != 2 {
		t.Errorf("ListMessages(uuid prefix) = %d messages, %v, want both cases of the v1 UUID", len(msgs), err)
	}
}
