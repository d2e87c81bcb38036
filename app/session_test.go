package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"plivo-dlr/storage"
)

// TestSessionProtectedRoutes: without credentials the API and the stream
// answer 401 JSON, pages redirect to /login; a token or a session opens them.
func TestSessionProtectedRoutes(t *testing.T) {
	d := startDashServer(t, nil)
	anon := noRedirectClient(t)
	user := noRedirectClient(t)
	if resp := d.login(t, user, dashUser, dashPassword); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: got %d, want 303", resp.StatusCode)
	}
	wsHeaders := map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
	cases := []struct {
		name, path string
		headers    map[string]string
		anonCode   int
		anonTo     string // Location for redirects
	}{
		{"index", "/", nil, http.StatusSeeOther, "/login"},
		{"asset", "/assets/app.js", nil, http.StatusSeeOther, "/login"},
		{"list", "/api/messages", nil, http.StatusUnauthorized, ""},
		{"stats", "/api/stats", nil, http.StatusUnauthorized, ""},
		{"config", "/api/config", nil, http.StatusUnauthorized, ""},
		{"ws", "/ws", wsHeaders, http.StatusUnauthorized, ""},
	}
	do := func(c *http.Client, path string, headers map[string]string, bearer string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, d.url(path), nil)
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := do(anon, tc.path, tc.headers, "")
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.anonCode {
				t.Fatalf("anonymous %s: got %d, want %d", tc.path, resp.StatusCode, tc.anonCode)
			}
			if tc.anonTo != "" {
				if got := resp.Header.Get("Location"); got != tc.anonTo {
					t.Errorf("anonymous %s: Location got %q, want %q", tc.path, got, tc.anonTo)
				}
			} else {
				var e struct{ Error string }
				if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
					t.Errorf("anonymous %s: body got %q, want JSON {\"error\": ...}", tc.path, body)
				}
			}
			if tc.name == "ws" {
				return // the authenticated upgrade is covered by the WebSocket tests
			}
			if resp := do(user, tc.path, nil, ""); resp.StatusCode != http.StatusOK {
				t.Errorf("with session %s: got %d, want 200", tc.path, resp.StatusCode)
			} else {
				resp.Body.Close()
			}
			if strings.HasPrefix(tc.path, "/api/") {
				if resp := do(anon, tc.path, nil, dashAPIToken); resp.StatusCode != http.StatusOK {
					t.Errorf("with token %s: got %d, want 200", tc.path, resp.StatusCode)
				} else {
					resp.Body.Close()
				}
				if resp := do(anon, tc.path, nil, dashAPIToken+"x"); resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("with a wrong token %s: got %d, want 401", tc.path, resp.StatusCode)
				} else {
					resp.Body.Close()
				}
			}
		})
	}

	t.Run("logout", func(t *testing.T) {
		resp, err := user.Post(d.url("/logout"), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("logout: got %d, want 303", resp.StatusCode)
		}
		if resp := do(user, "/api/messages", nil, ""); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("after logout: got %d, want 401", resp.StatusCode)
		}
	})
	t.Run("forged cookie", func(t *testing.T) {
		c := noRedirectClient(t)
		u := d.url("/api/messages")
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		exp := time.Now().Add(time.Hour)
		forged := (&dashboardAuth{username: dashUser, sessionKey: []byte("not the key")}).newSession(dashUser, exp)
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: forged})
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("forged session: got %d, want 401", resp.StatusCode)
		}
	})
}

// TestSessionLoginFailures: a wrong password is refused with 401 and no
// cookie, and after loginMaxFailures failures further attempts get 429,
// even with the right password.
func TestSessionLoginFailures(t *testing.T) {
	d := startDashServer(t, nil)
	c := noRedirectClient(t)
	for i := range loginMaxFailures {
		resp := d.login(t, c, dashUser, "wrong password")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: got %d, want 401", i+1, resp.StatusCode)
		}
		if ck := sessionCookieOf(resp); ck != nil {
			t.Fatalf("attempt %d: got a session cookie for a wrong password", i+1)
		}
	}
	resp := d.login(t, c, dashUser, dashPassword)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after %d failures: got %d, want 429", loginMaxFailures, resp.StatusCode)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Errorf("429 without Retry-After")
	}
	if sessionCookieOf(resp) != nil {
		t.Errorf("locked out login still set a session cookie")
	}
}

