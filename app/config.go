package app

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// Config is the whole configuration of plivo-dlr. Its zero value is not
// usable: start from DefaultConfig.
type Config struct {
	Server    ServerConfig    `toml:"server"`
	TLS       TLSConfig       `toml:"tls"`
	Plivo     PlivoConfig     `toml:"plivo"`
	Dashboard DashboardConfig `toml:"dashboard"`
	Metrics   MetricsConfig   `toml:"metrics"`
	Retention RetentionConfig `toml:"retention"`
	Reconcile ReconcileConfig `toml:"reconcile"`
	Sandbox   SandboxConfig   `toml:"sandbox"`
	Forward   ForwardConfig   `toml:"forward"`
	Log       LogConfig       `toml:"log"`
}

// ServerConfig is the [server] section.
type ServerConfig struct {
	// Listen is the main listener: plain HTTP with tls.mode=off, HTTPS otherwise.
	Listen string `toml:"listen"`
	// PublicURL is the URL Plivo calls (scheme, host, optional port, optional
	// path prefix). Signatures are computed over it, so it must match exactly.
	PublicURL string `toml:"public_url"`
	DataDir   string `toml:"data_dir"`
}

// TLSConfig is the [tls] section.
type TLSConfig struct {
	Mode       string   `toml:"mode"`
	Domains    []string `toml:"domains"`
	Email      string   `toml:"email"`
	ACMECA     string   `toml:"acme_ca"`
	ACMECARoot string   `toml:"acme_ca_root"`
	HTTPListen string   `toml:"http_listen"`
	CertFile   string   `toml:"cert_file"`
	KeyFile    string   `toml:"key_file"`
}

// PlivoConfig is the [plivo] section.
type PlivoConfig struct {
	AuthID          string   `toml:"auth_id"`
	AuthToken       Secret   `toml:"auth_token"`
	ExtraAuthTokens []Secret `toml:"extra_auth_tokens"`
	SourceNumber    string   `toml:"source_number"`
	APIURL          string   `toml:"api_url"`
	CallbackPath    string   `toml:"callback_path"`
	NonceTTL        Duration `toml:"nonce_ttl"`
	// RequireV3 refuses callbacks signed with V2 only (see callback_nonce.go).
	RequireV3 bool `toml:"require_v3"`
}

// DashboardConfig is the [dashboard] section.
type DashboardConfig struct {
	Username     string   `toml:"username"`
	PasswordHash Secret   `toml:"password_hash"`
	APITokens    []Secret `toml:"api_tokens"`
}

// MetricsConfig is the [metrics] section.
type MetricsConfig struct {
	Enabled bool   `toml:"enabled"`
	Listen  string `toml:"listen"`
	Token   Secret `toml:"token"`
}

// RetentionConfig is the [retention] section. Zero keeps data forever.
type RetentionConfig struct {
	Days       int `toml:"days"`
	EventsDays int `toml:"events_days"`
}

// ReconcileConfig is the [reconcile] section.
type ReconcileConfig struct {
	Enabled bool     `toml:"enabled"`
	After   Duration `toml:"after"`
}

// SandboxConfig is the [sandbox] section.
type SandboxConfig struct {
	// FailureShare is the fraction of simulated messages that end undelivered or failed.
	FailureShare float64 `toml:"failure_share"`
}

// LogConfig is the [log] section.
type LogConfig struct {
	Format string `toml:"format"`
	Level  string `toml:"level"`
}

// DefaultPlivoAPIURL is Plivo's production API.
const DefaultPlivoAPIURL = "https://api.plivo.com/v1/"

// DefaultConfig returns the configuration used when no file is given: plain
// HTTP on loopback with data in ./data, which runs on a laptop as is.
func DefaultConfig() Config {
	return Config{
		Server: ServerConfig{Listen: "127.0.0.1:8080", DataDir: "./data"},
		TLS:    TLSConfig{Mode: "off", HTTPListen: ":80"},
		Plivo: PlivoConfig{
			APIURL:       DefaultPlivoAPIURL,
			CallbackPath: "/plivo/callback",
			// Plivo gives up retrying after ~8 minutes; a day makes a captured
			// V2 request (which does not sign the body) useless for replay far
			// beyond that while keeping the nonce bucket small.
			NonceTTL: Duration(24 * time.Hour),
		},
		Dashboard: DashboardConfig{Username: "admin"},
		Metrics:   MetricsConfig{Enabled: true},
		Retention: RetentionConfig{Days: 90, EventsDays: 30},
		Reconcile: ReconcileConfig{Enabled: true, After: Duration(30 * time.Minute)},
		Sandbox:   SandboxConfig{FailureShare: 0.1},
		Forward:   defaultForwardConfig(),
		Log:       LogConfig{Format: "text", Level: "info"},
	}
}

