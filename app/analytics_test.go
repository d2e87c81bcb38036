package app

import (
	"context"
	"fmt"
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

// getAnalytics fetches /api/analytics with the API token.
func getAnalytics(tb testing.TB, addr, window string) (int, analyticsBody) {
	tb.Helper()
	return getAPIJSON[analyticsBody](tb, addr, "/api/analytics?window="+window)
}

// TestAnalyticsAPI: seeded callbacks show up in each window's series, the
// tables by country, carrier, sender and error code, and spend; an unknown
// window is 400.
func TestAnalyticsAPI(t *testing.T) {
	d := startDashServer(t, nil)
	seedMessages(t, d, 14) // 2 undelivered (30), 1 failed (50), 11 delivered; 7 countries
	d.sendInbound(t, "5b000000-0000-4000-8000-000000000001", "447700900999", "14155550100", "hi", "")

	steps := map[string]int64{"1h": 60, "24h": 3600, "7d": 3600, "30d": 86400}
	points := map[string]int{"1h": 60, "24h": 24, "7d": 168, "30d": 30}
	for window, step := range steps {
		t.Run(window, func(t *testing.T) {
			code, a := getAnalytics(t, d.addr, window)
			if code != http.StatusOK {
				t.Fatalf("got %d, want 200", code)
			}
			if a.StepSeconds != step || len(a.Series) != points[window] {
				t.Errorf("step %d with %d points, want %d with %d", a.StepSeconds, len(a.Series), step, points[window])
			}
			var delivered int64
			for _, p := range a.Series {
				delivered += p.Counts["delivered"]
			}
			last := a.Series[len(a.Series)-1]
			if delivered != 11 || last.Counts["delivered"] != 11 {
				t.Errorf("series: %d delivered, %v in the last step; want 11, all in the last", delivered, last.Counts)
			}
			tt := a.Totals
			if tt.Messages != 14 || tt.Delivered != 11 || tt.Failed != 3 || tt.Inbound != 1 || tt.DeliveryRate == nil || *tt.DeliveryRate != 11.0/14 {
				t.Errorf("totals = %+v, want 14 messages, 11 delivered, 3 failed, 1 inbound", tt)
			}
			// Two messages to each of 7 countries; both to India undelivered.
			byKey := map[string]outcomeRow{}
			for _, r := range a.Countries {
				byKey[r.Key] = r
			}
			in := byKey["IN"]
			if len(a.Countries) != 7 || byKey["GB"].Sent != 2 || in.Failed != 2 || in.DeliveryRate == nil || *in.DeliveryRate != 0 {
				t.Errorf("countries = %+v, want 7 with 2 sent each, IN 2 failed", a.Countries)
			}
			if len(a.Carriers) != 1 || a.Carriers[0].Key != "234-10" || a.Carriers[0].Sent != 14 || a.Carriers[0].Failed != 3 {
				t.Errorf("carriers = %+v, want 234-10 with 14 sent, 3 failed", a.Carriers)
			}
			if len(a.Senders) != 1 || a.Senders[0].Key != "14155550100" || a.Senders[0].Delivered != 11 {
				t.Errorf("senders = %+v", a.Senders)
			}
			if fmt.Sprint(a.ErrorCodes) != fmt.Sprint([]errorCodeRow{{"30", 2, 2.0 / 3}, {"50", 1, 1.0 / 3}}) {
				t.Errorf("error codes = %+v", a.ErrorCodes)
			}
			if a.Spend.Micros != 14*4500 || a.Spend.Total != "0.063" || len(a.Spend.ByDay) != 1 || a.Spend.ByDay[0].Day != time.Now().UTC().Format(time.DateOnly) {
				t.Errorf("spend = %+v, want 0.063 today", a.Spend)
			}
		})
	}
	if code, _ := getAnalytics(t, d.addr, "2h"); code != http.StatusBadRequest {
		t.Errorf("window=2h: got %d, want 400", code)
	}
}

func TestFormatMicros(t *testing.T) {
	for v, want := range map[int64]string{0: "0.00", 6500: "0.0065", 1_250_000: "1.25", 63000: "0.063", -10_000: "-0.01", 123_456_789: "123.456789"} {
		if got := formatMicros(v); got != want {
			t.Errorf("formatMicros(%d) = %q, want %q", v, got, want)
		}
	}
}

// BenchmarkAnalyticsAPI measures GET /api/analytics for each window over
// HTTP on a store holding 100,000 messages (1,000,000 with
// PLIVO_DLR_BENCH_LARGE=1) first seen across the last 29 days, to 7
// countries, 12 carriers and 5 senders. Target: under 50 ms. window=stats7d
// is GET /api/stats?window=7d on the same store, for comparison.
//
//	PLIVO_DLR_BENCH_LARGE=1 go test -run '^$' -bench BenchmarkAnalyticsAPI -benchtime 50x ./app
func BenchmarkAnalyticsAPI(b *testing.B) {
	n := 100_000
	if os.Getenv("PLIVO_DLR_BENCH_LARGE") == "1" {
		n = 1_000_000
	}
	dir := b.TempDir()
	// Bulk load without fsync, then reopen normally: only the load is
	// unsafe. 256 concurrent callers make the writer's batches large.
	bulk, err := storage.Open(filepath.Join(dir, "dlr.db"), storage.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	statuses := []string{"delivered", "delivered", "delivered", "undelivered", "failed", "sent"}
	var next atomic.Int64
	var wg sync.WaitGroup
	loadStart := time.Now()
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				uuid := fmt.Sprintf("%08x-0000-1000-8000-%012d", i, i)
				f := callbackForm(uuid, statuses[i%len(statuses)], "", 1)
				f.Set("To", seededNumbers[i%len(seededNumbers)])
				f.Set("From", fmt.Sprintf("1415555010%d", i%5))
				f.Set("MNC", fmt.Sprint(10+i%12))
				ev, err := protocol.ParseCallback(f)
				if err != nil {
					b.Error(err)
					return
				}
				if ev.Status != "delivered" {
					ev.ErrorCode = fmt.Sprint(10 * (1 + i%12))
				}
				ev.ReceivedAt = now.Add(-time.Duration(i%(29*24*60)) * time.Minute) // inside the 30d window's days
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

	if code, a := getAnalytics(b, d.addr, "30d"); code != http.StatusOK || a.Totals.Messages != int64(n) || len(a.Countries) != 7 {
		b.Fatalf("analytics: got %d with %d messages, %d countries; want 200 with %d, 7", code, a.Totals.Messages, len(a.Countries), n)
	}
	for _, window := range []string{"1h", "24h", "7d", "30d", "stats7d"} {
		b.Run("window="+window, func(b *testing.B) {
			start := time.Now()
			for b.Loop() {
				if window == "stats7d" {
					getStats(b, d.addr, "7d")
				} else {
					getAnalytics(b, d.addr, window)
				}
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/request")
			b.ReportMetric(float64(n), "messages")
		})
	}
}
