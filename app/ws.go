package app

import (
	"errors"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	fastws "github.com/fasthttp/websocket"
	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"

	"plivo-dlr/app/hub"
)

// Stream timing and sizes.
const (
	// wsPingPeriod and wsPongWait keep idle connections alive through NAT
	// and proxies and find dead peers.
	wsPingPeriod = 30 * time.Second
	wsPongWait   = 75 * time.Second
	// wsFlushInterval is the shortest time between two writes to one
	// exact client. Under load a client gets one batch per interval instead
	// of one write per event, which keeps 500 clients cheap. (Latest
	// clients are paced by the hub instead.)
	wsFlushInterval = 25 * time.Millisecond
	// wsBatchFrames bounds the frames written in one go.
	wsBatchFrames = 512
	// wsReplayPage is the events read from storage per replay step.
	wsReplayPage = 500
	// wsSendBuffer caps the kernel send buffer of a stream socket, so a
	// stuck client is noticed after ~128 KiB instead of megabytes and 500
	// clients cannot pin a gigabyte of kernel memory.
	wsSendBuffer = 128 << 10
)

// wsWriteWait bounds one write by default (Options.WSWriteWait); a client
// that cannot take a batch in this time is stuck and is dropped.
const wsWriteWait = 10 * time.Second

// Close codes sent to stream clients.
const (
	// closeTooSlow tells the client it fell behind: reconnect with
	// ?since=<last cursor received>.
	closeTooSlow = 4000
)

// localsSince, localsMode and localsEncoding carry the parsed ?since, the
// stream mode and whether the client takes compressed messages from the
// upgrade request to the stream handler.
const (
	localsSince    = "ws_since"
	localsMode     = "ws_mode"
	localsEncoding = "ws_encoding"
)

// handleStream checks a /ws request (authentication ran before it) and
// upgrades it. ?since=CURSOR asks for a replay of the events after CURSOR.
func (s *Server) handleStream(c *fiber.Ctx) error {
	if !websocket.IsWebSocketUpgrade(c) {
		return &httpError{Code: fiber.StatusUpgradeRequired, Message: "websocket upgrade required"}
	}
	if !s.sameOrigin(c) {
		s.log.Warn("websocket refused: cross-origin", "origin", c.Get(fiber.HeaderOrigin), "remote_addr", c.IP())
		return &httpError{Code: fiber.StatusForbidden, Message: "cross-origin websocket refused"}
	}
	since := int64(-1) // no replay
	if v := c.Query("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n > 1<<62 {
			return &httpError{Code: fiber.StatusBadRequest, Message: "since: must be a cursor (a number)"}
		}
		since = int64(n)
	}
	c.Locals(localsSince, since)
	// API clients resuming by cursor get the exact stream, every event in
	// order. Everyone else (the dashboard) gets the latest state per
	// message, batched: a burst costs each of them one write per batch.
	mode := hub.Latest
	if since >= 0 && c.Locals(localsPrincipal) == "token" {
		mode = hub.Exact
	}
	c.Locals(localsMode, mode)
	enc := hub.Plain
	if offersDeflate(c.Get("Sec-WebSocket-Extensions")) {
		enc = hub.Deflate
	}
	c.Locals(localsEncoding, enc)
	return s.wsUpgrade(c)
}

// offersDeflate reports whether the upgrader (with EnableCompression)
// accepts permessage-deflate for a request with this
// Sec-WebSocket-Extensions header: it does for any offer of it, whatever
// its parameters, and answers "server_no_context_takeover;
// client_no_context_takeover". The library does not say what it
// negotiated, so this repeats its rule; TestWSDeflateNegotiation checks the
// two agree. Browsers always offer it.
func offersDeflate(header string) bool {
	for ext := range strings.SplitSeq(header, ",") {
		if strings.HasPrefix(strings.TrimSpace(ext), "permessage-deflate") {
			return true
		}
	}
	return false
}

