package app

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"plivo-dlr/internal/testsupport"
	"plivo-dlr/storage"
	"plivo-dlr/ui"
)

// TestStalledCommitThenFreshCallbackOnSameConnection injects a slow commit
// (a stalled disk) so that a callback times out with 503 while still queued
// for the writer. The next, fresh callback on the same keep-alive connection
// must then be stored (200), not refused as a replay: before the fix the
// queued request's nonce aliased fasthttp's reused request buffer and the
// writer recorded the next request's nonce, and it committed a request whose
// caller had been told "not stored".
func TestStalledCommitThenFreshCallbackOnSameConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	cfg := dashConfig(addr)

	var (
		mu      sync.Mutex
		stall   bool
		entered = make(chan struct{}, 1)
		release = make(chan struct{})
	)
	store, err := storage.Open(filepath.Join(t.TempDir(), "dlr.db"), storage.Options{
		BeforeCommit: func() {
			mu.Lock()
			s := stall
			stall = false
			mu.Unlock()
			if s {
				entered <- struct{}{}
				<-release
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	srv, err := NewServer(Options{Config: cfg, Store: store, UI: ui.FS, ApplyTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Shutdown(t.Context())
		<-errc
	})
	testsupport.WaitFor(t, 10*time.Second, "server up", func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	const (
		uuidX = "0b6f5a3e-0a1b-11ef-8000-000000000001" // holds the writer in the stalled commit
		uuidA = "0b6f5a3e-0a1b-11ef-8000-00000000000a" // times out while queued
		uuidB = "0b6f5a3e-0a1b-11ef-8000-00000000000b" // fresh, same connection
	)
	mu.Lock()
	stall = true
	mu.Unlock()
	xDone := make(chan int, 1)
	go func() {
		resp, err := http.DefaultClient.Do(signedCallback(t, cfg, addr, callbackForm(uuidX, "queued", "", 1)))
		if err != nil {
			xDone <- -1
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		xDone <- resp.StatusCode
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("the writer never reached the stalled commit")
	}

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(conn)
	roundTrip := func(req *http.Request) *http.Response {
		t.Helper()
		if err := req.Write(conn); err != nil {
			t.Fatalf("write request: %v", err)
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("read response: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	respA := roundTrip(signedCallback(t, cfg, addr, callbackForm(uuidA, "queued", "", 1)))
	if respA.StatusCode != http.StatusServiceUnavailable {
		close(release)
		t.Fatalf("callback A during the stall: got %d, want 503", respA.StatusCode)
	}
	// B goes out on the same connection while the writer is still stalled,
	// so it queues behind A; then the disk recovers.
	reqB := signedCallback(t, cfg, addr, callbackForm(uuidB, "queued", "", 1))
	if err := reqB.Write(conn); err != nil {
		close(release)
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	close(release)
	respB, err := http.ReadResponse(br, reqB)
	if err != nil {
		t.Fatalf("read B: %v", err)
	}
	bodyB, _ := io.ReadAll(respB.Body)
	respB.Body.Close()
	if respB.StatusCode != http.StatusOK {
		t.Errorf("fresh callback B after the stall on the same connection: got %d %s, want 200", respB.StatusCode, bodyB)
	}
	if code := <-xDone; code != http.StatusOK {
		t.Errorf("callback X held in the stalled commit: got %d, want 200 (it waits for its commit)", code)
	}
	if _, _, err := store.GetMessage(uuidB); err != nil {
		t.Errorf("B not stored: %v", err)
	}
	if _, _, err := store.GetMessage(uuidA); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("A was answered 503 but is in the store (err %v): a 503 must mean not stored", err)
	}
}
