package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"plivo-dlr/app/forward"
	"plivo-dlr/app/hub"
	"plivo-dlr/app/protocol"
	"plivo-dlr/storage"
)

// Options are what NewServer needs. Store and Config are required.
type Options struct {
	Config Config
	Store  *storage.Store
	Logger *slog.Logger
	// UI is the dashboard's static files (ui.FS); nil serves no dashboard.
	UI fs.FS
	// Registry receives the metrics; nil creates a private registry.
	Registry *prometheus.Registry
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Sandbox says Plivo is the built-in simulator (shown by GET /api/config).
	Sandbox bool
	// Reconcile tunes the reconciliation loop; zero values take defaults.
	Reconcile ReconcileOptions
	// ApplyTimeout bounds a callback's wait for its commit; 0 means
	// applyTimeout. Tests shorten it.
	ApplyTimeout time.Duration
	// Forward is the event feed (NewForwarder); nil when no sink is set.
	Forward *forward.Manager
	// WSWriteWait bounds one write to a /ws client, which is dropped when
	// it cannot take a batch in this time; 0 means wsWriteWait. Tests
	// shorten it.
	WSWriteWait time.Duration
}

// Server is the HTTP side of plivo-dlr: callbacks, API, dashboard, stream.
type Server struct {
	cfg      Config
	store    *storage.Store
	log      *slog.Logger
	now      func() time.Time
	verifier *protocol.SignatureVerifier
	// diagnoseLimit rate-limits signature failure diagnosis.
	diagnoseLimit *rate.Limiter
	// logoutMu orders logouts' revocation-list writes.
	logoutMu sync.Mutex
	// wsWriteWait is Options.WSWriteWait with its default.
	wsWriteWait time.Duration
	// rejections samples the log lines of refused requests.
	rejections *rejectionLog
	publicURL  string

	// callbackURL is publicURL + the configured callback path: the URL
	// nearly every callback is signed over, built once.
	callbackURL string

	apiTokens [][]byte
	metrics   *serverMetrics
	registry  *prometheus.Registry
	ui        fs.FS
	// notifiers hear about every stored event after its commit (the WebSocket
	// hub, metrics); they must not block.
	notifiers []Notifier
	// Dashboard: login state, the WebSocket hub, the UI files.
	auth      *dashboardAuth
	hub       *hub.Hub
	wsUpgrade fiber.Handler
	static    map[string]staticFile
	// plivo sends and looks up messages; nil when no credentials are configured.
	plivo     *plivoClient
	sandbox   bool
	reconcile ReconcileOptions
	// applyTimeout is Options.ApplyTimeout.
	applyTimeout time.Duration
	// unparsedTimesLog samples the lines about unreadable callback times.
	unparsedTimesLog *rejectionLog
	// Health: refused callbacks and other problem sources for GET /api/health.
	refused refusals
	// reconcileHealth says whether reconciliation lookups are failing.
	reconcileHealth reconcileHealth
	problemSources  []ProblemSource
	started         time.Time
	forward         *forward.Manager

	// replay: V3 seen, capacity log (callback_nonce.go).
	replay replayState

	fiber *fiber.App
	// lnMu guards ln and stopped, so a Shutdown that races Serve's start
	// still ends it (see Shutdown).
	lnMu    sync.Mutex
	ln      net.Listener
	stopped bool
}

// Notifier is told about each event after it is durably stored.
type Notifier interface {
	Notify(ev storage.Event, res storage.ApplyResult)
}

