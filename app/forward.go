package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"plivo-dlr/app/forward"
	"plivo-dlr/storage"
)

// ForwardConfig is the [forward] section: where the event feed goes.
type ForwardConfig struct {
	Webhooks []WebhookConfig `toml:"webhooks"`
	NATS     NATSConfig      `toml:"nats"`
}

// WebhookConfig is one [[forward.webhooks]] entry.
type WebhookConfig struct {
	Name        string   `toml:"name"`
	URL         string   `toml:"url"`
	Secrets     []Secret `toml:"secrets"`
	SecretsFile string   `toml:"secrets_file"`
	Types       []string `toml:"types"`
	Statuses    []string `toml:"statuses"`
	Concurrency int      `toml:"concurrency"`
	Timeout     Duration `toml:"timeout"`
	MaxAge      Duration `toml:"max_age"`
	CAFile      string   `toml:"ca_file"`
}

// NATSConfig is the [forward.nats] section; off unless url is set.
type NATSConfig struct {
	URL             string   `toml:"url"`
	Stream          string   `toml:"stream"`
	SubjectPrefix   string   `toml:"subject_prefix"`
	CredentialsFile string   `toml:"credentials_file"`
	Token           Secret   `toml:"token"`
	User            string   `toml:"user"`
	Password        Secret   `toml:"password"`
	DuplicateWindow Duration `toml:"duplicate_window"`
	MaxAge          Duration `toml:"max_age"`
}

// natsSinkName is the JetStream sink's name in routes and metrics.
const natsSinkName = "nats"

func defaultForwardConfig() ForwardConfig {
	return ForwardConfig{NATS: NATSConfig{
		Stream: "PLIVO_DLR", SubjectPrefix: "plivo.dlr",
		DuplicateWindow: Duration(10 * time.Minute), MaxAge: Duration(72 * time.Hour),
	}}
}

// applyDefaults fills the keys a [[forward.webhooks]] entry left out.
func (f *ForwardConfig) applyDefaults() {
	for i := range f.Webhooks {
		w := &f.Webhooks[i]
		if w.Concurrency == 0 {
			w.Concurrency = 8
		}
		if w.Timeout == 0 {
			w.Timeout = Duration(10 * time.Second)
		}
		if w.MaxAge == 0 {
			w.MaxAge = Duration(72 * time.Hour)
		}
	}
}

var (
	sinkNameRE = regexp.MustCompile(`^[a-z0-9-]+$`)
	// subjectRE: dot-separated tokens without spaces or wildcards.
	subjectRE = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
	streamRE  = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// validate checks [forward]; the error names the key.
func (f *ForwardConfig) validate() error {
	bad := func(key, format string, args ...any) error {
		return &ConfigError{Key: key, Problem: fmt.Sprintf(format, args...)}
	}
	names := map[string]bool{}
	for i := range f.Webhooks {
		w := &f.Webhooks[i]
		key := fmt.Sprintf("forward.webhooks[%d].", i)
		if !sinkNameRE.MatchString(w.Name) {
			return bad(key+"name", "must be lower-case letters, digits and - (got %q)", w.Name)
		}
		if names[w.Name] || w.Name == natsSinkName {
			return bad(key+"name", "%q is already used (names are unique; %q is the NATS sink)", w.Name, natsSinkName)
		}
		names[w.Name] = true
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad(key+"url", "must be an http(s) URL (got %q)", w.URL)
		}
		if w.SecretsFile != "" {
			if fi, err := os.Stat(w.SecretsFile); err == nil && fi.Mode().Perm()&0o004 != 0 {
				return bad(key+"secrets_file", "%s is readable by everyone; chmod 600 it", w.SecretsFile)
			}
		}
		secrets, err := w.secrets()
		if err != nil {
			return bad(key+"secrets_file", "%v", err)
		}
		if len(secrets) == 0 {
			return bad(key+"secrets", "set at least one whsec_ secret (or secrets_file)")
		}
		for _, s := range secrets {
			if _, err := forward.ParseSecret(s); err != nil {
				return bad(key+"secrets", "%v", err)
			}
		}
		for _, t := range w.Types {
			if t != forward.TypeStatus && t != forward.TypeInbound {
				return bad(key+"types", "must list %s and/or %s (got %q)", forward.TypeStatus, forward.TypeInbound, t)
			}
		}
		for _, s := range w.Statuses {
			if s == "" {
				return bad(key+"statuses", "must not hold an empty status")
			}
		}
		if w.Concurrency < 1 || w.Concurrency > 256 {
			return bad(key+"concurrency", "must be from 1 to 256 (got %d)", w.Concurrency)
		}
		if w.Timeout <= 0 {
			return bad(key+"timeout", "must be positive (got %q)", w.Timeout)
		}
		if w.MaxAge <= 0 {
			return bad(key+"max_age", "must be positive (got %q)", w.MaxAge)
		}
		if w.CAFile != "" {
			if _, err := os.Stat(w.CAFile); err != nil {
				return bad(key+"ca_file", "cannot read PEM file: %v", err)
			}
		}
	}
	n := &f.NATS
	if n.URL == "" {
		return nil
	}
	for _, u := range strings.Split(n.URL, ",") {
		if pu, err := url.Parse(strings.TrimSpace(u)); err != nil || pu.Host == "" ||
			(pu.Scheme != "nats" && pu.Scheme != "tls" && pu.Scheme != "ws" && pu.Scheme != "wss") {
			return bad("forward.nats.url", "must be nats://host:port (or tls://, ws://, wss://; comma-separated) (got %q)", n.URL)
		}
	}
	if !streamRE.MatchString(n.Stream) {
		return bad("forward.nats.stream", "must be letters, digits, _ and - (got %q)", n.Stream)
	}
	if !subjectRE.MatchString(n.SubjectPrefix) {
		return bad("forward.nats.subject_prefix", "must be dot-separated tokens without spaces or wildcards (got %q)", n.SubjectPrefix)
	}
	auths := 0
	for _, set := range []bool{n.CredentialsFile != "", n.Token != "", n.User != ""} {
		if set {
			auths++
		}
	}
	if auths > 1 {
		return bad("forward.nats.credentials_file", "set only one of credentials_file, token, user + password")
	}
	if n.CredentialsFile != "" {
		if _, err := os.Stat(n.CredentialsFile); err != nil {
			return bad("forward.nats.credentials_file", "cannot read: %v", err)
		}
	}
	if n.Password != "" && n.User == "" {
		return bad("forward.nats.user", "must be set when forward.nats.password is set")
	}
	if n.DuplicateWindow <= 0 {
		return bad("forward.nats.duplicate_window", "must be positive (got %q)", n.DuplicateWindow)
	}
	if n.MaxAge <= 0 {
		return bad("forward.nats.max_age", "must be positive (got %q)", n.MaxAge)
	}
	return nil
}

