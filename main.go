// Command plivo-dlr receives, verifies and durably stores Plivo delivery-status
// callbacks, and serves them through an API, a live dashboard and metrics.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"plivo-dlr/app"
	"plivo-dlr/app/apiclient"
	"plivo-dlr/app/certs"
	"plivo-dlr/app/sandbox"
	"plivo-dlr/storage"
	"plivo-dlr/ui"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// exitUsage is the exit code for bad flags or configuration.
const exitUsage = 2

// usageError marks errors caused by the command line or configuration.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

const usage = `usage: plivo-dlr <command> [flags]

commands:
  serve [-config FILE] [--sandbox]   run the server (--sandbox: with a simulated Plivo)
  send --to NUMBER --text TEXT [--media URL]... [--from SENDER] [-config FILE] [--server URL] [--token TOKEN]
                                     send an SMS/MMS through a running server, print the message UUIDs
  backup --out FILE [-config FILE] [--server URL] [--token TOKEN]
                                     save a consistent copy of a running server's database
  export [--format csv|ndjson] [--since T] [--until T] [--status S] [--out FILE] [-config FILE] [--server URL] [--token TOKEN]
                                     stream a running server's messages, oldest first (stdout by default)
  forward status|retry NAME|replay NAME --since CURSOR
                                     show the forwarding sinks, re-queue dead letters, deliver again
  check-config -config FILE          validate a config file and print it, secrets masked
  hash-password                      read a password on stdin, print its bcrypt hash
  version                            print the version
`

// run is the whole program behind main, so tests can drive the CLI.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = cmdServe(ctx, rest, stdout, stderr, getenv)
	case "send":
		err = cmdSend(ctx, rest, stdout, stderr, getenv)
	case "backup":
		err = cmdBackup(ctx, rest, stdout, stderr, getenv)
	case "export":
		err = cmdExport(ctx, rest, stdout, stderr, getenv)
	case "forward":
		err = cmdForward(ctx, rest, stdout, stderr, getenv)
	case "check-config":
		err = cmdCheckConfig(rest, stdout, stderr, getenv)
	case "hash-password":
		err = cmdHashPassword(stdin, stdout)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "plivo-dlr", buildVersion())
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
	default:
		err = usageError{fmt.Errorf("unknown command %q (try plivo-dlr help)", cmd)}
	}
	// -h/--help on a command printed its usage: asked for, so not an error.
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "plivo-dlr:", err)
	var ue usageError
	var ce *app.ConfigError
	if errors.As(err, &ue) || errors.As(err, &ce) {
		return exitUsage
	}
	return 1
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))}
	}
	return nil
}

// cmdSend sends a message through a running server's API and prints the
// message UUIDs, one a line.
func cmdSend(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlagSet("send", stderr)
	to := fs.String("to", "", "destination number in E.164 (+14155550123); several joined with <")
	text := fs.String("text", "", "message text")
	from := fs.String("from", "", "sender (default: the server's plivo.source_number)")
	var media []string
	fs.Func("media", "media URL, makes the message an MMS (repeat for several)", func(v string) error {
		media = append(media, v)
		return nil
	})
	af := addAPIFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *to == "" || (*text == "" && len(media) == 0) {
		return usageError{errors.New("send: --to and --text (or --media) are required")}
	}
	client, err := apiClientFromFlags(af, getenv)
	if err != nil {
		return err
	}
	resp, err := client.Send(ctx, apiclient.SendRequest{
		To: strings.Split(*to, "<"), Text: *text, MediaURLs: media, From: *from,
	})
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	for _, u := range resp.MessageUUIDs {
		fmt.Fprintln(stdout, u)
	}
	return nil
}

func cmdCheckConfig(args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlagSet("check-config", stderr)
	path := fs.String("config", "", "config file (TOML)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := app.LoadConfig(*path, getenv)
	if err != nil {
		return err
	}
	out, err := cfg.Masked()
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, out)
	for _, w := range app.UnknownEnv(environ(), cliEnv...) {
		fmt.Fprintln(stderr, "plivo-dlr: warning:", w)
	}
	// Valid but still the shipped example: say so, the exit stays 0.
	for _, p := range cfg.Placeholders() {
		fmt.Fprintln(stderr, "plivo-dlr: warning:", p)
	}
	return nil
}

