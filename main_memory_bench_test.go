package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"plivo-dlr/app/protocol"
	"plivo-dlr/internal/testsupport"
	"plivo-dlr/storage"
)

// Memory of the real binary on a large store (issue 12's target: RssAnon
// under 60 MB after 1,000,000 stored messages with 1,000,000 nonces in the
// replay window).
//
// The fixture is what a server that has run for about three days stores:
// memMessages Plivo-shaped messages (version-1 MessageUUIDs, queued → sent
// → delivered, three callbacks each, every callback with a fresh random
// 20-digit nonce), spread evenly over the last memSpan. With the default
// plivo.nonce_ttl of 24 h, the nonces of the last day are still in the
// window: 1,000,000+ of the 3,000,000 at full size. The older ones expired
// and were purged, as the server's purge loop would have done.

const (
	memSpan     = 68 * time.Hour // 24 h of 68 h: 35% of the nonces unexpired
	memNonceTTL = 24 * time.Hour // the default plivo.nonce_ttl
)

// memMessages is the fixture size: 20,000 messages by default, 1,000,000
// with PLIVO_DLR_BENCH_LARGE=1.
func memMessages() int {
	if os.Getenv("PLIVO_DLR_BENCH_LARGE") == "1" {
		return 1_000_000
	}
	return 20_000
}

var memFixture struct {
	once sync.Once
	dir  string
	err  error
}

// memDataDir fills a data dir once per test binary run. It lives beside the
// built binary, whose directory TestMain removes.
func memDataDir(b *testing.B) string {
	b.Helper()
	bin := buildBinary(b)
	memFixture.once.Do(func() {
		dir := filepath.Join(filepath.Dir(bin), "memdata")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			memFixture.err = err
			return
		}
		start := time.Now()
		live, err := fillPlivoShaped(filepath.Join(dir, "plivo-dlr.db"), memMessages(), start)
		if err != nil {
			memFixture.err = err
			return
		}
		b.Logf("filled %d messages (%d events, %d nonces unexpired) in %s", memMessages(), 3*memMessages(), live, time.Since(start).Round(time.Second))
		memFixture.dir = dir
	})
	if memFixture.err != nil {
		b.Fatal(memFixture.err)
	}
	return memFixture.dir
}

// v1UUIDAt returns a version-1 UUID for time t, shaped like Plivo's (100 ns
// ticks since 1582-10-15 in the time fields, variant bits set).
func v1UUIDAt(t time.Time, node uint64) string {
	const gregorianOffset = 0x01B21DD213814000 // 100 ns ticks from 1582-10-15 to 1970-01-01
	ticks := uint64(t.UnixNano()/100) + gregorianOffset
	return fmt.Sprintf("%08x-%04x-1%03x-%04x-%012x", uint32(ticks), uint16(ticks>>32), uint16(ticks>>48)&0xfff,
		uint16(node>>48)&0x3fff|0x8000, node&0xffffffffffff)
}

// plivoForm is the form Plivo posts for one status of a message queued at q.
func plivoForm(uuid, status string, seq int, q time.Time) url.Values {
	const layout = "2006-01-02 15:04:05.000000"
	form := url.Values{
		"MessageUUID": {uuid}, "Status": {status}, "Sequence": {strconv.Itoa(seq)},
		"To": {fmt.Sprintf("4477009%05d", q.UnixNano()/1e6%100000)}, "From": {"14155550100"}, "Type": {"sms"},
		"Units": {"1"}, "TotalRate": {"0.00450"}, "TotalAmount": {"0.00450"},
		"MCC": {"234"}, "MNC": {"10"}, "ParentMessageUUID": {uuid}, "PartInfo": {"1 of 1"},
		"ErrorCode": {"000"}, "MessageTime": {q.UTC().Format(layout)}, "QueuedTime": {q.UTC().Format(layout)},
	}
	if status != "queued" {
		form.Set("SentTime", q.Add(time.Second).UTC().Format(layout))
	}
	if status == "delivered" {
		form.Set("DeliveryReportTime", q.Add(4*time.Second).UTC().Format(layout))
	}
	return form
}