// secrets returns the inline secrets followed by those of secrets_file.
func (w *WebhookConfig) secrets() ([]string, error) {
	var out []string
	for _, s := range w.Secrets {
		out = append(out, string(s))
	}
	if w.SecretsFile != "" {
		more, err := forward.ReadSecretsFile(w.SecretsFile)
		if err != nil {
			return nil, err
		}
		out = append(out, more...)
	}
	return out, nil
}

// Enabled reports whether any sink is configured.
func (f *ForwardConfig) Enabled() bool { return len(f.Webhooks) > 0 || f.NATS.URL != "" }

// NewForwarder builds the forwarding Manager for cfg's sinks (nil when none
// is configured). main starts it with the server and stops it before the
// store closes.
func NewForwarder(cfg Config, store *storage.Store, logger *slog.Logger, reg prometheus.Registerer) (*forward.Manager, error) {
	f := cfg.Forward
	if !f.Enabled() {
		return nil, nil
	}
	var sinks []forward.SinkConfig
	for _, w := range f.Webhooks {
		secrets, err := w.secrets()
		if err != nil {
			return nil, &ConfigError{Key: "forward.webhooks." + w.Name + ".secrets_file", Problem: err.Error()}
		}
		sink, err := forward.NewWebhook(forward.WebhookOptions{URL: w.URL, Secrets: secrets, Timeout: w.Timeout.D(), CAFile: w.CAFile})
		if err != nil {
			return nil, fmt.Errorf("forward.webhooks %s: %w", w.Name, err)
		}
		sinks = append(sinks, forward.SinkConfig{Name: w.Name, Kind: "webhook", Types: w.Types, Statuses: w.Statuses,
			Concurrency: w.Concurrency, MaxAge: w.MaxAge.D(), Sink: sink})
	}
	if n := f.NATS; n.URL != "" {
		sink, err := forward.NewNATS(forward.NATSOptions{URL: n.URL, Stream: n.Stream, SubjectPrefix: n.SubjectPrefix,
			CredentialsFile: n.CredentialsFile, Token: string(n.Token), User: n.User, Password: string(n.Password),
			DuplicateWindow: n.DuplicateWindow.D()})
		if err != nil {
			return nil, fmt.Errorf("forward.nats: %w", err)
		}
		sinks = append(sinks, forward.SinkConfig{Name: natsSinkName, Kind: "nats", MaxAge: n.MaxAge.D(), Sink: sink})
	}
	var m *forward.Metrics
	if reg != nil {
		m = forward.NewMetrics(reg)
	}
	return forward.New(forward.Options{Store: store, Logger: logger, Metrics: m}, sinks)
}