// ConfigError names the offending key; main prints it and exits 2.
type ConfigError struct {
	Key     string
	Problem string
}

func (e *ConfigError) Error() string { return e.Key + ": " + e.Problem }

// ParseConfig reads TOML from r over the defaults. Unknown keys are errors.
func ParseConfig(r io.Reader) (Config, error) {
	cfg := DefaultConfig()
	data, err := io.ReadAll(r)
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	// Keys set only to reach TLS defaults need to know whether listen was given.
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) && len(strict.Errors) > 0 {
			return cfg, unknownKeyErrors(strict)
		}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			key := strings.Join(de.Key(), ".")
			if key == "" {
				key = keyAtLine(data, row)
			}
			if key == "" {
				key = fmt.Sprintf("line %d column %d", row, col)
			}
			return cfg, &ConfigError{Key: key, Problem: typeProblem(strings.TrimPrefix(de.Error(), "toml: "))}
		}
		return cfg, fmt.Errorf("parse config: %w", err)
	}
	cfg.Forward.applyDefaults()
	if !listenSet(data) && cfg.TLS.Mode != "off" && cfg.TLS.Mode != "" {
		cfg.Server.Listen = ":443"
	}
	return cfg, nil
}

// keyAtLine names the "section.key" assigned on line row (1-based) of a TOML
// document, so type errors name the key like every other config error.
func keyAtLine(data []byte, row int) string {
	section := ""
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.Trim(line, "[] ")
		}
		if i+1 != row {
			continue
		}
		key, _, ok := strings.Cut(line, "=")
		if !ok {
			return ""
		}
		key = strings.Trim(strings.TrimSpace(key), `"'`)
		if section == "" {
			return key
		}
		return section + "." + key
	}
	return ""
}

// listenSet reports whether the TOML document sets server.listen.
func listenSet(data []byte) bool {
	var probe struct {
		Server struct {
			Listen *string `toml:"listen"`
		} `toml:"server"`
	}
	if err := toml.Unmarshal(data, &probe); err != nil {
		return false
	}
	return probe.Server.Listen != nil
}

// LoadConfig reads the file at path (defaults alone when path is ""), applies
// environment overrides and validates the result.
func LoadConfig(path string, env func(string) string) (Config, error) {
	cfg := DefaultConfig()
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return cfg, &ConfigError{Key: "-config", Problem: err.Error()}
		}
		defer f.Close()
		if cfg, err = ParseConfig(f); err != nil {
			return cfg, err
		}
	}
	if err := cfg.ApplyEnv(env); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// ApplyEnv overrides keys from the environment: PLIVO_AUTH_ID,
// PLIVO_AUTH_TOKEN and PLIVO_PHONE_NUMBER (the names Plivo's SDKs use), and
// PLIVO_DLR_<SECTION>_<KEY> for every key, nested tables too
// (PLIVO_DLR_FORWARD_NATS_URL); [[forward.webhooks]] only in the file. Any variable NAME may instead be
// given as NAME_FILE holding a path to read (systemd credentials, secrets
// mounted as files); trailing newlines are trimmed.
func (c *Config) ApplyEnv(env func(string) string) error {
	if env == nil {
		env = os.Getenv
	}
	lookup := func(name string) (string, bool, error) {
		if v := env(name); v != "" {
			return v, true, nil
		}
		if p := env(name + "_FILE"); p != "" {
			b, err := os.ReadFile(p)
			if err != nil {
				return "", false, &ConfigError{Key: name + "_FILE", Problem: err.Error()}
			}
			return strings.TrimRight(string(b), "\r\n"), true, nil
		}
		return "", false, nil
	}
	aliases := map[string]string{
		"PLIVO_AUTH_ID":      "PLIVO_DLR_PLIVO_AUTH_ID",
		"PLIVO_AUTH_TOKEN":   "PLIVO_DLR_PLIVO_AUTH_TOKEN",
		"PLIVO_PHONE_NUMBER": "PLIVO_DLR_PLIVO_SOURCE_NUMBER",
	}
	for _, k := range envKeys(reflect.ValueOf(c).Elem(), "", "PLIVO_DLR") {
		val, ok, err := lookup(k.env)
		if err != nil {
			return err
		}
		if !ok {
			for alias, target := range aliases {
				if target != k.env {
					continue
				}
				if val, ok, err = lookup(alias); err != nil {
					return err
				}
			}
		}
		if !ok {
			continue
		}
		if err := setFromString(k.field, val); err != nil {
			return &ConfigError{Key: k.key, Problem: fmt.Sprintf("from environment %s: %v", k.env, err)}
		}
	}
	return nil
}

