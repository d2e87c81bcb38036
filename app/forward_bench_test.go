package app

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"plivo-dlr/storage"
)

// startSinkReceiver is a local webhook endpoint that answers 204 and counts.
func startSinkReceiver(b *testing.B) (string, *atomic.Int64) {
	var n atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		n.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String() + "/hooks", &n
}

// startForwardingBenchServer is startBenchServer with sinks webhook sinks
// (all to url), started as serve starts them.
func startForwardingBenchServer(b *testing.B, sinks int, hookURL string) string {
	b.Helper()
	store, err := storage.Open(filepath.Join(b.TempDir(), "bench.db"), storage.Options{NoSync: os.Getenv("BENCH_NOSYNC") == "1"})
	if err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Server.PublicURL = "https://hooks.example.com"
	cfg.Plivo.AuthID = "MABENCH"
	cfg.Plivo.AuthToken = benchToken
	cfg.Reconcile.Enabled = false
	for i := 0; i < sinks; i++ {
		cfg.Forward.Webhooks = append(cfg.Forward.Webhooks, WebhookConfig{Name: fmt.Sprintf("sink-%d", i), URL: hookURL,
			Secrets: []Secret{goodSecret}})
	}
	cfg.Forward.applyDefaults()
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	fwd, err := NewForwarder(cfg, store, nil, reg)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := NewServer(Options{Config: cfg, Store: store, Registry: reg, Forward: fwd})
	if err != nil {
		b.Fatal(err)
	}
	if fwd != nil {
		if err := fwd.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() {
		_ = srv.Shutdown(b.Context())
		if fwd != nil {
			fwd.Stop()
		}
		_ = store.Close()
	})
	return ln.Addr().String()
}

// BenchmarkIngestForwarding measures durable ingestion with two webhook
// sinks forwarding every event to a local receiver against the same load
// with forwarding off, in interleaved rounds of one run (target: on/off ≥ 0.9).
//
//	go test -run '^$' -bench BenchmarkIngestForwarding -benchtime 30000x ./app
func BenchmarkIngestForwarding(b *testing.B) {
	TuneGC(os.Getenv)
	const clients, rounds = 64, 4
	hookURL, delivered := startSinkReceiver(b)
	offAddr := startForwardingBenchServer(b, 0, hookURL)
	onAddr := startForwardingBenchServer(b, 2, hookURL)
	per := max(b.N/rounds, 3*clients)
	runID := fmt.Sprintf("%08x", time.Now().UnixNano()&0xffffffff)
	var on, off float64
	var onP99, offP99 time.Duration
	b.ResetTimer()
	for r := 0; r < rounds; r++ {
		// Alternate which goes first, so warm-up and drift favour neither.
		var o, f loadResult
		if r%2 == 0 {
			o = runLoad(b, offAddr, clients, per, fmt.Sprintf("%s%02d", runID, 2*r))
			f = runLoad(b, onAddr, clients, per, fmt.Sprintf("%s%02d", runID, 2*r+1))
		} else {
			f = runLoad(b, onAddr, clients, per, fmt.Sprintf("%s%02d", runID, 2*r+1))
			o = runLoad(b, offAddr, clients, per, fmt.Sprintf("%s%02d", runID, 2*r))
		}
		if o.non200 > 0 || f.non200 > 0 {
			b.Fatalf("non-200 answers: off %d, on %d", o.non200, f.non200)
		}
		off += o.perSecond
		on += f.perSecond
		offP99, onP99 = max(offP99, o.p99), max(onP99, f.p99)
	}
	b.StopTimer()
	// Both sinks deliver everything (the feed keeps up, it is not dropped).
	want := int64(2 * rounds * per)
	deadline := time.Now().Add(2 * time.Minute)
	for delivered.Load() < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if delivered.Load() < want {
		b.Fatalf("sinks delivered %d of %d", delivered.Load(), want)
	}
	b.ReportMetric(on/rounds, "on_callbacks/s")
	b.ReportMetric(off/rounds, "off_callbacks/s")
	b.ReportMetric(on/off, "on/off")
	b.ReportMetric(float64(onP99.Microseconds())/1000, "on_p99_ms")
	b.ReportMetric(float64(offP99.Microseconds())/1000, "off_p99_ms")
}
