package app

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func noEnv(string) string { return "" }

// TestLoadConfigErrors checks that each bad config in testdata/config fails
// with one line naming the key and the problem.
func TestLoadConfigErrors(t *testing.T) {
	tests := map[string]string{
		"acme-no-domains.toml":  "tls.domains: must list at least one domain when tls.mode is acme",
		"bad-duration.toml":     `plivo.nonce_ttl: not a duration like "30m" or "24h": "soon"`,
		"bad-listen.toml":       `server.listen: must be host:port (got "8080")`,
		"bad-log-format.toml":   `log.format: must be text or json (got "xml")`,
		"bad-public-url.toml":   `server.public_url: must start with http:// or https:// (got "hooks.example.com/x")`,
		"bad-share.toml":        "sandbox.failure_share: must be between 0 and 1 (got 1.5)",
		"bad-tls-mode.toml":     `tls.mode: must be off, acme or files (got "auto")`,
		"events-over-days.toml": "retention.events_days: must not exceed retention.days (20 > 10)",
		"files-no-key.toml":     "tls.key_file: must be set when tls.mode is files",
		"plain-password.toml":   "dashboard.password_hash: must be a bcrypt hash ($2b$...); create one with `plivo-dlr hash-password`",
		"token-without-id.toml": "plivo.auth_id: must be set when plivo.auth_token is set",
		"unknown-key.toml":      "server.lisen: unknown key (did you mean server.listen?)",
		"wrong-type.toml":       "server.listen: must be a string (got an integer)",
		"syntax.toml":           "line 1 column",
	}
	files, err := filepath.Glob("testdata/config/*.toml")
	if err != nil || len(files) != len(tests) {
		t.Fatalf("found %d files in testdata/config (err %v), want %d", len(files), err, len(tests))
	}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := LoadConfig(filepath.Join("testdata/config", name), noEnv)
			if err == nil {
				t.Fatalf("got no error, want %q", want)
			}
			if got := err.Error(); !strings.HasPrefix(got, want) || strings.Contains(got, "\n") {
				t.Errorf("got %q, want one line starting %q", got, want)
			}
		})
	}
}

func TestDefaultConfigIsValid(t *testing.T) {
	cfg, err := LoadConfig("", noEnv)
	if err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if cfg.Server.Listen != "127.0.0.1:8080" || cfg.Server.DataDir != "./data" || cfg.TLS.Mode != "off" {
		t.Errorf("defaults: listen %q data_dir %q tls %q", cfg.Server.Listen, cfg.Server.DataDir, cfg.TLS.Mode)
	}
	if got, want := cfg.CallbackURL(), "http://127.0.0.1:8080/plivo/callback"; got != want {
		t.Errorf("CallbackURL() = %q, want %q", got, want)
	}
}

func TestExampleConfigMatchesDefaults(t *testing.T) {
	cfg, err := LoadConfig("../config.toml.example", noEnv)
	if err != nil {
		t.Fatalf("config.toml.example: %v", err)
	}
	got, _ := cfg.Masked()
	def := DefaultConfig()
	want, _ := def.Masked()
	if got != want {
		t.Errorf("config.toml.example differs from DefaultConfig:\ngot\n%s\nwant\n%s", got, want)
	}
}

