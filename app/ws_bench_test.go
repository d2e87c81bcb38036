package app

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"

	"plivo-dlr/app/hub"
	"plivo-dlr/internal/testsupport"
)

// wsBenchMsgs numbers the benchmark's messages across phases.
var wsBenchMsgs atomic.Int64

// wsBenchIngest sends total signed callbacks from senders keep-alive
// connections as fast as the server takes them and returns the rate. ack,
// if not nil, records when each (uuid, status) got its 200.
func wsBenchIngest(b *testing.B, d *dashServer, senders, total int, ack *sync.Map) float64 {
	b.Helper()
	hc := &fasthttp.HostClient{Addr: d.addr, MaxConns: senders, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	statuses := [3]string{"queued", "sent", "delivered"}
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for msg := 0; ; msg++ {
				// Plivo-like version-1 UUIDs, unique across phases.
				uuid := plivoLikeUUID(uint64(wsBenchMsgs.Add(1)))
				for i, status := range statuses {
					if next.Add(1) > int64(total) {
						return
					}
					r := signedCallback(b, d.cfg, d.addr, callbackForm(uuid, status, "", i+1))
					body, _ := io.ReadAll(r.Body)
					req.Reset()
					req.SetRequestURI(r.URL.String())
					req.Header.SetMethod(fasthttp.MethodPost)
					for k := range r.Header {
						req.Header.Set(k, r.Header.Get(k))
					}
					req.SetBody(body)
					err := hc.Do(req, resp)
					if err != nil || resp.StatusCode() != fasthttp.StatusOK {
						failed.Add(1)
						continue
					}
					if ack != nil {
						ack.Store(uuid+"/"+status, time.Now())
					}
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d callbacks not answered 200", n, total)
	}
	return float64(total) / elapsed.Seconds()
}

// BenchmarkWSFanout measures callback ingestion over loopback HTTP (fsync
// on, 64 concurrent senders) with no WebSocket clients and then with 500
// connected clients, and the delay from a callback's 200 to its frame at
// the clients. Each iteration ingests 3000 callbacks per phase. The clients
// are dashboards (stream=latest: a bearer token without ?since, coalesced
// like a browser session's stream) or API clients asking for the exact
// stream (stream=exact: ?since= with a bearer token).
//
// The clients share the two cores with the server, which remote ones would
// not, so they are kept cheap: 10 are sampled (they time their frames,
// scanning a few fields), and the 490 others drain their sockets without
// reading the bytes out. The 490 offer permessage-deflate like a browser;
// the sampled ones do not, as inflating every message of 10 clients would
// cost the shared CPU more than compression saves the server.
// BENCH_WS_DEFLATE=off makes no client offer it, =all every client.
// Besides the rates, the process's CPU time per callback in each phase is
// reported: it depends much less than the rates on what else the machine
// runs. Run e.g.
//
//	go test -run '^$' -bench BenchmarkWSFanout -benchtime 5x ./app
func BenchmarkWSFanout(b *testing.B) {
	for _, mode := range []string{"latest", "exact"} {
		b.Run("stream="+mode, func(b *testing.B) { benchWSFanout(b, mode == "exact") })
	}
}

func benchWSFanout(b *testing.B, exact bool) {
	const (
		clients  = 500
		sampled  = 10 // clients that decode frames to time them; the rest discard
		senders  = 64
		perPhase = 3000
	)
	// Two servers, one without clients and one with 500, ingest in
	// interleaved rounds (each first in turn): the machine's load drifts,
	// and the ratio is taken per round, then the median.
	rounds := 3
	if n, err := strconv.Atoi(os.Getenv("BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	bare := startDashServer(b, nil)
	d := startDashServer(b, nil)
	total := perPhase * b.N

	// A sampled client notes when each (message, status) arrived; the map
	// is built after the phases, so they pay for appends only.
	type arrival struct {
		key string // message_uuid/status
		at  time.Time
	}
	type recv struct {
		mu       sync.Mutex
		arrivals []arrival
		last     atomic.Uint64
	}
	recvs := make([]*recv, sampled)
	conns := make([]*websocket.Conn, clients)
	var frames atomic.Int64
	var wg sync.WaitGroup
	// The clients come from another loopback address than the senders:
	// 500 + 64 connections from one IP would pass the per-IP cap (512).
	dialer := &websocket.Dialer{HandshakeTimeout: 10 * time.Second, NetDialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)},
	}).DialContext}
	wsURL := "ws://" + d.addr + "/ws"
	if exact {
		last, err := d.store.LastCursor()
		if err != nil {
			b.Fatal(err)
		}
		wsURL += "?since=" + strconv.FormatUint(last, 10)
	}
	// The load clients offer permessage-deflate, as browsers do; the
	// sampled ones do not, so timing them costs no inflating (see
	// BenchmarkWSFanout).
	deflate := os.Getenv("BENCH_WS_DEFLATE")
	for i := range clients {
		dl := *dialer
		dl.EnableCompression = deflate == "all" || (deflate != "off" && i >= sampled)
		if i < sampled {
			// A batch in one or two reads, not 4 KiB at a time.
			dl.ReadBufferSize = 64 << 10
		}
		conn, _, err := dl.Dial(wsURL, http.Header{"Authorization": {"Bearer " + dashAPIToken}})
		if err != nil {
			b.Fatalf("dial client %d: %v", i, err)
		}
		conns[i] = conn
		var r *recv
		if i < sampled {
			r = &recv{arrivals: make([]arrival, 0, rounds*total)}
			recvs[i] = r
		}
		wg.Add(1)
		// Each reader exits when its connection is closed at the end.
		go func() {
			defer wg.Done()
			if r == nil {
				// A load sink: drain the socket without parsing frames, so
				// the benchmark's own clients take as little of the shared
				// CPU as possible.
				wsBenchSink(conn.NetConn())
				return
			}
			var msg bytes.Buffer // reused: no allocation per message
			for {
				_, rd, err := conn.NextReader()
				if err != nil {
					return
				}
				msg.Reset()
				if _, err := msg.ReadFrom(rd); err != nil {
					return
				}
				data := msg.Bytes()
				frames.Add(1)
				// Only the few fields timed, scanned rather than decoded:
				// the benchmark's own clients share the two cores with the
				// server, and decoding every frame of 10 clients cost about
				// as much CPU as the server's whole fan-out.
				f, ok := scanFrame(data)
				if !ok {
					b.Errorf("frame %q: not a stream frame", data)
					return
				}
				now := time.Now()
				if f.Type == hub.FrameStatusUpdate {
					r.mu.Lock()
					r.arrivals = append(r.arrivals, arrival{f.Message.MessageUUID + "/" + f.Message.Status, now})
					r.mu.Unlock()
				}
				r.last.Store(max(r.last.Load(), f.Cursor))
			}
		}()
	}
	testsupport.WaitFor(b, 30*time.Second, "all clients subscribed", func() bool { return d.srv.hub.Clients() == clients })

	var ack sync.Map
	b.ResetTimer()
	var without, with, ratios, cpuWithout, cpuWith []float64
	// The process's CPU time per callback in each phase (server, senders
	// and clients alike): the rates follow the load of whatever else runs
	// on the machine, the CPU a phase costs much less so.
	phase := func(d *dashServer, ack *sync.Map, rates, cpu *[]float64) float64 {
		c0 := processCPU(b)
		rate := wsBenchIngest(b, d, senders, total, ack)
		*rates = append(*rates, rate)
		*cpu = append(*cpu, float64((processCPU(b)-c0).Microseconds())/float64(total))
		return rate
	}
	for r := range rounds {
		var wo, wi float64
		if r%2 == 0 {
			wo = phase(bare, nil, &without, &cpuWithout)
			wi = phase(d, &ack, &with, &cpuWith)
		} else {
			wi = phase(d, &ack, &with, &cpuWith)
			wo = phase(bare, nil, &without, &cpuWithout)
		}
		ratios = append(ratios, wi/wo)
	}
	b.StopTimer()
	final := uint64(rounds * total)
	testsupport.WaitFor(b, 60*time.Second, "sampled clients to receive every frame", func() bool {
		for _, r := range recvs {
			if r.last.Load() < final {
				return false
			}
		}
		return true
	})
	if n := d.srv.hub.Clients(); n != clients {
		b.Errorf("clients still connected: got %d, want %d (some were dropped as too slow)", n, clients)
	}

	ats := make([]map[string]time.Time, sampled)
	for i, r := range recvs {
		r.mu.Lock()
		ats[i] = make(map[string]time.Time, len(r.arrivals))
		for _, a := range r.arrivals {
			ats[i][a.key] = a.at
		}
		r.mu.Unlock()
	}
	var delays []time.Duration
	ack.Range(func(k, v any) bool {
		for _, at := range ats {
			if at, ok := at[k.(string)]; ok {
				// The frame is published before the 200 is written, so it
				// can arrive first: that is no delay.
				delays = append(delays, max(at.Sub(v.(time.Time)), 0))
			}
		}
		return true
	})
	if len(delays) == 0 {
		b.Fatal("no frame delays measured")
	}
	slices.Sort(delays)
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()

	median := func(v []float64) float64 {
		slices.Sort(v)
		return v[len(v)/2]
	}
	b.ReportMetric(median(without), "ingest/s-no-clients")
	b.ReportMetric(median(with), "ingest/s-500-clients")
	b.ReportMetric(median(ratios), "ingest-ratio")
	b.ReportMetric(median(cpuWithout), "cpu-us/callback-no-clients")
	b.ReportMetric(median(cpuWith), "cpu-us/callback-500-clients")
	b.ReportMetric(float64(delays[len(delays)/2])/1e6, "frame-p50-ms")
	b.ReportMetric(float64(delays[len(delays)*99/100])/1e6, "frame-p99-ms")
	b.ReportMetric(float64(frames.Load())/float64(sampled), "frames/sampled-client")
}

