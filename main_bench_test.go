package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"plivo-dlr/storage"
)

// fillStore writes n delivered messages into a new store at path through the
// real Apply path (fsync off: this only builds the fixture).
func fillStore(tb testing.TB, path string, n int) {
	tb.Helper()
	store, err := storage.Open(path, storage.Options{NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	defer store.Close()
	var next atomic.Int64
	var wg sync.WaitGroup
	base := time.Now().Add(-24 * time.Hour)
	for w := 0; w < 128; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				q := base.Add(time.Duration(i) * time.Millisecond)
				d := q.Add(3 * time.Second)
				ev := storage.Event{
					MessageUUID: fmt.Sprintf("%08x-2f61-41ef-a3d5-%012x", uint32(i*2654435761), i),
					Status:      "delivered",
					Source:      storage.SourceCallback,
					Sequence:    3,
					ReceivedAt:  d,
					Payload:     map[string]string{"Status": "delivered", "To": "447700900123", "From": "14155550100", "Units": "1"},
					Details: storage.Details{
						From:               "14155550100",
						To:                 fmt.Sprintf("4477009%05d", i%100000),
						Type:               "sms",
						Units:              1,
						TotalRate:          "0.00450",
						TotalAmount:        "0.00450",
						MCC:                "234",
						MNC:                "10",
						QueuedTime:         &q,
						DeliveryReportTime: &d,
					},
				}
				ev.Payload["MessageUUID"] = ev.MessageUUID
				if _, err := store.Apply(context.Background(), ev); err != nil {
					tb.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// rssAnonKB reads RssAnon (resident memory outside mapped files: the heap,
// not the bbolt mmap) of process pid.
func rssAnonKB(tb testing.TB, pid int) int {
	tb.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "RssAnon:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				tb.Fatal(err)
			}
			return kb
		}
	}
	tb.Fatal("no RssAnon in /proc status")
	return 0
}

// BenchmarkServerLargeStore starts the real binary on a store of many
// messages (100,000; 1,000,000 with PLIVO_DLR_BENCH_LARGE=1), ingests signed
// callbacks, lists the newest 100 through the API b.N times, and reports the
// list latency and the process's RssAnon.
//
//	PLIVO_DLR_BENCH_LARGE=1 go test -run '^$' -bench BenchmarkServerLargeStore -benchtime 200x .
func BenchmarkServerLargeStore(b *testing.B) {
	n := 100_000
	if os.Getenv("PLIVO_DLR_BENCH_LARGE") == "1" {
		n = 1_000_000
	}
	dataDir := b.TempDir()
	start := time.Now()
	fillStore(b, filepath.Join(dataDir, "plivo-dlr.db"), n)
	b.Logf("filled %d messages in %s", n, time.Since(start).Round(time.Second))

	p := startBinary(b, writeConfig(b, dataDir))
	client := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < 3000; i++ {
		uuid := fmt.Sprintf("d0000000-0000-4000-8000-%012d", i/3)
		status := []string{"queued", "sent", "delivered"}[i%3]
		if code, body := p.send(b, client, signedForm(b, statusFields(uuid, status, i%3+1), fmt.Sprintf("%020d", i+1))); code != 200 {
			b.Fatalf("callback: %d %s", code, body)
		}
	}
	var list struct {
		Messages []storage.Message `json:"messages"`
	}
	b.ResetTimer()
	for b.Loop() {
		if code := p.getJSON(b, "/api/messages?limit=100", testAPIToken, &list); code != 200 || len(list.Messages) != 100 {
			b.Fatalf("list: code %d, %d messages", code, len(list.Messages))
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(rssAnonKB(b, p.cmd.Process.Pid))/1024, "RssAnon_MB")
	b.ReportMetric(float64(n), "messages")
}