func cmdHashPassword(stdin io.Reader, stdout io.Writer) error {
	b, err := io.ReadAll(io.LimitReader(stdin, 1024))
	if err != nil {
		return fmt.Errorf("read password: %w", err)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if len(pw) < 8 {
		return usageError{errors.New("hash-password: password must be at least 8 characters")}
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	fmt.Fprintln(stdout, string(h))
	return nil
}

// apiFlags are the flags of the commands that talk to a running server's
// API (bbolt locks the data file to the server process).
type apiFlags struct {
	config, server, token, tokenFile *string
}

// addAPIFlags registers -config, --server and --token on fs.
func addAPIFlags(fs *flag.FlagSet) apiFlags {
	return apiFlags{
		config: fs.String("config", "", "config file (TOML) giving the server URL and an API token"),
		server: fs.String("server", "", "server URL (default: the config's public URL)"),
		token:  fs.String("token", "", "API token (default: $PLIVO_DLR_API_TOKEN, else the config's first dashboard.api_tokens)"),
		// A token on the command line is visible in ps and shell history.
		tokenFile: fs.String("token-file", "", "file holding the API token (default: $PLIVO_DLR_API_TOKEN_FILE)"),
	}
}

// apiClientFromFlags builds the client of a running server once f is
// parsed. The server URL and API token come from the flags first, then
// $PLIVO_DLR_API_TOKEN for the token, then the config (its effective public
// URL, its first dashboard.api_tokens).
func apiClientFromFlags(f apiFlags, getenv func(string) string) (*apiclient.Client, error) {
	cfg, err := app.LoadConfig(*f.config, getenv)
	if err != nil {
		return nil, err
	}
	serverURL, token := *f.server, *f.token
	if serverURL == "" {
		serverURL = cfg.EffectivePublicURL()
	}
	if token == "" {
		token = getenv("PLIVO_DLR_API_TOKEN")
	}
	if token == "" {
		file := *f.tokenFile
		if file == "" {
			file = getenv("PLIVO_DLR_API_TOKEN_FILE")
		}
		if file != "" {
			b, err := os.ReadFile(file)
			if err != nil {
				return nil, usageError{fmt.Errorf("--token-file: %w", err)}
			}
			token = strings.TrimRight(string(b), "\r\n")
		}
	}
	if token == "" && len(cfg.Dashboard.APITokens) > 0 {
		token = string(cfg.Dashboard.APITokens[0])
	}
	client, err := apiclient.New(serverURL, token)
	if err != nil {
		return nil, usageError{err}
	}
	return client, nil
}

// cmdBackup saves a consistent snapshot of a running server's database to
// --out, verified before it replaces anything.
func cmdBackup(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlagSet("backup", stderr)
	out := fs.String("out", "", "file to write the backup to (written to FILE.tmp, verified, then renamed)")
	af := addAPIFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usageError{errors.New("backup: --out is required")}
	}
	client, err := apiClientFromFlags(af, getenv)
	if err != nil {
		return err
	}
	res, err := client.Backup(ctx, *out)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s: %d bytes, %d messages, last event cursor %d, schema %d\n",
		res.Path, res.Bytes, res.Info.Messages, res.Info.LastCursor, res.Info.SchemaVersion)
	return nil
}

