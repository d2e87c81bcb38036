package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"plivo-dlr/app/protocol"
	"plivo-dlr/storage"
)

// getAPIJSON fetches path with the API token and decodes a 200's body.
func getAPIJSON[T any](tb testing.TB, addr, path string) (int, T) {
	tb.Helper()
	var body T
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+dashAPIToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &body); err != nil {
			tb.Fatalf("GET %s: body %q: %v", path, b, err)
		}
	}
	return resp.StatusCode, body
}

// getStats fetches /api/stats with the API token.
func getStats(tb testing.TB, addr, window string) (int, statsBody) {
	tb.Helper()
	return getAPIJSON[statsBody](tb, addr, "/api/stats?window="+window)
}

// TestStatsAPI: counts, delivery rate, error codes and the series reflect
// stored callbacks; bad windows are 400.
func TestStatsAPI(t *testing.T) {
	d := startDashServer(t, nil)
	d.sendCallback(t, "5a000000-0000-4000-8000-000000000001", "delivered", "000", 1)
	d.sendCallback(t, "5a000000-0000-4000-8000-000000000002", "delivered", "000", 1)
	d.sendCallback(t, "5a000000-0000-4000-8000-000000000003", "undelivered", "30", 1)
	d.sendCallback(t, "5a000000-0000-4000-8000-000000000004", "queued", "", 1)

	for _, window := range []string{"1h", "24h", "7d", "36h"} {
		t.Run(window, func(t *testing.T) {
			code, st := getStats(t, d.addr, window)
			if code != http.StatusOK {
				t.Fatalf("got %d, want 200", code)
			}
			if st.Window != window {
				t.Errorf("window: got %q, want %q", st.Window, window)
			}
			want := map[string]int64{"delivered": 2, "undelivered": 1, "queued": 1}
			for k, v := range want {
				if st.Counts[k] != v {
					t.Errorf("counts[%s]: got %d, want %d (all: %v)", k, st.Counts[k], v, st.Counts)
				}
			}
			if got, want := st.DeliveryRate, 2.0/3.0; got < want-1e-9 || got > want+1e-9 {
				t.Errorf("delivery_rate: got %v, want %v", got, want)
			}
			if len(st.TopErrorCodes) != 1 || st.TopErrorCodes[0].Code != "30" || st.TopErrorCodes[0].Count != 1 {
				t.Errorf("top_error_codes: got %+v, want [{30 1}]", st.TopErrorCodes)
			}
			if st.TimeToDeliver.P50Seconds == nil {
				t.Errorf("time_to_deliver.p50_seconds: got null, want a value")
			}
			var sum int64
			for _, p := range st.Series.Points {
				sum += p.Counts["delivered"]
			}
			if sum != 2 || len(st.Series.Points) == 0 || len(st.Series.Points) > statsMaxPoints {
				t.Errorf("series: %d points summing %d delivered, want 1..%d points summing 2", len(st.Series.Points), sum, statsMaxPoints)
			}
		})
	}
	for _, bad := range []string{"abc", "91d", "0s", "-1h"} {
		t.Run("bad "+bad, func(t *testing.T) {
			if code, _ := getStats(t, d.addr, bad); code != http.StatusBadRequest {
				t.Errorf("window=%s: got %d, want 400", bad, code)
			}
		})
	}
}

// BenchmarkStatsAPI measures GET /api/stats?window=7d over HTTP on a store
// holding 100,000 messages (1,000,000 with PLIVO_DLR_BENCH_LARGE=1) first
// seen across the last 7 days. Target: under 50 ms.
//
//	go test -run '^$' -bench BenchmarkStatsAPI ./app
func BenchmarkStatsAPI(b *testing.B) {
	n := 100_000
	if os.Getenv("PLIVO_DLR_BENCH_LARGE") == "1" {
		n = 1_000_000
	}
	dir := b.TempDir()
	// Bulk load without fsync, then reopen normally: only the load is unsafe.
	bulk, err := storage.Open(filepath.Join(dir, "dlr.db"), storage.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	statuses := []string{"delivered", "delivered", "delivered", "undelivered", "failed", "sent"}
	var next atomic.Int64
	var wg sync.WaitGroup
	loadStart := time.Now()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				uuid := fmt.Sprintf("%08x-0000-4000-8000-%012d", i, i)
				f := callbackForm(uuid, statuses[i%len(statuses)], "", 1)
				ev, err := protocol.ParseCallback(f)
				if err != nil {
					b.Error(err)
					return
				}
				if ev.Status != "delivered" {
					ev.ErrorCode = fmt.Sprint(10 * (1 + i%12))
				}
				ev.ReceivedAt = now.Add(-time.Duration(i%(7*24*60)) * time.Minute)
				if _, err := bulk.Apply(context.Background(), ev); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := bulk.Close(); err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d messages in %s", n, time.Since(loadStart).Round(time.Millisecond))

	d := &dashServer{dbDir: dir}
	ln, err := netListenLoopback()
	if err != nil {
		b.Fatal(err)
	}
	d.addr = ln.Addr().String()
	d.cfg = dashConfig(d.addr)
	d.start(b, ln)
	b.Cleanup(func() { d.stop(b) })

	if code, st := getStats(b, d.addr, "7d"); code != http.StatusOK || st.Total != int64(n) {
		b.Fatalf("stats: got %d with total %d, want 200 with %d", code, st.Total, n)
	}
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		getStats(b, d.addr, "7d")
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/request")
	b.ReportMetric(float64(n), "messages")
}