// sameOrigin reports whether a browser request comes from the dashboard's
// own origin: the public URL's, or the Host the request was sent to. A
// request without Origin is not from a browser page and cannot be forged
// cross-site, so it passes (scripts authenticate with a token).
func (s *Server) sameOrigin(c *fiber.Ctx) bool {
	origin := c.Get(fiber.HeaderOrigin)
	if origin == "" {
		return true
	}
	o, err := url.Parse(origin)
	if err != nil || o.Host == "" {
		return false
	}
	if pu, err := url.Parse(s.publicURL); err == nil && strings.EqualFold(o.Scheme, pu.Scheme) && strings.EqualFold(o.Host, pu.Host) {
		return true
	}
	scheme := "http"
	if c.Protocol() == "https" {
		scheme = "https"
	}
	return strings.EqualFold(o.Scheme, scheme) && strings.EqualFold(o.Host, string(c.Request().Host()))
}

// newWSUpgrader builds the upgrade handler. Origins are checked by
// handleStream (with a proper 403), so the upgrader accepts any.
func (s *Server) newWSUpgrader() fiber.Handler {
	return websocket.New(s.serveStream, websocket.Config{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   1024,
		WriteBufferSize:  1024,
		// Dashboards get their batches compressed once for all of them
		// (hub.Deflate); everything else we send stays plain.
		EnableCompression: true,
		RecoverHandler: func(conn *websocket.Conn) {
			if r := recover(); r != nil {
				s.log.Error("websocket handler panic", "panic", r)
			}
		},
	})
}

// stream is one /ws connection's writer state.
type stream struct {
	s    *Server
	conn *websocket.Conn
	raw  net.Conn
	sub  *hub.Subscription
	mode hub.Mode
	buf  []byte
	// last is the highest cursor written, reported in a too-slow close.
	last uint64
}

// serveStream runs one WebSocket connection: replay, then live frames. It
// runs on the goroutine fasthttp gave the hijacked connection and returns
// when the client leaves, fails to keep up, or the hub closes; the
// connection is closed after it returns.
func (s *Server) serveStream(conn *websocket.Conn) {
	since, _ := conn.Locals(localsSince).(int64)
	mode, _ := conn.Locals(localsMode).(hub.Mode)
	enc, _ := conn.Locals(localsEncoding).(hub.Encoding)
	sub, err := s.hub.Subscribe(mode, enc)
	if err != nil {
		_ = conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down"), time.Now().Add(time.Second))
		return
	}
	defer sub.Close()
	st := &stream{s: s, conn: conn, raw: underlyingConn(conn.NetConn()), sub: sub, mode: mode}
	limitSendBuffer(st.raw)

	// The reader goroutine handles pongs, pings and the client's close,
	// discarding anything else. It exits when reading fails: the client
	// left, the pong deadline passed, or serveStream returned and the
	// connection was closed under it.
	// It uses the inner connection: the contrib wrapper is pooled and
	// cleared once serveStream returns.
	fc := conn.Conn
	readerDone := make(chan struct{})
	fc.SetReadLimit(wsMaxClientMessage)
	_ = fc.SetReadDeadline(time.Now().Add(wsPongWait))
	fc.SetPongHandler(func(string) error {
		return fc.SetReadDeadline(time.Now().Add(wsPongWait))
	})
	// The library's default ping handler answers with a one-second write
	// deadline, set on the socket our frames are written to: a client that
	// pings while a large write waits for it to read (catching up over a
	// slow link) was cut off after a second. The pong gets the stream's own
	// write wait instead; a client that pings but never reads is still cut
	// off when that wait ends.
	fc.SetPingHandler(func(data string) error {
		err := fc.WriteControl(fastws.PongMessage, []byte(data), time.Now().Add(st.s.wsWriteWait))
		var netErr net.Error
		if errors.Is(err, fastws.ErrCloseSent) || errors.As(err, &netErr) {
			return nil // as the default handler: the writer sees the failure
		}
		return err
	})
	defer func() {
		// Closing the connection ends the reader; wait so no goroutine
		// outlives the connection.
		_ = st.raw.Close()
		<-readerDone
	}()
	go func() {
		defer close(readerDone)
		for {
			_, r, err := fc.NextReader()
			if err != nil {
				return
			}
			// The read limit counts compressed bytes: a 4 KiB deflated
			// message can inflate to megabytes. Clients have nothing to
			// send; one that sends more than the limit once inflated is
			// cut off rather than inflated.
			n, err := io.Copy(io.Discard, io.LimitReader(r, wsMaxClientMessage+1))
			if err != nil || n > wsMaxClientMessage {
				_ = st.raw.Close()
				return
			}
		}
	}()

	reason, code := st.run(since, readerDone)
	if code != 0 {
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	}
}

