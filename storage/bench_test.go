package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
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

// benchUUID returns the UUID of message number msg. Plivo's are version-1
// UUIDs; messages numbered close together get timestamps 1 ms apart, as if
// sent at 1,000 messages per second. randomUUIDs gives version-4-like ones
// in random order instead.
func benchUUID(msg int, randomUUIDs bool) string {
	if randomUUIDs {
		h := uint64(msg+1) * 0x9E3779B97F4A7C15
		return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", uint32(h>>32), uint16(h>>16), uint16(h)&0xfff, msg&0xfff, msg)
	}
	// 100 ns ticks since 1582, starting in 2025.
	t := uint64(0x1f0000000000000) + uint64(msg)*10_000
	return fmt.Sprintf("%08x-%04x-1%03x-9c4a-0242ac%06x", uint32(t), uint16(t>>32), uint16(t>>48)&0xfff, msg&0xffffff)
}

// randomNonce returns a Plivo-like signature nonce: a random 20-digit
// string. Nonces built from counters would sort in arrival order and make
// every nonce insert an append, which real traffic never does.
func randomNonce(r *rand.Rand) string {
	var b [20]byte
	for i := range b {
		b[i] = byte('0' + r.IntN(10))
	}
	return string(b[:])
}

// benchEvent builds a callback shaped like Plivo's (about 16 fields).
func benchEvent(msg int, randomUUIDs bool, status string, now time.Time) Event {
	uuid := benchUUID(msg, randomUUIDs)
	ts := now.Format("2006-01-02 15:04:05.000000")
	p := map[string]string{
		"MessageUUID": uuid, "Status": status, "From": "14155550199", "To": fmt.Sprintf("1415%07d", msg%10000000),
		"MessageTime": ts, "QueuedTime": ts, "SentTime": ts, "DeliveryReportTime": ts,
		"ErrorCode": "000", "MessageType": "sms", "Units": "1", "TotalRate": "0.00500", "TotalAmount": "0.00500",
		"MCC": "310", "MNC": "260", "PartInfo": "1 of 1",
	}
	t := now
	return Event{
		MessageUUID: uuid,
		Status:      status,
		Source:      SourceCallback,
		Payload:     p,
		Details: Details{
			From:               p["From"],
			To:                 p["To"],
			Type:               "sms",
			Units:              1,
			TotalRate:          "0.00500",
			TotalAmount:        "0.00500",
			MCC:                "310",
			MNC:                "260",
			PartInfo:           "1 of 1",
			QueuedTime:         &t,
			DeliveryReportTime: &t,
		},
	}
}

// BenchmarkApplyParallel measures durable (fsync'd) events per second with
// many concurrent callers, each event carrying a fresh random 20-digit
// nonce. shape=v1x3 is Plivo's traffic: version-1 UUIDs, each message
// queued, sent and delivered by one caller in turn. shape=v4x1 is the worst case: every event a
// new message under a random version-4 UUID. The prefilled variants start
// from a store already holding benchListSize() messages.
//
//	go test -run '^$' -bench 'ApplyParallel' -benchtime 20000x ./storage
func BenchmarkApplyParallel(b *testing.B) {
	for _, shape := range []string{"v1x3", "v4x1"} {
		for _, prefill := range []int{0, benchListSize()} {
			for _, writers := range []int{64, 256} {
				b.Run(fmt.Sprintf("shape=%s/prefilled=%d/writers=%d", shape, prefill, writers), func(b *testing.B) {
					benchApplyParallel(b, shape == "v4x1", prefill, writers)
				})
			}
		}
	}
}

func benchApplyParallel(b *testing.B, worstCase bool, prefill, writers int) {
	path := filepath.Join(b.TempDir(), "dlr.db")
	if prefill > 0 {
		data, err := os.ReadFile(benchListStore(b, prefill, worstCase))
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	s := mustOpenPath(b, path, Options{})
	now := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(now.UnixNano()), uint64(w)))
			// Each writer takes the next message and sends its callbacks
			// in order, as Plivo does: a message's queued, sent and
			// delivered arrive one after another from one sender, while
			// the other writers' messages interleave, so consecutive
			// batches touch messages spread over the recent key space.
			per := 3
			if worstCase {
				per = 1
			}
			for {
				first := int(next.Add(int64(per)) - int64(per))
				if first >= b.N {
					return
				}
				for i := first; i < min(first+per, b.N); i++ {
					var e Event
					if worstCase {
						e = benchEvent(prefill+i, true, StatusDelivered, now)
					} else {
						e = benchEvent(prefill+first/3, false, benchStatuses[i-first], now)
					}
					nonce := Nonce{Value: randomNonce(rng), ExpiresAt: now.Add(time.Hour)}
					if _, err := s.Apply(context.Background(), e, nonce); err != nil {
						b.Error(err)
						return
					}
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
}

// benchListStore returns the path of a store holding n messages (one event
// each), built once with NoSync through the normal Apply path.
var benchStores sync.Map // name → path

func benchListStore(b *testing.B, n int, randomUUIDs bool) string {
	b.Helper()
	name := fmt.Sprintf("list-%d-%v.db", n, randomUUIDs)
	if p, ok := benchStores.Load(name); ok {
		return p.(string)
	}
	if benchDir == "" {
		d, err := os.MkdirTemp("", "plivo-dlr-bench-")
		if err != nil {
			b.Fatal(err)
		}
		benchDir = d
	}
	path := filepath.Join(benchDir, name)
	clock := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(n), uint64(w)))
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				e := benchEvent(i, randomUUIDs, benchStatuses[i%3], clock)
				e.ReceivedAt = clock.Add(time.Duration(i) * time.Second)
				// Far-future expiry: the nonces stay in the window, as they
				// would for a store that took this traffic recently.
				nonce := Nonce{Value: randomNonce(rng), ExpiresAt: time.Now().Add(24 * time.Hour)}
				if _, err := s.Apply(context.Background(), e, nonce); err != nil {
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
	benchStores.Store(name, path)
	return path
}

// benchListSize is the number of messages of the large benchmark store:
// 100,000, or 1,000,000 with PLIVO_DLR_BENCH_LARGE=1.
func benchListSize() int {
	if os.Getenv("PLIVO_DLR_BENCH_LARGE") == "1" {
		return 1_000_000
	}
	return 100_000
}

// BenchmarkListNewest100 measures one page of 100 newest messages over a
// large store, unfiltered and with filters.
func BenchmarkListNewest100(b *testing.B) {
	n := benchListSize()
	path := benchListStore(b, n, false)
	s, err := Open(path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		name     string
		f        ListFilter
		wantNone bool
	}{
		{"all", ListFilter{Limit: 100}, false},
		{"status=delivered", ListFilter{Limit: 100, Status: StatusDelivered}, false},
		// Matches the newest 1000 messages' To numbers.
		{"phone", ListFilter{Limit: 100, Query: fmt.Sprintf("415%04d", (n-1)/1000)}, false},
		// Matches only old messages: the worst case, bounded by maxListScan.
		{"phone-rare", ListFilter{Limit: 100, Query: "41500001"}, n > maxListScan},
	} {
		b.Run(fmt.Sprintf("n=%d/%s", n, tc.name), func(b *testing.B) {
			for b.Loop() {
				msgs, _, err := s.ListMessages(tc.f)
				if err != nil {
					b.Fatal(err)
				}
				if (len(msgs) == 0) != tc.wantNone {
					b.Fatalf("%d messages, want none: %v", len(msgs), tc.wantNone)
				}
			}
		})
	}
}