// envKey is one config key settable from the environment.
type envKey struct {
	env   string // PLIVO_DLR_FORWARD_NATS_URL
	key   string // forward.nats.url
	field reflect.Value
}

// envKeys lists the keys of the struct v with their variable names, nested
// tables included (forward.nats.url is PLIVO_DLR_FORWARD_NATS_URL). Arrays
// of tables (forward.webhooks) are left to the file: an index in a variable
// name would be fragile.
func envKeys(v reflect.Value, keyPrefix, envPrefix string) []envKey {
	var out []envKey
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		name := tomlName(f)
		if name == "" || name == "-" {
			continue
		}
		key, env := name, envPrefix+"_"+strings.ToUpper(name)
		if keyPrefix != "" {
			key = keyPrefix + "." + name
		}
		fv := v.Field(i)
		ft := f.Type
		switch {
		case ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(textUnmarshaler):
			out = append(out, envKeys(fv, key, env)...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct && !reflect.PointerTo(ft.Elem()).Implements(textUnmarshaler):
		default:
			out = append(out, envKey{env: env, key: key, field: fv})
		}
	}
	return out
}

// UnknownEnv returns a warning for each PLIVO_DLR_* variable in environ
// ("NAME=value" entries, as os.Environ gives) that sets no config key, with
// the closest known name: a misspelt variable is otherwise silently ignored.
// extra lists further names a command reads itself (PLIVO_DLR_API_TOKEN).
func UnknownEnv(environ []string, extra ...string) []string {
	var cfg Config
	known := map[string]bool{}
	var names []string
	for _, k := range envKeys(reflect.ValueOf(&cfg).Elem(), "", "PLIVO_DLR") {
		names = append(names, k.env)
	}
	names = append(names, extra...)
	for _, n := range names {
		known[n], known[n+"_FILE"] = true, true
	}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "PLIVO_DLR_") || known[name] {
			continue
		}
		w := name + ": environment variable matches no config key, ignored"
		base := strings.TrimSuffix(name, "_FILE")
		best, bestD := "", -1
		for _, n := range names {
			if d := editDistance(base, n); d <= 3 && (bestD < 0 || d < bestD || d == bestD && n < best) {
				best, bestD = n, d
			}
		}
		if best != "" {
			if base != name {
				best += "_FILE"
			}
			w += " (did you mean " + best + "?)"
		}
		out = append(out, w)
	}
	sort.Strings(out)
	return out
}

func tomlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	return name
}

// setFromString assigns an environment value to a config field. Lists are
// comma-separated.
func setFromString(v reflect.Value, s string) error {
	if u, ok := v.Addr().Interface().(interface{ UnmarshalText([]byte) error }); ok {
		return u.UnmarshalText([]byte(s))
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("not a boolean: %q", s)
		}
		v.SetBool(b)
	case reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("not an integer: %q", s)
		}
		v.SetInt(int64(n))
	case reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("not a number: %q", s)
		}
		v.SetFloat(f)
	case reflect.Slice:
		var parts []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		out := reflect.MakeSlice(v.Type(), len(parts), len(parts))
		for i, p := range parts {
			if err := setFromString(out.Index(i), p); err != nil {
				return err
			}
		}
		v.Set(out)
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}

