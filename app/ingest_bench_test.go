package app

import (
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"plivo-dlr/app/protocol"
	"plivo-dlr/storage"
)

const benchToken = "MzY2ZjQxZTg5NjFiY2I2NWE1OTJkNWFlNzBiZjE4"

// startBenchServer runs a real Server with a real fsync'ing store on loopback.
func startBenchServer(b *testing.B, mutate func(*Config)) (addr string, cfg Config) {
	b.Helper()
	store, err := storage.Open(filepath.Join(b.TempDir(), "bench.db"), storage.Options{OnCommit: benchCommits.observe, NoSync: os.Getenv("BENCH_NOSYNC") == "1"})
	if err != nil {
		b.Fatal(err)
	}
	cfg = DefaultConfig()
	cfg.Server.PublicURL = "https://hooks.example.com"
	cfg.Plivo.AuthID = "MABENCH"
	cfg.Plivo.AuthToken = benchToken
	cfg.Reconcile.Enabled = false
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := NewServer(Options{Config: cfg, Store: store, Logger: benchLogger()})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() {
		_ = srv.Shutdown(b.Context())
		_ = store.Close()
	})
	return ln.Addr().String(), cfg
}

// startBareServer runs a Fiber app that only parses the form and answers 200:
// the framework's own cost, for the ratio.
func startBareServer(b *testing.B) string {
	b.Helper()
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Post("/plivo/callback", func(c *fiber.Ctx) error {
		if _, err := url.ParseQuery(string(c.Body())); err != nil {
			return fiber.ErrBadRequest
		}
		return c.SendString("OK")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	b.Cleanup(func() { _ = app.Shutdown() })
	return ln.Addr().String()
}

// loadResult is what one load run measured.
type loadResult struct {
	perSecond float64
	p50, p99  time.Duration
	non200    int64
}

// runLoad sends total signed form callbacks from clients keep-alive
// connections shaped like Plivo's traffic: version-1 MessageUUIDs, each
// message queued, sent, delivered in order, each callback with fresh
// random 20-digit nonces and V2 + V3 headers (and their Ma- twins) as
// Plivo sends them.
func runLoad(b *testing.B, addr string, clients, total int, runID string) loadResult {
	return runLoadShape(b, addr, clients, total, runID, "v1x3")
}

// randomNonce returns a Plivo-like signature nonce: 20 random digits.
func randomNonce(r *mrand.Rand) string {
	var b [20]byte
	for i := range b {
		b[i] = byte('0' + r.IntN(10))
	}
	return string(b[:])
}

// v4UUID returns a random version-4 UUID.
func v4UUID(r *mrand.Rand) string {
	a, c := r.Uint64(), r.Uint64()
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", uint32(a>>32), uint16(a>>16), uint16(a)&0xfff, uint16(c>>48)&0x3fff|0x8000, c&0xffffffffffff)
}

// benchCallback is one pre-built signed callback: the load generator shares
// the two cores with the server, so signing and encoding happen before the
// clock starts.
type benchCallback struct {
	body                     []byte
	v2, v2Nonce, v3, v3Nonce string
}

// benchMsgSeq numbers benchmark messages across runs, so no two runs reuse
// a MessageUUID.
var benchMsgSeq atomic.Int64

// buildLoad returns per-client callback sequences, total callbacks in all.
// Each client sends whole messages, their callbacks in order (queued, sent,
// delivered). Shape "v4x1" makes every callback a new message under a
// random version-4 UUID (one "delivered" callback per message), "in1" every
// request an inbound SMS (version-1 UUID, Plivo's inbound fields, no
// Status) posted to the same path.
func buildLoad(seed uint64, clients, total int, shape string) [][]benchCallback {
	const callbackURL = "https://hooks.example.com/plivo/callback"
	worstCase, inbound := shape == "v4x1", shape == "in1"
	statuses := []string{"queued", "sent", "delivered"}
	if worstCase || inbound {
		statuses = statuses[2:]
	}
	out := make([][]benchCallback, clients)
	per := total / clients
	for w := range clients {
		n := per
		if w < total%clients {
			n++
		}
		rng := mrand.New(mrand.NewPCG(seed, uint64(w)))
		seq := make([]benchCallback, 0, n)
		for len(seq) < n {
			uuid := plivoLikeUUID(uint64(benchMsgSeq.Add(1)))
			if worstCase {
				uuid = v4UUID(rng)
			}
			for i, status := range statuses {
				if len(seq) == n {
					break
				}
				form := url.Values{
					"MessageUUID": {uuid}, "Status": {status}, "Sequence": {fmt.Sprint(i + 1)},
					"To": {"447700900123"}, "From": {"14155550100"}, "Type": {"sms"},
					"Units": {"1"}, "TotalRate": {"0.00450"}, "TotalAmount": {"0.00450"},
					"MCC": {"234"}, "MNC": {"10"}, "ParentMessageUUID": {uuid},
					"MessageTime": {"2024-05-01 10:00:00.123456"}, "QueuedTime": {"2024-05-01 10:00:00.234567"},
				}
				if status != "queued" {
					form.Set("SentTime", "2024-05-01 10:00:01.345678")
				}
				if status == "delivered" {
					form.Set("DeliveryReportTime", "2024-05-01 10:00:04.456789")
				}
				if inbound {
					form = url.Values{
						"MessageUUID": {uuid}, "From": {"447700900123"}, "To": {"14155550100"},
						"Text": {"Yes, 7pm works. See you there!"}, "Type": {"sms"}, "Units": {"1"},
						"TotalRate": {"0.00000"}, "TotalAmount": {"0.00000"}, "MessageIntent": {""}, "PowerpackUUID": {""},
					}
				}
				cb := benchCallback{body: []byte(form.Encode()), v2Nonce: randomNonce(rng), v3Nonce: randomNonce(rng)}
				cb.v2, _ = protocol.ComputeSignatureV2(benchToken, callbackURL, cb.v2Nonce)
				cb.v3, _ = protocol.ComputeSignatureV3(benchToken, "POST", callbackURL, cb.v3Nonce, form)
				seq = append(seq, cb)
			}
		}
		out[w] = seq
	}
	return out
}

// runLoadShape is runLoad with a traffic shape (see buildLoad): "v1x3" is
// runLoad's, "v4x1" the worst case, "in1" inbound messages.
func runLoadShape(b *testing.B, addr string, clients, total int, runID, shape string) loadResult {
	b.Helper()
	seed := uint64(time.Now().UnixNano())
	for _, c := range runID {
		seed = seed*31 + uint64(c)
	}
	// ns/op is not the figure (the rates are), so the build is not excluded
	// from the benchmark timer; it is excluded from the rates.
	return sendLoad(addr, buildLoad(seed, clients, total, shape))
}

// sendLoad sends each client's callbacks over its own keep-alive
// connection and measures the rate and latencies.
func sendLoad(addr string, load [][]benchCallback) loadResult {
	clients, total := len(load), 0
	for _, l := range load {
		total += len(l)
	}
	hc := &fasthttp.HostClient{Addr: addr, MaxConns: clients, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	// Rounds reuse servers: leave no idle connection behind to count
	// against the server's per-IP cap.
	defer hc.CloseIdleConnections()
	latencies := make([][]time.Duration, clients)
	var non200 atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := range clients {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			lat := make([]time.Duration, 0, len(load[w]))
			for _, cb := range load[w] {
				req.Reset()
				req.SetRequestURI("http://" + addr + "/plivo/callback")
				req.Header.SetMethod(fasthttp.MethodPost)
				req.Header.SetContentType("application/x-www-form-urlencoded")
				req.Header.Set(protocol.HeaderSignatureV2, cb.v2)
				req.Header.Set(protocol.HeaderSignatureMaV2, cb.v2)
				req.Header.Set(protocol.HeaderSignatureV2Nonce, cb.v2Nonce)
				req.Header.Set(protocol.HeaderSignatureV3, cb.v3)
				req.Header.Set(protocol.HeaderSignatureMaV3, cb.v3)
				req.Header.Set(protocol.HeaderSignatureV3Nonce, cb.v3Nonce)
				req.SetBodyRaw(cb.body)
				t0 := time.Now()
				err := hc.Do(req, resp)
				lat = append(lat, time.Since(t0))
				if err != nil || resp.StatusCode() != fasthttp.StatusOK {
					if non200.Add(1) == 1 {
						firstErr.Store(fmt.Sprintf("status %d %q, err %v", resp.StatusCode(), resp.Body(), err))
					}
				}
			}
			latencies[w] = lat
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if e := firstErr.Load(); e != nil {
		fmt.Fprintln(os.Stderr, "first non-200:", e)
	}
	all := slices.Concat(latencies...)
	slices.Sort(all)
	return loadResult{
		perSecond: float64(total) / elapsed.Seconds(),
		p50:       all[total/2],
		p99:       all[total*99/100],
		non200:    non200.Load(),
	}
}

// BenchmarkIngest measures durable end-to-end ingestion (signed form
// callbacks over loopback HTTP, fsync on, Plivo-shaped load; shape=in1:
// inbound messages on the same path) against two
// baselines in the same run: a bare Fiber handler that only parses the form
// (the framework's cost), and a minimal pipeline that parses the form,
// verifies V2 and appends the event plus a time-index entry to bbolt with
// a commit-when-ready group commit, fsync on (the storage ceiling). The
// three servers run in interleaved rounds, each first in turn; the figures
// are medians over rounds. Each round sends b.N callbacks to each server:
//
//	go test -run '^$' -bench BenchmarkIngest$ -benchtime 20000x ./app
//
// BENCH_ROUNDS sets the rounds (default 3); BENCH_ONLY=product runs only
// plivo-dlr, for profiling its path alone.
func BenchmarkIngest(b *testing.B) {
	TuneGC(os.Getenv) // as serve does: the server's own GC setting, not the test binary's
	rounds := 3
	if n, err := strconv.Atoi(os.Getenv("BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	only := os.Getenv("BENCH_ONLY")
	for _, tc := range []struct {
		shape   string
		clients int
	}{{"v1x3", 64}, {"v1x3", 256}, {"v4x1", 64}, {"in1", 64}} {
		clients := tc.clients
		b.Run(fmt.Sprintf("shape=%s/clients=%d", tc.shape, clients), func(b *testing.B) {
			var servers []*ingestServer
			if only == "" || only == "bare" {
				servers = append(servers, &ingestServer{name: "bare", addr: startBareServer(b)})
			}
			if only == "" || only == "minimal" {
				servers = append(servers, &ingestServer{name: "minimal", addr: startMinimalServer(b)})
			}
			productAddr, _ := startBenchServer(b, nil)
			product := &ingestServer{name: "product", addr: productAddr}
			servers = append(servers, product)
			runIngestRounds(b, tc.shape, clients, rounds, servers, product, true)
		})
	}
}

// ingestServer is one server of an ingestion comparison and what each
// round measured on it.
type ingestServer struct {
	name    string
	addr    string
	results []loadResult
}

// runIngestRounds sends b.N callbacks (at least three per client) to each
// server per round, the servers in turn, each first in turn, and reports the
// medians and the per-round ratios of product to each other server.
// commits adds the in-process store's commit figures.
func runIngestRounds(b *testing.B, shape string, clients, rounds int, servers []*ingestServer, product *ingestServer, commits bool) {
	total := max(b.N, 3*clients)
	runID := fmt.Sprintf("%08x", time.Now().UnixNano()&0xffffffff)
	b.ResetTimer()
	for r := range rounds {
		for i := range servers {
			sv := servers[(r+i)%len(servers)]
			if sv == product {
				benchCommits.reset()
			}
			res := runLoadShape(b, sv.addr, clients, total, fmt.Sprintf("%s%s%d", runID, sv.name, r), shape)
			if res.non200 > 0 {
				b.Fatalf("%s: %d non-200 answers", sv.name, res.non200)
			}
			sv.results = append(sv.results, res)
		}
	}
	b.StopTimer()
	if commits {
		benchCommits.report(b)
	}
	medianOf := func(sv *ingestServer, f func(loadResult) float64) float64 {
		v := make([]float64, 0, len(sv.results))
		for _, r := range sv.results {
			v = append(v, f(r))
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	rate := func(r loadResult) float64 { return r.perSecond }
	p99 := func(r loadResult) float64 { return float64(r.p99.Microseconds()) / 1000 }
	for _, sv := range servers {
		name := sv.name + "_"
		if sv == product {
			name = ""
		}
		b.ReportMetric(medianOf(sv, rate), name+"callbacks/s")
		b.ReportMetric(medianOf(sv, p99), name+"p99_ms")
		if sv != product {
			// Ratio per round (the rounds interleave), then the median.
			ratios := make([]float64, rounds)
			for r := range rounds {
				ratios[r] = product.results[r].perSecond / sv.results[r].perSecond
			}
			slices.Sort(ratios)
			b.ReportMetric(ratios[rounds/2], "product/"+sv.name)
		}
	}
	b.ReportMetric(medianOf(product, func(r loadResult) float64 { return float64(r.p50.Microseconds()) / 1000 }), "p50_ms")
}

// v1Epoch is a fixed start for benchmark UUID timestamps.
var v1Epoch = uint64(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()/100) + 0x01B21DD213814000

// plivoLikeUUID returns a distinct version-1 UUID for n, shaped like Plivo's
// MessageUUIDs (time-based: the first group is the fast-moving low part of a
// 100 ns timestamp).
func plivoLikeUUID(n uint64) string {
	t := v1Epoch + uint64(time.Now().UnixNano()/100)%(1<<40) + n
	return fmt.Sprintf("%08x-%04x-1%03x-8%03x-%012x", uint32(t), uint16(t>>32), uint16(t>>48)&0xfff, n&0xfff, n)
}

// commitStats sums the store's group commits during a benchmark.
type commitStats struct {
	mu       sync.Mutex
	commits  int
	requests int
	total    time.Duration
}

var benchCommits commitStats

func (c *commitStats) observe(d time.Duration, requests int) {
	c.mu.Lock()
	c.commits++
	c.requests += requests
	c.total += d
	c.mu.Unlock()
}

func (c *commitStats) reset() {
	c.mu.Lock()
	c.commits, c.requests, c.total = 0, 0, 0
	c.mu.Unlock()
}

// report adds the mean commit duration and batch size to b's output.
func (c *commitStats) report(b *testing.B) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.commits == 0 {
		return
	}
	b.ReportMetric(float64(c.total.Microseconds())/float64(c.commits)/1000, "commit_ms")
	b.ReportMetric(float64(c.requests)/float64(c.commits), "events/commit")
}

// benchLogger shows the server's warnings on stderr with BENCH_LOG=1.
func benchLogger() *slog.Logger {
	if os.Getenv("BENCH_LOG") == "1" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return nil
}
