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
func wsBenchIngest(b *testing.B, d *dashServer, senders, total int, run string, ack *sync.Map) float64 {
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
// stream (stream=exact: ?since= with a bearer token); run e.g.
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

	type recv struct {
		mu   sync.Mutex
		at   map[string]time.Time
		last atomic.Uint64
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
	for i := range clients {
		conn, _, err := dialer.Dial(wsURL, http.Header{"Authorization": {"Bearer " + dashAPIToken}})
		if err != nil {
			b.Fatalf("dial client %d: %v", i, err)
		}
		conns[i] = conn
		var r *recv
		if i < sampled {
			r = &recv{at: map[string]time.Time{}}
			recvs[i] = r
		}
		wg.Add(1)
		// Each reader exits when its connection is closed at the end.
		go func() {
			defer wg.Done()
			if r == nil {
				// A load sink: read the raw bytes in large chunks without
				// parsing frames, so the benchmark's own clients take as
				// little of the shared CPU as possible.
				buf := make([]byte, 64<<10)
				for {
					if _, err := conn.NetConn().Read(buf); err != nil {
						return
					}
				}
			}
			for {
				_, data, err := conn.ReadMessage()
				if err != nil {
					return
				}
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
					r.at[f.Message.MessageUUID+"/"+f.Message.Status] = now
					r.mu.Unlock()
				}
				r.last.Store(max(r.last.Load(), f.Cursor))
			}
		}()
	}
	testsupport.WaitFor(b, 30*time.Second, "all clients subscribed", func() bool { return d.srv.hub.Clients() == clients })

	var ack sync.Map
	b.ResetTimer()
	var without, with, ratios []float64
	for r := range rounds {
		var wo, wi float64
		if r%2 == 0 {
			wo = wsBenchIngest(b, bare, senders, total, "a0000000", nil)
			wi = wsBenchIngest(b, d, senders, total, "b0000000", &ack)
		} else {
			wi = wsBenchIngest(b, d, senders, total, "b0000000", &ack)
			wo = wsBenchIngest(b, bare, senders, total, "a0000000", nil)
		}
		without, with, ratios = append(without, wo), append(with, wi), append(ratios, wi/wo)
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

	var delays []time.Duration
	ack.Range(func(k, v any) bool {
		for _, r := range recvs {
			r.mu.Lock()
			at, ok := r.at[k.(string)]
			r.mu.Unlock()
			if ok {
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
	b.ReportMetric(float64(delays[len(delays)/2])/1e6, "frame-p50-ms")
	b.ReportMetric(float64(delays[len(delays)*99/100])/1e6, "frame-p99-ms")
	b.ReportMetric(float64(frames.Load())/float64(sampled), "frames/sampled-client")
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
