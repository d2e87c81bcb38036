package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"plivo-dlr/app/forward"
)

const testWebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// hookReceiver is the team's application in these tests: a real HTTP server
// on loopback verifying every delivery with the Standard Webhooks library.
type hookReceiver struct {
	wh       *standardwebhooks.Webhook
	ln       net.Listener
	srv      *http.Server
	failPath atomic.Bool // /fail answers 500 while set
	delay    atomic.Int64
	badSig   atomic.Int64

	mu   sync.Mutex
	got  []forward.Payload
	path map[string]string // id → path it arrived on
	ids  map[string]int
}

func newHookReceiver(t *testing.T) *hookReceiver {
	wh, err := standardwebhooks.NewWebhook(testWebhookSecret)
	if err != nil {
		t.Fatal(err)
	}
	r := &hookReceiver{wh: wh, ids: map[string]int{}, path: map[string]string{}}
	r.failPath.Store(true)
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	return r
}

// listen starts serving on addr (the receiver is "down" until then).
func (r *hookReceiver) listen(t *testing.T, addr string) {
	t.Helper()
	var err error
	for i := 0; i < 50; i++ {
		if r.ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.srv.Serve(r.ln) }()
	t.Cleanup(func() { _ = r.srv.Close() })
}

func (r *hookReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	if err := r.wh.Verify(body, req.Header); err != nil {
		r.badSig.Add(1)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if req.URL.Path == "/fail" && r.failPath.Load() {
		http.Error(w, "failing on purpose", http.StatusInternalServerError)
		return
	}
	if d := r.delay.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	var p forward.Payload
	if err := json.Unmarshal(body, &p); err != nil || p.Data.ID != req.Header.Get("webhook-id") {
		http.Error(w, "bad payload", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.got = append(r.got, p)
	r.ids[p.Data.ID]++
	r.path[p.Data.ID] = req.URL.Path
	r.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// count returns the distinct ids received on path.
func (r *hookReceiver) count(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, p := range r.path {
		if p == path {
			n++
		}
	}
	return n
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// ingest sends the queued, sent and delivered callbacks of n messages from
// workers goroutines (each message's callbacks in order, by one worker) and
// returns each message's uuid and the latency of every answer, all 200.
func ingest(t *testing.T, p *proc, n, workers int, nonce *atomic.Uint64) ([]string, []time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	uuids := make([]string, n)
	for i := range uuids {
		uuids[i] = uuid.Must(uuid.NewUUID()).String()
	}
	var (
		mu   sync.Mutex
		lats []time.Duration
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				for seq, status := range []string{"queued", "sent", "delivered"} {
					cb := signedForm(t, statusFields(uuids[i], status, seq+1), fmt.Sprintf("%020d", nonce.Add(1)))
					start := time.Now()
					code, body := p.send(t, client, cb)
					d := time.Since(start)
					if code != 200 {
						t.Errorf("callback answered %d: %s", code, body)
					}
					mu.Lock()
					lats = append(lats, d)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return uuids, lats
}

func p99(lats []time.Duration) time.Duration {
	s := slices.Clone(lats)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)*99/100]
}

func forwardConfig(t *testing.T, dataDir, hookAddr string) string {
	t.Helper()
	path := writeConfig(t, dataDir)
	extra := fmt.Sprintf(`
[[forward.webhooks]]
name = "app"
url = "http://%[1]s/hooks"
secrets = [%[2]q]
concurrency = 4

[[forward.webhooks]]
name = "flaky"
url = "http://%[1]s/fail"
secrets = [%[2]q]
statuses = ["delivered"]
max_age = "3s"
`, hookAddr, testWebhookSecret)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(extra); err != nil {
		t.Fatal(err)
	}
	return path
}

type forwardStatusBody struct {
	Sinks []forward.SinkStatus `json:"sinks"`
}

func sinkStatus(t *testing.T, p *proc, name string) forward.SinkStatus {
	t.Helper()
	var st forwardStatusBody
	if code := p.getJSON(t, "/api/forward", testAPIToken, &st); code != 200 {
		t.Fatalf("GET /api/forward: %d", code)
	}
	for _, s := range st.Sinks {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no sink %s in %+v", name, st)
	return forward.SinkStatus{}
}

// TestBinaryForwarding drives the real binary with a webhook receiver that
// is down, then up; kills the binary with SIGKILL mid-forwarding and starts
// it again; and lets a second sink fail past max_age, then retries its dead
// letters through the CLI.
func TestBinaryForwarding(t *testing.T) {
	dataDir := t.TempDir()
	hookAddr := freeAddr(t)
	cfgPath := forwardConfig(t, dataDir, hookAddr)
	p := startBinary(t, cfgPath)
	var nonce atomic.Uint64

	// 1. The receiver is down (nothing listens): ingestion is unaffected.
	_, lats := ingest(t, p, 100, 8, &nonce)
	t.Logf("receiver down: %d callbacks, p99 %s", len(lats), p99(lats))
	// The sink fails once it has tried the first event, which it reads
	// after the commit holding it (up to the journal's commit interval).
	if !waitForDeadline(10*time.Second, func() bool { s := sinkStatus(t, p, "app"); return s.Lag == 300 && s.Failing }) {
		t.Fatalf("while the receiver is down: %+v", sinkStatus(t, p, "app"))
	}
	rcv := newHookReceiver(t)
	rcv.listen(t, hookAddr)
	if !waitForDeadline(30*time.Second, func() bool { return rcv.count("/hooks") == 300 }) {
		t.Fatalf("after the receiver came up: %d of 300 delivered; %+v", rcv.count("/hooks"), sinkStatus(t, p, "app"))
	}

	// 2. SIGKILL while forwarding (a slow receiver keeps deliveries in flight).
	rcv.delay.Store(int64(3 * time.Millisecond))
	_, lats2 := ingest(t, p, 300, 8, &nonce)
	t.Logf("receiver up and slow: %d callbacks, p99 %s", len(lats2), p99(lats2))
	if !waitForDeadline(20*time.Second, func() bool { return rcv.count("/hooks") >= 500 }) {
		t.Fatalf("forwarding stalled at %d", rcv.count("/hooks"))
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	p.done <- nil
	before := rcv.count("/hooks")
	rcv.delay.Store(0)
	p = startBinary(t, cfgPath)
	if !waitForDeadline(30*time.Second, func() bool { return rcv.count("/hooks") == 1200 }) {
		t.Fatalf("after restart: %d of 1200 delivered", rcv.count("/hooks"))
	}
	rcv.mu.Lock()
	got := slices.Clone(rcv.got)
	redelivered := 0
	for _, n := range rcv.ids {
		if n > 1 {
			redelivered++
		}
	}
	rcv.mu.Unlock()
	t.Logf("killed with %d of 1200 delivered; %d events redelivered after restart (same webhook-id)", before, redelivered)
	if rcv.badSig.Load() != 0 {
		t.Fatalf("%d deliveries failed the Standard Webhooks verification", rcv.badSig.Load())
	}
	// Per-message order: every message's first deliveries are in cursor
	// order (queued, sent, delivered).
	order := map[string][]string{}
	seen := map[string]bool{}
	for _, pl := range got {
		if pl.Data.Event.Status == "" || seen[pl.Data.ID] {
			continue
		}
		seen[pl.Data.ID] = true
		ev := pl.Data.Event
		if id := forward.EventID(&ev); id != pl.Data.ID {
			t.Fatalf("id %s, recomputed from the payload %s", pl.Data.ID, id)
		}
		if rcv.path[pl.Data.ID] == "/hooks" {
			order[ev.MessageUUID] = append(order[ev.MessageUUID], ev.Status)
		}
	}
	for u, statuses := range order {
		if strings.Join(statuses, ",") != "queued,sent,delivered" {
			t.Fatalf("message %s delivered as %v", u, statuses)
		}
	}
	// The cursor is saved just after the receiver confirmed, so the
	// status may trail the receiver by a moment.
	if !waitForDeadline(10*time.Second, func() bool {
		s := sinkStatus(t, p, "app")
		return s.Lag == 0 && !s.Failing && s.LastSuccess != nil
	}) {
		t.Fatalf("app sink after catching up: %+v", sinkStatus(t, p, "app"))
	}

	// 3. The flaky sink failed past its max_age (3s): dead letters.
	if !waitForDeadline(30*time.Second, func() bool { return sinkStatus(t, p, "flaky").Dead == 400 }) {
		t.Fatalf("flaky sink: %+v", sinkStatus(t, p, "flaky"))
	}
	var dead struct {
		Events     []forward.DeadLetter `json:"events"`
		NextCursor string               `json:"next_cursor"`
	}
	if code := p.getJSON(t, "/api/forward/flaky/dead?limit=10", testAPIToken, &dead); code != 200 || len(dead.Events) != 10 || dead.NextCursor == "" {
		t.Fatalf("dead list: %d %+v", code, dead)
	}
	if d := dead.Events[0]; d.Type != forward.TypeStatus || !strings.HasPrefix(d.ID, "evt_") || d.LastError == "" {
		t.Fatalf("dead letter %+v", d)
	}
	rcv.failPath.Store(false)
	server := "--server=http://" + p.addr
	code, out, errOut := cli(t, nil, "forward", "retry", "flaky", "-config", cfgPath, server)
	if code != 0 {
		t.Fatalf("forward retry: %d %s %s", code, out, errOut)
	}
	if !waitForDeadline(30*time.Second, func() bool { return rcv.count("/fail") == 400 }) {
		t.Fatalf("retried dead letters: %d of 400 delivered", rcv.count("/fail"))
	}
	if !waitForDeadline(10*time.Second, func() bool { return sinkStatus(t, p, "flaky").Dead == 0 }) {
		t.Fatalf("dead letters left after retry: %+v", sinkStatus(t, p, "flaky"))
	}
	code, out, errOut = cli(t, nil, "forward", "status", "-config", cfgPath, server)
	if code != 0 || !strings.Contains(out, "flaky") || !strings.Contains(out, "app") {
		t.Fatalf("forward status: %d %q %s", code, out, errOut)
	}
	t.Logf("forward status:\n%s", out)
	if code, _, errOut := cli(t, nil, "forward", "replay", "nope", "--since", "0", "-config", cfgPath, server); code != 1 || !strings.Contains(errOut, "no forwarding sink") {
		t.Fatalf("replay of an unknown sink: %d %s", code, errOut)
	}
	var metrics string
	_, metrics = p.rawGet(t, "/metrics")
	for _, want := range []string{`plivo_dlr_forward_deliveries_total{result="dead",sink="flaky"}`, `plivo_dlr_forward_lag_events{sink="app"} 0`, `plivo_dlr_forward_oldest_pending_seconds{sink="flaky"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	p.stop(t)
}