func TestApplyEnv(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := writeFile(tokenFile, "from-file-token\n"); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"PLIVO_AUTH_ID":                     "MAID",
		"PLIVO_AUTH_TOKEN_FILE":             tokenFile,
		"PLIVO_PHONE_NUMBER":                "+14155550100",
		"PLIVO_DLR_SERVER_PUBLIC_URL":       "https://hooks.example.com/",
		"PLIVO_DLR_PLIVO_EXTRA_AUTH_TOKENS": "a, b,,c",
		"PLIVO_DLR_RECONCILE_AFTER":         "45m",
		"PLIVO_DLR_METRICS_ENABLED":         "false",
		"PLIVO_DLR_SANDBOX_FAILURE_SHARE":   "0.25",
		"PLIVO_DLR_FORWARD_NATS_URL":        "nats://127.0.0.1:4222",
		"PLIVO_DLR_FORWARD_NATS_TOKEN":      "nats-token",
	}
	cfg, err := LoadConfig("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"auth_id", cfg.Plivo.AuthID, "MAID"},
		{"auth_token from file", string(cfg.Plivo.AuthToken), "from-file-token"},
		{"source_number", cfg.Plivo.SourceNumber, "+14155550100"},
		{"public_url trimmed", cfg.EffectivePublicURL(), "https://hooks.example.com"},
		{"extra tokens", len(cfg.Plivo.ExtraAuthTokens), 3},
		{"reconcile.after", cfg.Reconcile.After.D(), 45 * time.Minute},
		{"metrics.enabled", cfg.Metrics.Enabled, false},
		{"failure_share", cfg.Sandbox.FailureShare, 0.25},
		{"auth tokens", len(cfg.AuthTokens()), 4},
		{"forward.nats.url", cfg.Forward.NATS.URL, "nats://127.0.0.1:4222"},
		{"forward.nats.token", string(cfg.Forward.NATS.Token), "nats-token"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Plivo.AuthToken = "do-not-print-me"
	out, err := cfg.Masked()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "do-not-print-me") {
		t.Errorf("Masked() leaks the token:\n%s", out)
	}
	if s := cfg.Plivo.AuthToken.String(); s != secretMask {
		t.Errorf("Secret.String() = %q, want the mask", s)
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }

// TestConfigReportsEveryProblem: every unknown key of a file is reported,
// one line each, with a suggestion when a known key is close; keys under a
// misspelt section are reported once as that section; type errors say what
// the key must be, in one line without Go type names.
func TestConfigReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name, toml string
		want       []string
	}{
		{"two unknown keys", "[server]\nlisen = \"127.0.0.1:8080\"\npublic_ur = \"https://x\"\n", []string{
			"server.lisen: unknown key (did you mean server.listen?)",
			"server.public_ur: unknown key (did you mean server.public_url?)",
		}},
		{"misspelt section", "[sever]\nlisten = \"a\"\ndata_dir = \"b\"\n[metrics]\ntokn = \"x\"\n", []string{
			"sever: unknown section (did you mean server?)",
			"metrics.tokn: unknown key (did you mean metrics.token?)",
		}},
		{"nested", "[forward.nats]\nurll = \"x\"\n[[forward.webhooks]]\nsecret = [\"x\"]\nfoo = 1\n", []string{
			"forward.nats.urll: unknown key (did you mean forward.nats.url?)",
			"forward.webhooks.secret: unknown key (did you mean forward.webhooks.secrets?)",
			"forward.webhooks.foo: unknown key",
		}},
		{"integer for a string list", "[dashboard]\napi_tokens = 5\n", []string{"dashboard.api_tokens: must be a list of strings (got an integer)"}},
		{"string for a bool", "[metrics]\nenabled = \"yes\"\n", []string{"metrics.enabled: must be true or false (got a string)"}},
		{"string for an integer", "[retention]\ndays = \"90\"\n", []string{"retention.days: must be an integer (got a string)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig(strings.NewReader(tt.toml))
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			if got := strings.Split(err.Error(), "\n"); strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("got\n%s\nwant\n%s", err, strings.Join(tt.want, "\n"))
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Errorf("errors.As(*ConfigError) = false for %T (main exits 2 on it)", err)
			}
		})
	}
}

// TestUnknownEnv: a PLIVO_DLR_* variable that sets no key is reported with
// the closest name; known names, their _FILE forms, extra names and other
// variables are not.
func TestUnknownEnv(t *testing.T) {
	got := UnknownEnv([]string{
		"PLIVO_DLR_SERVER_LISEN=127.0.0.1:9",
		"PLIVO_DLR_SERVER_LISTEN=127.0.0.1:9",
		"PLIVO_DLR_PLIVO_AUTH_TOKEN_FILE=/run/credentials/x",
		"PLIVO_DLR_FORWARD_NATS_URL=nats://h:4222",
		"PLIVO_DLR_DASHBOARD_API_TOKEN_FILE=/x",
		"PLIVO_DLR_API_TOKEN=t",
		"PLIVO_DLR_NOTHING_LIKE_IT=1",
		"HOME=/root",
	}, "PLIVO_DLR_API_TOKEN")
	want := []string{
		"PLIVO_DLR_DASHBOARD_API_TOKEN_FILE: environment variable matches no config key, ignored (did you mean PLIVO_DLR_DASHBOARD_API_TOKENS_FILE?)",
		"PLIVO_DLR_NOTHING_LIKE_IT: environment variable matches no config key, ignored",
		"PLIVO_DLR_SERVER_LISEN: environment variable matches no config key, ignored (did you mean PLIVO_DLR_SERVER_LISTEN?)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