// TestSessionCookieFlags: HttpOnly and SameSite=Strict always; Secure
// exactly when the server runs TLS.
func TestSessionCookieFlags(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tls    bool
		secure bool
	}{{"plain http", false, false}, {"tls", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			d := startDashServer(t, func(c *Config) {
				if tc.tls {
					// Only the cookie policy reads the mode here; the test
					// listener stays plain.
					c.TLS.Mode = "files"
				}
			})
			resp := d.login(t, noRedirectClient(t), dashUser, dashPassword)
			var raw string
			for _, h := range resp.Header.Values("Set-Cookie") {
				if strings.HasPrefix(h, sessionCookie+"=") {
					raw = strings.ToLower(h)
				}
			}
			if raw == "" {
				t.Fatalf("no session cookie set (status %d)", resp.StatusCode)
			}
			for _, want := range []string{"httponly", "samesite=strict", "path=/"} {
				if !strings.Contains(raw, want) {
					t.Errorf("cookie %q: missing %s", raw, want)
				}
			}
			if got := strings.Contains(raw, "secure"); got != tc.secure {
				t.Errorf("cookie %q: secure got %v, want %v", raw, got, tc.secure)
			}
		})
	}
}

// TestSessionGeneratedPassword: without a configured hash no password
// exists until EnsureDashboardPassword (called once the listeners are
// bound); it then writes the password to a 0600 file in the data dir, stores
// only its hash, logs nothing of it, and a restart keeps both.
func TestSessionGeneratedPassword(t *testing.T) {
	dir := t.TempDir()
	var store *storage.Store
	cfg := dashConfig("127.0.0.1:1")
	cfg.Dashboard.PasswordHash = ""
	var logs bytes.Buffer
	// newSrv starts the server as a process start would: on a freshly
	// opened store (a store feeds its applied events to one server).
	newSrv := func() *Server {
		t.Helper()
		if store != nil {
			if err := store.Close(); err != nil {
				t.Fatal(err)
			}
		}
		var err error
		if store, err = storage.Open(filepath.Join(dir, "dlr.db"), storage.Options{}); err != nil {
			t.Fatal(err)
		}
		st := store
		t.Cleanup(func() { st.Close() })
		srv, err := NewServer(Options{Config: cfg, Store: store, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatalf("new server: %v", err)
		}
		return srv
	}
	srv := newSrv()
	if _, err := store.GetMeta(metaPasswordHash); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("hash stored before EnsureDashboardPassword: %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(filepath.Join(dir, PasswordFileName)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("password file before EnsureDashboardPassword: %v, want none", err)
	}
	path, err := srv.EnsureDashboardPassword(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, PasswordFileName); path != want {
		t.Fatalf("password file: got %q, want %q", path, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("password file mode: got %o, want 600", mode)
	}
	data, _ := os.ReadFile(path)
	lines := strings.Fields(string(data))
	if len(lines) != 2 || lines[0] != dashUser || len(lines[1]) < 20 {
		t.Fatalf("password file: got %q, want the username and a password", data)
	}
	if !srv.auth.checkPassword(dashUser, lines[1]) {
		t.Errorf("the password in the file does not log in")
	}
	h1, err := store.GetMeta(metaPasswordHash)
	if err != nil || !strings.HasPrefix(string(h1), "$2") {
		t.Fatalf("stored hash: got %q (%v), want a bcrypt hash", h1, err)
	}
	if strings.Contains(logs.String(), lines[1]) {
		t.Errorf("the generated password appears in the log:\n%s", logs.String())
	}
	// A restart finds the hash: nothing new is generated.
	srv = newSrv()
	if path, err := srv.EnsureDashboardPassword(dir); err != nil || path != "" {
		t.Errorf("after restart: got %q, %v; want nothing generated", path, err)
	}
	h2, _ := store.GetMeta(metaPasswordHash)
	if string(h2) != string(h1) || !srv.auth.checkPassword(dashUser, lines[1]) {
		t.Errorf("after restart: hash %q, want %q still logging in", h2, h1)
	}
	if _, err := store.GetMeta(metaSessionKey); err != nil {
		t.Errorf("session key not stored: %v", err)
	}
}

// TestSessionWebSocketRefused: no credentials → 401; a foreign Origin →
// 403, even with a valid session.
func TestSessionWebSocketRefused(t *testing.T) {
	d := startDashServer(t, nil)
	c := noRedirectClient(t)
	ck := sessionCookieOf(d.login(t, c, dashUser, dashPassword))
	if ck == nil {
		t.Fatal("login set no session cookie")
	}
	wsURL := "ws://" + d.addr + "/ws"
	cases := []struct {
		name   string
		header http.Header
		want   int
	}{
		{"no credentials", http.Header{}, http.StatusUnauthorized},
		{"token in the query is not accepted", http.Header{}, http.StatusUnauthorized},
		{"cross-origin with session", http.Header{"Cookie": {ck.Name + "=" + ck.Value}, "Origin": {"http://evil.example"}}, http.StatusForbidden},
		{"cross-origin with token", http.Header{"Authorization": {"Bearer " + dashAPIToken}, "Origin": {"http://evil.example"}}, http.StatusForbidden},
		{"same origin with session", http.Header{"Cookie": {ck.Name + "=" + ck.Value}, "Origin": {"http://" + d.addr}}, http.StatusSwitchingProtocols},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := wsURL
			if strings.HasPrefix(tc.name, "token in the query") {
				u += "?token=" + dashAPIToken
			}
			conn, resp, err := websocket.DefaultDialer.Dial(u, tc.header)
			if conn != nil {
				conn.Close()
			}
			if resp == nil {
				t.Fatalf("dial: no response: %v", err)
			}
			if resp.StatusCode != tc.want {
				t.Errorf("got %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

var _ = storage.StatusDelivered

// TestSessionLogoutRevokes checks that logging out kills the session on the
// server: a copy of the cookie taken before the logout is refused, also after
// a restart, while another session of the same user goes on working.
func TestSessionLogoutRevokes(t *testing.T) {
	d := startDashServer(t, nil)
	loginCookie := func() string {
		t.Helper()
		resp := d.login(t, noRedirectClient(t), dashUser, dashPassword)
		resp.Body.Close()
		ck := sessionCookieOf(resp)
		if ck == nil || ck.Value == "" {
			t.Fatalf("login: got %d and no session cookie", resp.StatusCode)
		}
		return ck.Value
	}
	withCookie := func(method, path, value string) int {
		t.Helper()
		req, _ := http.NewRequest(method, d.url(path), nil)
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: value})
		req.Header.Set("Origin", "http://"+d.addr)
		resp, err := noRedirectClient(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	copied, other := loginCookie(), loginCookie()
	if got := withCookie(http.MethodGet, "/api/messages", copied); got != http.StatusOK {
		t.Fatalf("before logout: got %d, want 200", got)
	}
	if got := withCookie(http.MethodPost, "/logout", copied); got != http.StatusSeeOther {
		t.Fatalf("logout: got %d, want 303", got)
	}
	if got := withCookie(http.MethodGet, "/api/messages", copied); got != http.StatusUnauthorized {
		t.Errorf("copied cookie after logout: got %d, want 401", got)
	}
	if got := withCookie(http.MethodGet, "/api/messages", other); got != http.StatusOK {
		t.Errorf("the user's other session after one logout: got %d, want 200", got)
	}
	d.stop(t)
	d.start(t, nil)
	if got := withCookie(http.MethodGet, "/api/messages", copied); got != http.StatusUnauthorized {
		t.Errorf("copied cookie after logout and restart: got %d, want 401", got)
	}
	if got := withCookie(http.MethodGet, "/api/messages", other); got != http.StatusOK {
		t.Errorf("other session after restart: got %d, want 200", got)
	}
}
