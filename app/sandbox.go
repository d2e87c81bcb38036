package app

import (
	"crypto/rand"
	"fmt"
	"io"
	"path/filepath"

	"golang.org/x/crypto/bcrypt"

	"plivo-dlr/app/sandbox"
)

// configureForSandbox points cfg's Plivo section at sb: its URL and
// credentials (replacing any real ones, so real callbacks cannot mix in),
// and a source number when none is set.
func configureForSandbox(cfg *Config, sb *sandbox.Sandbox) {
	cfg.Plivo.APIURL = sb.URL()
	cfg.Plivo.AuthID = sb.AuthID()
	cfg.Plivo.AuthToken = Secret(sb.AuthToken())
	cfg.Plivo.ExtraAuthTokens = nil
	if cfg.Plivo.SourceNumber == "" {
		cfg.Plivo.SourceNumber = sandbox.SourceNumber
	}
}

// sandboxDataDir is where serve --sandbox keeps its data: beside the
// configured data_dir, never in it (./data-sandbox by default), so simulated
// messages never mix with real ones.
func sandboxDataDir(dataDir string) string { return filepath.Clean(dataDir) + "-sandbox" }

// SandboxLogin is what the sandbox banner shows to get in.
type SandboxLogin struct {
	Username string
	// Password is generated for this run, or "" when dashboard.password_hash
	// is configured (then the operator knows it).
	Password string
	APIToken string
}

// ConfigureSandbox prepares cfg for serve --sandbox: Plivo pointed at sb,
// data in sandboxDataDir, and, when none is configured, a dashboard
// password and an API token generated for this run (printing them is fine:
// they guard simulated data on loopback).
func ConfigureSandbox(cfg *Config, sb *sandbox.Sandbox) (SandboxLogin, error) {
	configureForSandbox(cfg, sb)
	cfg.Server.DataDir = sandboxDataDir(cfg.Server.DataDir)
	login := SandboxLogin{Username: cfg.Dashboard.Username}
	if cfg.Dashboard.PasswordHash == "" {
		login.Password = rand.Text()
		h, err := bcrypt.GenerateFromPassword([]byte(login.Password), bcrypt.DefaultCost)
		if err != nil {
			return login, fmt.Errorf("hash sandbox password: %w", err)
		}
		cfg.Dashboard.PasswordHash = Secret(h)
	}
	if len(cfg.Dashboard.APITokens) == 0 {
		cfg.Dashboard.APITokens = []Secret{Secret(rand.Text())}
	}
	login.APIToken = string(cfg.Dashboard.APITokens[0])
	return login, nil
}

// WriteBanner prints how to use a sandbox server: the dashboard, the login
// and a send command to try.
func (l SandboxLogin) WriteBanner(w io.Writer, cfg Config) {
	password := l.Password
	if password == "" {
		password = "(the password of dashboard.password_hash)"
	}
	fmt.Fprintf(w, `
  plivo-dlr sandbox: a simulated Plivo, no account needed (data in %s)

  dashboard  %s/
  login      %s / %s
  API token  %s

  try        PLIVO_DLR_API_TOKEN=%s go run . send --to +14155550123 --text "hello"
             (or plivo-dlr send ...); %.0f%% of messages fail, as on a real network
             a few recipients reply; the second reply is a STOP, and the next
             send to that number is refused (409) until you remove it from
             the opt-out list

`, cfg.Server.DataDir, cfg.EffectivePublicURL(), l.Username, password, l.APIToken, l.APIToken, 100*cfg.Sandbox.FailureShare)
	writeForwardHint(w, cfg)
}
