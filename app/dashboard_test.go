package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"plivo-dlr/app/protocol"
	"plivo-dlr/internal/testsupport"
	"plivo-dlr/storage"
	"plivo-dlr/ui"
)

// Credentials of the dashboard test servers.
const (
	dashUser     = "operator"
	dashPassword = "correct horse battery staple"
	dashAPIToken = "api-token-0123456789abcdef"
	dashPlivoTok = "ZGVhZGJlZWZkZWFkYmVlZmRlYWRiZWVmZGVhZGJl"
)

// dashPasswordHash is computed once: bcrypt is slow on purpose.
var dashPasswordHash = func() string {
	h, err := bcrypt.GenerateFromPassword([]byte(dashPassword), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
}()

// dashServer is a real Server on loopback with a real store.
type dashServer struct {
	srv   *Server
	store *storage.Store
	cfg   Config
	// opts are the server options besides Config, Store and UI.
	opts  Options
	addr  string // host:port, kept across restarts
	dbDir string
	// serveStop shuts the running server down (testsupport.Serve).
	serveStop func()
}

// dashConfig is the configuration of a dashboard test server listening on addr.
func dashConfig(addr string) Config {
	cfg := DefaultConfig()
	cfg.Server.Listen = addr
	cfg.Server.PublicURL = "http://" + addr
	cfg.Plivo.AuthID = "MATEST"
	cfg.Plivo.AuthToken = dashPlivoTok
	cfg.Dashboard.Username = dashUser
	cfg.Dashboard.PasswordHash = Secret(dashPasswordHash)
	cfg.Dashboard.APITokens = []Secret{dashAPIToken}
	cfg.Reconcile.Enabled = false
	return cfg
}

// startDashServer starts a server on a fresh loopback port and data dir.
func startDashServer(tb testing.TB, mutate func(*Config)) *dashServer {
	tb.Helper()
	return startDashServerOpts(tb, mutate, Options{})
}

// startDashServerOpts is startDashServer with server options besides
// Config, Store and UI.
func startDashServerOpts(tb testing.TB, mutate func(*Config), opts Options) *dashServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	d := &dashServer{addr: ln.Addr().String(), dbDir: tb.TempDir(), opts: opts}
	d.cfg = dashConfig(d.addr)
	if mutate != nil {
		mutate(&d.cfg)
	}
	d.start(tb, ln)
	tb.Cleanup(func() { d.stop(tb) })
	return d
}

// start opens the store and serves on ln (or on d.addr again when ln is nil).
func (d *dashServer) start(tb testing.TB, ln net.Listener) {
	tb.Helper()
	var err error
	if ln == nil {
		// The old listener is closed; the port is free again (SO_REUSEADDR).
		if ln, err = net.Listen("tcp", d.addr); err != nil {
			tb.Fatalf("listen again on %s: %v", d.addr, err)
		}
	}
	if d.store, err = storage.Open(filepath.Join(d.dbDir, "dlr.db"), storage.Options{}); err != nil {
		tb.Fatalf("open store: %v", err)
	}
	opts := d.opts
	opts.Config, opts.Store, opts.UI = d.cfg, d.store, ui.FS
	if d.srv, err = NewServer(opts); err != nil {
		tb.Fatalf("new server: %v", err)
	}
	d.serveStop = testsupport.Serve(tb, d.srv, ln, d.url("/healthz"))
}

// stop shuts the server down and closes the store; safe to call twice.
func (d *dashServer) stop(tb testing.TB) {
	tb.Helper()
	if d.srv == nil {
		return
	}
	d.serveStop()
	// A test may have closed the store itself (the 503 path).
	if err := d.store.Close(); err != nil && !errors.Is(err, storage.ErrClosed) {
		tb.Errorf("close store: %v", err)
	}
	d.srv, d.store = nil, nil
}

func (d *dashServer) url(path string) string { return "http://" + d.addr + path }

