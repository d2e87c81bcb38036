package storage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchDir holds stores built once per test binary run (see TestMain).
var benchDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

var benchStatuses = [...]string{StatusQueued, StatusSent, StatusDelivered}

// benchEvent builds a callback shaped like Plivo's (about 16 fields).
func benchEvent(msg int, status string, now time.Time) Event {
	uuid := fmt.Sprintf("%08x-1d2e-11ef-9c4a-%012x", uint32(msg*2654435761), msg)
	ts := now.Format("2006-01-02 15:04:05.000000")
	p := map[string]string{
		"MessageUUID": uuid, "Status": status, "From": "14155550199", "To": fmt.Sprintf("1415%07d", msg%10000000),
		"MessageTime": ts, "QueuedTime": ts, "SentTime": ts, "DeliveryReportTime": ts,
		"ErrorCode": "000", "MessageType": "sms", "Units": "1", "TotalRate": "0.00500", "TotalAmount": "0.00500",
		"MCC": "310", "MNC": "260", "PartInfo": "1 of 1",
	}
	t := now
	return Event{
		MessageUUID: uuid, Status: status, Source: SourceCallback, Payload: p,
		From: p["From"], To: p["To"], Type: "sms", Units: 1, TotalRate: "0.00500", TotalAmount: "0.00500",
		MCC: "310", MNC: "260", PartInfo: "1 of 1", QueuedTime: &t, DeliveryReportTime: &t,
	}
}

func BenchmarkApplyParallel(b *testing.B) {
	for _, writers := range []int{64, 256} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s := mustOpenStore(b, Options{NoSync: os.Getenv("BENCH_NOSYNC") == "1"})
			now := time.Now()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := int(next.Add(1) - 1)
						if i >= b.N {
							return
						}
						e := benchEvent(i/3, benchStatuses[i%3], now)
						nonce := Nonce{Value: fmt.Sprintf("nonce-%d", i), ExpiresAt: now.Add(time.Hour)}
						if _, err := s.Apply(context.Background(), e, benchNonces(nonce)...); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			st := s.db.Stats().TxStats
			b.ReportMetric(float64(st.GetWrite())/float64(b.N), "pagewrites/event")
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(s.Size())/float64(b.N), "bytes/event")
		})
	}
}

// benchListStore returns the path of a store holding n messages (one event
// each), built once with NoSync through the normal Apply path.
var benchStores sync.Map // n → path

func benchListStore(b *testing.B, n int) string {
	b.Helper()
	if p, ok := benchStores.Load(n); ok {
		return p.(string)
	}
	if benchDir == "" {
		d, err := os.MkdirTemp("", "plivo-dlr-bench-")
		if err != nil {
			b.Fatal(err)
		}
		benchDir = d
	}
	path := filepath.Join(benchDir, fmt.Sprintf("list-%d.db", n))
	clock := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				e := benchEvent(i, benchStatuses[i%3], clock)
				e.ReceivedAt = clock.Add(time.Duration(i) * time.Second)
				if _, err := s.Apply(context.Background(), e); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %d messages in %s (%d MB)", n, time.Since(start).Round(time.Millisecond), s.Size()>>20)
	benchStores.Store(n, path)
	return path
}

func BenchmarkListNewest100(b *testing.B) {
	n := 100_000
	if os.Getenv("PLIVO_DLR_BENCH_LARGE") == "1" {
		n = 1_000_000
	}
	path := benchListStore(b, n)
	s, err := Open(path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		name string
		f    ListFilter
	}{
		{"all", ListFilter{Limit: 100}},
		{"status=delivered", ListFilter{Limit: 100, Status: StatusDelivered}},
		{"phone", ListFilter{Limit: 100, Query: "4150001"}},
	} {
		b.Run(fmt.Sprintf("n=%d/%s", n, tc.name), func(b *testing.B) {
			for b.Loop() {
				msgs, _, err := s.ListMessages(tc.f)
				if err != nil {
					b.Fatal(err)
				}
				if len(msgs) == 0 {
					b.Fatal("no messages")
				}
			}
		})
	}
}

func benchNonces(n Nonce) []Nonce {
	if os.Getenv("BENCH_NO_NONCE") == "1" {
		return nil
	}
	return []Nonce{n}
}