// plivoNonce is a random 20-digit signature nonce, as Plivo sends.
func plivoNonce(r *rand.Rand) string {
	var b [20]byte
	for i := range b {
		b[i] = byte('0' + r.IntN(10))
	}
	return string(b[:])
}

// fillPlivoShaped writes n messages through storage.Apply (fsync off: a
// fixture), each event built from its form by the same parser the callback
// handler uses, with the nonce the handler would record (expiring nonce_ttl
// after receipt; the request sum here is an FNV hash of the body, standing
// for the handler's hash of body and headers). Message i is queued at
// now - memSpan + i·memSpan/n. Expired nonces are then purged. It returns
// the number of nonces still unexpired at now.
func fillPlivoShaped(path string, n int, now time.Time) (int64, error) {
	store, err := storage.Open(path, storage.Options{NoSync: true})
	if err != nil {
		return 0, err
	}
	defer store.Close()
	step := memSpan / time.Duration(n)
	first := now.Add(-memSpan)
	var next, live atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(now.UnixNano()), uint64(w)))
			for firstErr.Load() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				q := first.Add(time.Duration(i) * step)
				uuid := v1UUIDAt(q, rng.Uint64())
				for s, status := range []string{"queued", "sent", "delivered"} {
					body := plivoForm(uuid, status, s+1, q).Encode()
					params, err := protocol.CallbackParams(http.MethodPost, "application/x-www-form-urlencoded", []byte(body), "")
					if err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					ev, _, err := protocol.ParseCallbackNotes(params)
					if err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					ev.ReceivedAt = q.Add([]time.Duration{100 * time.Millisecond, 1200 * time.Millisecond, 4200 * time.Millisecond}[s]).UTC()
					h := fnv.New64a()
					h.Write([]byte(body))
					exp := ev.ReceivedAt.Add(memNonceTTL)
					if exp.After(now) {
						live.Add(1)
					}
					if _, err := store.Apply(context.Background(), ev, storage.Nonce{Value: plivoNonce(rng), ExpiresAt: exp, Sum: h.Sum64() | 1}); err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	if _, err := store.PurgeNonces(now, 0); err != nil {
		return 0, err
	}
	return live.Load(), nil
}

// procStatus reads RssAnon (heap and stacks: resident memory outside mapped
// files, so not the bbolt mmap), VmRSS and VmHWM (peak RSS) of process pid.
func procStatus(tb testing.TB, pid int) map[string]int {
	tb.Helper()
	out, err := procMemKB(pid, "RssAnon", "VmRSS", "VmHWM")
	if err != nil || len(out) != 3 {
		tb.Fatalf("/proc/%d/status: %v %v, want RssAnon, VmRSS, VmHWM", pid, out, err)
	}
	return out
}

// goMetric reads one unlabelled sample from the server's /metrics.
func goMetric(tb testing.TB, addr, name string) float64 {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testAPIToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	tb.Fatalf("GET /metrics (status %d): no %s", resp.StatusCode, name)
	return 0
}

// startOnDataDir starts the binary on dataDir with the default nonce_ttl and
// returns it once /readyz answers 200, with the time that took (the store's
// Open: freelist rebuild and the nonce index loaded from the log).
func startOnDataDir(b *testing.B, dataDir string, env ...string) (*proc, time.Duration) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := fmt.Sprintf(`[server]
listen = %q
public_url = %q
data_dir = %q

[plivo]
auth_id = "MAXXXXXXXXXXXXXXXXXX"
auth_token = %q
nonce_ttl = %q

[dashboard]
api_tokens = [%q]

[reconcile]
enabled = false
`, addr, testPublicURL, dataDir, testAuthToken, memNonceTTL.String(), testAPIToken)
	cfgPath := filepath.Join(b.TempDir(), "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	p := &proc{addr: addr, stderr: &testsupport.LockedBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(buildBinary(b), "serve", "-config", cfgPath)
	p.cmd.Stderr, p.cmd.Stdout = p.stderr, p.stderr
	p.cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	b.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	client := &http.Client{Timeout: time.Second}
	for deadline := start.Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-p.done:
			b.Fatalf("binary exited before ready: %v\n%s", err, p.stderr.String())
		default:
		}
		resp, err := client.Get("http://" + addr + "/readyz")
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return p, time.Since(start)
		}
	}
	b.Fatalf("no /readyz 200 within 5 min\n%s", p.stderr.String())
	return nil, 0
}