// wsBenchSink reads and discards what arrives on c until it fails. On
// Linux the bytes are dropped in the kernel (MSG_TRUNC on a TCP socket)
// instead of copied out: a remote dashboard's reading costs the server
// nothing, and here it shares the two cores with it.
func wsBenchSink(c net.Conn) {
	buf := make([]byte, 1<<20) // the kernel discards up to this much per call
	sc, ok := c.(syscall.Conn)
	if !ok {
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = syscall.Recvfrom(int(fd), buf, syscall.MSG_TRUNC)
			return rerr != syscall.EAGAIN
		})
		if err != nil || rerr != nil || n == 0 {
			return
		}
	}
}

// processCPU returns the CPU time (user and system) the process has used.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// scanFrame reads type, cursor, message_uuid and status from a stream
// frame as the hub encodes it (those fields first, in that order), without
// decoding the rest.
func scanFrame(data []byte) (wsFrame, bool) {
	var f wsFrame
	str := func(key string) (string, bool) {
		i := bytes.Index(data, []byte(`"`+key+`":"`))
		if i < 0 {
			return "", false
		}
		rest := data[i+len(key)+4:]
		j := bytes.IndexByte(rest, '"')
		if j < 0 {
			return "", false
		}
		data = rest[j:]
		return string(rest[:j]), true
	}
	var ok bool
	if f.Type, ok = str("type"); !ok {
		return f, false
	}
	i := bytes.Index(data, []byte(`"cursor":`))
	if i < 0 {
		return f, false
	}
	n := 0
	for _, c := range data[i+9:] {
		if c < '0' || c > '9' {
			break
		}
		f.Cursor = f.Cursor*10 + uint64(c-'0')
		n++
	}
	if n == 0 {
		return f, false
	}
	if f.Type != hub.FrameStatusUpdate {
		return f, true
	}
	if f.Message.MessageUUID, ok = str("message_uuid"); !ok {
		return f, false
	}
	f.Message.Status, ok = str("status")
	return f, ok
}
