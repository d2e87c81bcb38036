package app

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// Connection caps. Plivo opens callbacks from a handful of addresses, each
// a short request; a per-IP cap of maxConnsPerIP still leaves it ample room
// while one attacker's idle keep-alives or slowloris connections cannot take
// every descriptor. The total cap keeps fdReserve descriptors free under
// RLIMIT_NOFILE for the database, logs and outgoing Plivo API calls.
const (
	maxConnsPerIP = 512
	maxConnsTotal = 16384
	fdReserve     = 128
)

// connCap returns the total connection cap for the process's descriptor
// limit: the soft RLIMIT_NOFILE minus fdReserve, at most maxConnsTotal.
func connCap() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == ^uint64(0) {
		return maxConnsTotal
	}
	n := int(rl.Cur) - fdReserve
	if n < 16 {
		n = 16
	}
	return min(n, maxConnsTotal)
}

// guardedListener keeps serving at the descriptor limit: EMFILE/ENFILE on
// accept is waited out with a backoff (fasthttp would otherwise treat it as
// fatal and the process would exit), and connections over the total or the
// per-IP cap are closed at once instead of served.
type guardedListener struct {
	net.Listener
	log      *slog.Logger
	maxTotal int
	maxPerIP int

	mu    sync.Mutex
	total int
	perIP map[string]int
	// lastWarn rate-limits the warnings (one per second).
	lastWarn time.Time
}

func newGuardedListener(ln net.Listener, log *slog.Logger, maxTotal, maxPerIP int) *guardedListener {
	return &guardedListener{Listener: ln, log: log, maxTotal: maxTotal, maxPerIP: maxPerIP, perIP: map[string]int{}}
}

func (l *guardedListener) warn(msg string, args ...any) {
	l.mu.Lock()
	now := time.Now()
	ok := now.Sub(l.lastWarn) >= time.Second
	if ok {
		l.lastWarn = now
	}
	l.mu.Unlock()
	if ok {
		l.log.Warn(msg, args...)
	}
}

// Accept returns the next connection within the caps.
func (l *guardedListener) Accept() (net.Conn, error) {
	backoff := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				l.warn("accept: out of file descriptors, backing off", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				backoff = min(backoff*2, time.Second)
				continue
			}
			return nil, err
		}
		backoff = 5 * time.Millisecond
		ip := ""
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			ip = ta.IP.String()
		}
		l.mu.Lock()
		over := l.total >= l.maxTotal || l.perIP[ip] >= l.maxPerIP
		if !over {
			l.total++
			l.perIP[ip]++
		}
		l.mu.Unlock()
		if over {
			_ = c.Close()
			l.warn("connection refused: over the connection cap", "remote_addr", ip, "max_total", l.maxTotal, "max_per_ip", l.maxPerIP)
			continue
		}
		return &guardedConn{Conn: c, l: l, ip: ip}, nil
	}
}

func (l *guardedListener) release(ip string) {
	l.mu.Lock()
	l.total--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
	l.mu.Unlock()
}

// guardedConn gives its slot back once when closed.
type guardedConn struct {
	net.Conn
	l    *guardedListener
	ip   string
	once sync.Once
}

func (c *guardedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}