// cmdExport streams a running server's messages as CSV or NDJSON to stdout
// or --out.
func cmdExport(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlagSet("export", stderr)
	format := fs.String("format", "ndjson", "csv or ndjson")
	since := fs.String("since", "", "first seen at or after: RFC 3339, unix seconds or a duration back from now (24h)")
	until := fs.String("until", "", "first seen before (same forms as --since)")
	status := fs.String("status", "", "only this status (pending: any non-final one)")
	out := fs.String("out", "", "file to write (default: stdout)")
	af := addAPIFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *format != "csv" && *format != "ndjson" {
		return usageError{fmt.Errorf("export: --format must be csv or ndjson (got %q)", *format)}
	}
	client, err := apiClientFromFlags(af, getenv)
	if err != nil {
		return err
	}
	q := url.Values{"format": {*format}}
	for k, v := range map[string]string{"since": *since, "until": *until, "status": *status} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if *out == "" {
		if _, err := client.Export(ctx, q, stdout); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		return nil
	}
	// Write beside the target and rename, so --out is never half a file.
	err = storage.WriteFileAtomic(*out, func(w io.Writer) error {
		_, err := client.Export(ctx, q, w)
		return err
	}, nil)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlagSet("serve", stderr)
	path := fs.String("config", "", "config file (TOML); without one, defaults serve HTTP on 127.0.0.1:8080 with data in ./data")
	withSandbox := fs.Bool("sandbox", false, "simulate Plivo in-process (no account needed); data goes to <data_dir>-sandbox")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := app.LoadConfig(*path, getenv)
	if err != nil {
		return err
	}
	app.TuneGC(getenv)
	logger := newLogger(cfg.Log, stderr, getenv("JOURNAL_STREAM") != "")
	for _, w := range app.UnknownEnv(environ(), cliEnv...) {
		logger.Warn("environment variable ignored", "problem", w)
	}

	var (
		sb           *sandbox.Sandbox
		sandboxLogin app.SandboxLogin
	)
	if *withSandbox {
		if sb, err = sandbox.Start(sandbox.Options{FailureShare: cfg.Sandbox.FailureShare, Logger: logger}); err != nil {
			return err
		}
		defer sb.Close()
		if sandboxLogin, err = app.ConfigureSandbox(&cfg, sb); err != nil {
			return err
		}
	}

	if err := os.MkdirAll(cfg.Server.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	// The registry comes before the store, which reports its commits to it.
	reg := prometheus.NewRegistry()
	var storeOpts storage.Options
	if cfg.Metrics.Enabled {
		storeOpts.OnCommit = app.NewCommitObserver(reg)
	}
	store, err := storage.Open(filepath.Join(cfg.Server.DataDir, "plivo-dlr.db"), storeOpts)
	if err != nil {
		return fmt.Errorf("open store in %s: %w", cfg.Server.DataDir, err)
	}
	if rep := store.Checked(); rep.Complete {
		logger.Info("database checked", "pages", rep.Pages, "took", rep.Took.Round(time.Millisecond))
	} else if rep.HighWater > 0 {
		logger.Warn("database check stopped at its time bound: the rest of the file is unchecked",
			"pages", rep.Pages, "of", rep.HighWater, "took", rep.Took.Round(time.Millisecond))
	}
	switch replayed, gap := store.JournalReplayed(); {
	case replayed > 0:
		logger.Info("applied acknowledged events from the journal (the last run did not stop cleanly)", "events", replayed)
	case gap:
		logger.Warn("ignored a journal that does not continue this database (was the file replaced by a backup?)")
	}
	defer func() {
		if err := store.Close(); err != nil {
			logger.Error("close store", "err", err)
		}
	}()
	// Every goroutine started below is joined here, after ctx is cancelled
	// and before the store closes (deferred calls run in reverse): none may
	// still be sweeping or reconciling against a closed store.
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	fwd, err := app.NewForwarder(cfg, store, logger, reg)
	if err != nil {
		return err
	}
	srv, err := app.NewServer(app.Options{Config: cfg, Store: store, Logger: logger, UI: ui.FS, Registry: reg, Sandbox: sb != nil, Forward: fwd})
	if err != nil {
		return err
	}
	// Listen before serving so a busy port fails at once with a clear error.
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s (server.listen): %w", cfg.Server.Listen, err)
	}
	stopMetrics, err := serveMetrics(cfg.Metrics, srv, logger, &wg)
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer stopMetrics()
	// With TLS on, ln becomes the HTTPS listener and tls.http_listen serves
	// ACME challenges and the redirect to HTTPS.
	if cfg.TLSEnabled() {
		tlsm, err := app.NewTLS(cfg, logger, reg)
		if err != nil {
			_ = ln.Close()
			return err
		}
		defer tlsm.Close()
		if ln, err = tlsm.Start(ctx, ln); err != nil {
			return err
		}
		wg.Go(func() { reloadOnHangup(ctx, tlsm, logger) })
	} else {
		wg.Go(func() { reloadOnHangup(ctx, nil, logger) })
	}
	// Every listener is bound: only now may a first start generate the
	// dashboard password, so a failed start neither creates nor loses one.
	if pwFile, err := srv.EnsureDashboardPassword(cfg.Server.DataDir); err != nil {
		_ = ln.Close()
		return err
	} else if pwFile != "" {
		logger.Warn("generated the dashboard password; read it from the file, which only this user can read",
			"username", cfg.Dashboard.Username, "file", pwFile,
			"reset", "set dashboard.password_hash (plivo-dlr hash-password) and restart; the file may then be deleted")
	}
	logger.Info("plivo-dlr started", "version", buildVersion(), "addr", ln.Addr().String(),
		"callback_url", cfg.CallbackURL(), "data_dir", cfg.Server.DataDir)
	if len(cfg.AuthTokens()) == 0 {
		logger.Warn("no plivo.auth_token configured: every callback will be rejected as unsigned; set PLIVO_AUTH_TOKEN (or plivo.auth_token), or try it locally with `plivo-dlr serve --sandbox`")
	}
	if sb != nil {
		sandboxLogin.WriteBanner(stdout, cfg)
	}

	wg.Go(func() { purgeNonces(ctx, store, logger) })
	wg.Go(func() { app.NewRetention(store, cfg.Retention, logger.With("component", "retention"), nil).Run(ctx) })
	if fwd != nil {
		if err := fwd.Start(ctx); err != nil {
			_ = ln.Close()
			return fmt.Errorf("start forwarding: %w", err)
		}
		// Runs before the deferred store.Close: in-flight attempts end and
		// each sink's cursor is saved.
		defer fwd.Stop()
		logger.Info("forwarding", "sinks", strings.Join(fwd.Names(), ","))
	}
	wg.Go(func() { srv.RunReconcile(ctx) })

	serveErr := make(chan error, 1)
	wg.Go(func() { serveErr <- srv.Serve(ln) })
	sdNotify(getenv, logger, "READY=1")
	select {
	case err = <-serveErr:
		// A listener failure also starts shutdown.
	case <-ctx.Done():
		logger.Info("shutting down")
	}
	sdNotify(getenv, logger, "STOPPING=1")
	shutdownCtx, stop := context.WithTimeout(context.Background(), 15*time.Second)
	defer stop()
	if sb != nil {
		// Its pending callbacks and idle connections would hold up shutdown.
		_ = sb.Close()
	}
	if serr := srv.Shutdown(shutdownCtx); serr != nil && err == nil {
		err = serr
	}
	return err
}

