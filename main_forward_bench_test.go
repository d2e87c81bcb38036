package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkForwardFarBehind starts the real binary on a store of many events
// (100,000; 1,000,000 with PLIVO_DLR_BENCH_LARGE=1) with a webhook sink that
// has delivered none of them, lets it catch up for b.N × 100 ms, and reports
// the catch-up rate and the peak RssAnon (the window of events in memory is
// bounded: the log is read from disk in pages).
//
//	PLIVO_DLR_BENCH_LARGE=1 go test -run '^$' -bench BenchmarkForwardFarBehind -benchtime 50x .
func BenchmarkForwardFarBehind(b *testing.B) {
	n := 100_000
	if os.Getenv("PLIVO_DLR_BENCH_LARGE") == "1" {
		n = 1_000_000
	}
	dataDir := b.TempDir()
	start := time.Now()
	fillStore(b, filepath.Join(dataDir, "plivo-dlr.db"), n)
	b.Logf("filled %d events in %s", n, time.Since(start).Round(time.Second))

	var got atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	cfgPath := writeConfig(b, dataDir)
	f, err := os.OpenFile(cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	fmt.Fprintf(f, "\n[[forward.webhooks]]\nname = \"app\"\nurl = \"http://%s/hooks\"\nsecrets = [%q]\n", ln.Addr(), testWebhookSecret)
	f.Close()
	p := startBinary(b, cfgPath)
	peak := 0
	b.ResetTimer()
	t0 := time.Now()
	for b.Loop() {
		time.Sleep(100 * time.Millisecond)
		peak = max(peak, rssAnonKB(b, p.cmd.Process.Pid))
	}
	elapsed := time.Since(t0)
	b.StopTimer()
	delivered := got.Load()
	if delivered == 0 {
		b.Fatal("nothing delivered")
	}
	b.ReportMetric(float64(delivered)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(n-int(delivered)), "still_behind")
	b.ReportMetric(float64(peak)/1024, "peak_RssAnon_MB")
}
