package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"plivo-dlr/app"
	"plivo-dlr/app/protocol"
	"plivo-dlr/internal/testsupport"
	"plivo-dlr/storage"
)

const (
	testAuthToken = "MzY2ZjQxZTg5NjFiY2I2NWE1OTJkNWFlNzBiZjE4"
	testAPIToken  = "integration-test-token-0123456789"
	// testPublicURL deliberately differs from the loopback address the binary
	// listens on: signatures must be checked against server.public_url, never
	// against the Host header.
	testPublicURL = "https://dlr.example.test"
)

var (
	buildOnce sync.Once
	binDir    string // removed by TestMain after the run
	binPath   string
	buildErr  error
)

// TestMain removes the directory of the binary built by buildBinary, so a
// test run leaves nothing behind in the temp dir.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildBinary compiles the real plivo-dlr binary once per test run.
func buildBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "plivo-dlr-bin")
		if err != nil {
			buildErr = err
			return
		}
		binDir = dir
		binPath = filepath.Join(dir, "plivo-dlr")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// proc is a running plivo-dlr binary.
type proc struct {
	cmd    *exec.Cmd
	addr   string // host:port it listens on
	stderr *testsupport.LockedBuffer
	done   chan error
}

// writeConfig writes a config for dataDir listening on a free loopback port.
func writeConfig(t testing.TB, dataDir string) string {
	t.Helper()
	cfg := fmt.Sprintf(`[server]
listen = "127.0.0.1:0"
public_url = %q
data_dir = %q

[plivo]
auth_id = "MAXXXXXXXXXXXXXXXXXX"
auth_token = %q
nonce_ttl = "1h"

[dashboard]
api_tokens = [%q]

[reconcile]
enabled = false

[log]
level = "debug"
`, testPublicURL, dataDir, testAuthToken, testAPIToken)
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var addrRE = regexp.MustCompile(`msg="plivo-dlr started".* addr=(127\.0\.0\.1:\d+)`)

// startBinary starts the binary with configPath and waits until it listens.
func startBinary(t testing.TB, configPath string, extraArgs ...string) *proc {
	t.Helper()
	p := &proc{stderr: &testsupport.LockedBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(buildBinary(t), append([]string{"serve", "-config", configPath}, extraArgs...)...)
	p.cmd.Stderr = p.stderr
	p.cmd.Stdout = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := addrRE.FindStringSubmatch(p.stderr.String()); m != nil {
			p.addr = m[1]
			return p
		}
		select {
		case err := <-p.done:
			t.Fatalf("binary exited before listening: %v\n%s", err, p.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("binary did not report its address in time:\n%s", p.stderr.String())
	return nil
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err // let the cleanup's receive return
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit within 20 s of SIGTERM\n%s", p.stderr.String())
	}
}

// callback is one signed request to send to the callback endpoint.
type callback struct {
	method  string
	body    string // form body for POST
	query   string // raw query for GET
	ctype   string
	headers map[string]string
	// raw sends over a plain TCP connection, writing the body while
	// reading the answer, for a server that answers before reading it all.
	raw bool
}

// signedForm builds a POST callback for fields, V2-signed with nonce.
func signedForm(t testing.TB, fields url.Values, nonce string) callback {
	t.Helper()
	sig, err := protocol.ComputeSignatureV2(testAuthToken, testPublicURL+"/plivo/callback", nonce)
	if err != nil {
		t.Fatal(err)
	}
	return callback{
		method: http.MethodPost,
		body:   fields.Encode(),
		ctype:  "application/x-www-form-urlencoded",
		headers: map[string]string{
			"X-Plivo-Signature-V2":       sig,
			"X-Plivo-Signature-V2-Nonce": nonce,
		},
	}
}

func statusFields(uuid, status string, seq int) url.Values {
	return url.Values{
		"MessageUUID": {uuid}, "Status": {status}, "Sequence": {fmt.Sprint(seq)},
		"To": {"447700900123"}, "From": {"14155550100"}, "Type": {"sms"}, "Units": {"1"},
		"QueuedTime": {"2024-05-01 10:00:00.234567"},
	}
}

func (p *proc) send(t testing.TB, client *http.Client, cb callback) (int, string) {
	t.Helper()
	if cb.raw {
		return p.sendRaw(t, cb)
	}
	u := "http://" + p.addr + "/plivo/callback"
	if cb.query != "" {
		u += "?" + cb.query
	}
	method := cb.method
	if method == "" {
		method = http.MethodPost
	}
	req, err := http.NewRequest(method, u, strings.NewReader(cb.body))
	if err != nil {
		t.Fatal(err)
	}
	if cb.ctype != "" {
		req.Header.Set("Content-Type", cb.ctype)
	}
	for k, v := range cb.headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("send callback: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (p *proc) getJSON(t testing.TB, path, token string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.addr+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("GET %s: decode: %v", path, err)
		}
	}
	return resp.StatusCode
}

// TestBinaryCallbacksEndToEnd drives the real binary over loopback HTTP with
// valid and invalid callbacks, then reads the results back through the API.
func TestBinaryCallbacksEndToEnd(t *testing.T) {
	dataDir := t.TempDir()
	configPath := writeConfig(t, dataDir)
	p := startBinary(t, configPath)
	client := &http.Client{Timeout: 10 * time.Second}
	uuid := "5b40a428-bfc7-4daf-9d06-726c558bf3b8"

	tampered := signedForm(t, statusFields(uuid, "failed", 9), "10000000000000000002")
	tampered.headers["X-Plivo-Signature-V2"] = "AAAA" + tampered.headers["X-Plivo-Signature-V2"][4:]
	missing := signedForm(t, statusFields(uuid, "failed", 9), "10000000000000000003")
	missing.headers = nil
	noStatus := statusFields(uuid, "", 4)
	noStatus.Del("Status")
	huge := statusFields(uuid, "sent", 2)
	huge.Set("Padding", strings.Repeat("x", protocol.MaxCallbackBody))
	// The server refuses an oversized body from its Content-Length and
	// closes the connection without reading it, so the client's write of
	// the body may fail: send it raw and read the answer regardless.
	hugeCallback := signedForm(t, huge, "10000000000000000010")
	hugeCallback.raw = true

	getSig, err := protocol.ComputeSignatureV2(testAuthToken, testPublicURL+"/plivo/callback", "10000000000000000007")
	if err != nil {
		t.Fatal(err)
	}
	jsonBody := `{"MessageUUID":"0c7e1a42-2f61-11ef-a3d5-0242ac120003","Status":"undelivered","ErrorCode":"30","Sequence":3}`
	jsonSig, err := protocol.ComputeSignatureV2(testAuthToken, testPublicURL+"/plivo/callback", "10000000000000000008")
	if err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name     string
		cb       callback
		wantCode int
	}{
		{"queued stored", signedForm(t, statusFields(uuid, "queued", 1), "10000000000000000001"), 200},
		{"tampered signature", tampered, 403},
		{"missing headers", missing, 403},
		{"delivered stored", signedForm(t, statusFields(uuid, "delivered", 3), "10000000000000000004"), 200},
		{"same request again is a retry", signedForm(t, statusFields(uuid, "delivered", 3), "10000000000000000004"), 200},
		{"replayed nonce", signedForm(t, statusFields(uuid, "undelivered", 4), "10000000000000000004"), 403},
		{"late sent stored", signedForm(t, statusFields(uuid, "sent", 2), "10000000000000000005"), 200},
		{"identical retry is a duplicate", signedForm(t, statusFields(uuid, "sent", 2), "10000000000000000006"), 200},
		{"missing status", signedForm(t, noStatus, "10000000000000000009"), 400},
		{"oversized body", hugeCallback, 413},
		{"GET with query", callback{
			method:  http.MethodGet,
			query:   "MessageUUID=9a8b7c6d-1111-4222-8333-444455556666&Status=failed&ErrorCode=420&Sequence=2",
			headers: map[string]string{"X-Plivo-Signature-V2": getSig, "X-Plivo-Signature-V2-Nonce": "10000000000000000007"},
		}, 200},
		{"JSON body", callback{
			body: jsonBody, ctype: "application/json",
			headers: map[string]string{"X-Plivo-Signature-V2": jsonSig, "X-Plivo-Signature-V2-Nonce": "10000000000000000008"},
		}, 200},
	}
	for _, st := range steps {
		code, body := p.send(t, client, st.cb)
		if code != st.wantCode {
			t.Errorf("%s: status %d (%s), want %d", st.name, code, body, st.wantCode)
		}
	}

	if code := p.getJSON(t, "/api/messages", "", nil); code != http.StatusUnauthorized {
		t.Errorf("GET /api/messages without token: %d, want 401", code)
	}
	if code := p.getJSON(t, "/api/messages", "wrong-token-0123456789", nil); code != http.StatusUnauthorized {
		t.Errorf("GET /api/messages with wrong token: %d, want 401", code)
	}

	var detail struct {
		Message storage.Message `json:"message"`
		Events  []storage.Event `json:"events"`
	}
	if code := p.getJSON(t, "/api/messages/"+uuid, testAPIToken, &detail); code != 200 {
		t.Fatalf("GET message: %d", code)
	}
	if detail.Message.Status != "delivered" {
		t.Errorf("current status %q, want delivered (a late sent must not overwrite it)", detail.Message.Status)
	}
	var got []string
	for _, ev := range detail.Events {
		got = append(got, ev.Status)
	}
	if want := "queued,delivered,sent"; strings.Join(got, ",") != want {
		t.Errorf("history %v, want %s (received order, duplicate stored once)", got, want)
	}
	if detail.Message.EventCount != 3 {
		t.Errorf("event_count %d, want 3", detail.Message.EventCount)
	}
	if len(detail.Events) > 0 && detail.Events[0].Payload["To"] != "447700900123" {
		t.Errorf("raw payload To = %q, want 447700900123", detail.Events[0].Payload["To"])
	}

	var list struct {
		Messages   []storage.Message `json:"messages"`
		NextCursor string            `json:"next_cursor"`
	}
	if code := p.getJSON(t, "/api/messages?limit=10", testAPIToken, &list); code != 200 {
		t.Fatalf("list: %d", code)
	}
	if len(list.Messages) != 3 {
		t.Fatalf("listed %d messages, want 3", len(list.Messages))
	}
	if list.Messages[0].MessageUUID != "0c7e1a42-2f61-11ef-a3d5-0242ac120003" || list.Messages[2].MessageUUID != uuid {
		t.Errorf("order %s, %s, %s: want newest first", list.Messages[0].MessageUUID, list.Messages[1].MessageUUID, list.Messages[2].MessageUUID)
	}
	if list.Messages[0].ErrorCode != "30" || list.Messages[0].Status != "undelivered" {
		t.Errorf("JSON callback stored as %s/%s, want undelivered/30", list.Messages[0].Status, list.Messages[0].ErrorCode)
	}
	if code := p.getJSON(t, "/api/messages?status=failed", testAPIToken, &list); code != 200 || len(list.Messages) != 1 {
		t.Errorf("status filter: code %d, %d messages, want 1", code, len(list.Messages))
	}
	if code := p.getJSON(t, "/api/messages/nope", testAPIToken, nil); code != 404 {
		t.Errorf("unknown message: %d, want 404", code)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code := p.getJSON(t, path, "", nil); code != 200 {
			t.Errorf("%s: %d, want 200", path, code)
		}
	}

	// The operator learns why a signature failed: the log names the URL that
	// would have verified. Here Plivo signed the loopback URL, not public_url.
	wrongURLSig, _ := protocol.ComputeSignatureV2(testAuthToken, "http://"+p.addr+"/plivo/callback", "10000000000000000011")
	p.send(t, client, callback{body: statusFields(uuid, "sent", 2).Encode(), ctype: "application/x-www-form-urlencoded",
		headers: map[string]string{"X-Plivo-Signature-V2": wrongURLSig, "X-Plivo-Signature-V2-Nonce": "10000000000000000011"}})
	if !waitFor(func() bool { return strings.Contains(p.stderr.String(), "url_mismatch") }) {
		t.Errorf("log does not diagnose the URL mismatch:\n%s", p.stderr.String())
	}
	if strings.Contains(p.stderr.String(), testAuthToken) {
		t.Error("the auth token appears in the log")
	}

	// A second process on the same data dir fails fast with a clear message.
	second := exec.Command(buildBinary(t), "serve", "-config", configPath)
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "lock") {
		t.Errorf("second instance: err %v, output %q; want a failure mentioning the lock", err, out)
	}

	// SIGTERM shuts down cleanly and the data survives a restart.
	p.stop(t)
	p2 := startBinary(t, configPath)
	if code := p2.getJSON(t, "/api/messages/"+uuid, testAPIToken, &detail); code != 200 || detail.Message.Status != "delivered" {
		t.Errorf("after restart: code %d status %q, want 200 delivered", code, detail.Message.Status)
	}
	// Nonces survive the restart: the replay window does not reopen, and a
	// retry is still told from a replay.
	if code, _ := p2.send(t, client, signedForm(t, statusFields(uuid, "undelivered", 4), "10000000000000000004")); code != 403 {
		t.Errorf("replay after restart: %d, want 403", code)
	}
	if code, _ := p2.send(t, client, signedForm(t, statusFields(uuid, "delivered", 3), "10000000000000000004")); code != 200 {
		t.Errorf("retry after restart: %d, want 200", code)
	}
}

