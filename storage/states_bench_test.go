package storage

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// BenchmarkReplayStates is the storage side of a WebSocket replay page:
// 1000 events of the log (about 333 messages, three callbacks each) and the
// current state of each event's message. mode=get_message is how replay
// read them before (one read transaction and the whole history per
// distinct message); mode=states is MessageStates (one transaction, no
// history).
func BenchmarkReplayStates(b *testing.B) {
	path := filepath.Join(b.TempDir(), "dlr.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	const messages = 3000
	now := time.Now()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := w; m < messages; m += 16 {
				for _, st := range benchStatuses {
					if _, err := s.Apply(context.Background(), benchEvent(m, false, st, now)); err != nil {
						b.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	s = mustOpenPath(b, path, Options{})
	events, err := s.EventsAfter(3000, 1000)
	if err != nil || len(events) != 1000 {
		b.Fatalf("EventsAfter = %d events, %v", len(events), err)
	}
	b.Run("mode=get_message", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			states := map[string]*Message{}
			for _, ev := range events {
				if _, ok := states[ev.MessageUUID]; ok {
					continue
				}
				m, _, err := s.GetMessage(ev.MessageUUID)
				if err != nil {
					b.Fatal(err)
				}
				states[ev.MessageUUID] = &m
			}
		}
	})
	b.Run("mode=states", func(b *testing.B) {
		b.ReportAllocs()
		uuids := make([]string, 0, len(events))
		for b.Loop() {
			uuids = uuids[:0]
			for _, ev := range events {
				uuids = append(uuids, ev.MessageUUID)
			}
			states, err := s.MessageStates(uuids)
			if err != nil || len(states) < 300 {
				b.Fatalf("MessageStates = %d states, %v", len(states), err)
			}
		}
	})
}
