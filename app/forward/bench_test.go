package forward

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"plivo-dlr/storage"
)

// BenchmarkForwardThroughput stores b.N events (queued, sent, delivered per
// message; 64 concurrent writers, fsync on) while one webhook sink forwards
// them to a local receiver, and reports events/s from the first store to
// the last delivery and the p50/p99 delay from the store's commit (when the
// callback would be answered 200) to the receiver's 2xx.
//
//	go test -run '^$' -bench BenchmarkForwardThroughput -benchtime 30000x ./app/forward
func BenchmarkForwardThroughput(b *testing.B) {
	// rate=max: stored as fast as 64 writers go (the sink's throughput);
	// rate=1000: a steady 1,000 events/s (the delay when it keeps up).
	for _, rate := range []int{0, 1000} {
		name := "rate=max"
		if rate > 0 {
			name = "rate=" + strconv.Itoa(rate)
		}
		b.Run(name, func(b *testing.B) { benchForward(b, rate) })
	}
}

func benchForward(b *testing.B, rate int) {
	st, err := storage.Open(filepath.Join(b.TempDir(), "dlr.db"), storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	var (
		mu     sync.Mutex
		delays []time.Duration
		got    atomic.Int64
	)
	// received_at is set when the event enters the writer, just before the
	// commit that precedes the 200, so the delay is measured from slightly
	// before the 200 (a small overestimate).
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p struct {
			Data struct {
				Event struct {
					ReceivedAt time.Time `json:"received_at"`
				} `json:"event"`
			} `json:"data"`
		}
		_ = json.Unmarshal(body, &p)
		d := time.Since(p.Data.Event.ReceivedAt)
		mu.Lock()
		delays = append(delays, d)
		mu.Unlock()
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()
	w, err := NewWebhook(WebhookOptions{URL: rcv.URL, Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}})
	if err != nil {
		b.Fatal(err)
	}
	m, err := New(Options{Store: st}, []SinkConfig{{Name: "app", Kind: "webhook", Sink: w}})
	if err != nil {
		b.Fatal(err)
	}
	applied, err := st.Applied()
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for range applied {
			m.Wake()
		}
	}()
	if err := m.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer m.Stop()

	total := max(b.N, 300)
	if rate > 0 {
		total = min(total, 5*rate) // a few seconds
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for c := 0; c < 64; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(3)) - 3
				if i >= total {
					return
				}
				if rate > 0 {
					time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))))
				}
				u := uuid.Must(uuid.NewUUID()).String()
				for seq, status := range []string{"queued", "sent", "delivered"} {
					ev := storage.Event{
						MessageUUID: u,
						Status:      status,
						Sequence:    int64(seq + 1),
						Source:      storage.SourceCallback,
						Payload: map[string]string{"MessageUUID": u, "Status": status, "Sequence": strconv.Itoa(seq + 1),
							"To": "447700900123", "From": "14155550100", "Units": "1", "TotalRate": "0.00450"},
						Details: storage.Details{To: "447700900123", From: "14155550100", Type: "sms", Units: 1},
					}
					if _, err := st.Apply(context.Background(), ev); err != nil {
						b.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	want := int64((total + 2) / 3 * 3) // each claim of 3 below total stored 3 events
	for got.Load() < want {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	mu.Lock()
	slices.Sort(delays)
	p50, p99 := delays[len(delays)/2], delays[len(delays)*99/100]
	mu.Unlock()
	b.ReportMetric(float64(got.Load())/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50_delay_ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99_delay_ms")
}