// BenchmarkServerMemory starts the real binary on the Plivo-shaped fixture
// (memMessages), sends b.N signed Plivo-shaped callbacks over 16 keep-alive
// loopback connections (new messages, three callbacks each, fresh random
// nonces), waits 5 s, and reports the process's RssAnon, VmRSS and VmHWM,
// the Go heap as the server's /metrics reports it, and the time from start
// to the first /readyz 200. It runs the server as shipped (limit=budget: the
// memory limit app.TuneGC sets) and, as the baseline, with GOMEMLIMIT=off
// (GOGC 400 alone, as before app.MemoryBudget), on the same data dir.
//
//	PLIVO_DLR_BENCH_LARGE=1 go test -run '^$' -bench BenchmarkServerMemory -benchtime 30000x -timeout 60m .
func BenchmarkServerMemory(b *testing.B) {
	for _, tc := range []struct {
		name string
		env  []string
	}{{"limit=budget", nil}, {"limit=off", []string{"GOMEMLIMIT=off"}}} {
		b.Run(tc.name, func(b *testing.B) { benchServerMemory(b, tc.env) })
	}
}

func benchServerMemory(b *testing.B, env []string) {
	dataDir := memDataDir(b)
	p, openTime := startOnDataDir(b, dataDir, env...)
	idle := procStatus(b, p.cmd.Process.Pid)

	var next, failed atomic.Int64
	var firstFail atomic.Value
	clientSeed := uint64(time.Now().UnixNano())
	b.ResetTimer()
	var wg sync.WaitGroup
	for c := 0; c < 16; c++ {
		wg.Go(func() {
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			rng := rand.New(rand.NewPCG(clientSeed, uint64(c)))
			for {
				i := next.Add(3) - 3
				if i >= int64(b.N) {
					return
				}
				q := time.Now()
				uuid := v1UUIDAt(q, rng.Uint64())
				for s, status := range []string{"queued", "sent", "delivered"} {
					if i+int64(s) >= int64(b.N) {
						return
					}
					form := plivoForm(uuid, status, s+1, q)
					code, body := p.send(b, client, signedForm(b, form, plivoNonce(rng)))
					if code != http.StatusOK {
						failed.Add(1)
						firstFail.CompareAndSwap(nil, fmt.Sprintf("%d %s", code, body))
					}
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d callbacks not answered 200, first: %v", n, firstFail.Load())
	}
	time.Sleep(5 * time.Second)
	mem := procStatus(b, p.cmd.Process.Pid)
	b.ReportMetric(float64(mem["RssAnon"])/1024, "RssAnon_MB")
	b.ReportMetric(float64(mem["VmRSS"])/1024, "VmRSS_MB")
	b.ReportMetric(float64(mem["VmHWM"])/1024, "VmHWM_MB")
	b.ReportMetric(float64(idle["RssAnon"])/1024, "RssAnon_open_MB")
	b.ReportMetric(goMetric(b, p.addr, "go_memstats_heap_inuse_bytes")/(1<<20), "heap_inuse_MB")
	b.ReportMetric(goMetric(b, p.addr, "go_memstats_next_gc_bytes")/(1<<20), "next_gc_MB")
	b.ReportMetric(openTime.Seconds(), "open_s")
	b.ReportMetric(float64(memMessages()), "messages")
}
