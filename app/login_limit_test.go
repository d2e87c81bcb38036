package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLoginLimiter covers the lockout rules on the limiter itself, with a
// test clock: per (username, IP), the per-username ceiling, trusted IPs,
// attempts in flight and the window.
func TestLoginLimiter(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	failN := func(t *testing.T, l *loginLimiter, ip, user string, n int) {
		t.Helper()
		for i := range n {
			wait, end := l.begin(ip, user)
			if wait > 0 {
				t.Fatalf("failure %d of %s from %s: locked out early (wait %s)", i+1, user, ip, wait)
			}
			end(loginFailed)
		}
	}
	blocked := func(l *loginLimiter, ip, user string) time.Duration {
		wait, end := l.begin(ip, user)
		if end != nil {
			end(loginAborted)
		}
		return wait
	}

	t.Run("one IP cannot lock the user out elsewhere", func(t *testing.T) {
		l := newLoginLimiter("admin", clock)
		failN(t, l, "203.0.113.9", "admin", loginMaxFailures)
		if got := blocked(l, "203.0.113.9", "admin"); got <= 0 {
			t.Errorf("attacker's IP after %d failures: got wait %s, want > 0", loginMaxFailures, got)
		}
		if got := blocked(l, "198.51.100.1", "admin"); got != 0 {
			t.Errorf("the owner's IP: got wait %s, want 0", got)
		}
	})
	t.Run("ceiling across many IPs", func(t *testing.T) {
		l := newLoginLimiter("admin", clock)
		// The owner logged in from here before the attack.
		_, end := l.begin("198.51.100.1", "admin")
		end(loginOK)
		for i := range loginUserCeiling / (loginMaxFailures - 1) {
			failN(t, l, fmt.Sprintf("10.1.%d.%d", i/250, i%250), "admin", loginMaxFailures-1)
		}
		failN(t, l, "10.2.0.1", "admin", loginUserCeiling%(loginMaxFailures-1))
		if got := blocked(l, "10.3.0.1", "admin"); got <= 0 {
			t.Errorf("a fresh IP after %d failures for admin: got wait %s, want > 0", loginUserCeiling, got)
		}
		if got := blocked(l, "198.51.100.1", "admin"); got != 0 {
			t.Errorf("the owner's trusted IP: got wait %s, want 0", got)
		}
		if got := blocked(l, "10.3.0.1", "someone-else"); got != 0 {
			t.Errorf("another username: got wait %s, want 0", got)
		}
		now = now.Add(loginWindow)
		if got := blocked(l, "10.3.0.1", "admin"); got != 0 {
			t.Errorf("after the window: got wait %s, want 0", got)
		}
	})
	t.Run("attempts in flight count", func(t *testing.T) {
		l := newLoginLimiter("admin", clock)
		var ends []func(loginOutcome)
		for range loginMaxFailures {
			wait, end := l.begin("203.0.113.7", "admin")
			if wait > 0 {
				t.Fatalf("concurrent attempt refused before the limit (wait %s)", wait)
			}
			ends = append(ends, end)
		}
		if got := blocked(l, "203.0.113.7", "admin"); got <= 0 {
			t.Errorf("attempt %d while %d are in flight: got wait %s, want > 0", loginMaxFailures+1, loginMaxFailures, got)
		}
		for _, end := range ends {
			end(loginAborted)
		}
		if got := blocked(l, "203.0.113.7", "admin"); got != 0 {
			t.Errorf("after the in-flight attempts were aborted: got wait %s, want 0", got)
		}
	})
	t.Run("a full table still locks new IPs out", func(t *testing.T) {
		l := newLoginLimiter("admin", clock)
		// Live entries for loginTrackedKeys IPs, each below its limit and
		// under an unknown username (so the admin ceiling stays untouched).
		for i := range loginTrackedKeys {
			failN(t, l, fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), "spray", 1)
		}
		failN(t, l, "192.0.2.55", "admin", loginMaxFailures)
		if got := blocked(l, "192.0.2.55", "admin"); got <= 0 {
			t.Errorf("new IP with %d failures and a full table: got wait %s, want > 0", loginMaxFailures, got)
		}
		l.mu.Lock()
		n := len(l.pairs)
		l.mu.Unlock()
		if n > loginTrackedKeys {
			t.Errorf("tracked pairs: got %d, want at most %d", n, loginTrackedKeys)
		}
	})
}

// clientFrom returns an HTTP client whose connections come from the
// loopback address ip, so one test can log in from several "IPs".
func clientFrom(t *testing.T, ip string) *http.Client { return clientFromTB(t, ip) }

