package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"plivo-dlr/app/hub"
	"plivo-dlr/storage"
)

// TestWSReplayBoundedByPage (issue 9 item 11): a client replaying from
// cursor 0 over a message with 60,000 events reads the log page by page and
// each page's message states without their histories, so what one page
// reads and sends is bounded by the page size, not by the history. Before,
// every page read the whole 60,000-event history of the message (4 such
// clients took 2 GB). The exact stream still gets every event in order; a
// dashboard gets one frame per message per page.
func TestWSReplayBoundedByPage(t *testing.T) {
	const (
		bigEvents   = 60_000
		smallMsgs   = 200
		totalEvents = bigEvents + 3*smallMsgs
	)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dashServer{addr: ln.Addr().String(), dbDir: t.TempDir()}
	d.cfg = dashConfig(d.addr)

	// Fill the store first (no fsync: a bulk load), from concurrent writers
	// so the group commit takes many events per commit.
	fill, err := storage.Open(filepath.Join(d.dbDir, "dlr.db"), storage.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	big := "0c7e1a42-2f61-11ef-a3d5-0242ac120003"
	now := time.Now().UTC()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < bigEvents+smallMsgs; i += 64 {
				evs := []storage.Event{{MessageUUID: big, Status: "sent", Sequence: int64(i + 1)}}
				if i >= bigEvents {
					uuid := fmt.Sprintf("1d2e3f40-2f61-11ef-a3d5-%012d", i)
					evs = []storage.Event{{MessageUUID: uuid, Status: "queued", Sequence: 1}, {MessageUUID: uuid, Status: "sent", Sequence: 2}, {MessageUUID: uuid, Status: "delivered", Sequence: 3}}
				}
				for _, ev := range evs {
					ev.Source, ev.ReceivedAt = storage.SourceCallback, now
					ev.Payload = map[string]string{"MessageUUID": ev.MessageUUID, "Status": ev.Status, "Sequence": fmt.Sprint(ev.Sequence)}
					if _, err := fill.Apply(context.Background(), ev); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("fill: %v", err)
	}
	if err := fill.Close(); err != nil {
		t.Fatal(err)
	}
	d.start(t, ln)
	t.Cleanup(func() { d.stop(t) })

	type page struct{ frames, states, bytes int }
	var mu sync.Mutex
	var pages []page
	hook := func(frames, states, bytes int) {
		mu.Lock()
		pages = append(pages, page{frames, states, bytes})
		mu.Unlock()
	}
	replayPageHook.Store(&hook)
	t.Cleanup(func() { replayPageHook.Store(nil) })

	for _, tc := range []struct {
		name       string
		exact      bool
		wantFrames func(int) bool
	}{
		{"exact stream", true, func(n int) bool { return n == totalEvents }},
		// One frame per message per page: the big message about once a
		// page, each small one once per page it has events in.
		{"dashboard", false, func(n int) bool { return n <= 2*(totalEvents/wsReplayPage+1)+3*smallMsgs }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			pages = nil
			mu.Unlock()
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)

			var conn *websocket.Conn
			if tc.exact {
				conn = dialStream(t, d, 0, nil)
			} else {
				// A dashboard: the session cookie, resuming from 0.
				conn = dialSessionStream(t, d, 0)
			}
			frames, last := 0, uint64(0)
			for {
				_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
				_, r, err := conn.NextReader()
				if err != nil {
					t.Fatalf("after %d frames: %v", frames, err)
				}
				var f struct {
					Type   string `json:"type"`
					Cursor uint64 `json:"cursor"`
				}
				if err := json.NewDecoder(io.LimitReader(r, 64<<10)).Decode(&f); err != nil {
					t.Fatalf("frame %d: %v", frames, err)
				}
				if f.Type == hub.FrameReady {
					if f.Cursor != totalEvents {
						t.Fatalf("ready at cursor %d, want %d", f.Cursor, totalEvents)
					}
					break
				}
				if f.Cursor <= last {
					t.Fatalf("frame cursor %d after %d: out of order", f.Cursor, last)
				}
				if tc.exact && f.Cursor != last+1 {
					t.Fatalf("exact stream: cursor %d after %d, want every event", f.Cursor, last)
				}
				last = f.Cursor
				frames++
			}
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if !tc.wantFrames(frames) {
				t.Errorf("%d status frames for %d events", frames, totalEvents)
			}

			mu.Lock()
			defer mu.Unlock()
			if want := (totalEvents + wsReplayPage - 1) / wsReplayPage; len(pages) != want {
				t.Errorf("%d replay pages, want %d", len(pages), want)
			}
			maxBytes, maxStates := 0, 0
			for _, p := range pages {
				maxBytes, maxStates = max(maxBytes, p.bytes), max(maxStates, p.states)
			}
			// A frame is one message state (about 500 bytes here): a page
			// sends at most wsReplayPage of them and reads at most as many
			// states, whatever the history of their messages.
			if maxStates > wsReplayPage {
				t.Errorf("a page read %d message states, page size %d", maxStates, wsReplayPage)
			}
			if limit := wsReplayPage * 2 << 10; maxBytes > limit {
				t.Errorf("a page sent %d bytes, bound %d", maxBytes, limit)
			}
			// Everything the process allocated during the replay, server and
			// this test's reader together, per event replayed. Reading the
			// 60,000-event history once per page, as before, is about
			// 100 KiB per event.
			perEvent := float64(after.TotalAlloc-before.TotalAlloc) / totalEvents
			if perEvent > 16<<10 {
				t.Errorf("replay allocated %.0f bytes per event, bound %d", perEvent, 16<<10)
			}
			t.Logf("%d frames, %d pages, largest page %d bytes and %d states, %.0f bytes allocated per event",
				frames, len(pages), maxBytes, maxStates, perEvent)
		})
	}
}

// dialSessionStream logs in as the dashboard does and opens /ws with the
// session cookie, from the dashboard's origin, resuming after since.
func dialSessionStream(tb testing.TB, d *dashServer, since uint64) *websocket.Conn {
	tb.Helper()
	resp := d.login(tb, noRedirectClient(tb), dashUser, dashPassword)
	c := sessionCookieOf(resp)
	if c == nil {
		tb.Fatalf("login: status %d, no session cookie", resp.StatusCode)
	}
	u := fmt.Sprintf("ws://%s/ws?since=%d", d.addr, since)
	conn, r, err := websocket.DefaultDialer.Dial(u, http.Header{
		"Cookie": {c.Name + "=" + c.Value},
		"Origin": {"http://" + d.addr},
	})
	if err != nil {
		code := 0
		if r != nil {
			code = r.StatusCode
		}
		tb.Fatalf("dial %s: %v (status %d)", u, err, code)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}