// Validate checks every key and returns the first problem as a ConfigError.
func (c *Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return &ConfigError{Key: key, Problem: fmt.Sprintf(format, args...)}
	}
	if err := checkListen(c.Server.Listen); err != nil {
		return bad("server.listen", "%v (got %q)", err, c.Server.Listen)
	}
	if c.Server.DataDir == "" {
		return bad("server.data_dir", "must not be empty")
	}
	if c.Server.PublicURL != "" {
		u, err := url.Parse(c.Server.PublicURL)
		switch {
		case err != nil:
			return bad("server.public_url", "not a URL (got %q)", c.Server.PublicURL)
		case u.Scheme != "http" && u.Scheme != "https":
			return bad("server.public_url", "must start with http:// or https:// (got %q)", c.Server.PublicURL)
		case u.Host == "":
			return bad("server.public_url", "must include a host (got %q)", c.Server.PublicURL)
		case u.RawQuery != "" || u.Fragment != "":
			return bad("server.public_url", "must not have a query or fragment (got %q)", c.Server.PublicURL)
		case c.Plivo.CallbackPath != "" && strings.HasSuffix(strings.TrimRight(u.Path, "/"), strings.TrimRight(c.Plivo.CallbackPath, "/")):
			// An easy mistake ("the URL Plivo calls"): every signature would
			// then cover the path twice and every callback be a 403.
			want := strings.TrimSuffix(strings.TrimRight(c.Server.PublicURL, "/"), strings.TrimRight(c.Plivo.CallbackPath, "/"))
			return bad("server.public_url", "must not include the callback path %s, which plivo-dlr appends: write %q (got %q)", c.Plivo.CallbackPath, want, c.Server.PublicURL)
		case strings.Trim(u.Path, "/") != "" && c.TLSEnabled():
			// A path prefix is served only behind a proxy that strips it
			// (see publicPathPrefix); with TLS here, Plivo connects to
			// plivo-dlr itself and nothing can strip it.
			return bad("server.public_url", "a path prefix (%s) needs a reverse proxy in front that strips it, and with tls.mode = %s Plivo connects to plivo-dlr directly: remove the prefix, or terminate TLS at the proxy (tls.mode = off) (got %q)", u.Path, c.TLS.Mode, c.Server.PublicURL)
		}
	}
	switch c.TLS.Mode {
	case "off":
	case "acme":
		if len(c.TLS.Domains) == 0 {
			return bad("tls.domains", "must list at least one domain when tls.mode is acme")
		}
		for _, d := range c.TLS.Domains {
			if d == "" || strings.ContainsAny(d, "/: ") {
				return bad("tls.domains", "not a domain name (got %q)", d)
			}
		}
		if err := checkListen(c.TLS.HTTPListen); err != nil && c.TLS.HTTPListen != "" {
			return bad("tls.http_listen", "%v (got %q)", err, c.TLS.HTTPListen)
		}
		if c.TLS.ACMECA != "" {
			if u, err := url.Parse(c.TLS.ACMECA); err != nil || u.Scheme != "https" {
				return bad("tls.acme_ca", "must be an https:// directory URL (got %q)", c.TLS.ACMECA)
			}
		}
		if c.TLS.ACMECARoot != "" {
			if _, err := os.Stat(c.TLS.ACMECARoot); err != nil {
				return bad("tls.acme_ca_root", "cannot read PEM file: %v", err)
			}
		}
	case "files":
		if c.TLS.CertFile == "" {
			return bad("tls.cert_file", "must be set when tls.mode is files")
		}
		if c.TLS.KeyFile == "" {
			return bad("tls.key_file", "must be set when tls.mode is files")
		}
	default:
		return bad("tls.mode", "must be off, acme or files (got %q)", c.TLS.Mode)
	}
	if c.Plivo.APIURL != "" {
		if u, err := url.Parse(c.Plivo.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad("plivo.api_url", "must be an http(s) URL (got %q)", c.Plivo.APIURL)
		}
	}
	if !strings.HasPrefix(c.Plivo.CallbackPath, "/") || strings.ContainsAny(c.Plivo.CallbackPath, "?# ") {
		return bad("plivo.callback_path", "must be a path starting with / (got %q)", c.Plivo.CallbackPath)
	}
	if c.Plivo.NonceTTL <= 0 {
		return bad("plivo.nonce_ttl", "must be positive (got %q)", c.Plivo.NonceTTL)
	}
	if c.Plivo.AuthToken != "" && c.Plivo.AuthID == "" {
		return bad("plivo.auth_id", "must be set when plivo.auth_token is set")
	}
	if h := string(c.Dashboard.PasswordHash); h != "" && !strings.HasPrefix(h, "$2a$") && !strings.HasPrefix(h, "$2b$") && !strings.HasPrefix(h, "$2y$") {
		return bad("dashboard.password_hash", "must be a bcrypt hash ($2b$...); create one with `plivo-dlr hash-password`")
	}
	if c.Dashboard.Username == "" {
		return bad("dashboard.username", "must not be empty")
	}
	for _, t := range c.Dashboard.APITokens {
		if len(t) < 16 {
			return bad("dashboard.api_tokens", "each token must be at least 16 characters")
		}
	}
	if c.Metrics.Listen != "" {
		if err := checkListen(c.Metrics.Listen); err != nil {
			return bad("metrics.listen", "%v (got %q)", err, c.Metrics.Listen)
		}
	}
	if c.Retention.Days < 0 {
		return bad("retention.days", "must be 0 (keep forever) or more (got %d)", c.Retention.Days)
	}
	if c.Retention.EventsDays < 0 {
		return bad("retention.events_days", "must be 0 (keep forever) or more (got %d)", c.Retention.EventsDays)
	}
	if c.Retention.Days > 0 && c.Retention.EventsDays > c.Retention.Days {
		return bad("retention.events_days", "must not exceed retention.days (%d > %d)", c.Retention.EventsDays, c.Retention.Days)
	}
	if c.Reconcile.After <= 0 {
		return bad("reconcile.after", "must be positive (got %q)", c.Reconcile.After)
	}
	if c.Sandbox.FailureShare < 0 || c.Sandbox.FailureShare > 1 {
		return bad("sandbox.failure_share", "must be between 0 and 1 (got %g)", c.Sandbox.FailureShare)
	}
	if err := c.Forward.validate(); err != nil {
		return err
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return bad("log.format", "must be text or json (got %q)", c.Log.Format)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return bad("log.level", "must be debug, info, warn or error (got %q)", c.Log.Level)
	}
	return nil
}

