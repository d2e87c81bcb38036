package app

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"plivo-dlr/app/hub"
	"plivo-dlr/internal/testsupport"
)

// rawWSFrame reads one server frame (unmasked) from br: its first header
// byte and its payload.
func rawWSFrame(tb testing.TB, br *bufio.Reader) (byte, []byte) {
	tb.Helper()
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		tb.Fatalf("read frame header: %v", err)
	}
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126, 127:
		ext := make([]byte, 2+6*(n-126))
		if _, err := io.ReadFull(br, ext); err != nil {
			tb.Fatalf("read frame length: %v", err)
		}
		if n == 126 {
			n = uint64(binary.BigEndian.Uint16(ext))
		} else {
			n = binary.BigEndian.Uint64(ext)
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(br, p); err != nil {
		tb.Fatalf("read frame payload: %v", err)
	}
	return hdr[0], p
}

// TestWSDeflateNegotiation: the upgrader accepts permessage-deflate exactly
// when offersDeflate says so (the stream relies on it to send compressed
// batches), and a dashboard that negotiated it gets its live frames
// compressed (RSV1) while one that did not gets them plain; both decode to
// the same message.
func TestWSDeflateNegotiation(t *testing.T) {
	d := startDashServer(t, nil)
	offers := []string{
		"",
		"permessage-deflate; client_max_window_bits",                                 // Chromium, Firefox
		"permessage-deflate; server_no_context_takeover; client_no_context_takeover", // Go clients
		"x-webkit-deflate-frame",
		"foo, permessage-deflate",
	}
	for i, offer := range offers {
		t.Run(fmt.Sprintf("%q", offer), func(t *testing.T) {
			c, err := net.Dial("tcp", d.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			req := "GET /ws HTTP/1.1\r\nHost: " + d.addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
				"Authorization: Bearer " + dashAPIToken + "\r\n"
			if offer != "" {
				req += "Sec-WebSocket-Extensions: " + offer + "\r\n"
			}
			if _, err := io.WriteString(c, req+"\r\n"); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("handshake: %s", resp.Status)
			}
			accepted := strings.HasPrefix(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")
			if want := offersDeflate(offer); accepted != want {
				t.Fatalf("upgrader accepted deflate: %v; offersDeflate: %v", accepted, want)
			}
			if _, ready := rawWSFrame(t, br); !bytes.Contains(ready, []byte(`"type":"ready"`)) {
				t.Fatalf("first frame %q, want ready", ready)
			}
			testsupport.WaitFor(t, 5*time.Second, "the hub to count the client", func() bool { return d.srv.hub.Clients() == 1 })

			uuid := fmt.Sprintf("dddddddd-0000-4000-8000-%012d", i)
			d.sendCallback(t, uuid, "delivered", "000", 1)
			op, p := rawWSFrame(t, br)
			if compressed := op&0x40 != 0; compressed != accepted {
				t.Fatalf("frame header %#x: compressed %v, negotiated %v", op, compressed, accepted)
			}
			if accepted {
				r := flate.NewReader(io.MultiReader(bytes.NewReader(p), strings.NewReader("\x00\x00\xff\xff\x01\x00\x00\xff\xff")))
				if p, err = io.ReadAll(r); err != nil {
					t.Fatalf("inflate: %v", err)
				}
			}
			var f wsFrame
			if err := json.Unmarshal(p, &f); err != nil {
				t.Fatalf("frame %q: %v", p, err)
			}
			if f.Type != hub.FrameStatusUpdate || f.Message.MessageUUID != uuid || f.Message.Status != "delivered" {
				t.Fatalf("got %+v, want the status_update of %s", f, uuid)
			}
			c.Close()
			testsupport.WaitFor(t, 5*time.Second, "the client to leave", func() bool { return d.srv.hub.Clients() == 0 })
		})
	}
}

// TestWSDeflateSameMessages: under a burst from several senders, a
// dashboard that negotiated compression receives, message for message and
// byte for byte, what a plain one receives; an API client on the exact
// stream with compression negotiated still gets every event in order.
func TestWSDeflateSameMessages(t *testing.T) {
	d := startDashServer(t, nil)
	deflating := &websocket.Dialer{EnableCompression: true}
	plain := dialStream(t, d, -1, nil)
	compressed := dialStream(t, d, -1, deflating)
	exact := dialStream(t, d, 0, deflating)
	for _, c := range []*websocket.Conn{plain, compressed, exact} {
		if f := readFrame(t, c); f.Type != hub.FrameReady || f.Cursor != 0 {
			t.Fatalf("got %s cursor %d, want ready cursor 0", f.Type, f.Cursor)
		}
	}
	testsupport.WaitFor(t, 5*time.Second, "three subscribers", func() bool { return d.srv.hub.Clients() == 3 })

	const senders, perSender = 4, 40
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perSender {
				uuid := fmt.Sprintf("eeeeeeee-0000-4000-8000-%06d%06d", s, i/3)
				status := [3]string{"queued", "sent", "delivered"}[i%3]
				if err := d.trySendCallback(uuid, status, "", i%3+1); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	const total = senders * perSender

	// Until the last cursor: every message of a latest client.
	readUntil := func(c *websocket.Conn) (msgs [][]byte) {
		var last uint64
		for last < total {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, b, err := c.ReadMessage()
			if err != nil {
				t.Fatalf("read after cursor %d: %v", last, err)
			}
			var f wsFrame
			if err := json.Unmarshal(b, &f); err != nil {
				t.Fatalf("frame %q: %v", b, err)
			}
			last = f.Cursor
			msgs = append(msgs, b)
		}
		return msgs
	}
	want, got := readUntil(plain), readUntil(compressed)
	if len(got) != len(want) {
		t.Fatalf("compressed dashboard got %d messages, plain %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("message %d: compressed dashboard got %s, plain %s", i, got[i], want[i])
		}
	}
	for c := uint64(1); c <= total; c++ {
		if f := readFrame(t, exact); f.Cursor != c {
			t.Fatalf("exact stream: got cursor %d, want %d", f.Cursor, c)
		}
	}
	t.Logf("%d events → %d latest messages", total, len(want))
}

// A client's message is bounded once inflated, not only on the wire: a
// small deflated message of 1 MB of zeros ends the connection instead of
// being inflated; a small one is read and dropped as before.
func TestWSInflatedClientMessageBounded(t *testing.T) {
	d := startDashServer(t, nil)
	deflating := &websocket.Dialer{EnableCompression: true}
	small := dialStream(t, d, -1, deflating)
	bomb := dialStream(t, d, -1, deflating)
	for _, c := range []*websocket.Conn{small, bomb} {
		if f := readFrame(t, c); f.Type != hub.FrameReady {
			t.Fatalf("got %s, want ready", f.Type)
		}
		c.EnableWriteCompression(true)
	}
	if err := small.WriteMessage(websocket.TextMessage, []byte(`{"hello":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := bomb.WriteMessage(websocket.TextMessage, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	_ = bomb.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := bomb.ReadMessage(); err == nil {
		t.Error("connection still open after a message that inflates to 1 MB")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Errorf("read timed out: the server kept the connection after a 1 MB inflated message")
	}
	// The other client still gets the stream.
	d.sendCallback(t, "eeeeeeee-0000-4000-8000-000000000001", "delivered", "", 3)
	if f := readFrame(t, small); f.Type == hub.FrameReady {
		t.Errorf("small client got %s, want the stored event", f.Type)
	}
}