func waitFor(cond func() bool) bool {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

// TestCrashKeepsAcknowledgedCallbacks sends concurrent signed callbacks to the
// real binary, kills it with SIGKILL mid-run, and checks that every callback
// that got a 200 is in the store, which opens cleanly.
func TestCrashKeepsAcknowledgedCallbacks(t *testing.T) {
	dataDir := t.TempDir()
	configPath := writeConfig(t, dataDir)
	p := startBinary(t, configPath)

	const workers = 32
	const perWorker = 2000 // bounds the loop; the kill normally comes first
	type ack struct{ uuid, status string }
	var (
		mu     sync.Mutex
		acked  []ack
		nonce  atomic.Uint64
		killed atomic.Bool
	)
	transport := &http.Transport{MaxIdleConnsPerHost: workers}
	client := &http.Client{Timeout: 10 * time.Second, Transport: transport}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < perWorker && ctx.Err() == nil; i++ {
				uuid := fmt.Sprintf("c0000000-0000-4000-8000-%06d%06d", w, i/3)
				status := []string{"queued", "sent", "delivered"}[i%3]
				n := fmt.Sprintf("%020d", nonce.Add(1))
				cb := signedForm(t, statusFields(uuid, status, i%3+1), n)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+p.addr+"/plivo/callback", strings.NewReader(cb.body))
				req.Header.Set("Content-Type", cb.ctype)
				for k, v := range cb.headers {
					req.Header.Set(k, v)
				}
				resp, err := client.Do(req)
				if err != nil {
					if killed.Load() || ctx.Err() != nil {
						return
					}
					t.Errorf("request before the kill failed: %v", err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					mu.Lock()
					acked = append(acked, ack{uuid, status})
					mu.Unlock()
				}
			}
		}(w)
	}
	// Kill once a good number of callbacks are in flight and acknowledged.
	waitAcked := time.Now().Add(20 * time.Second)
	for time.Now().Before(waitAcked) {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 3000 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	killed.Store(true)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	p.done <- nil
	cancel()
	wg.Wait()

	store, err := storage.Open(filepath.Join(dataDir, "plivo-dlr.db"), storage.Options{})
	if err != nil {
		t.Fatalf("store does not open cleanly after SIGKILL: %v", err)
	}
	missing := 0
	for _, a := range acked {
		_, events, err := store.GetMessage(a.uuid)
		found := false
		for _, ev := range events {
			found = found || ev.Status == a.status
		}
		if err != nil || !found {
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged %s %s not stored (err %v)", a.uuid, a.status, err)
			}
		}
	}
	last, _ := store.LastCursor()
	replayed, _ := store.JournalReplayed()
	t.Logf("acked %d callbacks before SIGKILL; stored events %d (%d of them applied from the journal at reopen); acked but missing %d", len(acked), last, replayed, missing)
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	if len(acked) == 0 {
		t.Fatal("no callback was acknowledged before the kill")
	}

	// The binary starts again on the same data and is ready.
	p2 := startBinary(t, configPath)
	if code := p2.getJSON(t, "/readyz", "", nil); code != 200 {
		t.Errorf("readyz after restart: %d", code)
	}
}

