package app

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"plivo-dlr/app/hub"
	"plivo-dlr/storage"
)

// TestWSClientPingKeepsWriteDeadline: a client's ping, answered while a
// large replay write waits for the client to read, must not shorten that
// write's deadline. The websocket library's default ping handler sets the
// socket's write deadline to one second, which cut off a client that pinged
// (as client libraries do every 20 s or so) while catching up over a slow
// link, long before the stream's own write wait.
func TestWSClientPingKeepsWriteDeadline(t *testing.T) {
	t.Parallel()
	d := startDashServerOpts(t, nil, Options{WSWriteWait: 6 * time.Second})
	const messages = 3000 // about 1.5 MB of replay, far more than the socket buffers hold
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < messages; i += 8 {
				uuid := fmt.Sprintf("bbbbbbbb-0000-4000-8000-%012d", i)
				ev := storage.Event{MessageUUID: uuid, Status: "queued", Source: storage.SourceCallback,
					Payload: map[string]string{"MessageUUID": uuid, "Status": "queued", "To": "+14155550100"}}
				if _, err := d.srv.store.Apply(context.Background(), ev); err != nil {
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

	slowDialer := &websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(64 << 10)
		}
		return c, err
	}}
	conn := dialStream(t, d, 0, slowDialer)
	// The replay fills the socket buffers at once; the client pings and
	// reads nothing for 2.5 s (the server's write waits), then reads all.
	time.Sleep(200 * time.Millisecond)
	if err := conn.WriteControl(websocket.PingMessage, []byte("p"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2300 * time.Millisecond)
	got := 0
	for {
		f := readFrame(t, conn)
		if f.Type == hub.FrameReady {
			break
		}
		got++
	}
	if got != messages {
		t.Errorf("replay delivered %d frames, want %d", got, messages)
	}
}
