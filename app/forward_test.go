package app

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestForwardConfigErrors(t *testing.T) {
	dir := t.TempDir()
	secretsFile := filepath.Join(dir, "secrets")
	if err := os.WriteFile(secretsFile, []byte("# rotated 2026-12\n"+goodSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	worldReadable := filepath.Join(dir, "secrets-644")
	if err := os.WriteFile(worldReadable, []byte(goodSecret+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hook := func(extra string) string {
		return "[[forward.webhooks]]\nname = \"app\"\nurl = \"https://app.example.com/h\"\n" + extra
	}
	tests := []struct{ toml, want string }{
		{hook(`secrets = ["` + goodSecret + `"]`), ""},
		{hook(`secrets_file = "` + secretsFile + `"`), ""},
		{hook(`secrets_file = "` + worldReadable + `"`), `forward.webhooks[0].secrets_file: ` + worldReadable + ` is readable by everyone; chmod 600 it`},
		{hook(``), `forward.webhooks[0].secrets: set at least one whsec_ secret (or secrets_file)`},
		{hook(`secrets = ["abc"]`), `forward.webhooks[0].secrets: secret must start with whsec_`},
		{hook(`secrets_file = "/nonexistent/secrets"`), `forward.webhooks[0].secrets_file: open /nonexistent/secrets: no such file or directory`},
		{hook(`secrets = ["` + goodSecret + `"]` + "\ntypes = [\"message.sent\"]"), `forward.webhooks[0].types: must list message.status and/or message.inbound (got "message.sent")`},
		{hook(`secrets = ["` + goodSecret + `"]` + "\nconcurrency = 1000"), `forward.webhooks[0].concurrency: must be from 1 to 256 (got 1000)`},
		{hook(`secrets = ["` + goodSecret + `"]` + "\ntimeout = \"-1s\""), `forward.webhooks[0].timeout: must be positive (got "-1s")`},
		{hook(`secrets = ["` + goodSecret + `"]` + "\nca_file = \"/nonexistent/ca.pem\""), `forward.webhooks[0].ca_file: cannot read PEM file: stat /nonexistent/ca.pem: no such file or directory`},
		{strings.Replace(hook(`secrets = ["`+goodSecret+`"]`), `"app"`, `"App"`, 1), `forward.webhooks[0].name: must be lower-case letters, digits and - (got "App")`},
		{strings.Replace(hook(`secrets = ["`+goodSecret+`"]`), `https://app.example.com/h`, `ftp://x`, 1), `forward.webhooks[0].url: must be an http(s) URL (got "ftp://x")`},
		{hook(`secrets = ["`+goodSecret+`"]`) + "\n" + hook(`secrets = ["`+goodSecret+`"]`), `forward.webhooks[1].name: "app" is already used (names are unique; "nats" is the NATS sink)`},
		{"[forward.nats]\nurl = \"nats://127.0.0.1:4222\"\n", ""},
		{"[forward.nats]\nurl = \"http://127.0.0.1:4222\"\n", `forward.nats.url: must be nats://host:port (or tls://, ws://, wss://; comma-separated) (got "http://127.0.0.1:4222")`},
		{"[forward.nats]\nurl = \"nats://h:4222\"\nsubject_prefix = \"plivo.*\"\n", `forward.nats.subject_prefix: must be dot-separated tokens without spaces or wildcards (got "plivo.*")`},
		{"[forward.nats]\nurl = \"nats://h:4222\"\ntoken = \"t\"\nuser = \"u\"\n", `forward.nats.credentials_file: set only one of credentials_file, token, user + password`},
		{"[forward.nats]\nurl = \"nats://h:4222\"\npassword = \"p\"\n", `forward.nats.user: must be set when forward.nats.password is set`},
		{"[forward.nats]\nurl = \"nats://h:4222\"\nduplicate_window = \"0s\"\n", `forward.nats.duplicate_window: must be positive (got "0s")`},
		{"[forward.nats]\nstreams = \"x\"\n", `forward.nats.streams: unknown key (did you mean forward.nats.stream?)`},
	}
	for _, tt := range tests {
		cfg, err := ParseConfig(strings.NewReader(tt.toml))
		if err == nil {
			err = cfg.Validate()
		}
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("config\n%s\ngot  %q\nwant %q", tt.toml, got, tt.want)
		}
	}
	// Defaults fill what an entry leaves out.
	cfg, _ := ParseConfig(strings.NewReader(hook(`secrets = ["` + goodSecret + `"]`)))
	if w := cfg.Forward.Webhooks[0]; w.Concurrency != 8 || w.Timeout.D().String() != "10s" || w.MaxAge.D().String() != "72h0m0s" {
		t.Errorf("webhook defaults: %+v", w)
	}
	// check-config masks the webhook secrets.
	masked, _ := cfg.Masked()
	if strings.Contains(masked, goodSecret) {
		t.Error("Masked shows a webhook secret")
	}
}

func TestForwardRoutesNeedAuth(t *testing.T) {
	d := startDashServer(t, nil)
	get := func(method, path string, token string) (int, string) {
		req, _ := http.NewRequest(method, d.url(path), nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, r := range [][2]string{{"GET", "/api/forward"}, {"GET", "/api/forward/app/dead"}, {"POST", "/api/forward/app/retry"}, {"POST", "/api/forward/app/replay?since=1"}} {
		if code, _ := get(r[0], r[1], ""); code != http.StatusUnauthorized {
			t.Errorf("%s %s without auth: %d", r[0], r[1], code)
		}
	}
	code, body := get("GET", "/api/forward", dashAPIToken)
	var st struct {
		Sinks []json.RawMessage `json:"sinks"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st.Sinks == nil || len(st.Sinks) != 0 {
		t.Errorf("GET /api/forward with no sinks: %d %s", code, body)
	}
	if code, body := get("POST", "/api/forward/app/retry", dashAPIToken); code != 404 || !strings.Contains(body, `no forwarding sink \"app\"`) {
		t.Errorf("retry of an unknown sink: %d %s", code, body)
	}
	if code, _ := get("POST", "/api/forward/app/replay?since=x", dashAPIToken); code != 400 {
		t.Errorf("replay with a bad since: %d", code)
	}
	if code, _ := get("GET", "/api/forward/app/dead?limit=5000", dashAPIToken); code != 400 {
		t.Errorf("dead list with limit 5000: %d", code)
	}
}
