package app

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Connection limits. fasthttp answers a connection over the limit with 503
// and closes it, so idle connections cannot use up the descriptors the
// database, logs and outgoing calls need.
const (
	// maxConnsPerIP bounds one client address's concurrent connections:
	// Plivo calls from a handful of addresses with short requests, so this
	// leaves it ample room while one attacker's idle keep-alives or
	// slowloris connections cannot take every slot.
	maxConnsPerIP = 512
	// fdReserve is kept free below RLIMIT_NOFILE for the database, logs,
	// outgoing calls (Plivo's API, forwarding sinks) and the listeners.
	fdReserve = 128
	// maxConcurrency caps connections when the fd limit is very high.
	maxConcurrency = 64 << 10
)

// connectionLimit is how many concurrent connections the server accepts:
// the open-file limit less a reserve, so that accept never runs out of
// descriptors in normal operation.
func connectionLimit() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == unix.RLIM_INFINITY {
		return maxConcurrency
	}
	n := int(lim.Cur) - fdReserve
	if n > maxConcurrency {
		n = maxConcurrency
	}
	if n < 64 {
		n = 64
	}
	return n
}

// resilientListener keeps accepting after EMFILE/ENFILE: running out of
// file descriptors is a load condition that passes as connections close, not
// a reason for the server (and with it the process) to stop. fasthttp's
// accept loop retries only timeouts, so without this one flood of idle
// connections at the fd limit made Serve return and the process exit.
//
// It also enforces the per-IP cap: a connection over it is closed at once.
// (fasthttp's own MaxConnsPerIP wrapper panics when a hijacked WebSocket
// connection is closed twice, which took the whole process down; here the
// slot is given back exactly once, however often Close is called.)
type resilientListener struct {
	net.Listener
	log      *slog.Logger
	maxPerIP int

	mu      sync.Mutex
	perIP   map[string]int
	lastCap time.Time // rate-limits the over-cap warning
}

func newResilientListener(ln net.Listener, log *slog.Logger, maxPerIP int) *resilientListener {
	return &resilientListener{Listener: ln, log: log, maxPerIP: maxPerIP, perIP: map[string]int{}}
}

func (l *resilientListener) Accept() (net.Conn, error) {
	delay := 5 * time.Millisecond
	var lastLog time.Time
	for {
		conn, err := l.Listener.Accept()
		if err == nil {
			if c, ok := l.admit(conn); ok {
				return c, nil
			}
			continue
		}
		if !isFDExhausted(err) {
			return conn, err
		}
		if time.Since(lastLog) > 10*time.Second {
			lastLog = time.Now()
			l.log.Warn("accept: out of file descriptors; backing off and serving on", "err", err, "retry_in", delay)
		}
		time.Sleep(delay)
		if delay *= 2; delay > time.Second {
			delay = time.Second
		}
	}
}

// admit counts conn against its IP's cap, or closes it when over.
func (l *resilientListener) admit(conn net.Conn) (net.Conn, bool) {
	ip := ""
	if ta, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		ip = ta.IP.String()
	}
	l.mu.Lock()
	over := l.perIP[ip] >= l.maxPerIP
	warn := over && time.Since(l.lastCap) > 10*time.Second
	if warn {
		l.lastCap = time.Now()
	}
	if !over {
		l.perIP[ip]++
	}
	l.mu.Unlock()
	if over {
		_ = conn.Close()
		if warn {
			l.log.Warn("connection refused: over the per-IP connection cap", "remote_addr", ip, "max_per_ip", l.maxPerIP)
		}
		return nil, false
	}
	return &countedConn{Conn: conn, l: l, ip: ip}, true
}

func (l *resilientListener) release(ip string) {
	l.mu.Lock()
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
	l.mu.Unlock()
}

// countedConn gives its per-IP slot back once, on the first Close.
type countedConn struct {
	net.Conn
	l    *resilientListener
	ip   string
	once sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}

// SetWriteBuffer passes through to the TCP connection (the WebSocket
// stream shrinks its send buffer so a slow client is noticed).
func (c *countedConn) SetWriteBuffer(n int) error {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		return tc.SetWriteBuffer(n)
	}
	return nil
}

func isFDExhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}
