package app

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Login limits. A lockout per (username, IP) stops one client guessing; a
// ceiling per username, much higher, stops a guesser spread over many IPs.
// The ceiling does not apply to IPs the user has logged in from recently,
// so an attacker who trips it cannot lock the owner out of the dashboard
// from a place they already use (OWASP's "device cookie" idea, keyed by IP).
const (
	// loginMaxFailures failed logins for one username from one IP within
	// loginWindow lock that pair out until the window passes.
	loginMaxFailures = 5
	// loginUserCeiling failed logins for the configured username from all
	// untrusted IPs within loginWindow lock it out for every untrusted IP.
	loginUserCeiling = 50
	loginWindow      = 15 * time.Minute
	// loginTrackedKeys bounds the (username, IP) table under a spray of IPs;
	// when it is full the stalest entry is forgotten (the per-username
	// ceiling, never forgotten, still counts every failure).
	loginTrackedKeys = 10_000
	// loginTrustedIPs bounds the remembered IPs of successful logins, each
	// trusted for loginTrustTTL.
	loginTrustedIPs = 64
	loginTrustTTL   = 30 * 24 * time.Hour
)

// Password checks (bcrypt, ~70 ms of CPU each) run at most loginChecks at a
// time, with at most loginQueue more waiting up to loginQueueWait; beyond
// that an attempt is answered 503 at once, so a login flood cannot take the
// CPU callbacks need, nor pile up goroutines.
var (
	loginChecks    = max(1, runtime.GOMAXPROCS(0)/2)
	loginQueue     = 4 * loginChecks
	loginQueueWait = time.Second
)

// loginOutcome ends an attempt begun with loginLimiter.begin.
type loginOutcome int

const (
	loginFailed  loginOutcome = iota
	loginOK                   // the password was right
	loginAborted              // no password check ran (server busy)
)

// loginLimiter counts recent failed logins in memory: a restart forgets them,
// which is acceptable for a lockout that only slows guessing down. Attempts
// in flight count as failures until they end, so concurrent requests cannot
// get more guesses than the limit.
type loginLimiter struct {
	now func() time.Time
	// user is the configured username; every other name shares one bucket
	// (no account to guess there), which also keeps attacker-chosen names
	// out of the table.
	user string

	mu    sync.Mutex
	pairs map[loginKey]*loginFailures
	// user holds the configured username's failures from untrusted IPs.
	// Other names have no ceiling: there is no account behind them to guess.
	userFails *loginFailures
	trusted   map[string]time.Time // IP → last successful login
}

// loginKey is one (username bucket, IP) pair.
type loginKey struct {
	known bool // the configured username
	ip    string
}

// loginFailures holds the times of recent failures, oldest first, at most
// the limit that applies, and the attempts still being checked.
type loginFailures struct {
	times    []time.Time
	inflight int
}

func newLoginLimiter(user string, now func() time.Time) *loginLimiter {
	return &loginLimiter{
		now: now, user: user,
		pairs:     map[loginKey]*loginFailures{},
		userFails: &loginFailures{},
		trusted:   map[string]time.Time{},
	}
}

// begin starts a login attempt. It returns how long the client must wait
// when locked out (and end is nil), or 0 and the function that ends the
// attempt with its outcome.
func (l *loginLimiter) begin(ip, username string) (wait time.Duration, end func(loginOutcome)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	k := loginKey{known: username == l.user, ip: ip}
	pair := l.pairs[k]
	if pair != nil {
		pair.expire(now)
		wait = pair.wait(loginMaxFailures, now)
	}
	// ceiling: this attempt counts against the username's ceiling.
	ceiling := k.known && !l.isTrusted(ip, now)
	user := l.userFails
	if ceiling {
		user.expire(now)
		wait = max(wait, user.wait(loginUserCeiling, now))
	}
	if wait > 0 {
		return wait, nil
	}
	if pair == nil {
		pair = l.addPair(k, now)
	}
	pair.inflight++
	if ceiling {
		user.inflight++
	}
	var once sync.Once
	return 0, func(o loginOutcome) {
		once.Do(func() { l.end(k, pair, ceiling, o) })
	}
}