func checkListen(addr string) error {
	if addr == "" {
		return errors.New("must not be empty")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("must be host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return errors.New("port must be a number from 0 to 65535")
	}
	return nil
}

// TLSEnabled reports whether the main listener serves HTTPS.
func (c *Config) TLSEnabled() bool { return c.TLS.Mode == "acme" || c.TLS.Mode == "files" }

// EffectivePublicURL is server.public_url without a trailing slash, or, when
// unset, a URL derived from the listener (only right for local use).
func (c *Config) EffectivePublicURL() string {
	if c.Server.PublicURL != "" {
		return strings.TrimRight(c.Server.PublicURL, "/")
	}
	scheme := "http"
	if c.TLSEnabled() {
		scheme = "https"
		if len(c.TLS.Domains) > 0 {
			return scheme + "://" + c.TLS.Domains[0]
		}
	}
	host, port, _ := net.SplitHostPort(c.Server.Listen)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// CallbackURL is the URL Plivo is told to call.
func (c *Config) CallbackURL() string { return c.EffectivePublicURL() + c.Plivo.CallbackPath }

// AuthTokens returns the main auth token followed by the extra tokens.
func (c *Config) AuthTokens() []string {
	var out []string
	if c.Plivo.AuthToken != "" {
		out = append(out, string(c.Plivo.AuthToken))
	}
	for _, t := range c.Plivo.ExtraAuthTokens {
		if t != "" {
			out = append(out, string(t))
		}
	}
	return out
}

// Masked returns the effective configuration as TOML with every secret
// replaced by a mask, for check-config and logs.
func (c *Config) Masked() (string, error) {
	var buf bytes.Buffer
	enc := toml.NewEncoder(&buf)
	if err := enc.Encode(c); err != nil {
		return "", fmt.Errorf("encode config: %w", err)
	}
	return buf.String(), nil
}

// Secret is a configuration value that must never be printed or logged.
type Secret string

const secretMask = "********"

// String masks the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return secretMask
}

// MarshalText masks the secret in encoded output (check-config, JSON logs).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText stores the secret as given.
func (s *Secret) UnmarshalText(b []byte) error {
	*s = Secret(b)
	return nil
}

// LogValue keeps secrets out of slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Duration is a time.Duration written as a Go duration string ("30m", "24h").
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration like \"30m\" or \"24h\": %q", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// String returns the duration string.
func (d Duration) String() string { return time.Duration(d).String() }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
