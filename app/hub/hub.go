// Package hub fans stored events out to the WebSocket subscribers. It
// knows nothing of HTTP; the server's /ws handler owns the connections and
// writes the frames.
//
// Two kinds of subscriber share it:
//
//   - Exact subscribers (API clients resuming with ?since=) get every event,
//     in cursor order, each encoded once into a ready-to-write WebSocket
//     frame kept in a shared ring that every subscriber reads at its own
//     pace.
//   - Latest subscribers (dashboards) get, every LatestInterval at most, one
//     shared batch: the latest state of each message that changed, one
//     frame per message, in ascending order of the message's newest
//     cursor. A burst of events thus costs each dashboard one write per
//     interval, and the batch is encoded once for all of them (and
//     compressed once for those that negotiated permessage-deflate).
//     Resuming from the highest cursor received misses nothing: every
//     event at or below it is reflected in a frame already sent.
//
// Notify runs on the storage writer's goroutine, before callbacks are
// answered: it only queues the event. Encoding happens on the hub's own
// goroutine, so subscribers never slow a commit.
package hub

import (
	"bytes"
	"cmp"
	"compress/flate"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"plivo-dlr/storage"
)

// ringSize is how many frames the hub keeps for exact subscribers to catch
// up on. A subscriber that falls further behind is dropped and resumes from
// its cursor through the database. At a few hundred bytes a frame this is
// about 2 MiB shared by every client, instead of a buffer per client.
const ringSize = 4096

// batchRingSize is how many latest-state batches the hub keeps: at one per
// LatestInterval, a dashboard may stall for about 10 s before it is dropped
// (and resumes by cursor).
const batchRingSize = 64

// LatestInterval is the shortest time between two batches for latest
// subscribers: it bounds their frame rate and so their cost under a burst,
// and with the time to encode and write a batch stays under the 250 ms a
// dashboard update may take. With 500 dashboards (BenchmarkWSFanout) 100 ms
// cost ingestion 0.64-0.83 of its rate (frame p99 125-133 ms); 150 ms
// costs 0.73-0.82 (frame p99 174-204 ms).
const LatestInterval = 150 * time.Millisecond

// maxPending bounds the events queued for the encoder. Beyond it (the
// encoder is starved of CPU for a long time) the oldest are not encoded and
// every subscriber is told to resume from the database.
const maxPending = 64 << 10

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

// Frame is encoded stream data shared read-only by every subscriber: Wire
// and Deflated must not be modified. For an exact subscriber it is one
// event's frame (Cursor is the event's); for a latest subscriber it is a
// batch of frames covering every event up to Cursor.
type Frame struct {
	Cursor uint64
	Wire   []byte
	// Deflated, in a latest batch, holds the same messages as Wire, each
	// compressed on its own (permessage-deflate without context takeover,
	// RFC 7692), for subscribers that negotiated it. It is nil when no
	// such subscriber was connected; they then get Wire, as uncompressed
	// messages are always allowed.
	Deflated []byte
}

// Mode says which stream a subscriber gets.
type Mode int

// Subscriber modes.
const (
	// Latest: coalesced batches, the latest state per message.
	Latest Mode = iota
	// Exact: every event, in order.
	Exact
)

// Encoding says how a subscriber's connection can take messages.
type Encoding int

// Subscriber encodings.
const (
	// Plain: uncompressed messages.
	Plain Encoding = iota
	// Deflate: the connection negotiated permessage-deflate without
	// context takeover. Latest batches then come compressed (Frame's
	// Deflated), once for all such subscribers: it about halves the bytes
	// each dashboard costs the server to send. The exact stream stays
	// plain.
	Deflate
)

type pendingEvent struct {
	cursor uint64
	msg    storage.Message
}

// channel is one ring of frames with its readers' wake-up.
type channel struct {
	// mu guards ring, head and wake. It is the ring's own lock, not the
	// hub's: when a batch is published every subscriber reads the ring at
	// once, and Notify, which runs on the storage writer's goroutine, must
	// not queue behind 500 of them. Readers share it.
	mu   sync.RWMutex
	ring []Frame
	head uint64        // frames ever appended; the next goes to ring[head%len]
	wake chan struct{} // closed and replaced on every append
	// subscribers is read without the hub's lock so the encoder can skip
	// work nobody would read (a subscriber that joins meanwhile replays the
	// event from the database, which already holds it).
	subscribers atomic.Int64
	// deflaters counts the subscribers that take Deflated batches; without
	// them batches are not compressed. One that joins while a batch is
	// being encoded may get that batch plain.
	deflaters atomic.Int64
}

// append adds frames and wakes the readers once.
func (c *channel) append(frames ...Frame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range frames {
		c.ring[c.head%uint64(len(c.ring))] = f
		c.head++
	}
	close(c.wake)
	c.wake = make(chan struct{})
}

