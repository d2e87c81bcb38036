package app

import (
	"errors"
	"log/slog"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Connection limits. fasthttp answers a connection over the limit with 503
// and closes it, so idle connections cannot use up the descriptors the
// database, logs and outgoing calls need.
const (
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
type resilientListener struct {
	net.Listener
	log *slog.Logger
}

func (l resilientListener) Accept() (net.Conn, error) {
	delay := 5 * time.Millisecond
	var lastLog time.Time
	for {
		conn, err := l.Listener.Accept()
		if err == nil || !isFDExhausted(err) {
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

func isFDExhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}
