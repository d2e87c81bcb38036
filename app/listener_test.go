package app

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// TestListenerPerIPCap: connections over the per-IP cap are closed at once;
// closing a served one (twice, as a hijacked WebSocket connection is) frees
// its slot exactly once.
func TestListenerPerIPCap(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := newResilientListener(raw, slog.New(slog.DiscardHandler), 2)
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	dial()
	s1, s2 := <-accepted, <-accepted
	defer s2.Close()
	third := dial()
	_ = third.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := third.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("third connection from one IP: read err %v, want EOF (closed by the cap)", err)
	}
	select {
	case <-accepted:
		t.Fatal("third connection was served over the per-IP cap of 2")
	default:
	}
	s1.Close()
	s1.Close() // a second Close must not free a second slot
	dial()
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("a slot freed by Close was not reused")
	}
	fourth := dial()
	_ = fourth.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := fourth.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after a double Close the cap admitted an extra connection (read err %v)", err)
	}
}
