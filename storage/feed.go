package storage

import (
	"errors"
	"sync"
	"sync/atomic"
)

// ErrAppliedClaimed means the store's applied-event feed already has its
// consumer: a second one would silently split the events between them.
var ErrAppliedClaimed = errors.New("applied events already claimed by another consumer")

// DefaultAppliedBuffer is the feed's bound when Options.AppliedBuffer is 0.
const DefaultAppliedBuffer = 4096

// feed hands every newly stored event to the store's one consumer over a
// bounded channel. The writer never waits for it: when the consumer is so
// far behind that the channel is full, the event is dropped for it (and
// counted), so a slow consumer can never stall commits.
type feed struct {
	size int

	mu     sync.Mutex // guards claiming against closing
	closed bool
	ch     atomic.Pointer[chan Applied] // nil until claimed

	missed  uint64 // dropped since the last delivered event; writer only
	dropped atomic.Uint64
}

// Applied returns the channel of every event a commit newly stores
// (duplicates and refused requests excluded), in cursor order, each sent
// after its commit and before its Apply returns. It can be claimed once:
// a second call returns ErrAppliedClaimed. The store closes the channel
// when it closes. Events stored before the claim are not sent.
//
// The consumer must keep up: the channel holds Options.AppliedBuffer
// events, and an event that finds it full is dropped, counted in
// AppliedDropped and in the next delivered event's Missed. The Event's
// Payload and MediaURLs are shared with the caller of Apply: read them only.
func (s *Store) Applied() (<-chan Applied, error) {
	f := &s.feed
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, ErrClosed
	}
	if f.ch.Load() != nil {
		return nil, ErrAppliedClaimed
	}
	ch := make(chan Applied, f.size)
	f.ch.Store(&ch)
	return ch, nil
}

// AppliedDropped counts the events dropped because the Applied consumer was
// behind.
func (s *Store) AppliedDropped() uint64 { return s.feed.dropped.Load() }

// send offers a to the consumer without waiting. Only the writer calls it.
func (f *feed) send(a Applied) {
	p := f.ch.Load()
	if p == nil {
		return
	}
	a.Missed = f.missed
	select {
	case *p <- a:
		f.missed = 0
	default:
		f.missed++
		f.dropped.Add(1)
	}
}

// close ends the feed once the writer has exited.
func (f *feed) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	if p := f.ch.Load(); p != nil {
		close(*p)
	}
}
