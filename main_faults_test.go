package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// An attacker holding idle connections until the process runs out of file
// descriptors must not stop it: accept backs off on EMFILE and the server
// serves again once the connections go. Before, Serve returned on the first
// EMFILE and the process exited.
func TestBinarySurvivesFDExhaustion(t *testing.T) {
	p := startBinary(t, writeConfig(t, t.TempDir()))
	defer p.stop(t)

	const limit = 256
	lim := unix.Rlimit{Cur: limit, Max: limit}
	if err := unix.Prlimit(p.cmd.Process.Pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
		t.Fatalf("prlimit: %v", err)
	}
	// More idle connections than the process has descriptors.
	var conns []net.Conn
	for i := 0; i < limit+64; i++ {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err != nil {
			break // the backlog is full: the point is made
		}
		conns = append(conns, c)
	}
	time.Sleep(300 * time.Millisecond) // let accept hit EMFILE
	select {
	case err := <-p.done:
		t.Fatalf("process exited under fd exhaustion: %v\n%s", err, p.stderr.String())
	default:
	}
	for _, c := range conns {
		c.Close()
	}

	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _ := p.send(t, client, signedForm(t, statusFields("0e9f7a10-8f8e-11ef-9b1d-0242ac120002", "queued", 1), randomNonce()))
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 200 within 10 s after the idle connections closed (last %d)\n%s", code, p.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case err := <-p.done:
		t.Fatalf("process exited: %v", err)
	default:
	}
}

// randomNonce is a nonce as Plivo sends them: a random 20-digit string.
func randomNonce() string {
	b := make([]byte, 20)
	for i := range b {
		b[i] = '0' + byte(rand.IntN(10))
	}
	return string(b)
}

// An oversized body is refused from its Content-Length, before it is read:
// the answer comes although the client has sent none of the body.
func TestBinaryRefusesOversizedBodyUpFront(t *testing.T) {
	p := startBinary(t, writeConfig(t, t.TempDir()))
	defer p.stop(t)
	for _, path := range []string{"/plivo/callback", "/login", "/logout", "/api/messages"} {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000\r\n\r\nStatus=", path)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Fatalf("POST %s with a 1 MB Content-Length and no body: no answer (%v); want 413 at once", path, err)
		}
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("POST %s: status %d, want 413", path, resp.StatusCode)
		}
	}
}