// wsMaxClientMessage bounds what a stream client may send in one message,
// compressed on the wire and inflated.
const wsMaxClientMessage = 4096

// underlyingConn unwraps fasthttp's hijack wrapper, whose Close does
// nothing (fasthttp closes the socket only after the handler returns, which
// would leave our reader goroutine blocked until then).
func underlyingConn(c net.Conn) net.Conn {
	if u, ok := c.(interface{ UnsafeConn() net.Conn }); ok {
		return u.UnsafeConn()
	}
	return c
}

// limitSendBuffer shrinks the kernel send buffer of a TCP connection (also
// when wrapped by our listener's countedConn).
func limitSendBuffer(c net.Conn) {
	// Under TLS, the production mode, the socket is inside the *tls.Conn.
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = tc.NetConn()
	}
	if tc, ok := c.(interface{ SetWriteBuffer(int) error }); ok {
		_ = tc.SetWriteBuffer(wsSendBuffer)
	}
}

// errStreamDone ends a stream without a close frame of ours (the client is
// gone or already closed).
var errStreamDone = errors.New("stream done")

// run replays and then streams until the connection ends. It returns the
// close code and reason to send, code 0 for none.
func (st *stream) run(since int64, readerDone <-chan struct{}) (string, int) {
	// Subscribed first, then read the database: an event committed from now
	// on reaches us live, one committed before is in the database. Live
	// frames at or below liveFrom were (or will be) covered by the replay.
	var liveFrom uint64
	if since >= 0 {
		var err error
		if liveFrom, err = st.replay(uint64(since), readerDone); err != nil {
			if errors.Is(err, errStreamDone) {
				return "", 0
			}
			st.s.log.Warn("websocket replay failed", "err", err)
			return "replay failed, retry", websocket.CloseInternalServerErr
		}
	} else {
		c, err := st.s.store.LastCursor()
		if err != nil {
			st.s.log.Warn("websocket start failed", "err", err)
			return "storage unavailable, retry", websocket.CloseInternalServerErr
		}
		liveFrom = c
	}
	if st.last < liveFrom {
		st.last = liveFrom
	}
	ready, err := hub.EncodeFrame(hub.StreamFrame{Type: hub.FrameReady, Cursor: liveFrom})
	if err != nil {
		return "internal error", websocket.CloseInternalServerErr
	}
	if err := st.write(ready); err != nil {
		return "", 0
	}

	ping := time.NewTicker(wsPingPeriod)
	defer ping.Stop()
	pause := time.NewTimer(time.Hour)
	defer pause.Stop()
	var frames []hub.Frame
	for {
		frames, wake, lagged := st.sub.Next(frames[:0], wsBatchFrames)
		if lagged {
			st.s.log.Info("websocket client dropped: too slow", "remote_addr", st.conn.IP(), "cursor", st.last)
			return "too slow; reconnect with ?since=" + strconv.FormatUint(st.last, 10), closeTooSlow
		}
		if len(frames) > 0 {
			// A latest subscriber's frame is usually one shared batch:
			// written as it is, not copied.
			var out []byte
			st.buf = st.buf[:0]
			for _, f := range frames {
				// Exact: one event, already sent by the replay. Latest: a
				// batch covering only events the replay covered.
				if f.Cursor <= liveFrom {
					continue
				}
				wire := f.Wire
				if f.Deflated != nil && st.sub.Deflate() {
					wire = f.Deflated
				}
				switch {
				case out == nil:
					out = wire
				case len(st.buf) == 0:
					st.buf = append(append(st.buf, out...), wire...)
					out = st.buf
				default:
					st.buf = append(st.buf, wire...)
					out = st.buf
				}
				st.last = max(st.last, f.Cursor)
			}
			clear(frames) // drop references to shared frames
			if len(out) > 0 {
				if err := st.write(out); err != nil {
					return "", 0
				}
			}
			// Let more frames gather before the next write (see
			// wsFlushInterval). Latest batches are already paced by the
			// hub (hub.LatestInterval apart): a pause would only cost each
			// dashboard another timer and wake-up per batch.
			if st.mode == hub.Latest {
				continue
			}
			pause.Reset(wsFlushInterval)
			select {
			case <-pause.C:
				continue
			case <-readerDone:
				return "", 0
			case <-st.sub.Closing():
				return "server shutting down", websocket.CloseGoingAway
			}
		}
		select {
		case <-wake:
		case <-ping.C:
			if err := st.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(st.s.wsWriteWait)); err != nil {
				return "", 0
			}
		case <-readerDone:
			return "", 0
		case <-st.sub.Closing():
			return "server shutting down", websocket.CloseGoingAway
		}
	}
}