func (l *loginLimiter) end(k loginKey, pair *loginFailures, ceiling bool, o loginOutcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	user := l.userFails
	pair.inflight--
	if ceiling {
		user.inflight--
	}
	switch o {
	case loginFailed:
		pair.add(now, loginMaxFailures)
		if ceiling {
			user.add(now, loginUserCeiling)
		}
	case loginOK:
		pair.times = nil
		l.trust(k.ip, now)
	}
	// The pair may have been evicted meanwhile; only a live, empty entry
	// that is still ours is dropped.
	if len(pair.times) == 0 && pair.inflight == 0 && l.pairs[k] == pair {
		delete(l.pairs, k)
	}
}

// addPair tracks a new pair, making room first when the table is full.
// Caller holds mu.
func (l *loginLimiter) addPair(k loginKey, now time.Time) *loginFailures {
	if len(l.pairs) >= loginTrackedKeys {
		for pk, f := range l.pairs {
			if f.expire(now); len(f.times) == 0 && f.inflight == 0 {
				delete(l.pairs, pk)
			}
		}
	}
	if len(l.pairs) >= loginTrackedKeys {
		// Still full of live entries: forget the one whose last failure is
		// oldest. Entries with attempts in flight stay (their end needs them).
		var oldest loginKey
		var oldestAt time.Time
		found := false
		for pk, f := range l.pairs {
			if f.inflight > 0 || len(f.times) == 0 {
				continue
			}
			if last := f.times[len(f.times)-1]; !found || last.Before(oldestAt) {
				oldest, oldestAt, found = pk, last, true
			}
		}
		if found {
			delete(l.pairs, oldest)
		}
	}
	f := &loginFailures{}
	l.pairs[k] = f
	return f
}

// trustedFor reports whether username is the configured user and ip one
// it logged in from within loginTrustTTL.
func (l *loginLimiter) trustedFor(ip, username string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return username == l.user && l.isTrusted(ip, l.now())
}

// isTrusted reports whether ip logged in successfully within loginTrustTTL.
func (l *loginLimiter) isTrusted(ip string, now time.Time) bool {
	at, ok := l.trusted[ip]
	return ok && now.Sub(at) < loginTrustTTL
}

// trust remembers a successful login from ip, dropping the oldest entry
// when full. Caller holds mu.
func (l *loginLimiter) trust(ip string, now time.Time) {
	if _, ok := l.trusted[ip]; !ok && len(l.trusted) >= loginTrustedIPs {
		var oldest string
		var oldestAt time.Time
		for tip, at := range l.trusted {
			if oldest == "" || at.Before(oldestAt) {
				oldest, oldestAt = tip, at
			}
		}
		delete(l.trusted, oldest)
	}
	l.trusted[ip] = now
}

// expire drops failures older than loginWindow.
func (f *loginFailures) expire(now time.Time) {
	i := 0
	for i < len(f.times) && now.Sub(f.times[i]) >= loginWindow {
		i++
	}
	f.times = f.times[i:]
}

// wait returns how long until fewer than limit failures (counting attempts
// in flight) remain, 0 when that is already so.
func (f *loginFailures) wait(limit int, now time.Time) time.Duration {
	n := len(f.times) + f.inflight
	if n < limit {
		return 0
	}
	if len(f.times) < limit {
		// Locked by attempts still being checked: they end within a second.
		return time.Second
	}
	return f.times[len(f.times)-limit].Add(loginWindow).Sub(now)
}

// add records a failure, keeping at most limit times.
func (f *loginFailures) add(now time.Time, limit int) {
	f.times = append(f.times, now)
	if len(f.times) > limit {
		f.times = append(f.times[:0], f.times[len(f.times)-limit:]...)
	}
}

// checkGate bounds concurrent password checks: loginChecks run, loginQueue
// wait up to loginQueueWait, the rest are refused at once.
type checkGate struct {
	run   chan struct{}
	queue chan struct{}
	wait  time.Duration
	// peak is the highest number of checks seen running at once.
	running, peak atomic.Int32
}

func newCheckGate(run, queue int, wait time.Duration) *checkGate {
	return &checkGate{run: make(chan struct{}, run), queue: make(chan struct{}, queue), wait: wait}
}

// acquire takes a check slot; false means the server is busy. A true
// acquire must be followed by release.
func (g *checkGate) acquire() bool {
	select {
	case g.run <- struct{}{}:
	default:
		select {
		case g.queue <- struct{}{}:
		default:
			return false
		}
		t := time.NewTimer(g.wait)
		defer t.Stop()
		select {
		case g.run <- struct{}{}:
			<-g.queue
		case <-t.C:
			<-g.queue
			return false
		}
	}
	n := g.running.Add(1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return true
}

func (g *checkGate) release() {
	g.running.Add(-1)
	<-g.run
}
