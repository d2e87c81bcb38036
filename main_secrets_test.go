package main

import (
	"context"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// withListen rewrites the listen address of a config from writeConfig.
func withListen(t *testing.T, configPath, listen string) string {
	t.Helper()
	data, err := os.ReadFile(configPath)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "config.toml")
	s := strings.Replace(string(data), `listen = "127.0.0.1:0"`, `listen = "`+listen+`"`, 1)
	if err := os.WriteFile(out, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// postLogin posts the login form from c and returns the status.
func postLogin(t *testing.T, c *http.Client, addr, user, password string) int {
	t.Helper()
	resp, err := c.PostForm("http://"+addr+"/login", url.Values{"username": {user}, "password": {password}})
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func loginClient(t *testing.T) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// A first start whose port is taken exits without generating a password;
// the next start that binds writes it to a 0600 file in the data dir, logs
// only the file's path, and the password in it logs in (issue 10 §4: the
// password went to the journal, and a failed start lost it).
func TestBinaryGeneratedPasswordFile(t *testing.T) {
	dataDir := t.TempDir()
	pwFile := filepath.Join(dataDir, "dashboard-password")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(buildBinary(t), "serve", "-config", withListen(t, writeConfig(t, dataDir), busy.Addr().String()))
	out, err := cmd.CombinedOutput()
	busy.Close()
	if err == nil {
		t.Fatalf("serve on a taken port exited 0:\n%s", out)
	}
	if _, err := os.Stat(pwFile); !os.IsNotExist(err) {
		t.Fatalf("password file after a failed start: %v, want none", err)
	}
	if strings.Contains(string(out), "generated") {
		t.Errorf("a failed start says it generated a password:\n%s", out)
	}

	p := startBinary(t, writeConfig(t, dataDir))
	fi, err := os.Stat(pwFile)
	if err != nil {
		t.Fatalf("password file after a good start: %v\n%s", err, p.stderr.String())
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("password file mode: got %o, want 600", mode)
	}
	data, _ := os.ReadFile(pwFile)
	fields := strings.Fields(string(data))
	if len(fields) != 2 {
		t.Fatalf("password file: got %q, want username and password", data)
	}
	logs := p.stderr.String()
	if strings.Contains(logs, fields[1]) {
		t.Errorf("the generated password is in the log:\n%s", logs)
	}
	if !strings.Contains(logs, pwFile) {
		t.Errorf("the log does not name the password file %s:\n%s", pwFile, logs)
	}
	if code := postLogin(t, loginClient(t), p.addr, fields[0], fields[1]); code != http.StatusSeeOther {
		t.Errorf("login with the file's password: got %d, want 303", code)
	}
	p.stop(t)
	// A restart keeps the password and generates nothing.
	p = startBinary(t, writeConfig(t, dataDir))
	if again, _ := os.ReadFile(pwFile); string(again) != string(data) {
		t.Errorf("password file changed on restart")
	}
	if strings.Contains(p.stderr.String(), "generated") {
		t.Errorf("restart generated a password again:\n%s", p.stderr.String())
	}
	p.stop(t)
}

// The binary, configured with every kind of secret and driven through
// logins (wrong and right), API calls (token, wrong token, session),
// callbacks (valid, forged, replayed, malformed) and a metrics scrape, never
// writes one of them to its log, nor the session cookie it issued.
func TestBinaryLogsNoSecrets(t *testing.T) {
	const (
		password     = "correct horse battery staple 42"
		metricsToken = "metrics-secret-token-9876543210"
		wrongToken   = "wrong-api-token-abcdefghijklmnop"
		wrongPass    = "wrong-password-qwertyuiop"
	)
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := writeConfig(t, t.TempDir())
	f, err := os.OpenFile(cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// TOML allows a table only once: the dashboard keys go in by rewriting.
	f.Close()
	data, _ := os.ReadFile(cfgPath)
	s := strings.Replace(string(data), "[dashboard]\n", "[dashboard]\npassword_hash = \""+string(hash)+"\"\n", 1)
	s += "\n[metrics]\ntoken = \"" + metricsToken + "\"\n"
	if err := os.WriteFile(cfgPath, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, cfgPath)
	client := &http.Client{Timeout: 10 * time.Second}
	do := func(method, path, auth string, c *http.Client) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(context.Background(), method, "http://"+p.addr+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if c == nil {
			c = client
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	if code := postLogin(t, loginClient(t), p.addr, "admin", wrongPass); code != http.StatusUnauthorized {
		t.Errorf("wrong password: got %d, want 401", code)
	}
	if code := postLogin(t, loginClient(t), p.addr, wrongPass, password); code != http.StatusUnauthorized {
		t.Errorf("password as username: got %d, want 401", code)
	}
	user := loginClient(t)
	if code := postLogin(t, user, p.addr, "admin", password); code != http.StatusSeeOther {
		t.Fatalf("right password: got %d, want 303", code)
	}
	u, _ := url.Parse("http://" + p.addr + "/")
	var cookie string
	for _, c := range user.Jar.Cookies(u) {
		cookie = c.Value
	}
	if cookie == "" {
		t.Fatal("no session cookie")
	}
	for _, tc := range []struct {
		path, auth string
		c          *http.Client
		want       int
	}{
		{"/api/messages", "Bearer " + testAPIToken, nil, 200},
		{"/api/messages", "Bearer " + wrongToken, nil, 401},
		{"/api/messages", "Basic " + testAPIToken, nil, 401},
		{"/api/messages", "", user, 200},
		{"/api/messages/not-a-uuid", "Bearer " + testAPIToken, nil, 0},
		{"/metrics", "Bearer " + metricsToken, nil, 200},
		{"/metrics", "Bearer " + wrongToken, nil, 401},
	} {
		if got := do(http.MethodGet, tc.path, tc.auth, tc.c); tc.want != 0 && got != tc.want {
			t.Errorf("GET %s (%.12s...): got %d, want %d", tc.path, tc.auth, got, tc.want)
		}
	}
	nonce := randomNonce()
	good := signedForm(t, statusFields("5b8f0a3e-8f8e-11ef-9b1d-0242ac120002", "delivered", 3), nonce)
	if code, _ := p.send(t, client, good); code != http.StatusOK {
		t.Errorf("valid callback: got %d, want 200", code)
	}
	replay := signedForm(t, statusFields("5b8f0a3e-8f8e-11ef-9b1d-0242ac120002", "failed", 4), nonce)
	if code, _ := p.send(t, client, replay); code != http.StatusForbidden {
		t.Errorf("replayed callback: got %d, want 403", code)
	}
	forged := signedForm(t, statusFields("5b8f0a3e-8f8e-11ef-9b1d-0242ac120003", "delivered", 3), randomNonce())
	forged.headers["X-Plivo-Signature-V2"] = "AAAA" + forged.headers["X-Plivo-Signature-V2"][4:]
	if code, _ := p.send(t, client, forged); code != http.StatusForbidden {
		t.Errorf("forged callback: got %d, want 403", code)
	}
	bad := signedForm(t, url.Values{"Status": {"delivered"}}, randomNonce())
	if code, _ := p.send(t, client, bad); code != http.StatusBadRequest {
		t.Errorf("malformed callback: got %d, want 400", code)
	}
	if code := do(http.MethodPost, "/logout", "", user); code != http.StatusForbidden && code != http.StatusSeeOther {
		t.Errorf("logout: got %d", code)
	}
	p.stop(t)

	logs := p.stderr.String()
	for name, secret := range map[string]string{
		"plivo auth token": testAuthToken, "dashboard password": password, "wrong password": wrongPass,
		"api token": testAPIToken, "wrong api token": wrongToken, "metrics token": metricsToken,
		"session cookie": cookie, "password hash": string(hash),
	} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains the %s", name)
		}
	}
	if strings.Contains(strings.ToLower(logs), "authorization: bearer") {
		t.Errorf("the log contains an Authorization header")
	}
	if !strings.Contains(logs, "login failed") {
		t.Errorf("the log has no line of the failed login: the run did not exercise it\n%s", logs)
	}
}
