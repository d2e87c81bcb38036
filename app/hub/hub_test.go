package hub

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"plivo-dlr/storage"
)

// splitWire decodes the WebSocket text frames of a wire blob, all of them
// uncompressed.
func splitWire(t *testing.T, wire []byte) []StreamFrame {
	t.Helper()
	payloads, compressed := inflateWire(t, wire)
	if compressed > 0 {
		t.Fatalf("%d compressed frames, want final uncompressed text frames", compressed)
	}
	var out []StreamFrame
	for _, p := range payloads {
		var f StreamFrame
		if err := json.NewDecoder(bytes.NewReader(p)).Decode(&f); err != nil {
			t.Fatalf("frame payload: %v", err)
		}
		out = append(out, f)
	}
	return out
}

// collect reads sub until it has seen cursor last, bounded by 10 s.
func collect(t *testing.T, sub *Subscription, last uint64) (batches [][]StreamFrame) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	var got uint64
	for got < last {
		frames, wake, lagged := sub.Next(nil, 1<<20)
		if lagged {
			t.Fatal("subscriber lagged")
		}
		for _, f := range frames {
			batches = append(batches, splitWire(t, f.Wire))
			got = max(got, f.Cursor)
		}
		if len(frames) == 0 {
			select {
			case <-wake:
			case <-deadline:
				t.Fatalf("got up to cursor %d, want %d", got, last)
			}
		}
	}
	return batches
}

// TestLatestCoalescesExactDoesNot: a burst of events over few messages
// reaches an exact subscriber event by event, in order, and a latest
// subscriber as far fewer frames carrying each message's final state, in
// ascending cursor order within each batch, ending at the last cursor.
func TestLatestCoalescesExactDoesNot(t *testing.T) {
	h := New(nil, nil)
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	exact, err := h.Subscribe(Exact, Plain)
	if err != nil {
		t.Fatal(err)
	}
	defer exact.Close()
	latest, err := h.Subscribe(Latest, Plain)
	if err != nil {
		t.Fatal(err)
	}
	defer latest.Close()

	const messages, events = 10, 2000
	for c := uint64(1); c <= events; c++ {
		uuid := fmt.Sprintf("aaaaaaaa-0000-4000-8000-%012d", c%messages)
		h.Notify(storage.Event{MessageUUID: uuid}, storage.ApplyResult{Cursor: c, Message: storage.Message{
			MessageUUID: uuid, Status: "sent", EventCount: int(c),
		}})
	}

	var want uint64 = 1
	for _, b := range collect(t, exact, events) {
		if len(b) != 1 {
			t.Fatalf("exact frame holds %d frames, want 1", len(b))
		}
		if b[0].Cursor != want {
			t.Fatalf("exact: got cursor %d, want %d", b[0].Cursor, want)
		}
		want++
	}

	frames, final := 0, map[string]int{}
	for _, b := range collect(t, latest, events) {
		for i, f := range b {
			if i > 0 && f.Cursor <= b[i-1].Cursor {
				t.Fatalf("latest batch out of order: cursor %d after %d", f.Cursor, b[i-1].Cursor)
			}
			if f.Message == nil || uint64(f.Message.EventCount) != f.Cursor {
				t.Fatalf("latest frame cursor %d carries %+v, want the state of that cursor", f.Cursor, f.Message)
			}
			final[f.Message.MessageUUID] = f.Message.EventCount
			frames++
		}
	}
	if frames >= events/2 {
		t.Errorf("latest subscriber got %d frames for %d events over %d messages: not coalesced", frames, events, messages)
	}
	for c := uint64(events - messages + 1); c <= events; c++ {
		uuid := fmt.Sprintf("aaaaaaaa-0000-4000-8000-%012d", c%messages)
		if final[uuid] != int(c) {
			t.Errorf("message %s: last state event_count %d, want %d", uuid, final[uuid], c)
		}
	}
	t.Logf("%d events → %d latest frames", events, frames)
}

// TestNoSubscribersNoWork: without subscribers Notify queues nothing.
func TestNoSubscribersNoWork(t *testing.T) {
	h := New(nil, nil)
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	h.Notify(storage.Event{}, storage.ApplyResult{Cursor: 1})
	h.mu.Lock()
	n := len(h.pending)
	h.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d events queued with no subscriber", n)
	}
}