// TestRunExitCodes checks the CLI's contract: bad flags or config exit 2
// with one line naming the key.
func TestRunExitCodes(t *testing.T) {
	badConfig := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(badConfig, []byte("[tls]\nmode = \"auto\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noEnv := func(string) string { return "" }
	tests := []struct {
		name     string
		args     []string
		env      func(string) string
		wantCode int
		wantErr  string
	}{
		{"no command", nil, noEnv, 2, "usage"},
		{"unknown command", []string{"frobnicate"}, noEnv, 2, `unknown command "frobnicate"`},
		{"bad flag", []string{"serve", "-nope"}, noEnv, 2, "flag provided but not defined"},
		{"bad config value", []string{"check-config", "-config", badConfig}, noEnv, 2, `plivo-dlr: tls.mode: must be off, acme or files (got "auto")`},
		{"missing config file", []string{"check-config", "-config", "/nonexistent.toml"}, noEnv, 2, "-config: open /nonexistent.toml"},
		{"bad env value", []string{"check-config"}, func(k string) string {
			if k == "PLIVO_DLR_RETENTION_DAYS" {
				return "many"
			}
			return ""
		}, 2, "retention.days: from environment PLIVO_DLR_RETENTION_DAYS: not an integer"},
		{"send without --to", []string{"send", "--text", "hi"}, noEnv, 2, "send: --to and --text (or --media) are required"},
		{"backup without --out", []string{"backup"}, noEnv, 2, "backup: --out is required"},
		{"version", []string{"version"}, noEnv, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, strings.NewReader(""), &stdout, &stderr, tt.env)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("stderr %q, want it to contain %q", stderr.String(), tt.wantErr)
			}
		})
	}
}