// NewServer builds the server and registers every route.
func NewServer(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("new server: no store")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	s := &Server{
		cfg:       opts.Config,
		store:     opts.Store,
		log:       opts.Logger,
		now:       opts.Now,
		verifier:  protocol.NewSignatureVerifier(opts.Config.AuthTokens()...),
		publicURL: opts.Config.EffectivePublicURL(),
		registry:  opts.Registry,
		ui:        opts.UI,
	}
	s.callbackURL = s.publicURL + opts.Config.Plivo.CallbackPath
	for _, t := range opts.Config.Dashboard.APITokens {
		s.apiTokens = append(s.apiTokens, []byte(t))
	}
	s.metrics = newServerMetrics(opts.Registry)
	s.diagnoseLimit = rate.NewLimiter(10, 10)
	s.rejections = newRejectionLog(20)
	s.unparsedTimesLog = newRejectionLog(1)
	s.initMetrics()
	s.sandbox, s.reconcile = opts.Sandbox, opts.Reconcile
	if s.wsWriteWait = opts.WSWriteWait; s.wsWriteWait <= 0 {
		s.wsWriteWait = wsWriteWait
	}
	if s.applyTimeout = opts.ApplyTimeout; s.applyTimeout <= 0 {
		s.applyTimeout = applyTimeout
	}
	s.started = s.now().UTC()
	if p := opts.Config.Plivo; p.AuthID != "" && p.AuthToken != "" {
		var err error
		if s.plivo, err = newPlivoClient(p.AuthID, string(p.AuthToken), p.APIURL, nil); err != nil {
			return nil, err
		}
	}

	if err := s.initDashboardAuth(); err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	var err error
	if s.static, err = loadStatic(opts.UI); err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	s.hub = hub.New(s.log.With("component", "hub"), s.metrics.websocketClients)
	s.AddNotifier(s.hub)
	if s.forward = opts.Forward; s.forward != nil {
		s.AddNotifier(forwardWaker{s.forward})
		s.addProblemSource(s.sinkProblems)
	}
	s.addProblemSource(s.reconcileHealth.problems)
	// The server is the store's one consumer of applied events: a second
	// server on the same store is refused rather than silently taking the
	// events over.
	applied, err := opts.Store.Applied()
	if err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	go s.consumeApplied(applied)
	s.wsUpgrade = s.newWSUpgrader()

	s.fiber = fiber.New(fiber.Config{
		AppName:               "plivo-dlr",
		DisableStartupMessage: true,
		ErrorHandler:          s.handleError,
		// One limit for every route, checked by fasthttp against
		// Content-Length before any of the body is read (and while a chunked
		// body streams): the largest legitimate request, a send with 1,600
		// characters and ten media URLs, is far below a callback's 64 KiB,
		// and a larger limit let unauthenticated slow 1 MB bodies pile up in
		// memory.
		BodyLimit:      protocol.MaxCallbackBody,
		ReadTimeout:    30 * time.Second,
		IdleTimeout:    2 * time.Minute,
		ReadBufferSize: 8 << 10,
		Concurrency:    connectionLimit(),
	})
	// The per-IP cap is enforced by our listener (see resilientListener):
	// fasthttp's MaxConnsPerIP wrapper crashes (nil pointer in
	// perIPConn.Close, fasthttp 1.52) when a connection is hijacked, as
	// every WebSocket is.
	s.routes()
	return s, nil
}

// routes registers every route in one place.
func (s *Server) routes() {
	app := s.fiber
	// A panic in a handler (a corrupted database page makes bbolt panic)
	// is answered 500 and logged; the process keeps serving callbacks.
	app.Use(recover.New(recover.Config{
		EnableStackTrace: true,
		StackTraceHandler: func(c *fiber.Ctx, e any) {
			s.log.Error("handler panic recovered", "method", c.Method(), "path", clip(c.Path()), "panic", fmt.Sprint(e), "stack", string(debug.Stack()))
		},
	}))
	if s.cfg.TLSEnabled() {
		app.Use(hsts)
	}
	app.Get("/healthz", s.handleHealthz)
	app.Get("/readyz", s.handleReadyz)
	s.metricsRoutes()

	cb := s.cfg.Plivo.CallbackPath
	app.Post(cb, s.handleCallback)
	app.Get(cb, s.handleCallback)

	api := app.Group("/api", s.requireAuth)
	api.Get("/messages", s.handleListMessages)
	api.Get("/messages/:uuid", s.handleGetMessage)
	api.Post("/messages", s.handleSend)
	api.Get("/config", s.handleConfig)
	api.Get("/stats", s.handleStats)
	api.Get("/analytics", s.handleAnalytics)
	api.Get("/health", s.handleHealth)
	api.Get("/export", s.handleExport)
	api.Get("/backup", s.handleBackup)
	s.forwardRoutes(api)
	s.inboundRoutes(api)
	s.dashboardRoutes()
	s.prefixRoutes()
}