// inflateWire decodes the WebSocket text frames of a wire blob into their
// payloads, inflating those marked compressed (RSV1) as a permessage-deflate
// receiver without context takeover does, and reports how many were.
func inflateWire(t *testing.T, wire []byte) (payloads [][]byte, compressed int) {
	t.Helper()
	for len(wire) > 0 {
		if wire[0]&^rsv1 != 0x81 {
			t.Fatalf("frame header %#x, want a final text frame", wire[0])
		}
		n, hdr := int(wire[1]), 2
		switch n {
		case 126:
			n, hdr = int(binary.BigEndian.Uint16(wire[2:])), 4
		case 127:
			n, hdr = int(binary.BigEndian.Uint64(wire[2:])), 10
		}
		p := wire[hdr : hdr+n]
		if wire[0]&rsv1 != 0 {
			compressed++
			// RFC 7692 §7.2.2: append the removed 00 00 ff ff; the final
			// empty block ends the stream for the reader.
			r := flate.NewReader(io.MultiReader(bytes.NewReader(p), strings.NewReader("\x00\x00\xff\xff\x01\x00\x00\xff\xff")))
			var err error
			if p, err = io.ReadAll(r); err != nil {
				t.Fatalf("inflate frame: %v", err)
			}
		}
		payloads = append(payloads, p)
		wire = wire[hdr+n:]
	}
	return payloads, compressed
}

// TestLatestDeflated: with a subscriber that takes compressed messages, a
// latest batch also comes deflated, message by message, each decoding on
// its own to the very payload of the plain batch. Without one nothing is
// compressed.
func TestLatestDeflated(t *testing.T) {
	for _, enc := range []Encoding{Plain, Deflate} {
		h := New(nil, nil)
		t.Cleanup(func() { _ = h.Close(context.Background()) })
		sub, err := h.Subscribe(Latest, enc)
		if err != nil {
			t.Fatal(err)
		}
		if sub.Deflate() != (enc == Deflate) {
			t.Fatalf("encoding %d: Deflate() = %v", enc, sub.Deflate())
		}
		const events = 300
		for c := uint64(1); c <= events; c++ {
			uuid := fmt.Sprintf("aaaaaaaa-0000-4000-8000-%012d", c)
			h.Notify(storage.Event{MessageUUID: uuid}, storage.ApplyResult{Cursor: c, Message: storage.Message{
				MessageUUID: uuid, Status: "delivered", EventCount: 1,
			}})
		}
		var got uint64
		deadline := time.After(10 * time.Second)
		for got < events {
			frames, wake, lagged := sub.Next(nil, 1<<20)
			if lagged {
				t.Fatal("subscriber lagged")
			}
			for _, f := range frames {
				got = max(got, f.Cursor)
				if enc == Plain {
					if f.Deflated != nil {
						t.Fatalf("batch up to %d compressed with no subscriber taking it", f.Cursor)
					}
					continue
				}
				plain, _ := inflateWire(t, f.Wire)
				inflated, compressed := inflateWire(t, f.Deflated)
				if compressed == 0 || len(f.Deflated) >= len(f.Wire) {
					t.Fatalf("batch up to %d: %d of %d messages compressed, %d bytes of %d", f.Cursor, compressed, len(inflated), len(f.Deflated), len(f.Wire))
				}
				if len(inflated) != len(plain) {
					t.Fatalf("batch up to %d: %d messages deflated, %d plain", f.Cursor, len(inflated), len(plain))
				}
				for i := range plain {
					if !bytes.Equal(inflated[i], plain[i]) {
						t.Fatalf("message %d: inflated %s, plain %s", i, inflated[i], plain[i])
					}
				}
			}
			if len(frames) == 0 {
				select {
				case <-wake:
				case <-deadline:
					t.Fatalf("got up to cursor %d, want %d", got, events)
				}
			}
		}
		sub.Close()
		if n := h.latest.deflaters.Load(); n != 0 {
			t.Fatalf("after Close: %d deflating subscribers counted", n)
		}
	}
}
