// Package hub fans stored events out to the dashboard's WebSocket
// subscribers: each committed event is encoded once into a ready-to-write
// WebSocket frame and kept in a shared ring that every subscriber reads at
// its own pace. It knows nothing of HTTP; the server's /ws handler owns the
// connections and writes the frames.
package hub

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"plivo-dlr/storage"
)

// ringSize is how many frames the hub keeps for subscribers to catch up
// on. A subscriber that falls further behind is dropped and resumes from its
// cursor through the database. At a few hundred bytes a frame this is about
// 2 MiB shared by every client, instead of a buffer per client.
const ringSize = 4096

// ErrClosed is returned by Subscribe once the hub is shutting down.
var ErrClosed = errors.New("hub closed")

// StreamFrame is one JSON frame of the /ws stream.
type StreamFrame struct {
	Type    string           `json:"type"`
	Cursor  uint64           `json:"cursor"`
	Message *storage.Message `json:"message,omitempty"`
}

// Frame types.
const (
	FrameStatusUpdate = "status_update"
	// FrameReady says replay is over; Cursor is where the live stream begins.
	FrameReady = "ready"
)

// Frame is a stored event encoded once as a complete WebSocket text frame,
// shared read-only by every subscriber: Wire must not be modified.
type Frame struct {
	Cursor uint64
	Wire   []byte
}

// Hub fans stored events out to WebSocket subscribers. It keeps the newest
// frames in a ring that all subscribers read at their own pace, so Notify
// costs the same with 0 or 500 clients and never waits for any of them.
type Hub struct {
	log     *slog.Logger
	clients prometheus.Gauge

	// subscribers is read without the lock so Notify can skip encoding when
	// nobody listens (a subscriber that joins meanwhile replays the event
	// from the database, which already holds it).
	subscribers atomic.Int64

	mu     sync.Mutex
	ring   [ringSize]Frame
	head   uint64        // frames ever appended; the next goes to ring[head%size]
	wake   chan struct{} // closed and replaced on every append
	closed bool
	// closing is closed by Close; every stream writer watches it.
	closing chan struct{}
	conns   sync.WaitGroup
}

// New returns an empty hub; clients, if not nil, tracks its subscribers.
func New(log *slog.Logger, clients prometheus.Gauge) *Hub {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Hub{log: log, clients: clients, wake: make(chan struct{}), closing: make(chan struct{})}
}

// Notify publishes the new state of a message after its event was
// committed. It is called on the callback path and never blocks on clients.
func (h *Hub) Notify(ev storage.Event, res storage.ApplyResult) {
	if res.Duplicate || h.subscribers.Load() == 0 {
		return
	}
	msg := res.Message
	wire, err := EncodeFrame(StreamFrame{Type: FrameStatusUpdate, Cursor: res.Cursor, Message: &msg})
	if err != nil {
		h.log.Error("encode stream frame", "message_uuid", ev.MessageUUID, "err", err)
		return
	}
	h.mu.Lock()
	h.ring[h.head%ringSize] = Frame{Cursor: res.Cursor, Wire: wire}
	h.head++
	close(h.wake)
	h.wake = make(chan struct{})
	h.mu.Unlock()
}

// EncodeFrame marshals f and wraps it in an unmasked WebSocket text frame
// (RFC 6455 §5.2; servers never mask), so it is encoded once for all clients.
func EncodeFrame(f StreamFrame) ([]byte, error) {
	payload, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("marshal frame: %w", err)
	}
	return appendWSFrame(make([]byte, 0, len(payload)+10), 0x1, payload), nil
}

// appendWSFrame appends a final, unmasked frame with the given opcode.
func appendWSFrame(b []byte, opcode byte, payload []byte) []byte {
	b = append(b, 0x80|opcode)
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xFFFF:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

// Subscribe registers a subscriber that sees every frame published from now
// on. The caller must call Close on it.
func (h *Hub) Subscribe() (*Subscription, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	h.conns.Add(1)
	h.subscribers.Add(1)
	if h.clients != nil {
		h.clients.Inc()
	}
	return &Subscription{hub: h, pos: h.head}, nil
}

// Close makes every subscriber end its stream (their writers send a
// "going away" close frame) and waits until they have, or until ctx ends.
func (h *Hub) Close(ctx context.Context) error {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.closing)
	}
	h.mu.Unlock()
	done := make(chan struct{})
	go func() {
		// Exits when the last subscription is closed; if ctx ends first it
		// lingers only until the remaining writers hit their write deadline.
		h.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close hub: %w", ctx.Err())
	}
}

// Clients returns the number of current subscribers.
func (h *Hub) Clients() int { return int(h.subscribers.Load()) }

// Subscription is one subscriber's read position in the hub's ring.
type Subscription struct {
	hub    *Hub
	pos    uint64
	closed bool
}

// Next appends to dst the frames published since the last call, at most
// max of them. It also returns a channel closed on the next publish (to wait
// on when nothing was pending) and whether the subscriber fell so far
// behind that frames were overwritten: it must then be dropped.
func (s *Subscription) Next(dst []Frame, max int) (frames []Frame, wake <-chan struct{}, lagged bool) {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.head-s.pos > ringSize {
		return dst, h.wake, true
	}
	for ; s.pos < h.head && max > 0; s.pos, max = s.pos+1, max-1 {
		dst = append(dst, h.ring[s.pos%ringSize])
	}
	return dst, h.wake, false
}

// Close unregisters the subscriber. It is idempotent.
func (s *Subscription) Close() {
	if s.closed {
		return
	}
	s.closed = true
	h := s.hub
	h.subscribers.Add(-1)
	if h.clients != nil {
		h.clients.Dec()
	}
	h.conns.Done()
}

// Closing is closed when the hub shuts down.
func (s *Subscription) Closing() <-chan struct{} { return s.hub.closing }