// forwardWaker wakes the forwarder after each commit; it never blocks the
// store's writer.
type forwardWaker struct{ m *forward.Manager }

func (w forwardWaker) Notify(storage.Event, storage.ApplyResult) { w.m.Wake() }

type forwardStatus struct {
	Sinks []forward.SinkStatus `json:"sinks"`
}

type deadList struct {
	Events     []forward.DeadLetter `json:"events"`
	NextCursor string               `json:"next_cursor"`
}

func (s *Server) forwardRoutes(api fiber.Router) {
	api.Get("/forward", s.handleForwardStatus)
	api.Get("/forward/:name/dead", s.handleForwardDead)
	api.Post("/forward/:name/retry", s.handleForwardRetry)
	api.Post("/forward/:name/replay", s.handleForwardReplay)
}

func (s *Server) handleForwardStatus(c *fiber.Ctx) error {
	out := forwardStatus{Sinks: []forward.SinkStatus{}}
	if s.forward != nil {
		sts, err := s.forward.Status()
		if err != nil {
			return &httpError{Code: fiber.StatusServiceUnavailable, Message: "storage unavailable", Err: err}
		}
		out.Sinks = sts
	}
	return c.JSON(out)
}

func (s *Server) forwardError(name string, err error) error {
	if errors.Is(err, forward.ErrUnknownSink) {
		return &httpError{Code: fiber.StatusNotFound, Message: "no forwarding sink " + strconv.Quote(name)}
	}
	return &httpError{Code: fiber.StatusServiceUnavailable, Message: "forwarding unavailable", Err: err}
}

func (s *Server) handleForwardDead(c *fiber.Ctx) error {
	name := strings.Clone(c.Params("name"))
	limit := 100
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return &httpError{Code: fiber.StatusBadRequest, Message: "limit must be from 1 to 1000"}
		}
		limit = n
	}
	var before uint64
	if v := c.Query("cursor"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return &httpError{Code: fiber.StatusBadRequest, Message: "cursor must be a number from next_cursor"}
		}
		before = n
	}
	if s.forward == nil {
		return s.forwardError(name, forward.ErrUnknownSink)
	}
	events, next, err := s.forward.Dead(name, before, limit)
	if err != nil {
		return s.forwardError(name, err)
	}
	out := deadList{Events: events}
	if next != 0 {
		out.NextCursor = strconv.FormatUint(next, 10)
	}
	return c.JSON(out)
}

func (s *Server) handleForwardRetry(c *fiber.Ctx) error {
	name := strings.Clone(c.Params("name"))
	if s.forward == nil {
		return s.forwardError(name, forward.ErrUnknownSink)
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), 10*time.Second)
	defer cancel()
	if err := s.forward.Retry(ctx, name); err != nil {
		return s.forwardError(name, err)
	}
	return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"status": "retrying dead letters of " + name})
}

func (s *Server) handleForwardReplay(c *fiber.Ctx) error {
	name := strings.Clone(c.Params("name"))
	since, err := strconv.ParseUint(c.Query("since"), 10, 64)
	if err != nil {
		return &httpError{Code: fiber.StatusBadRequest, Message: "since must be an event cursor (a number)"}
	}
	if s.forward == nil {
		return s.forwardError(name, forward.ErrUnknownSink)
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), 10*time.Second)
	defer cancel()
	if err := s.forward.Replay(ctx, name, since); err != nil {
		return s.forwardError(name, err)
	}
	return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"status": fmt.Sprintf("replaying %s after cursor %d", name, since)})
}

// writeForwardHint tells a sandbox user how to see the event feed: the
// configured sinks, or the lines that point one at a local app.
func writeForwardHint(w io.Writer, cfg Config) {
	if cfg.Forward.Enabled() {
		var names []string
		for _, wh := range cfg.Forward.Webhooks {
			names = append(names, wh.Name+" → "+wh.URL)
		}
		if cfg.Forward.NATS.URL != "" {
			names = append(names, "nats → "+cfg.Forward.NATS.URL)
		}
		fmt.Fprintf(w, "  forwarding %s\n             (plivo-dlr forward status)\n\n", strings.Join(names, ", "))
		return
	}
	fmt.Fprintf(w, `  forwarding off. To watch the signed event feed, run a receiver, e.g.
               while true; do nc -l 127.0.0.1 9000 <<<$'HTTP/1.1 204 No Content\r\n\r\n'; done
             and add to a config file (then serve --sandbox -config FILE):
               [[forward.webhooks]]
               name = "local"
               url = "http://127.0.0.1:9000/hooks"
               secrets = ["%s"]

`, exampleSecret())
}

// exampleSecret is a fresh whsec_ secret to paste into a config.
func exampleSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return forward.SecretPrefix + base64.StdEncoding.EncodeToString(b)
}
