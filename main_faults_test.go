package main

import (
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestBinarySurvivesDescriptorExhaustion lowers the running binary's
// RLIMIT_NOFILE, then opens more idle connections than it has descriptors:
// accept fails with EMFILE. The process must keep running (before the fix
// fasthttp's Serve returned and the binary exited 1) and, once the idle
// connections go, answer again.
func TestBinarySurvivesDescriptorExhaustion(t *testing.T) {
	p := startBinary(t, writeConfig(t, t.TempDir()))
	const limit = 64
	if err := unix.Prlimit(p.cmd.Process.Pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: limit, Max: limit}, nil); err != nil {
		t.Fatalf("prlimit: %v", err)
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 3*limit; i++ {
		c, err := net.DialTimeout("tcp", p.addr, 2*time.Second)
		if err != nil {
			break // the backlog is full: also exhaustion
		}
		conns = append(conns, c)
	}
	// Give the server time to hit EMFILE on accept.
	time.Sleep(500 * time.Millisecond)
	select {
	case err := <-p.done:
		p.done <- err
		t.Fatalf("binary exited at the descriptor limit: %v\n%s", err, p.stderr.String())
	default:
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	client := &http.Client{Timeout: 2 * time.Second}
	ok := waitForDeadline(15*time.Second, func() bool {
		resp, err := client.Get("http://" + p.addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	select {
	case err := <-p.done:
		p.done <- err
		t.Fatalf("binary exited at the descriptor limit: %v\n%s", err, p.stderr.String())
	default:
	}
	if !ok {
		t.Fatalf("no /healthz answer after the idle connections closed\n%s", p.stderr.String())
	}
	p.stop(t)
}