// replay writes a status_update for every stored event after since, page by
// page, until it has caught up with the log, and returns the last cursor
// covered. Each frame carries the message's current state.
func (st *stream) replay(since uint64, readerDone <-chan struct{}) (uint64, error) {
	cur := since
	var uuids []string
	for {
		select {
		case <-readerDone:
			return cur, errStreamDone
		case <-st.sub.Closing():
			return cur, errStreamDone
		default:
		}
		events, err := st.s.store.EventsAfter(cur, wsReplayPage)
		if err != nil {
			return cur, err
		}
		if len(events) == 0 {
			return cur, nil
		}
		// The states of the page's messages, in one read transaction and
		// without their histories.
		uuids = uuids[:0]
		for _, ev := range events {
			uuids = append(uuids, ev.MessageUUID)
		}
		states, err := st.s.store.MessageStates(uuids)
		if err != nil {
			return cur, err
		}
		st.buf = st.buf[:0]
		if st.mode == hub.Latest {
			// A dashboard needs each message's state once per page: at the
			// cursor of its last event in the page, in ascending order, so
			// resuming from the highest cursor received still misses nothing.
			last := make(map[string]uint64, len(states))
			for _, ev := range events {
				last[ev.MessageUUID] = ev.Cursor
			}
			kept := events[:0]
			for _, ev := range events {
				if last[ev.MessageUUID] == ev.Cursor {
					kept = append(kept, ev)
				}
			}
			cur = events[len(events)-1].Cursor
			events = kept
		}
		for _, ev := range events {
			cur = max(cur, ev.Cursor)
			m, ok := states[ev.MessageUUID]
			if !ok {
				continue // removed by retention since; nothing to show
			}
			wire, err := hub.EncodeFrame(hub.StreamFrame{Type: hub.FrameStatusUpdate, Cursor: ev.Cursor, Message: &m})
			if err != nil {
				return cur, err
			}
			st.buf = append(st.buf, wire...)
		}
		if h := replayPageHook.Load(); h != nil {
			(*h)(len(events), len(states), len(st.buf))
		}
		if len(st.buf) == 0 {
			st.last = cur
			continue
		}
		if err := st.write(st.buf); err != nil {
			return cur, errStreamDone
		}
		st.last = cur
	}
}

// replayPageHook, when set (by tests), hears of every replay page: the
// frames written, the message states read and the bytes sent.
var replayPageHook atomic.Pointer[func(frames, states, bytes int)]

// write sends pre-encoded frames in one call. Whole-frame writes are safe
// beside the reader goroutine's control replies: net.Conn serialises
// concurrent Writes, each written completely.
func (st *stream) write(b []byte) error {
	if err := st.raw.SetWriteDeadline(time.Now().Add(st.s.wsWriteWait)); err != nil {
		return err
	}
	_, err := st.raw.Write(b)
	return err
}
