package storage

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// testClock is a settable clock for Options.Now.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
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
		To:          "+14155550100",
		From:        "+14155550199",
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
