package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"plivo-dlr/internal/testsupport"
	"plivo-dlr/storage"
)

// sweepLogs returns the "retention sweep" records logged as JSON.
func sweepLogs(t *testing.T, logs *testsupport.LockedBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if line == "" {
			continue // nothing logged yet
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == "retention sweep" {
			out = append(out, rec)
		}
	}
	return out
}

func TestRetentionSweep(t *testing.T) {
	clock := testsupport.NewClock(time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC))
	store, err := storage.Open(filepath.Join(t.TempDir(), "dlr.db"), storage.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	apply := func(uuid, status string) {
		t.Helper()
		ev := storage.Event{MessageUUID: uuid, Status: status, Source: storage.SourceCallback,
			Payload: map[string]string{"MessageUUID": uuid, "Status": status}}
		if _, err := store.Apply(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		apply(fmt.Sprintf("old-%d", i), "sent")
		apply(fmt.Sprintf("old-%d", i), "delivered")
	}
	clock.Add(36 * time.Hour)
	for i := range 3 {
		apply(fmt.Sprintf("mid-%d", i), "delivered")
	}
	clock.Add(36 * time.Hour)
	apply("new-0", "delivered")

	logs := &testsupport.LockedBuffer{}
	r := NewRetention(store, RetentionConfig{Days: 2, EventsDays: 1}, slog.New(slog.NewJSONHandler(logs, nil)), clock.Now)
	res, err := r.Sweep(context.Background())
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if res.Messages != 5 || res.Events != 13 {
		t.Errorf("sweep = %+v, want 5 messages and 13 events deleted", res)
	}
	for _, tc := range []struct {
		uuid   string
		events int // -1: gone
	}{{"old-0", -1}, {"old-4", -1}, {"mid-0", 0}, {"mid-2", 0}, {"new-0", 1}} {
		m, evs, err := store.GetMessage(tc.uuid)
		switch {
		case tc.events < 0 && !errors.Is(err, storage.ErrNotFound):
			t.Errorf("%s: got %v, want ErrNotFound", tc.uuid, err)
		case tc.events >= 0 && (err != nil || len(evs) != tc.events || m.EventCount != 1):
			t.Errorf("%s: got %d events, event_count %d, err %v; want %d events, event_count 1", tc.uuid, len(evs), m.EventCount, err, tc.events)
		}
	}
	recs := sweepLogs(t, logs)
	if len(recs) != 1 || recs[0]["messages"] != 5.0 || recs[0]["events"] != 13.0 {
		t.Errorf("sweep log = %v, want one record with messages 5, events 13", recs)
	}
}

func TestRetentionPolicy(t *testing.T) {
	now := time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name         string
		cfg          RetentionConfig
		events, msgs time.Time
		enabled      bool
	}{
		{name: "both", cfg: RetentionConfig{Days: 90, EventsDays: 30}, events: now.AddDate(0, 0, -30), msgs: now.AddDate(0, 0, -90), enabled: true},
		{name: "messages only", cfg: RetentionConfig{Days: 7}, msgs: now.AddDate(0, 0, -7), enabled: true},
		{name: "events only", cfg: RetentionConfig{EventsDays: 3}, events: now.AddDate(0, 0, -3), enabled: true},
		{name: "off", cfg: RetentionConfig{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRetention(nil, tc.cfg, nil, nil)
			p := r.Policy(now)
			if !p.EventsBefore.Equal(tc.events) || !p.MessagesBefore.Equal(tc.msgs) || r.Enabled() != tc.enabled {
				t.Errorf("got events %s, messages %s, enabled %v; want %s, %s, %v",
					p.EventsBefore, p.MessagesBefore, r.Enabled(), tc.events, tc.msgs, tc.enabled)
			}
		})
	}
}

// TestRetentionRun runs the loop with short intervals: it sweeps after its
// first delay, again every interval, and returns when its context ends.
func TestRetentionRun(t *testing.T) {
	clock := testsupport.NewClock(time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC))
	store, err := storage.Open(filepath.Join(t.TempDir(), "dlr.db"), storage.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	logs := &testsupport.LockedBuffer{}
	r := NewRetention(store, RetentionConfig{Days: 1, EventsDays: 1}, slog.New(slog.NewJSONHandler(logs, nil)), clock.Now)
	r.FirstDelay, r.Interval = 10*time.Millisecond, 20*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	ev := storage.Event{MessageUUID: "m-1", Status: "delivered", Source: storage.SourceCallback}
	if _, err := store.Apply(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	clock.Add(50 * time.Hour)
	testsupport.WaitFor(t, 10*time.Second, "a later sweep to delete the old message", func() bool {
		_, _, err := store.GetMessage("m-1")
		return errors.Is(err, storage.ErrNotFound)
	})
	testsupport.WaitFor(t, 10*time.Second, "3 sweeps (the first and two on the interval)", func() bool { return len(sweepLogs(t, logs)) >= 3 })
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