// environ lists the process environment, for the warning about misspelt
// PLIVO_DLR_* variables; a variable so tests of run can replace it.
var environ = os.Environ

// cliEnv are the PLIVO_DLR_* variables read by commands rather than the
// config (apiClientFromFlags).
var cliEnv = []string{"PLIVO_DLR_API_TOKEN"}

// serveMetrics serves /metrics on a listener of its own when metrics.listen
// is set (the main listener then does not serve it) and returns the function
// that stops it.
func serveMetrics(cfg app.MetricsConfig, srv *app.Server, logger *slog.Logger, wg *sync.WaitGroup) (stop func(), err error) {
	if !cfg.Enabled || cfg.Listen == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (metrics.listen): %w", cfg.Listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", srv.MetricsHandler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	// Serve returns when stop shuts the server down; wg joins it.
	wg.Go(func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics listener failed", "addr", cfg.Listen, "err", err)
		}
	})
	logger.Info("metrics listening", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			logger.Warn("stop metrics listener", "err", err)
		}
	}, nil
}

// reloadOnHangup reloads the TLS certificate files on SIGHUP (systemctl
// reload) until ctx ends. Catching SIGHUP also keeps it from killing us.
func reloadOnHangup(ctx context.Context, tlsm *certs.Manager, logger *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if tlsm == nil {
				logger.Info("SIGHUP received: nothing to reload with tls.mode off")
				continue
			}
			if err := tlsm.Reload(); err != nil {
				logger.Error("reload tls certificate", "err", err)
			}
		}
	}
}

// sdNotify tells systemd (Type=notify) about state changes; a failure only
// costs the notification, so it is logged, not returned.
func sdNotify(getenv func(string) string, logger *slog.Logger, state string) {
	if err := app.SDNotify(getenv, state); err != nil {
		logger.Warn("notify systemd", "state", state, "err", err)
	}
}

// purgeNonces deletes expired nonces every minute in bounded batches until
// ctx ends.
func purgeNonces(ctx context.Context, store *storage.Store, logger *slog.Logger) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for {
				n, err := store.PurgeNonces(now, 10_000)
				if err != nil {
					logger.Warn("purge nonces", "err", err)
					break
				}
				if n < 10_000 {
					break
				}
			}
		}
	}
}

// newLogger builds the process logger. Under systemd (JOURNAL_STREAM set)
// the time is dropped: journald stamps every line already.
func newLogger(cfg app.LogConfig, w io.Writer, underSystemd bool) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if underSystemd {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// buildVersion is the -ldflags version, or the VCS revision Go recorded.
func buildVersion() string {
	if version != "dev" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return version
}