// TestCheckConfigMasksSecrets checks that check-config never prints secrets.
func TestCheckConfigMasksSecrets(t *testing.T) {
	env := func(k string) string {
		switch k {
		case "PLIVO_AUTH_ID":
			return "MAXXXXXXXXXXXXXXXXXX"
		case "PLIVO_AUTH_TOKEN":
			return "super-secret-token-value"
		case "PLIVO_DLR_DASHBOARD_API_TOKENS":
			return "api-token-aaaaaaaaaaaaaaaa,api-token-bbbbbbbbbbbbbbbb"
		}
		return ""
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"check-config"}, nil, &stdout, &stderr, env); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, secret := range []string{"super-secret-token-value", "api-token-aaaa", "api-token-bbbb"} {
		if strings.Contains(out, secret) {
			t.Errorf("check-config printed secret %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "auth_id = 'MAXXXXXXXXXXXXXXXXXX'") || !strings.Contains(out, "auth_token = '********'") {
		t.Errorf("effective config does not show the env values (masked):\n%s", out)
	}
}

// TestBinarySandboxSend runs the README's first command for real: serve
// --sandbox, then the send command through the API; the simulated Plivo's
// signed callbacks carry the message to its final status.
func TestBinarySandboxSend(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // the sandbox calls the server back on its configured port
	dataDir := filepath.Join(t.TempDir(), "data")
	cfgPath := filepath.Join(t.TempDir(), "config.toml")
	cfg := fmt.Sprintf("[server]\nlisten = %q\ndata_dir = %q\n[dashboard]\napi_tokens = [%q]\n[sandbox]\nfailure_share = 0.0\n", addr, dataDir, testAPIToken)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, cfgPath, "--sandbox")
	if !strings.Contains(p.stderr.String(), "plivo-dlr sandbox") {
		t.Errorf("no sandbox banner in the output:\n%s", p.stderr.String())
	}

	out, err := exec.Command(buildBinary(t), "send", "--server", "http://"+addr, "--token", testAPIToken,
		"--to", "+14155550123", "--text", "hello from the test").Output()
	if err != nil {
		t.Fatalf("send: %v\n%s", err, p.stderr.String())
	}
	uuid := strings.TrimSpace(string(out))
	if len(uuid) != 36 {
		t.Fatalf("send printed %q, want one message UUID", out)
	}
	var detail struct {
		Message storage.Message `json:"message"`
		Events  []storage.Event `json:"events"`
	}
	ok := waitForDeadline(20*time.Second, func() bool {
		return p.getJSON(t, "/api/messages/"+uuid, testAPIToken, &detail) == 200 && detail.Message.Status == "delivered"
	})
	if !ok {
		t.Fatalf("message %s: status %q after 20 s, want delivered\n%s", uuid, detail.Message.Status, p.stderr.String())
	}
	if detail.Message.Text != "hello from the test" || len(detail.Events) < 3 || detail.Events[0].Source != "send" {
		t.Errorf("stored %+v with %d events (first from %q), want the text and send, queued.., delivered", detail.Message, len(detail.Events), detail.Events[0].Source)
	}
	if _, err := os.Stat(dataDir + "-sandbox"); err != nil {
		t.Errorf("sandbox data dir: %v (want data kept apart from real data)", err)
	}
}