// AddNotifier registers n to hear about stored events. Call before Serve.
func (s *Server) AddNotifier(n Notifier) { s.notifiers = append(s.notifiers, n) }

// consumeApplied publishes every event the store's commits stored, in
// cursor order, whoever made it (callback, send, reconcile), until the
// store closes. It runs on its own goroutine: a slow notifier delays only
// the notifications (the store drops what does not fit its bounded
// channel, and says so), never a commit.
func (s *Server) consumeApplied(applied <-chan storage.Applied) {
	for a := range applied {
		if a.Missed > 0 {
			s.log.Warn("dashboard and metrics fell behind ingestion: events not published",
				"missed", a.Missed, "dropped_total", s.store.AppliedDropped())
			// Stream clients resume from the database instead of missing them.
			s.hub.Resync()
		}
		s.publish(a)
	}
}

// publish tells every notifier about one stored event.
func (s *Server) publish(a storage.Applied) {
	for _, n := range s.notifiers {
		n.Notify(a.Event, a.Result)
	}
}

// Serve accepts connections on ln until Shutdown. It returns nil after a
// clean shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.lnMu.Lock()
	if s.stopped {
		s.lnMu.Unlock()
		_ = ln.Close()
		return nil
	}
	s.ln = ln
	s.lnMu.Unlock()
	if err := s.fiber.Listener(newResilientListener(ln, s.log, maxConnsPerIP)); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// Shutdown stops accepting connections and waits for in-flight requests
// (callbacks being committed among them) until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	// WebSocket connections are hijacked, so Fiber does not wait for them:
	// close them first, each with a "going away" frame.
	if err := s.hub.Close(ctx); err != nil {
		s.log.Warn("websocket clients did not close in time", "err", err)
	}
	s.lnMu.Lock()
	s.stopped = true
	ln := s.ln
	s.lnMu.Unlock()
	if err := s.fiber.ShutdownWithContext(ctx); err != nil {
		return fmt.Errorf("shutdown http: %w", err)
	}
	// Fiber's shutdown does nothing if it has not started serving yet; a
	// Serve that began just before would then serve forever. Closing its
	// listener ends it (a no-op after a shutdown that did run).
	if ln != nil {
		_ = ln.Close()
	}
	return nil
}

// handleHealthz answers liveness: the process is up.
func (s *Server) handleHealthz(c *fiber.Ctx) error {
	return c.SendString("ok")
}

// httpError is an error with a status code and a message safe to show the caller.
type httpError struct {
	Code    int
	Message string
	Err     error // optional cause, logged but never shown
}

func (e *httpError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%d %s", e.Code, e.Message)
}

func (e *httpError) Unwrap() error { return e.Err }

// handleError maps a handler's error to a status and {"error": reason}.
// Only unexpected errors (5xx) are logged here; expected rejections are
// logged and counted by their handlers.
func (s *Server) handleError(c *fiber.Ctx, err error) error {
	code, msg := fiber.StatusInternalServerError, "internal error"
	var he *httpError
	var fe *fiber.Error
	switch {
	case errors.As(err, &he):
		code, msg = he.Code, he.Message
	case errors.As(err, &fe):
		code, msg = fe.Code, fe.Message
	}
	if code >= 500 {
		s.log.Error("request failed", "method", c.Method(), "path", c.Route().Path, "status", code, "err", err)
	}
	return c.Status(code).JSON(fiber.Map{"error": msg})
}
