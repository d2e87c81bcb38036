package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/google/uuid"
	"golang.org/x/sys/unix"
)

// TestAttackTable runs the attacks of issue 9 against the real binary, one
// fresh process each, and prints a markdown table: the server's peak RSS
// (VmHWM, reset when the attack starts) and RSS after, the bytes it logged
// (at log level info), the answers the attacker got and the answers valid
// callbacks sent meanwhile got, whether the process survived, and whether
// every acknowledged callback reads back through the API.
//
// It takes a few minutes and opens thousands of loopback connections, so it
// is gated:
//
//	PLIVO_DLR_ATTACKS=1 go test -count=1 -run '^TestAttackTable$' -v -timeout 30m .
//
// Everything stays on 127.0.0.0/8: attackers dial from 127.0.0.2 and up
// (one address per simulated IP), valid callbacks from 127.0.0.1. Every
// loop is bounded. PLIVO_DLR_ATTACKS=name,name runs a subset.
func TestAttackTable(t *testing.T) {
	sel := os.Getenv("PLIVO_DLR_ATTACKS")
	if sel == "" {
		t.Skip("attack harness: set PLIVO_DLR_ATTACKS=1 (or a comma-separated list of attack names) to run it")
	}
	raiseNoFile(t)
	var rows []attackRow
	for _, a := range attacks {
		if sel != "1" && !strings.Contains(","+sel+",", ","+a.name+",") {
			continue
		}
		t.Run(a.name, func(t *testing.T) {
			tg := startTarget(t, a.prlimit)
			row := attackRow{name: a.name}
			tg.resetPeak()
			a.run(t, tg, &row)
			tg.finish(t, &row)
			rows = append(rows, row)
			t.Logf("%s", row.markdown())
		})
	}
	var b strings.Builder
	b.WriteString("\n| attack | figure | peak RSS | RSS after | log bytes | attacker's answers | valid callbacks' answers | survived | acknowledged readable |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		b.WriteString(r.markdown() + "\n")
	}
	fmt.Print(b.String())
	t.Log(b.String())
}

// attack is one row of the table.
type attack struct {
	name string
	// prlimit, if set, is the RLIMIT_NOFILE the process starts with.
	prlimit int
	run     func(t *testing.T, tg *target, row *attackRow)
}

type attackRow struct {
	name     string
	figure   string
	peakKB   int64
	rssKB    int64
	logBytes int64
	attacker *codeCount
	valid    *codeCount
	survived bool
	acked    int
	readable int
}