// callbackForm is a Plivo-shaped delivery report for uuid.
func callbackForm(uuid, status, errorCode string, seq int) url.Values {
	v := url.Values{
		"MessageUUID": {uuid}, "Status": {status}, "Sequence": {fmt.Sprint(seq)},
		"To": {"447700900123"}, "From": {"14155550100"}, "Type": {"sms"},
		"Units": {"1"}, "TotalRate": {"0.00450"}, "TotalAmount": {"0.00450"},
		"MCC": {"234"}, "MNC": {"10"}, "ErrorCode": {errorCode},
		"MessageTime": {"2024-05-01 10:00:00.123456"}, "QueuedTime": {"2024-05-01 10:00:00.234567"},
	}
	if status != "queued" {
		v.Set("SentTime", "2024-05-01 10:00:01.345678")
	}
	if storage.IsTerminal(status) {
		v.Set("DeliveryReportTime", "2024-05-01 10:00:04.456789")
	}
	return v
}

// signedCallback builds a POST of form to the callback URL, signed with V2
// over cfg.CallbackURL() as Plivo would.
func signedCallback(tb testing.TB, cfg Config, addr string, form url.Values) *http.Request {
	tb.Helper()
	req, err := newSignedCallback(cfg, addr, form)
	if err != nil {
		tb.Fatal(err)
	}
	return req
}

// newSignedCallback is signedCallback for any goroutine: it returns errors.
func newSignedCallback(cfg Config, addr string, form url.Values) (*http.Request, error) {
	// Plivo's nonces are random 20-digit strings.
	nonce := fmt.Sprintf("%010d%010d", mrand.Uint64()%1e10, mrand.Uint64()%1e10)
	sig, err := protocol.ComputeSignatureV2(string(cfg.Plivo.AuthToken), cfg.CallbackURL(), nonce)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+cfg.Plivo.CallbackPath, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("new request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Plivo-Signature-V2", sig)
	req.Header.Set("X-Plivo-Signature-V2-Nonce", nonce)
	return req, nil
}

// sendCallback posts a signed callback and fails unless it is stored (200).
func (d *dashServer) sendCallback(tb testing.TB, uuid, status, errorCode string, seq int) {
	tb.Helper()
	if err := d.trySendCallback(uuid, status, errorCode, seq); err != nil {
		tb.Fatal(err)
	}
}

// trySendCallback is sendCallback for any goroutine: it returns errors.
func (d *dashServer) trySendCallback(uuid, status, errorCode string, seq int) error {
	req, err := newSignedCallback(d.cfg, d.addr, callbackForm(uuid, status, errorCode, seq))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("callback %s %s: %w", uuid, status, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("callback %s %s: got %d %s, want 200", uuid, status, resp.StatusCode, body)
	}
	return nil
}

// noRedirectClient returns a client with a cookie jar that shows redirects
// instead of following them.
func noRedirectClient(tb testing.TB) *http.Client {
	tb.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// login posts the login form and returns the response (body closed).
func (d *dashServer) login(tb testing.TB, c *http.Client, user, password string) *http.Response {
	tb.Helper()
	resp, err := c.PostForm(d.url("/login"), url.Values{"username": {user}, "password": {password}})
	if err != nil {
		tb.Fatalf("post /login: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// sessionCookieOf returns the session cookie a response set, or nil.
func sessionCookieOf(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			return c
		}
	}
	return nil
}

// netListenLoopback listens on a free loopback port.
func netListenLoopback() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// TestErrorCodesAsset: the dashboard's error-code module is generated from
// protocol.ErrorCodes, so the UI shows exactly the server's table.
func TestErrorCodesAsset(t *testing.T) {
	d := startDashServer(t, nil)
	c := noRedirectClient(t)
	if resp := d.login(t, c, dashUser, dashPassword); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: got %d, want 303", resp.StatusCode)
	}
	resp, err := c.Get(d.url("/assets/error-codes.js"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
		t.Fatalf("GET /assets/error-codes.js: got %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	const prefix = "export const errorCodes = "
	i := strings.Index(string(body), prefix)
	if i < 0 {
		t.Fatalf("body %q has no %q", body, prefix)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(strings.TrimSuffix(strings.TrimSpace(string(body[i+len(prefix):])), ";")), &got); err != nil {
		t.Fatalf("decode the table: %v in %q", err, body)
	}
	if !maps.Equal(got, protocol.ErrorCodes) {
		t.Errorf("served table: got %v, want protocol.ErrorCodes %v", got, protocol.ErrorCodes)
	}
	// errors.js holds no table of its own any more.
	js, err := fs.ReadFile(ui.FS, "assets/errors.js")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(js), `"30":`) {
		t.Errorf("ui/static/assets/errors.js still has its own copy of the table")
	}
}