// Hub fans stored events out to WebSocket subscribers. Notify costs the
// same with 0 or 500 clients and never waits for any of them.
type Hub struct {
	log     *slog.Logger
	clients prometheus.Gauge

	// mu guards pending, gap and closed; each channel has its own lock.
	mu      sync.Mutex
	pending []pendingEvent
	// gap is set when pending overflowed: subscribers must resync.
	gap    bool
	exact  channel
	latest channel
	closed bool
	// closing is closed by Close; every stream writer watches it.
	closing chan struct{}
	conns   sync.WaitGroup

	kick        chan struct{} // a Notify since the encoder last looked
	encoderDone chan struct{}
}

// New returns an empty hub and starts its encoder; clients, if not nil,
// tracks its subscribers.
func New(log *slog.Logger, clients prometheus.Gauge) *Hub {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Hub{
		log: log, clients: clients, closing: make(chan struct{}),
		kick: make(chan struct{}, 1), encoderDone: make(chan struct{}),
	}
	for _, c := range []*channel{&h.exact, &h.latest} {
		c.wake = make(chan struct{})
	}
	h.exact.ring = make([]Frame, ringSize)
	h.latest.ring = make([]Frame, batchRingSize)
	go h.encoder()
	return h
}

// Notify queues the new state of a message after its event was committed.
// It is called on the storage writer's goroutine and only takes a lock.
func (h *Hub) Notify(ev storage.Event, res storage.ApplyResult) {
	if res.Duplicate || h.exact.subscribers.Load()+h.latest.subscribers.Load() == 0 {
		return
	}
	h.mu.Lock()
	if len(h.pending) >= maxPending {
		h.pending = h.pending[:0]
		h.gap = true
	}
	h.pending = append(h.pending, pendingEvent{cursor: res.Cursor, msg: res.Message})
	h.mu.Unlock()
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// encoder turns queued events into frames: at once for exact subscribers,
// at most every LatestInterval as a coalesced batch for latest ones.
func (h *Hub) encoder() {
	defer close(h.encoderDone)
	var (
		batch     []pendingEvent
		frames    []Frame
		latest    = map[string]int{} // MessageUUID → index in order
		order     []pendingEvent     // latest state per message, first-change order
		upTo      uint64             // highest cursor folded into order
		lastFlush time.Time
		timer     = time.NewTimer(time.Hour)
		timerOn   bool
	)
	timer.Stop()
	var def deflater
	flush := func() {
		lastFlush = time.Now()
		if len(order) == 0 {
			return
		}
		slices.SortFunc(order, func(a, b pendingEvent) int { return cmp.Compare(a.cursor, b.cursor) })
		compress := h.latest.deflaters.Load() > 0
		var wire, deflated []byte
		for i := range order {
			payload, err := json.Marshal(StreamFrame{Type: FrameStatusUpdate, Cursor: order[i].cursor, Message: &order[i].msg})
			if err != nil {
				h.log.Error("encode stream frame", "message_uuid", order[i].msg.MessageUUID, "err", err)
				continue
			}
			wire = appendWSFrame(wire, opText, payload)
			if compress {
				if deflated, err = def.appendFrame(deflated, payload); err != nil {
					// Not expected (it writes to memory); they get Wire.
					h.log.Error("compress stream frame", "err", err)
					compress, deflated = false, nil
				}
			}
		}
		clear(latest)
		order = order[:0]
		h.latest.append(Frame{Cursor: upTo, Wire: wire, Deflated: deflated})
	}
	for {
		select {
		case <-h.kick:
		case <-timer.C:
			timerOn = false
		case <-h.closing:
			return
		}
		h.mu.Lock()
		batch, h.pending = h.pending, batch[:0]
		gap := h.gap
		h.gap = false
		h.mu.Unlock()
		if gap {
			h.resync()
			clear(latest)
			order = order[:0]
		}
		if h.exact.subscribers.Load() > 0 {
			frames = frames[:0]
			for i := range batch {
				wire, err := EncodeFrame(StreamFrame{Type: FrameStatusUpdate, Cursor: batch[i].cursor, Message: &batch[i].msg})
				if err != nil {
					h.log.Error("encode stream frame", "message_uuid", batch[i].msg.MessageUUID, "err", err)
					continue
				}
				frames = append(frames, Frame{Cursor: batch[i].cursor, Wire: wire})
			}
			h.exact.append(frames...)
			clear(frames)
		}
		if h.latest.subscribers.Load() > 0 {
			for _, ev := range batch {
				if i, ok := latest[ev.msg.MessageUUID]; ok {
					order[i] = ev // events come in cursor order: the later state wins
				} else {
					latest[ev.msg.MessageUUID] = len(order)
					order = append(order, ev)
				}
				upTo = max(upTo, ev.cursor)
			}
		}
		clear(batch) // drop the messages' references
		if len(order) == 0 {
			continue
		}
		if wait := LatestInterval - time.Since(lastFlush); wait > 0 {
			if !timerOn {
				timer.Reset(wait)
				timerOn = true
			}
			continue
		}
		flush()
	}
}

// Resync says events were stored but never notified (the store's feed
// dropped them): every subscriber is dropped and resumes from the
// database, so none misses an event.
func (h *Hub) Resync() {
	h.mu.Lock()
	h.gap = true
	h.mu.Unlock()
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// resync makes every subscriber fall behind its ring, so each is dropped
// and resumes from the database: queued events were discarded.
func (h *Hub) resync() {
	for _, c := range []*channel{&h.exact, &h.latest} {
		c.mu.Lock()
		c.head += uint64(len(c.ring)) + 1
		close(c.wake)
		c.wake = make(chan struct{})
		c.mu.Unlock()
	}
	h.log.Warn("stream encoder fell behind; subscribers resume from the database")
}

// EncodeFrame marshals f and wraps it in an unmasked WebSocket text frame
// (RFC 6455 §5.2; servers never mask), so it is encoded once for all clients.
func EncodeFrame(f StreamFrame) ([]byte, error) {
	payload, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("marshal frame: %w", err)
	}
	return appendWSFrame(make([]byte, 0, len(payload)+10), opText, payload), nil
}

// WebSocket frame header bits (RFC 6455 §5.2, RFC 7692 §6).
const (
	opText = 0x1
	// rsv1 marks a message compressed with permessage-deflate.
	rsv1 = 0x40
)

// appendWSFrame appends a final, unmasked frame; op is the opcode, with
// rsv1 for a compressed message.
func appendWSFrame(b []byte, op byte, payload []byte) []byte {
	b = append(b, 0x80|op)
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

// Subscribe registers a subscriber of the given mode that sees every frame
// published from now on; enc says whether its connection takes compressed
// messages. The caller must call Close on it.
func (h *Hub) Subscribe(mode Mode, enc Encoding) (*Subscription, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	c := &h.latest
	if mode == Exact {
		c = &h.exact
	}
	h.conns.Add(1)
	c.subscribers.Add(1)
	deflate := enc == Deflate && mode == Latest
	if deflate {
		c.deflaters.Add(1)
	}
	if h.clients != nil {
		h.clients.Inc()
	}
	c.mu.RLock()
	pos := c.head
	c.mu.RUnlock()
	return &Subscription{hub: h, ch: c, pos: pos, deflate: deflate}, nil
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
		<-h.encoderDone
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
func (h *Hub) Clients() int { return int(h.exact.subscribers.Load() + h.latest.subscribers.Load()) }

// Subscription is one subscriber's read position in its ring.
type Subscription struct {
	hub     *Hub
	ch      *channel
	pos     uint64
	deflate bool
	closed  bool
}

// Deflate reports whether the subscriber takes a Frame's Deflated bytes
// when it has them.
func (s *Subscription) Deflate() bool { return s.deflate }

// Next appends to dst the frames published since the last call, at most
// max of them. It also returns a channel closed on the next publish (to wait
// on when nothing was pending) and whether the subscriber fell so far
// behind that frames were overwritten: it must then be dropped.
func (s *Subscription) Next(dst []Frame, max int) (frames []Frame, wake <-chan struct{}, lagged bool) {
	c := s.ch
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.head-s.pos > uint64(len(c.ring)) {
		return dst, c.wake, true
	}
	for ; s.pos < c.head && max > 0; s.pos, max = s.pos+1, max-1 {
		dst = append(dst, c.ring[s.pos%uint64(len(c.ring))])
	}
	return dst, c.wake, false
}

// Close unregisters the subscriber. It is idempotent.
func (s *Subscription) Close() {
	if s.closed {
		return
	}
	s.closed = true
	h := s.hub
	s.ch.subscribers.Add(-1)
	if s.deflate {
		s.ch.deflaters.Add(-1)
	}
	if h.clients != nil {
		h.clients.Dec()
	}
	h.conns.Done()
}

// Closing is closed when the hub shuts down.
func (s *Subscription) Closing() <-chan struct{} { return s.hub.closing }

// deflater compresses stream messages for permessage-deflate without
// context takeover: each message on its own, so the bytes are valid on
// every connection that negotiated it, whatever it was sent before.
type deflater struct {
	w   *flate.Writer
	buf bytes.Buffer
}

// appendFrame appends payload to b as one compressed text frame, or as a
// plain one when compressing would not make it smaller.
func (d *deflater) appendFrame(b, payload []byte) ([]byte, error) {
	d.buf.Reset()
	if d.w == nil {
		w, err := flate.NewWriter(&d.buf, flate.BestSpeed)
		if err != nil {
			return b, fmt.Errorf("new flate writer: %w", err)
		}
		d.w = w
	} else {
		// A fresh window for every message: no context takeover.
		d.w.Reset(&d.buf)
	}
	if _, err := d.w.Write(payload); err != nil {
		return b, fmt.Errorf("deflate: %w", err)
	}
	// A sync flush ends the message on a byte boundary with an empty
	// stored block, whose 00 00 ff ff the sender removes (RFC 7692 §7.2.1).
	if err := d.w.Flush(); err != nil {
		return b, fmt.Errorf("deflate: %w", err)
	}
	z, ok := bytes.CutSuffix(d.buf.Bytes(), []byte{0, 0, 0xff, 0xff})
	if !ok {
		return b, errors.New("deflate: flush did not end with a sync marker")
	}
	if len(z) >= len(payload) {
		return appendWSFrame(b, opText, payload), nil
	}
	return appendWSFrame(b, rsv1|opText, z), nil
}