func (r attackRow) markdown() string {
	surv := "yes"
	if !r.survived {
		surv = "**no**"
	}
	return fmt.Sprintf("| %s | %s | %d MB | %d MB | %s | %s | %s | %s | %d / %d |",
		r.name, r.figure, r.peakKB/1024, r.rssKB/1024, humanBytes(r.logBytes), r.attacker, r.valid, surv, r.readable, r.acked)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// codeCount counts answers by status; 0 is "no answer" (connection closed
// or timed out without a status line).
type codeCount struct {
	mu sync.Mutex
	m  map[int]int
}

func newCodeCount() *codeCount { return &codeCount{m: map[int]int{}} }

func (c *codeCount) add(code int) {
	c.mu.Lock()
	c.m[code]++
	c.mu.Unlock()
}

func (c *codeCount) get(code int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[code]
}

func (c *codeCount) String() string {
	if c == nil {
		return "–"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var codes []int
	for k := range c.m {
		codes = append(codes, k)
	}
	if len(codes) == 0 {
		return "–"
	}
	sort.Ints(codes)
	var parts []string
	for _, k := range codes {
		name := strconv.Itoa(k)
		if k == 0 {
			name = "none"
		}
		parts = append(parts, fmt.Sprintf("%s×%d", name, c.m[k]))
	}
	return strings.Join(parts, " ")
}

// raiseNoFile lifts this process's open-file limit to its hard limit: the
// attackers' connections are ours too.
func raiseNoFile(t *testing.T) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = lim.Max
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
}

// logCounter counts the bytes the process logs and keeps the first 256 KiB
// (its address line, diagnostics) without holding a flood in memory.
type logCounter struct {
	mu   sync.Mutex
	n    int64
	head bytes.Buffer
}

func (l *logCounter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n += int64(len(p))
	if room := 256<<10 - l.head.Len(); room > 0 {
		l.head.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (l *logCounter) bytes() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func (l *logCounter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.head.String()
}

// target is one running binary under attack.
type target struct {
	p       *proc // for send/getJSON; its stderr is unused
	log     *logCounter
	dir     string
	logAt   int64 // log bytes when the attack started
	valid   *codeCount
	ackMu   sync.Mutex
	acked   []string
	client  *http.Client
	exited  atomic.Bool
	exitErr error
}

func startTarget(t *testing.T, nofile int) *target {
	t.Helper()
	dir := t.TempDir()
	cfgPath := writeConfig(t, dir)
	// Log at info, as in production: debug lines would inflate the figures.
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, bytes.Replace(cfg, []byte(`level = "debug"`), []byte(`level = "info"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"serve", "-config", cfgPath}
	bin := buildBinary(t)
	if nofile > 0 {
		args = append([]string{fmt.Sprintf("--nofile=%d:%d", nofile, nofile), "--", bin}, args...)
		bin = "prlimit"
	}
	tg := &target{log: &logCounter{}, dir: dir, valid: newCodeCount()}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = tg.log, tg.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tg.p = &proc{cmd: cmd, done: make(chan error, 1)}
	go func() {
		err := cmd.Wait()
		tg.exitErr = err
		tg.exited.Store(true)
		tg.p.done <- err
	}()
	t.Cleanup(func() {
		if !tg.exited.Load() {
			_ = cmd.Process.Kill()
			<-tg.p.done
		}
	})
	if !waitForDeadline(20*time.Second, func() bool {
		m := addrRE.FindStringSubmatch(tg.log.String())
		if m != nil {
			tg.p.addr = m[1]
		}
		return m != nil || tg.exited.Load()
	}) || tg.p.addr == "" {
		t.Fatalf("binary did not start:\n%s", tg.log.String())
	}
	tg.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	tg.logAt = tg.log.bytes()
	return tg
}

func (tg *target) pid() int { return tg.p.cmd.Process.Pid }

// resetPeak clears the kernel's peak-RSS mark, so VmHWM is this attack's.
func (tg *target) resetPeak() {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", tg.pid()), []byte("5"), 0)
	tg.logAt = tg.log.bytes()
}

// memKB reads VmHWM and VmRSS from /proc.
func (tg *target) memKB() (hwm, rss int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", tg.pid()))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			switch f[0] {
			case "VmHWM:":
				hwm = n
			case "VmRSS:":
				rss = n
			}
		}
	}
	return hwm, rss
}

func (tg *target) alive() bool {
	if tg.exited.Load() {
		return false
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + tg.p.addr + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// finish fills in the row's process figures, checks every acknowledged
// callback through the API and stops the process.
func (tg *target) finish(t *testing.T, row *attackRow) {
	t.Helper()
	row.peakKB, row.rssKB = tg.memKB()
	row.logBytes = tg.log.bytes() - tg.logAt
	row.survived = tg.alive()
	if row.valid == nil {
		row.valid = tg.valid
	}
	tg.ackMu.Lock()
	acked := append([]string(nil), tg.acked...)
	tg.ackMu.Unlock()
	row.acked = len(acked)
	if row.survived {
		row.readable = tg.countReadable(acked)
	}
	if !row.survived {
		t.Errorf("process did not survive: %v\n%s", tg.exitErr, tail(tg.log.String(), 4000))
	} else if row.readable != row.acked {
		t.Errorf("%d of %d acknowledged callbacks unreadable", row.acked-row.readable, row.acked)
	}
	if !tg.exited.Load() {
		_ = tg.p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-tg.p.done:
		case <-time.After(30 * time.Second):
			_ = tg.p.cmd.Process.Kill()
			<-tg.p.done
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// countReadable GETs each distinct uuid through the API, 8 at a time.
func (tg *target) countReadable(uuids []string) int {
	seen := map[string]bool{}
	var uniq []string
	for _, u := range uuids {
		if !seen[u] {
			seen[u] = true
			uniq = append(uniq, u)
		}
	}
	var ok atomic.Int64
	ch := make(chan string)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 30 * time.Second}
			for u := range ch {
				req, _ := http.NewRequest(http.MethodGet, "http://"+tg.p.addr+"/api/messages/"+u, nil)
				req.Header.Set("Authorization", "Bearer "+testAPIToken)
				resp, err := c.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ok.Add(1)
				}
			}
		}()
	}
	for _, u := range uniq {
		ch <- u
	}
	close(ch)
	wg.Wait()
	// Acknowledgements counted per message: every acknowledged event of a
	// message that reads back counts as readable.
	if int(ok.Load()) == len(uniq) {
		return len(uuids)
	}
	return len(uuids) - (len(uniq) - int(ok.Load()))
}

// callback sends one valid callback (a fresh random nonce) from 127.0.0.1
// and records its answer; it returns the status (0: no answer).
func (tg *target) callback(t testing.TB, c *http.Client, fields url.Values) int {
	cb := signedForm(t, fields, randomNonce())
	req, _ := http.NewRequest(http.MethodPost, "http://"+tg.p.addr+"/plivo/callback", strings.NewReader(cb.body))
	req.Header.Set("Content-Type", cb.ctype)
	for k, v := range cb.headers {
		req.Header.Set(k, v)
	}
	code := 0
	resp, err := c.Do(req)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		code = resp.StatusCode
	}
	if code == http.StatusOK {
		tg.ackMu.Lock()
		tg.acked = append(tg.acked, fields.Get("MessageUUID"))
		tg.ackMu.Unlock()
	}
	return code
}

// latencies collects durations for percentiles.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) { l.mu.Lock(); l.d = append(l.d, d); l.mu.Unlock() }

func (l *latencies) pct(p float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), l.d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func (l *latencies) String() string {
	return fmt.Sprintf("p50 %s / p99 %s", l.pct(0.50).Round(100*time.Microsecond), l.pct(0.99).Round(100*time.Microsecond))
}

// validLoad sends valid callbacks (each message queued, sent, delivered,
// version-1 UUIDs) at about rate per second from workers goroutines until
// stop is closed or max callbacks were sent. Answers go to counts.
func (tg *target) validLoad(t testing.TB, rate, workers, max int, counts *codeCount, lat *latencies, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	var sent atomic.Int64
	interval := time.Duration(float64(time.Second) * float64(workers) / float64(rate))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A connection per callback, as Plivo's many senders make:
			// kept-alive ones would slip past a connection cap.
			c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for sent.Add(3) <= int64(max) {
				u := v1UUIDNoT()
				for i, st := range []string{"queued", "sent", "delivered"} {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					start := time.Now()
					code := tg.callback(t, c, statusFields(u, st, i+1))
					if lat != nil && code == http.StatusOK {
						lat.add(time.Since(start))
					}
					counts.add(code)
				}
			}
		}()
	}
	return &wg
}

var uuidMu sync.Mutex

// v1UUIDNoT is v1UUID for goroutines that must not call t.Fatal.
func v1UUIDNoT() string {
	uuidMu.Lock()
	defer uuidMu.Unlock()
	for range 100 {
		if u, err := newV1(); err == nil {
			return u
		}
	}
	panic("no version-1 UUID")
}

// dialFrom dials the target from a local loopback address 127.0.0.ip.
func dialFrom(addr string, ip int) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, byte(ip/250), byte(2+ip%250))}}
	return d.Dial("tcp", addr)
}

// readStatus reads one HTTP status from c within d; 0 if none came.
func readStatus(c net.Conn, d time.Duration) int {
	_ = c.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// pool runs fn(i) for i in [0, n) on workers goroutines.
func pool(n, workers int, fn func(i int)) {
	ch := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				fn(i)
			}
		}()
	}
	for i := range n {
		ch <- i
	}
	close(ch)
	wg.Wait()
}

var attacks = []attack{
	{name: "fd-exhaustion-1ip", prlimit: 1024, run: func(t *testing.T, tg *target, row *attackRow) {
		fdExhaustion(t, tg, row, 1)
	}},
	{name: "fd-exhaustion-4ip", prlimit: 1024, run: func(t *testing.T, tg *target, row *attackRow) {
		fdExhaustion(t, tg, row, 4)
	}},
	{name: "slowloris", run: slowloris},
	{name: "slow-1MB-bodies-content-length", run: func(t *testing.T, tg *target, row *attackRow) {
		slowBodies(t, tg, row, false)
	}},
	{name: "slow-1MB-bodies-chunked", run: func(t *testing.T, tg *target, row *attackRow) {
		slowBodies(t, tg, row, true)
	}},
	{name: "log-1MiB-usernames", run: func(t *testing.T, tg *target, row *attackRow) {
		loginUsernames(t, tg, row, 1<<20)
	}},
	{name: "log-60KiB-usernames", run: func(t *testing.T, tg *target, row *attackRow) {
		loginUsernames(t, tg, row, 60<<10)
	}},
	{name: "log-bad-signature-queries", run: badSignatureQueries},
	{name: "login-flood-40ip", run: loginFlood},
	{name: "unique-20KB-error-codes", run: uniqueErrorCodes},
	{name: "unknown-statuses", run: unknownStatuses},
	{name: "ws-replay-50k-events", run: wsReplay},
	{name: "slow-backup-reader", run: slowBackup},
	{name: "replayed-v2-headers", run: replayedV2},
}

// 1,100 idle keep-alive connections (each after one request) under
// RLIMIT_NOFILE 1024, from ips addresses, while valid callbacks flow.
func fdExhaustion(t *testing.T, tg *target, row *attackRow, ips int) {
	row.attacker = newCodeCount()
	var mu sync.Mutex
	var conns []net.Conn
	stop := make(chan struct{})
	lat := &latencies{}
	wg := tg.validLoad(t, 50, 2, 100_000, tg.valid, lat, stop)
	pool(1100, 32, func(i int) {
		c, err := dialFrom(tg.p.addr, i%ips)
		if err != nil {
			row.attacker.add(-1)
			return
		}
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		row.attacker.add(readStatus(c, 5*time.Second))
		_ = c.SetReadDeadline(time.Time{})
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	})
	time.Sleep(3 * time.Second) // held: accept backs off at EMFILE
	during := tg.valid.String()
	for _, c := range conns {
		c.Close()
	}
	after := newCodeCount()
	for range 20 {
		after.add(tg.callback(t, tg.client, statusFields(v1UUIDNoT(), "delivered", 3)))
	}
	close(stop)
	wg.Wait()
	row.figure = fmt.Sprintf("%d idle connections from %d IP(s); valid callbacks during: %s; 20 right after release: %s", len(conns), ips, during, after)
}

// Slowloris: 3 IPs × 2,000 connections each sending a header line every
// second for 12 s, never finishing; valid callbacks meanwhile.
func slowloris(t *testing.T, tg *target, row *attackRow) {
	row.attacker = newCodeCount()
	stop := make(chan struct{})
	lat := &latencies{}
	wg := tg.validLoad(t, 50, 2, 100_000, tg.valid, lat, stop)
	var mu sync.Mutex
	var conns []net.Conn
	var refused atomic.Int64
	pool(6000, 64, func(i int) {
		c, err := dialFrom(tg.p.addr, i%3)
		if err != nil {
			refused.Add(1)
			return
		}
		if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
			refused.Add(1)
			c.Close()
			return
		}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	})
	open := 0
	for s := range 12 {
		open = 0
		for _, c := range conns {
			if _, err := fmt.Fprintf(c, "X-Slow-%d: x\r\n", s); err == nil {
				open++
			}
		}
		time.Sleep(time.Second)
	}
	for _, c := range conns {
		row.attacker.add(readStatus(c, 10*time.Millisecond))
		c.Close()
	}
	close(stop)
	wg.Wait()
	row.figure = fmt.Sprintf("6,000 attempts, %d still writable after 12 s (over the per-IP cap closed at once); valid callbacks %s", open, lat)
}

// 1,000 connections (2 IPs) sending 1 MB bodies to the callback, login and
// logout routes, trickled: with Content-Length, 1 KiB every 100 ms; chunked,
// a 4 KiB chunk every 100 ms. Each stops at its answer or at 1 MB.
func slowBodies(t *testing.T, tg *target, row *attackRow, chunked bool) {
	row.attacker = newCodeCount()
	stop := make(chan struct{})
	lat := &latencies{}
	wg := tg.validLoad(t, 50, 2, 100_000, tg.valid, lat, stop)
	paths := []string{"/plivo/callback", "/login", "/logout"}
	var maxSent atomic.Int64
	var peakRSS atomic.Int64
	sample := make(chan struct{})
	go func() { // VmRSS while the bodies are held, every 100 ms
		for {
			select {
			case <-sample:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, rss := tg.memKB(); rss > peakRSS.Load() {
				peakRSS.Store(rss)
			}
		}
	}()
	start := time.Now()
	pool(1000, 1000, func(i int) {
		c, err := dialFrom(tg.p.addr, i%2)
		if err != nil {
			row.attacker.add(-1)
			return
		}
		defer c.Close()
		te := "Content-Length: 1000000"
		if chunked {
			te = "Transfer-Encoding: chunked"
		}
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n%s\r\n\r\n", paths[i%3], te)
		answered := make(chan int, 1)
		go func() { answered <- readStatus(c, 20*time.Second) }()
		chunk := bytes.Repeat([]byte("a"), 1024)
		if chunked {
			chunk = []byte(fmt.Sprintf("1000\r\n%s\r\n", bytes.Repeat([]byte("a"), 4096)))
		}
		sent := int64(0)
		for sent < 1_000_000 {
			select {
			case code := <-answered:
				row.attacker.add(code)
				for s := maxSent.Load(); sent > s && !maxSent.CompareAndSwap(s, sent); s = maxSent.Load() {
				}
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := c.Write(chunk); err != nil {
				break
			}
			sent += int64(len(chunk))
		}
		row.attacker.add(<-answered)
	})
	took := time.Since(start)
	close(sample)
	// A last sample: refused at once, the bodies may all be gone before
	// the first tick.
	if _, rss := tg.memKB(); rss > peakRSS.Load() {
		peakRSS.Store(rss)
	}
	close(stop)
	wg.Wait()
	row.figure = fmt.Sprintf("1,000 bodies, all answered in %s; most sent before an answer %s; sampled VmRSS peak %d MB; valid callbacks %s",
		took.Round(100*time.Millisecond), humanBytes(maxSent.Load()), peakRSS.Load()/1024, lat)
}

// 300 logins (from 3 IPs) with a username of size bytes.
func loginUsernames(t *testing.T, tg *target, row *attackRow, size int) {
	row.attacker = newCodeCount()
	name := strings.Repeat("u", size)
	pool(300, 16, func(i int) {
		c, err := dialFrom(tg.p.addr, i%3)
		if err != nil {
			row.attacker.add(-1)
			return
		}
		defer c.Close()
		body := "username=" + name + "&password=wrong-password-" + strconv.Itoa(i)
		go fmt.Fprintf(c, "POST /login HTTP/1.1\r\nHost: %s\r\nOrigin: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", tg.p.addr, "http://"+tg.p.addr, len(body), body)
		row.attacker.add(readStatus(c, 20*time.Second))
	})
	row.figure = fmt.Sprintf("300 logins, %s usernames (%s sent)", humanBytes(int64(size)), humanBytes(int64(300*size)))
}

// 2,000 callbacks with a bad signature and a 7 KB query string (the most
// that fits the 8 KiB header buffer), then 200 with 16 KB.
func badSignatureQueries(t *testing.T, tg *target, row *attackRow) {
	row.attacker = newCodeCount()
	q7 := "MessageUUID=" + strings.Repeat("q", 7000)
	q16 := "MessageUUID=" + strings.Repeat("q", 16000)
	pool(2200, 16, func(i int) {
		c, err := dialFrom(tg.p.addr, i%4)
		if err != nil {
			row.attacker.add(-1)
			return
		}
		defer c.Close()
		q := q7
		if i >= 2000 {
			q = q16
		}
		fmt.Fprintf(c, "GET /plivo/callback?%s&i=%d HTTP/1.1\r\nHost: x\r\nX-Plivo-Signature-V2: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\nX-Plivo-Signature-V2-Nonce: %s\r\nConnection: close\r\n\r\n", q, i, randomNonce())
		row.attacker.add(readStatus(c, 10*time.Second))
	})
	row.figure = "2,000 × 7 KB + 200 × 16 KB query strings, bad signature (14 MB + 3.2 MB sent)"
}

// Valid callbacks at 50/s for 6 s alone (baseline), then for 6 s while 40
// IPs send 200 wrong-password logins each as fast as answered.
func loginFlood(t *testing.T, tg *target, row *attackRow) {
	row.attacker = newCodeCount()
	base := &latencies{}
	stop := make(chan struct{})
	wg := tg.validLoad(t, 50, 2, 100_000, tg.valid, base, stop)
	time.Sleep(6 * time.Second)
	close(stop)
	wg.Wait()
	flood := &latencies{}
	stop = make(chan struct{})
	wg = tg.validLoad(t, 50, 2, 100_000, tg.valid, flood, stop)
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		pool(40, 40, func(ip int) {
			for i := range 200 {
				if time.Since(start) > 6*time.Second {
					return
				}
				c, err := dialFrom(tg.p.addr, 10+ip)
				if err != nil {
					row.attacker.add(-1)
					continue
				}
				body := fmt.Sprintf("username=admin&password=guess-%d-%d", ip, i)
				fmt.Fprintf(c, "POST /login HTTP/1.1\r\nHost: %s\r\nOrigin: http://%s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", tg.p.addr, tg.p.addr, len(body), body)
				row.attacker.add(readStatus(c, 10*time.Second))
				c.Close()
			}
		})
	}()
	<-done
	close(stop)
	wg.Wait()
	row.figure = fmt.Sprintf("valid callbacks alone %s; during the flood %s", base, flood)
}

// 2,701 failed callbacks with unique 20 KB ErrorCodes, then the cost of a
// normal callback and of /api/stats?window=90d.
func uniqueErrorCodes(t *testing.T, tg *target, row *attackRow) {
	row.attacker = newCodeCount()
	sizeBefore := dbSize(tg)
	pool(2701, 8, func(i int) {
		f := statusFields(v1UUIDNoT(), "failed", 3)
		f.Set("ErrorCode", fmt.Sprintf("%05d%s", i, strings.Repeat("e", 20_000)))
		row.attacker.add(tg.callback(t, tg.client, f))
	})
	lat := &latencies{}
	for range 50 {
		start := time.Now()
		code := tg.callback(t, tg.client, statusFields(v1UUIDNoT(), "delivered", 3))
		tg.valid.add(code)
		lat.add(time.Since(start))
	}
	start := time.Now()
	code := tg.p.getJSON(t, "/api/stats?window=90d", testAPIToken, nil)
	statsTook := time.Since(start)
	row.figure = fmt.Sprintf("DB %s → %s; next 50 callbacks %s; /api/stats?window=90d %d in %s",
		humanBytes(sizeBefore), humanBytes(dbSize(tg)), lat, code, statsTook.Round(time.Millisecond))
}

func dbSize(tg *target) int64 {
	fi, err := os.Stat(filepath.Join(tg.dir, "plivo-dlr.db"))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// Throughput of 5,000 callbacks with known statuses, then of 5,000 each
// with a distinct unknown status (8 concurrent senders).
func unknownStatuses(t *testing.T, tg *target, row *attackRow) {
	row.attacker = newCodeCount()
	rate := func(unknown bool) float64 {
		start := time.Now()
		pool(5000, 8, func(i int) {
			st := []string{"queued", "sent", "delivered"}[i%3]
			if unknown {
				st = fmt.Sprintf("weird_%06d", i)
			}
			code := tg.callback(t, tg.client, statusFields(v1UUIDNoT(), st, 1+i%3))
			if unknown {
				row.attacker.add(code)
			} else {
				tg.valid.add(code)
			}
		})
		return 5000 / time.Since(start).Seconds()
	}
	known := rate(false)
	unknown := rate(true)
	start := time.Now()
	code := tg.p.getJSON(t, "/api/stats?window=90d", testAPIToken, nil)
	row.figure = fmt.Sprintf("known statuses %.0f/s, distinct unknown statuses %.0f/s (ratio %.2f); /api/stats %d in %s",
		known, unknown, unknown/known, code, time.Since(start).Round(time.Millisecond))
}

// One message with 50,000 events, then 4 WebSocket clients with ?since=0
// reading the whole replay.
func wsReplay(t *testing.T, tg *target, row *attackRow) {
	row.attacker = newCodeCount()
	u := v1UUIDNoT()
	const events = 50_000
	start := time.Now()
	pool(events, 8, func(i int) {
		st := []string{"sent", "delivered", "undelivered"}[i%3]
		tg.valid.add(tg.callback(t, tg.client, statusFields(u, st, i+1)))
	})
	loadTook := time.Since(start)
	tg.resetPeak() // the replay's peak, not the ingestion's
	var frames [4]atomic.Int64
	start = time.Now()
	pool(4, 4, func(i int) {
		d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
		conn, resp, err := d.Dial("ws://"+tg.p.addr+"/ws?since=0", http.Header{"Authorization": {"Bearer " + testAPIToken}})
		if err != nil {
			code := 0
			if resp != nil {
				code = resp.StatusCode
			}
			row.attacker.add(code)
			return
		}
		row.attacker.add(http.StatusSwitchingProtocols)
		defer conn.Close()
		deadline := time.Now().Add(90 * time.Second)
		for frames[i].Load() < events && time.Now().Before(deadline) {
			_ = conn.SetReadDeadline(deadline)
			_, msg, err := conn.ReadMessage()
			if err != nil {
				return
			}
			frames[i].Add(int64(bytes.Count(msg, []byte(`"status_update"`))))
			if bytes.Contains(msg, []byte(`"type":"ready"`)) {
				return // replay over
			}
		}
	})
	row.figure = fmt.Sprintf("%d events stored in %s; 4 clients got %d/%d/%d/%d event frames in %s (peak RSS is the replay's)",
		events, loadTook.Round(time.Second), frames[0].Load(), frames[1].Load(), frames[2].Load(), frames[3].Load(), time.Since(start).Round(100*time.Millisecond))
}

// 5,000 callbacks first, then for 16 s valid callbacks at 300/s while a
// backup download reads 8 KiB every 250 ms.
func slowBackup(t *testing.T, tg *target, row *attackRow) {
	row.attacker = newCodeCount()
	pool(5000, 8, func(i int) {
		tg.valid.add(tg.callback(t, tg.client, statusFields(v1UUIDNoT(), []string{"queued", "sent", "delivered"}[i%3], 1+i%3)))
	})
	sizeBefore := dbSize(tg)
	during := newCodeCount()
	lat := &latencies{}
	stop := make(chan struct{})
	wg := tg.validLoad(t, 300, 8, 100_000, during, lat, stop)
	ctx, cancel := context.WithTimeout(context.Background(), 16*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+tg.p.addr+"/api/backup", nil)
	req.Header.Set("Authorization", "Bearer "+testAPIToken)
	var read int64
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		row.attacker.add(0)
	} else {
		row.attacker.add(resp.StatusCode)
		buf := make([]byte, 8<<10)
		for ctx.Err() == nil {
			n, err := resp.Body.Read(buf)
			read += int64(n)
			if err != nil {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		resp.Body.Close()
	}
	<-ctx.Done()
	close(stop)
	wg.Wait()
	for k, v := range during.m {
		for range v {
			tg.valid.add(k)
		}
	}
	row.figure = fmt.Sprintf("backup read %s in 16 s; DB %s → %s; valid callbacks during: %s, %s",
		humanBytes(read), humanBytes(sizeBefore), humanBytes(dbSize(tg)), during, lat)
}

// 200 rounds: a valid signed callback (200), then its V2 headers with
// another body (another message); and 200 signed but malformed callbacks
// (400), then their headers with a valid body. No forged body may be stored.
func replayedV2(t *testing.T, tg *target, row *attackRow) {
	row.attacker = newCodeCount()
	var forged []string
	send := func(cb callback) int {
		code, _ := tg.p.send(t, tg.client, cb)
		return code
	}
	for range 200 {
		u := v1UUIDNoT()
		nonce := randomNonce()
		cb := signedForm(t, statusFields(u, "delivered", 3), nonce)
		code := send(cb)
		tg.valid.add(code)
		if code == http.StatusOK {
			tg.ackMu.Lock()
			tg.acked = append(tg.acked, u)
			tg.ackMu.Unlock()
		}
		f := v1UUIDNoT()
		forged = append(forged, f)
		cb.body = statusFields(f, "delivered", 3).Encode()
		row.attacker.add(send(cb))

		bad := statusFields(v1UUIDNoT(), "", 3)
		bad.Del("Status")
		nonce = randomNonce()
		cb = signedForm(t, bad, nonce)
		row.attacker.add(send(cb))
		f = v1UUIDNoT()
		forged = append(forged, f)
		cb.body = statusFields(f, "delivered", 3).Encode()
		row.attacker.add(send(cb))
	}
	stored := 0
	for _, f := range forged {
		if tg.p.getJSON(t, "/api/messages/"+f, testAPIToken, nil) == http.StatusOK {
			stored++
		}
	}
	if stored > 0 {
		t.Errorf("%d forged bodies stored under replayed V2 headers", stored)
	}
	row.figure = fmt.Sprintf("400 replays of captured V2 headers (200 after a 200, 200 after a 400); forged bodies stored: %d", stored)
}

func newV1() (string, error) {
	u, err := uuid.NewUUID()
	return u.String(), err
}
