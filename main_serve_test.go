package main

import (
	"bytes"
	"context"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the server's log writes while
// the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serve's goroutines (nonce purge, retention, reconcile, SIGHUP reload,
// the listeners) have all returned by the time serve does, so none can
// touch the store after it closed (issue 10: retention could still be
// sweeping when the store closed).
func TestServeJoinsGoroutines(t *testing.T) {
	var stderr lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	cfg := writeConfig(t, t.TempDir())
	go func() {
		done <- run(ctx, []string{"serve", "-config", cfg}, nil, &stderr, &stderr, func(string) string { return "" })
	}()
	addrRE := regexp.MustCompile(`msg="plivo-dlr started".* addr=(127\.0\.0\.1:\d+)`)
	var addr string
	if !waitForDeadline(20*time.Second, func() bool {
		m := addrRE.FindStringSubmatch(stderr.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	}) {
		t.Fatalf("serve did not start:\n%s", stderr.String())
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exit %d:\n%s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not return within 20 s of cancel")
	}
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, fn := range []string{"main.purgeNonces", "main.reloadOnHangup", "app.(*Retention).Run", "app.(*Server).RunReconcile", "app.(*Server).Serve", "storage.(*Store).writer", "net/http.(*Server).Serve"} {
		if strings.Contains(stacks, fn) {
			t.Errorf("goroutine running %s still alive after serve returned:\n%s", fn, stacks)
		}
	}
}