func clientFromTB(t testing.TB, ip string) *http.Client {
	t.Helper()
	c := noRedirectClient(t)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c.Transport = &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}}
	return c
}

// TestSessionLockoutSparesOwner: five wrong passwords for the user from one
// IP lock that IP out (429 even with the right password, with a challenge on
// each 401), while the right password from another IP still logs in.
func TestSessionLockoutSparesOwner(t *testing.T) {
	d := startDashServer(t, nil)
	attacker := clientFrom(t, "127.0.0.2")
	for i := range loginMaxFailures {
		resp := d.login(t, attacker, dashUser, "wrong password")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: got %d, want 401", i+1, resp.StatusCode)
		}
		if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Cookie ") {
			t.Errorf("attempt %d: WWW-Authenticate got %q, want a Cookie challenge", i+1, got)
		}
	}
	if resp := d.login(t, attacker, dashUser, dashPassword); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("attacker's IP with the right password: got %d, want 429", resp.StatusCode)
	}
	owner := clientFrom(t, "127.0.0.3")
	resp := d.login(t, owner, dashUser, dashPassword)
	if resp.StatusCode != http.StatusSeeOther || sessionCookieOf(resp) == nil {
		t.Errorf("owner from another IP: got %d (cookie %v), want 303 with a session", resp.StatusCode, sessionCookieOf(resp) != nil)
	}
}

// TestSessionLoginChecksBounded: a burst of wrong logins from many IPs runs
// at most loginChecks password checks at once; what does not fit in the
// short queue is answered 503 with Retry-After at once instead of waiting;
// the owner, from an IP it logged in from before, still logs in meanwhile.
func TestSessionLoginChecksBounded(t *testing.T) {
	d := startDashServer(t, nil)
	// The owner logged in from here before the burst.
	owner := clientFrom(t, "127.0.0.9")
	if resp := d.login(t, owner, dashUser, dashPassword); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("owner's first login: got %d, want 303", resp.StatusCode)
	}
	const n = 40
	type answer struct {
		code  int
		retry string
		took  time.Duration
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		c := clientFrom(t, fmt.Sprintf("127.0.1.%d", i+1))
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			resp, err := c.PostForm(d.url("/login"), url.Values{"username": {dashUser}, "password": {"wrong password"}})
			if err != nil {
				t.Errorf("login %d: %v", i, err)
				return
			}
			resp.Body.Close()
			answers[i] = answer{resp.StatusCode, resp.Header.Get("Retry-After"), time.Since(start)}
		}()
	}
	wg.Wait()
	var refused, failed int
	for i, a := range answers {
		switch a.code {
		case http.StatusServiceUnavailable:
			refused++
			if a.retry == "" {
				t.Errorf("login %d: 503 without Retry-After", i)
			}
			// Refused at once or after at most the queue wait, never after
			// a long line of bcrypt checks.
			if a.took > loginQueueWait+2*time.Second {
				t.Errorf("login %d: 503 after %s, want within %s", i, a.took, loginQueueWait+2*time.Second)
			}
		case http.StatusUnauthorized:
			failed++
		default:
			t.Errorf("login %d: got %d, want 401 or 503", i, a.code)
		}
	}
	if refused == 0 {
		t.Errorf("%d concurrent logins: none refused as busy (401: %d), want some 503", n, failed)
	}
	if failed == 0 {
		t.Errorf("%d concurrent logins: none checked, want some 401", n)
	}
	if peak := int(d.srv.auth.checks.peak.Load()); peak > loginChecks {
		t.Errorf("password checks at once: got %d, want at most %d", peak, loginChecks)
	}
	t.Logf("%d logins: %d checked (401), %d refused busy (503), peak %d checks at once", n, failed, refused, d.srv.auth.checks.peak.Load())

	// With every check slot and queue place taken, as in a flood, a login
	// from elsewhere is refused at once and the owner's still goes through.
	g := d.srv.auth.checks
	for range cap(g.run) {
		g.run <- struct{}{}
	}
	for range cap(g.queue) {
		g.queue <- struct{}{}
	}
	start := time.Now()
	if code := d.login(t, clientFrom(t, "127.0.0.10"), dashUser, dashPassword).StatusCode; code != http.StatusServiceUnavailable {
		t.Errorf("login from a new IP with the gate full: got %d, want 503", code)
	} else if took := time.Since(start); took > time.Second {
		t.Errorf("503 with the gate full took %s, want at once", took)
	}
	if code := d.login(t, owner, dashUser, dashPassword).StatusCode; code != http.StatusSeeOther {
		t.Errorf("owner's login from a trusted IP with the gate full: got %d, want 303", code)
	}
}
