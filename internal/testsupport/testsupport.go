// Package testsupport is what the tests of plivo-dlr share: running a
// server on a loopback listener until the test ends, a settable clock, a
// bounded wait and a buffer safe for concurrent writers. Only _test.go
// files import it; it imports nothing of ours, so any package's tests can.
package testsupport

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is what Serve runs: app.Server's Serve and Shutdown.
type Server interface {
	Serve(ln net.Listener) error
	Shutdown(ctx context.Context) error
}

// Serve runs srv on ln in a goroutine. When healthURL is not "" it waits
// until a GET of it answers (a Shutdown before the server has started
// serving would otherwise be lost and Serve would run forever). It returns
// stop, which shuts srv down within 5 s and reports a failed Shutdown or
// Serve; stop is idempotent and also runs at the end of the test.
func Serve(tb testing.TB, srv Server, ln net.Listener, healthURL string) (stop func()) {
	tb.Helper()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			// Go's transport may hold spare connections that never carried
			// a request; fasthttp's graceful shutdown would wait for them.
			http.DefaultClient.CloseIdleConnections()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				tb.Errorf("shutdown: %v", err)
			}
			if err := <-done; err != nil {
				tb.Errorf("serve: %v", err)
			}
		})
	}
	tb.Cleanup(stop)
	if healthURL != "" {
		WaitFor(tb, 10*time.Second, "the server to answer "+healthURL, func() bool {
			resp, err := http.Get(healthURL)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return true
		})
	}
	return stop
}

// WaitFor polls cond every 10 ms until it holds, and fails the test when
// it still does not after within.
func WaitFor(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Clock is a clock tests move by hand; safe for concurrent use. Pass its
// Now as a component's clock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock reading t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Set sets the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// LockedBuffer collects writes from several goroutines (a logger, a child
// process's output) for the test to read.
type LockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write appends p.
func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