func waitForDeadline(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}

// TestCommandHelpExitsZero: `plivo-dlr CMD --help` prints the command's
// flags and exits 0 (asked for, not an error), without "flag: help requested".
func TestCommandHelpExitsZero(t *testing.T) {
	noEnv := func(string) string { return "" }
	for _, cmd := range []string{"serve", "send", "backup", "export", "check-config"} {
		for _, flagName := range []string{"-h", "--help"} {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{cmd, flagName}, strings.NewReader(""), &stdout, &stderr, noEnv)
			out := stdout.String() + stderr.String()
			if code != 0 {
				t.Errorf("%s %s: exit code %d, want 0 (output %q)", cmd, flagName, code, out)
			}
			if strings.Contains(out, "help requested") {
				t.Errorf("%s %s: output %q reports help as an error", cmd, flagName, out)
			}
			if !strings.Contains(out, "Usage of "+cmd) && !strings.Contains(out, "-config") {
				t.Errorf("%s %s: output %q shows no usage", cmd, flagName, out)
			}
		}
	}
}

// TestDocumentedHashPasswordExamples runs every literal
// `printf '%s' '...' | plivo-dlr hash-password` of the README and the shipped
// config: each must be accepted (8-character minimum), not fail as written.
func TestDocumentedHashPasswordExamples(t *testing.T) {
	re := regexp.MustCompile(`printf '%s' '([^']*)' \| plivo-dlr hash-password`)
	found := 0
	for _, file := range []string{"README.md", "systemd/config.toml", "config.toml.example"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(data), -1) {
			found++
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), []string{"hash-password"}, strings.NewReader(m[1]), &stdout, &stderr, func(string) string { return "" }); code != 0 {
				t.Errorf("%s: %q: exit %d: %s", file, m[0], code, stderr.String())
			}
		}
	}
	if found == 0 {
		t.Fatal("no hash-password example found in the README or the shipped configs")
	}
}

