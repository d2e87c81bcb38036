package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// longHistory is the history of the message the long-history benchmarks
// work on: a buggy or hostile sender with a valid token.
const longHistory = 100_000

// longHistoryStore returns a store holding one message with longHistory
// events (Plivo-shaped callbacks, each with its own sequence) beside a few
// thousand ordinary messages, and that message's UUID. It is built once per
// benchmark function, with NoSync (a bulk load), then reopened with opts.
func longHistoryStore(b *testing.B, opts Options) (*Store, string) {
	b.Helper()
	path := filepath.Join(b.TempDir(), "dlr.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	uuid := benchUUID(0, false)
	now := time.Now()
	var wg sync.WaitGroup
	const loaders = 32
	for w := range loaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < longHistory; i += loaders {
				e := benchEvent(0, false, StatusSent, now)
				e.Sequence = int64(i + 1)
				if _, err := s.Apply(context.Background(), e); err != nil {
					b.Error(err)
					return
				}
				if i%10 == 0 { // ordinary neighbours, 3 events each
					m := 1 + i/10
					for _, st := range benchStatuses {
						if _, err := s.Apply(context.Background(), benchEvent(m, false, st, now)); err != nil {
							b.Error(err)
							return
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	return mustOpenPath(b, path, opts), uuid
}

// BenchmarkApplyLongHistory is the cost of one more event for a message
// that already has 100,000 (history=100000) against the first event of a
// new message (history=0), in one run: it must stay within 2x. sync=off
// shows the work inside the writer (fsync would hide it); sync=on is what a
// callback waits for. One caller at a time, each event a fresh random nonce.
func BenchmarkApplyLongHistory(b *testing.B) {
	for _, sync := range []bool{false, true} {
		s, long := longHistoryStore(b, Options{NoSync: !sync})
		r := rand.New(rand.NewPCG(1, 2))
		now := time.Now()
		fresh := 10_000_000 // message numbers after the loaded ones
		for _, history := range []int{0, longHistory} {
			b.Run(fmt.Sprintf("sync=%v/history=%d", map[bool]string{false: "off", true: "on"}[sync], history), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					var e Event
					if history == 0 {
						fresh++
						e = benchEvent(fresh, false, StatusQueued, now)
					} else {
						e = benchEvent(0, false, StatusDelivered, now)
						e.Sequence = int64(time.Now().UnixNano()) // never a duplicate
					}
					n := Nonce{Value: randomNonce(r), ExpiresAt: now.Add(time.Hour)}
					res, err := s.Apply(context.Background(), e, n)
					if err != nil {
						b.Fatal(err)
					}
					if res.Duplicate || history > 0 && (res.Message.MessageUUID != long || res.Message.EventCount <= longHistory) {
						b.Fatalf("apply = %+v, want a new event on top of the history", res)
					}
				}
			})
		}
	}
}

// BenchmarkGetMessagePageLongHistory reads the first page (100 events,
// newest first, as the dashboard does) of the 100,000-event message; it
// must stay under 10 ms. history=3 is an ordinary message, for scale.
func BenchmarkGetMessagePageLongHistory(b *testing.B) {
	s, long := longHistoryStore(b, Options{})
	for _, tc := range []struct {
		uuid    string
		history int
	}{{benchUUID(1, false), 3}, {long, longHistory}} {
		b.Run(fmt.Sprintf("history=%d/limit=%d", tc.history, DefaultEventPage), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				page, err := s.GetMessagePage(tc.uuid, EventPage{Desc: true})
				if err != nil {
					b.Fatal(err)
				}
				if want := min(tc.history, DefaultEventPage); len(page.Events) != want {
					b.Fatalf("page of %d events, want %d", len(page.Events), want)
				}
			}
		})
	}
}
