package storage

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestExportMessages(t *testing.T) {
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now, NoSync: true})
	start := clock.Now()
	// More than two chunks, so the walk resumes from its last key twice.
	const n = 2*exportChunk + 345
	for i := range n {
		status := []string{StatusDelivered, StatusQueued, StatusFailed}[i%3]
		mustApply(t, s, ev(fmt.Sprintf("msg-%05d", i), status, 1))
		clock.Add(time.Second)
	}
	at := func(i int) time.Time { return start.Add(time.Duration(i) * time.Second) }

	tests := []struct {
		name   string
		f      ExportFilter
		first  int // index of the first message expected
		end    int // one past the last
		status string
	}{
		{name: "all", f: ExportFilter{}, first: 0, end: n},
		{name: "since", f: ExportFilter{Since: at(1000)}, first: 1000, end: n},
		{name: "until", f: ExportFilter{Until: at(1500)}, first: 0, end: 1500},
		{name: "window", f: ExportFilter{Since: at(10), Until: at(2100)}, first: 10, end: 2100},
		{name: "status", f: ExportFilter{Status: StatusFailed}, first: 0, end: n, status: StatusFailed},
		{name: "pending", f: ExportFilter{Status: StatusPending}, first: 0, end: n, status: StatusQueued},
		{name: "empty window", f: ExportFilter{Since: at(n + 10)}, first: n, end: n},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var want []string
			for i := tc.first; i < tc.end; i++ {
				if tc.status == "" || []string{StatusDelivered, StatusQueued, StatusFailed}[i%3] == tc.status {
					want = append(want, fmt.Sprintf("msg-%05d", i))
				}
			}
			var got []string
			err := s.ExportMessages(tc.f, func(m Message) error {
				if open := s.OpenReadTxs(); open != 0 {
					return fmt.Errorf("%d read transactions open while the consumer runs, want 0", open)
				}
				got = append(got, m.MessageUUID)
				return nil
			})
			if err != nil {
				t.Fatalf("ExportMessages: %v", err)
			}
			if len(got) != len(want) {
				t.Fatalf("exported %d messages, want %d", len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("message %d = %s, want %s (oldest first, each once)", i, got[i], want[i])
				}
			}
		})
	}

	t.Run("full state", func(t *testing.T) {
		want, _ := mustGet(t, s, "msg-00042")
		var got Message
		err := s.ExportMessages(ExportFilter{Since: at(42), Until: at(43)}, func(m Message) error {
			got = m
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("exported %+v, want %+v", got, want)
		}
	})

	t.Run("consumer error stops", func(t *testing.T) {
		stop := errors.New("stop")
		calls := 0
		err := s.ExportMessages(ExportFilter{}, func(Message) error {
			calls++
			if calls == 5 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || calls != 5 {
			t.Errorf("got err %v after %d calls, want %v after 5", err, calls, stop)
		}
	})
}
