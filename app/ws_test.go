package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"plivo-dlr/app/hub"
	"plivo-dlr/internal/testsupport"
)

// wsFrame is a decoded stream frame.
type wsFrame struct {
	Type    string `json:"type"`
	Cursor  uint64 `json:"cursor"`
	Message struct {
		MessageUUID string `json:"message_uuid"`
		Status      string `json:"status"`
		EventCount  int    `json:"event_count"`
	} `json:"message"`
}

// dialStream opens /ws with the API token; since < 0 asks for no replay.
func dialStream(tb testing.TB, d *dashServer, since int64, dialer *websocket.Dialer) *websocket.Conn {
	tb.Helper()
	u := "ws://" + d.addr + "/ws"
	if since >= 0 {
		u += "?since=" + strconv.FormatInt(since, 10)
	}
	if dialer == nil {
		dialer = websocket.DefaultDialer
	}
	conn, resp, err := dialer.Dial(u, http.Header{"Authorization": {"Bearer " + dashAPIToken}})
	if err != nil {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		tb.Fatalf("dial %s: %v (status %d)", u, err, code)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// readFrame reads one frame within 5 s.
func readFrame(tb testing.TB, conn *websocket.Conn) wsFrame {
	tb.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := conn.ReadMessage()
	if err != nil {
		tb.Fatalf("read frame: %v", err)
	}
	var f wsFrame
	if err := json.Unmarshal(b, &f); err != nil {
		tb.Fatalf("frame %q: %v", b, err)
	}
	return f
}

// TestWSReplayThenLive: ?since replays the stored events after the cursor,
// in order, each with its message's current state, then says "ready" and
// streams new events live in order.
func TestWSReplayThenLive(t *testing.T) {
	d := startDashServer(t, nil)
	// Cursors 1..5.
	d.sendCallback(t, "aaaaaaaa-0000-4000-8000-000000000001", "queued", "", 1)
	d.sendCallback(t, "aaaaaaaa-0000-4000-8000-000000000002", "queued", "", 1)
	d.sendCallback(t, "aaaaaaaa-0000-4000-8000-000000000001", "sent", "", 2)
	d.sendCallback(t, "aaaaaaaa-0000-4000-8000-000000000002", "sent", "", 2)
	d.sendCallback(t, "aaaaaaaa-0000-4000-8000-000000000001", "delivered", "000", 3)

	conn := dialStream(t, d, 2, nil)
	want := []struct {
		cursor uint64
		uuid   string
	}{
		{3, "aaaaaaaa-0000-4000-8000-000000000001"},
		{4, "aaaaaaaa-0000-4000-8000-000000000002"},
		{5, "aaaaaaaa-0000-4000-8000-000000000001"},
	}
	for _, w := range want {
		f := readFrame(t, conn)
		if f.Type != hub.FrameStatusUpdate || f.Cursor != w.cursor || f.Message.MessageUUID != w.uuid {
			t.Fatalf("replay: got %s cursor %d %s, want status_update cursor %d %s", f.Type, f.Cursor, f.Message.MessageUUID, w.cursor, w.uuid)
		}
		// Replay carries the current state, not the state at the time.
		if w.uuid == want[0].uuid && f.Message.Status != "delivered" {
			t.Errorf("replayed cursor %d: got status %q, want the current \"delivered\"", f.Cursor, f.Message.Status)
		}
	}
	if f := readFrame(t, conn); f.Type != hub.FrameReady || f.Cursor != 5 {
		t.Fatalf("after replay: got %s cursor %d, want ready cursor 5", f.Type, f.Cursor)
	}

	live := []string{"delivered", "undelivered", "failed"}
	for i, status := range live {
		d.sendCallback(t, fmt.Sprintf("bbbbbbbb-0000-4000-8000-%012d", i), status, "30", 1)
	}
	for i, status := range live {
		f := readFrame(t, conn)
		wantCursor := uint64(6 + i)
		if f.Type != hub.FrameStatusUpdate || f.Cursor != wantCursor || f.Message.Status != status {
			t.Fatalf("live frame %d: got %s cursor %d %s, want status_update cursor %d %s", i, f.Type, f.Cursor, f.Message.Status, wantCursor, status)
		}
	}

	t.Run("no since: live only", func(t *testing.T) {
		c := dialStream(t, d, -1, nil)
		if f := readFrame(t, c); f.Type != hub.FrameReady || f.Cursor != 8 {
			t.Fatalf("got %s cursor %d, want ready cursor 8", f.Type, f.Cursor)
		}
		d.sendCallback(t, "cccccccc-0000-4000-8000-000000000001", "queued", "", 1)
		if f := readFrame(t, c); f.Cursor != 9 {
			t.Fatalf("got cursor %d, want 9", f.Cursor)
		}
	})
	t.Run("duplicate callback sends nothing", func(t *testing.T) {
		c := dialStream(t, d, -1, nil)
		readFrame(t, c)                                                            // ready
		d.sendCallback(t, "cccccccc-0000-4000-8000-000000000001", "queued", "", 1) // identical: duplicate
		d.sendCallback(t, "cccccccc-0000-4000-8000-000000000001", "sent", "", 2)
		if f := readFrame(t, c); f.Cursor != 10 || f.Message.Status != "sent" {
			t.Fatalf("got cursor %d %s, want cursor 10 sent", f.Cursor, f.Message.Status)
		}
	})
	t.Run("shutdown closes streams", func(t *testing.T) {
		c := dialStream(t, d, -1, nil)
		readFrame(t, c)
		testsupport.WaitFor(t, 5*time.Second, "hub to count the clients", func() bool { return d.srv.hub.Clients() >= 1 })
		d.stop(t)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, err := c.ReadMessage()
		if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
			t.Fatalf("after shutdown: got %v, want close 1001 (going away)", err)
		}
	})
}

// TestWSSlowClientDropped: a client that stops reading is dropped while
// callbacks keep being acknowledged and a reading client keeps receiving
// every frame; the dropped client resumes from its last cursor and misses
// nothing. The write wait is short and callbacks come from several senders
// (group commit), so the slow client's buffers fill, and it is dropped, in
// well under a second of ingestion.
func TestWSSlowClientDropped(t *testing.T) {
	t.Parallel()
	d := startDashServerOpts(t, nil, Options{WSWriteWait: 500 * time.Millisecond})

	// A small receive window makes the server's send buffer fill after a few
	// hundred frames. Not a tiny one: after the drop the bytes still queued
	// reach the client one window per zero-window probe (200 ms each), so a
	// 4 KiB window took 8 s to drain what a 64 KiB one drains at once.
	slowDialer := &websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(64 << 10)
		}
		return c, err
	}}
	slow := dialStream(t, d, 0, slowDialer)
	fast := dialStream(t, d, -1, nil)
	if f := readFrame(t, slow); f.Type != hub.FrameReady {
		t.Fatalf("slow client: got %s, want ready", f.Type)
	}
	if f := readFrame(t, fast); f.Type != hub.FrameReady {
		t.Fatalf("fast client: got %s, want ready", f.Type)
	}
	testsupport.WaitFor(t, 5*time.Second, "two subscribers", func() bool { return d.srv.hub.Clients() == 2 })

	// The fast client reads everything in the background.
	var mu sync.Mutex
	var fastLast uint64
	fastErr := make(chan error, 1)
	go func() {
		// Exits when the connection is closed by the test's cleanup.
		for {
			_, b, err := fast.ReadMessage()
			if err != nil {
				fastErr <- err
				return
			}
			var f wsFrame
			if err := json.Unmarshal(b, &f); err != nil {
				fastErr <- err
				return
			}
			mu.Lock()
			if f.Cursor != fastLast+1 {
				fastErr <- fmt.Errorf("fast client: got cursor %d after %d, want %d", f.Cursor, fastLast, fastLast+1)
				mu.Unlock()
				return
			}
			fastLast = f.Cursor
			mu.Unlock()
		}
	}()

	// Ingest until the slow client is dropped, bounded, from several senders
	// at once.
	const maxCallbacks, senders = 10000, 8 // stops at the drop; the bound allows for large socket buffers
	var next, done atomic.Int64
	sendErr := make(chan error, senders)
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d.srv.hub.Clients() == 2 {
				n := next.Add(1)
				if n > maxCallbacks {
					return
				}
				if err := d.trySendCallback(fmt.Sprintf("dddddddd-0000-4000-8000-%012d", n), "queued", "", 1); err != nil {
					sendErr <- err
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-sendErr:
		t.Fatal(err)
	default:
	}
	sent := int(done.Load())
	if d.srv.hub.Clients() != 1 {
		t.Fatalf("after %d callbacks: %d subscribers, want 1 (the slow one dropped)", sent, d.srv.hub.Clients())
	}
	// Ingestion goes on after the drop.
	for i := range 50 {
		d.sendCallback(t, fmt.Sprintf("eeeeeeee-0000-4000-8000-%012d", i), "queued", "", 1)
		sent++
	}
	testsupport.WaitFor(t, 10*time.Second, "the fast client to receive every frame", func() bool {
		select {
		case err := <-fastErr:
			t.Fatalf("fast client: %v", err)
		default:
		}
		mu.Lock()
		defer mu.Unlock()
		return fastLast == uint64(sent)
	})

	// The slow client reads what reached it, then its stream ends.
	var slowLast uint64
	for {
		_ = slow.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, b, err := slow.ReadMessage()
		if err != nil {
			break
		}
		var f wsFrame
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatalf("slow frame: %v", err)
		}
		if f.Type == hub.FrameStatusUpdate {
			if f.Cursor != slowLast+1 {
				t.Fatalf("slow client: got cursor %d after %d", f.Cursor, slowLast)
			}
			slowLast = f.Cursor
		}
	}
	if slowLast >= uint64(sent) {
		t.Fatalf("slow client got all %d frames; it was not dropped", sent)
	}
	// Resuming from its last cursor brings the rest, in order.
	again := dialStream(t, d, int64(slowLast), nil)
	for want := slowLast + 1; want <= uint64(sent); want++ {
		if f := readFrame(t, again); f.Cursor != want {
			t.Fatalf("resume: got %s cursor %d, want cursor %d", f.Type, f.Cursor, want)
		}
	}
	if f := readFrame(t, again); f.Type != hub.FrameReady || f.Cursor != uint64(sent) {
		t.Fatalf("resume: got %s cursor %d, want ready %d", f.Type, f.Cursor, sent)
	}
	t.Logf("slow client dropped after %d callbacks, having received %d frames", sent-50, slowLast)
}