// TestSandboxDataIgnored: serve --sandbox writes ./data-sandbox, which must
// not end up in a commit.
func TestSandboxDataIgnored(t *testing.T) {
	data, err := os.ReadFile(".gitignore")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^/?data-sandbox/?$`).Match(data) {
		t.Errorf(".gitignore does not list data-sandbox/:\n%s", data)
	}
}

// TestSendErrorsSayWhatToDo: no scheme in --server, nothing listening, a
// token file that cannot be read: each error names the fix (issue 11).
func TestSendErrorsSayWhatToDo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	noEnv := func(string) string { return "" }
	for _, tt := range []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{"no scheme", []string{"send", "--to", "+14155550123", "--text", "hi", "--server", "127.0.0.1:8080"}, 2, "must be a URL like http://127.0.0.1:8080"},
		{"nothing listening", []string{"send", "--to", "+14155550123", "--text", "hi", "--server", closed, "--token", "0123456789abcdef"}, 1, "plivo-dlr serve"},
		{"unreadable token file", []string{"send", "--to", "+14155550123", "--text", "hi", "--server", closed, "--token-file", "/nonexistent/token"}, 2, "--token-file"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tt.args, strings.NewReader(""), &stdout, &stderr, noEnv)
		if code != tt.wantCode || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and %q", tt.name, code, stderr.String(), tt.wantCode, tt.want)
		}
	}
}

// TestShippedProductionConfig checks systemd/config.toml as installed by the
// VPS guide (into a 0755 ConfigurationDirectory, so world-readable): /metrics
// is not reachable without a token from outside the machine, no secret is
// in the file, and check-config warns about every placeholder left in it.
func TestShippedProductionConfig(t *testing.T) {
	const file = "systemd/config.toml"
	env := func(k string) string {
		if k == "PLIVO_DLR_PLIVO_AUTH_TOKEN" {
			return "from-the-credential"
		}
		return ""
	}
	cfg, err := app.LoadConfig(file, func(string) string { return "" })
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if cfg.Metrics.Enabled && cfg.Metrics.Token == "" {
		host, _, err := net.SplitHostPort(cfg.Metrics.Listen)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			t.Errorf("%s: metrics enabled without a token on %q (listen %q): /metrics must be on loopback or need a token", file, cfg.Metrics.Listen, cfg.Server.Listen)
		}
	}
	// Every Secret-typed key must be empty in the file: secrets come from
	// credentials (*_FILE), never from the world-readable config.
	sections := reflect.ValueOf(cfg)
	secretType := reflect.TypeOf(app.Secret(""))
	for i := 0; i < sections.NumField(); i++ {
		sec := sections.Field(i)
		for j := 0; j < sec.NumField(); j++ {
			f, name := sec.Field(j), sections.Type().Field(i).Name+"."+sec.Type().Field(j).Name
			switch {
			case f.Type() == secretType && f.String() != "":
				t.Errorf("%s: %s holds a secret in a world-readable file", file, name)
			case f.Kind() == reflect.Slice && f.Type().Elem() == secretType && f.Len() > 0:
				t.Errorf("%s: %s holds secrets in a world-readable file", file, name)
			}
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"check-config", "-config", file}, nil, &stdout, &stderr, env); code != 0 {
		t.Fatalf("check-config %s: exit %d: %s", file, code, stderr.String())
	}
	for _, key := range []string{"server.public_url", "tls.domains", "tls.email", "plivo.auth_id"} {
		if !strings.Contains(stderr.String(), "warning: "+key+":") {
			t.Errorf("check-config %s: no placeholder warning for %s; stderr:\n%s", file, key, stderr.String())
		}
	}
	// A filled-in config is quiet.
	filled := filepath.Join(t.TempDir(), "config.toml")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	real := strings.NewReplacer("dlr.example.com", "dlr.acme-sms.io", "ops@example.com", "ops@acme-sms.io", "MAXXXXXXXXXXXXXXXXXX", "MAZDQ1ZJIYMDZKMWY1NT").Replace(string(data))
	if err := os.WriteFile(filled, []byte(real), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	stderr.Reset()
	if code := run(context.Background(), []string{"check-config", "-config", filled}, nil, &stdout, &stderr, env); code != 0 || strings.Contains(stderr.String(), "warning") {
		t.Errorf("check-config on a filled-in config: exit %d, stderr %q; want 0 and no warning", code, stderr.String())
	}
}

// TestShippedUnitPassesAPIToken: the unit hands the API token to the server
// as a credential, and the guide's file (base64 of 24 random bytes, with its
// newline) is a valid dashboard.api_tokens entry; the CLI reads the same file
// through PLIVO_DLR_API_TOKEN_FILE.
func TestShippedUnitPassesAPIToken(t *testing.T) {
	unit, err := os.ReadFile("systemd/plivo-dlr.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"LoadCredential=api_token:/etc/plivo-dlr/credentials/api_token",
		"Environment=PLIVO_DLR_DASHBOARD_API_TOKENS_FILE=%d/api_token",
	} {
		if !strings.Contains(string(unit), "\n"+line+"\n") {
			t.Errorf("systemd/plivo-dlr.service lacks %s", line)
		}
	}
	tokenFile := filepath.Join(t.TempDir(), "api_token")
	if err := os.WriteFile(tokenFile, []byte("q2mX0d3c1Kc8n8jv0T3pQ0c9y4xW5Zr1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := app.LoadConfig("systemd/config.toml", func(k string) string {
		if k == "PLIVO_DLR_DASHBOARD_API_TOKENS_FILE" {
			return tokenFile
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Dashboard.APITokens) != 1 || string(cfg.Dashboard.APITokens[0]) != "q2mX0d3c1Kc8n8jv0T3pQ0c9y4xW5Zr1" {
		t.Errorf("api_tokens from the credential file: got %d tokens, want the file's one", len(cfg.Dashboard.APITokens))
	}
}

// sendRaw posts cb on its own TCP connection, writing the request in the
// background while reading the answer, whose status and body it returns.
func (p *proc) sendRaw(t testing.TB, cb callback) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	var head strings.Builder
	fmt.Fprintf(&head, "POST /plivo/callback HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n", p.addr, cb.ctype, len(cb.body))
	for k, v := range cb.headers {
		fmt.Fprintf(&head, "%s: %s\r\n", k, v)
	}
	head.WriteString("\r\n")
	go func() { _, _ = io.WriteString(conn, head.String()+cb.body) }() // may fail once the server closes
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
