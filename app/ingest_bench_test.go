package app

import (
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
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
	srv, err := NewServer(Options{Config: cfg, Store: store})
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
// message queued, sent, delivered in order, each callback with a fresh
// random 20-digit nonce.
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

// runLoadShape is runLoad with a traffic shape: "v1x3" is runLoad's, "v4x1"
// makes every callback a new message under a random version-4 UUID (one
// "delivered" callback per message), "in1" every request an inbound SMS
// (version-1 UUID, Plivo's inbound fields, no Status) posted to the same
// path.
func runLoadShape(b *testing.B, addr string, clients, total int, runID, shape string) loadResult {
	worstCase, inbound := shape == "v4x1", shape == "in1"
	b.Helper()
	seed := uint64(time.Now().UnixNano())
	for _, c := range runID {
		seed = seed*31 + uint64(c)
	}
	hc := &fasthttp.HostClient{Addr: addr, MaxConns: clients, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	callbackURL := "https://hooks.example.com/plivo/callback"
	latencies := make([]time.Duration, total)
	var next atomic.Int64
	var non200 atomic.Int64
	var msgSeq atomic.Int64
	statuses := []string{"queued", "sent", "delivered"}
	if worstCase || inbound {
		statuses = statuses[2:]
	}
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(seed, uint64(w)))
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for {
				uuid := plivoLikeUUID(uint64(msgSeq.Add(1)))
				if worstCase {
					uuid = v4UUID(rng)
				}
				for i, status := range statuses {
					n := next.Add(1) - 1
					if n >= int64(total) {
						return
					}
					nonce := randomNonce(rng)
					sig, _ := protocol.ComputeSignatureV2(benchToken, callbackURL, nonce)
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
					req.Reset()
					req.SetRequestURI("http://" + addr + "/plivo/callback")
					req.Header.SetMethod(fasthttp.MethodPost)
					req.Header.SetContentType("application/x-www-form-urlencoded")
					req.Header.Set(protocol.HeaderSignatureV2, sig)
					req.Header.Set(protocol.HeaderSignatureV2Nonce, nonce)
					req.SetBodyString(form.Encode())
					t0 := time.Now()
					err := hc.Do(req, resp)
					latencies[n] = time.Since(t0)
					if err != nil || resp.StatusCode() != fasthttp.StatusOK {
						non200.Add(1)
					}
				}
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	return loadResult{
		perSecond: float64(total) / elapsed.Seconds(),
		p50:       latencies[total/2],
		p99:       latencies[total*99/100],
		non200:    non200.Load(),
	}
}

// BenchmarkIngest measures durable end-to-end ingestion (signed form
// callbacks over loopback HTTP, fsync on, unique nonces, each message
// queued/sent/delivered; shape=in1: inbound messages on the same path) and,
// in the same run, the same load against a bare
// Fiber handler that only parses the form. Run with a fixed count so both
// loads are large enough to be steady, e.g.
//
//	go test -run '^$' -bench BenchmarkIngest -benchtime 60000x ./app
func BenchmarkIngest(b *testing.B) {
	TuneGC(os.Getenv) // as serve does: the server's own GC setting, not the test binary's
	for _, tc := range []struct {
		shape   string
		clients int
	}{{"v1x3", 64}, {"v1x3", 256}, {"v4x1", 64}, {"in1", 64}} {
		clients := tc.clients
		b.Run(fmt.Sprintf("shape=%s/clients=%d", tc.shape, clients), func(b *testing.B) {
			total := max(b.N, 3*clients)
			bareAddr := startBareServer(b)
			addr, _ := startBenchServer(b, nil)
			runID := fmt.Sprintf("%08x", time.Now().UnixNano()&0xffffffff)
			b.ResetTimer()
			var bare loadResult
			if os.Getenv("BENCH_SKIP_BARE") != "1" { // for profiling our path alone
				bare = runLoadShape(b, bareAddr, clients, total, runID, tc.shape)
			}
			benchCommits.reset()
			durable := runLoadShape(b, addr, clients, total, runID, tc.shape)
			benchCommits.report(b)
			b.StopTimer()
			if durable.non200 > 0 || bare.non200 > 0 {
				b.Fatalf("non-200 answers: durable %d, bare %d", durable.non200, bare.non200)
			}
			b.ReportMetric(durable.perSecond, "callbacks/s")
			b.ReportMetric(float64(durable.p50.Microseconds())/1000, "p50_ms")
			b.ReportMetric(float64(durable.p99.Microseconds())/1000, "p99_ms")
			b.ReportMetric(bare.perSecond, "bare_callbacks/s")
			b.ReportMetric(float64(bare.p99.Microseconds())/1000, "bare_p99_ms")
			b.ReportMetric(bare.perSecond/durable.perSecond, "bare/durable")
		})
	}
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
