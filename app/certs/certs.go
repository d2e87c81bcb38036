// Package certs owns the HTTPS side of the server: certificates from ACME
// (certmagic, HTTP-01 and TLS-ALPN-01 on our own listeners) or from files
// (reloaded on change and on SIGHUP), the TLS settings, the plain-HTTP
// listener that answers challenges and redirects to HTTPS, the certificate
// expiry metric, and a zap-to-slog bridge so certmagic logs in our format.
// It knows nothing of the HTTP server it protects: it hands out listeners.
package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// acmeTLS1 is the ALPN protocol of the TLS-ALPN-01 challenge (RFC 8737).
const acmeTLS1 = "acme-tls/1"

// filesPollInterval is how often tls.mode=files looks for replaced files.
// Renewal tools (certbot, acme.sh) replace them days before expiry, so a
// short delay costs nothing and a stat of two files every 30 s is free.
const filesPollInterval = 30 * time.Second

// Manager owns the HTTPS side of the server: certificates (from ACME via
// certmagic, or from files), the TLS listener settings, the plain-HTTP
// listener that answers HTTP-01 challenges and redirects to HTTPS, and the
// certificate expiry metric.
type Manager struct {
	opts Options
	log  *slog.Logger

	tlsConfig *tls.Config

	// acme mode
	magic  *certmagic.Config
	cache  *certmagic.Cache
	issuer *certmagic.ACMEIssuer

	// files mode
	files     atomic.Pointer[tls.Certificate]
	filesMu   sync.Mutex // serialises reloads
	filesSeen fileStamp
	pollEvery time.Duration

	// redirect target parts, fixed at construction
	domains    map[string]bool
	canonical  string // host to send unknown Host headers to; "" keeps theirs
	httpsPort  string // "" for 443
	httpServer *http.Server

	expiryDesc *prometheus.Desc
	stopOnce   sync.Once
}

// Options configure a Manager. The fields mirror the [tls] keys of the
// configuration (named in error messages) plus the server keys they depend on.
type Options struct {
	// Mode is "acme" or "files" (tls.mode).
	Mode string
	// Domains are the names certificates are for (tls.domains).
	Domains []string
	// Email and ACMECA are the ACME account email and directory URL
	// (tls.email, tls.acme_ca); ACMERoots, if not nil, are the only roots
	// trusted for the CA (tls.acme_ca_root, parsed).
	Email, ACMECA string
	ACMERoots     *x509.CertPool
	// CertFile and KeyFile are the PEM pair of files mode (tls.cert_file,
	// tls.key_file).
	CertFile, KeyFile string
	// HTTPListen is the plain-HTTP address (tls.http_listen); "" binds none.
	HTTPListen string
	// Listen is the HTTPS address (server.listen), PublicURL the public URL
	// (server.public_url): together they pick the redirect target.
	Listen, PublicURL string
	// DataDir holds the ACME account and certificates (server.data_dir).
	DataDir string
	// PollInterval is how often files mode looks for replaced files;
	// 0 means 30 s.
	PollInterval time.Duration
	// Logger receives the manager's and certmagic's logs; nil discards them.
	Logger *slog.Logger
	// Registerer, if not nil, gets the certificate expiry metric.
	Registerer prometheus.Registerer
}

// New builds the TLS manager for opts.Mode "acme" or "files" and registers
// the certificate expiry metric. It does not touch the network: Start does.
// In files mode the certificate is loaded now, so a bad path or key fails
// startup.
func New(opts Options) (*Manager, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = filesPollInterval
	}
	reg := opts.Registerer
	m := &Manager{
		opts:      opts,
		log:       logger.With("component", "tls"),
		pollEvery: opts.PollInterval,
		domains:   make(map[string]bool),
		expiryDesc: prometheus.NewDesc("plivo_dlr_tls_certificate_expiry_timestamp_seconds",
			"Expiry (NotAfter) of the certificate served for each configured domain, as a Unix timestamp.",
			[]string{"domain"}, nil),
	}
	for _, d := range opts.Domains {
		m.domains[strings.ToLower(d)] = true
	}
	m.canonical, m.httpsPort = redirectTarget(opts.Domains, opts.Listen, opts.PublicURL)

	switch opts.Mode {
	case "acme":
		if err := m.setupACME(); err != nil {
			return nil, err
		}
	case "files":
		if err := m.Reload(); err != nil {
			return nil, err
		}
		m.tlsConfig = &tls.Config{
			MinVersion:     tls.VersionTLS12,
			NextProtos:     []string{"http/1.1"},
			GetCertificate: m.getFileCertificate,
		}
	default:
		return nil, fmt.Errorf("new tls: tls.mode %q serves no TLS", opts.Mode)
	}
	if reg != nil {
		if err := reg.Register(m); err != nil {
			m.Close()
			return nil, fmt.Errorf("register tls metrics: %w", err)
		}
	}
	return m, nil
}

// setupACME builds our own certmagic cache and config (never the package
// Default, which is global state) with storage under server.data_dir.
func (m *Manager) setupACME() error {
	zl := zap.New(newSlogCore(m.log.Handler()))
	roots := m.opts.ACMERoots
	var magic *certmagic.Config
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil },
		Logger:           zl,
	})
	magic = certmagic.New(m.cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: filepath.Join(m.opts.DataDir, "certmagic")},
		Logger:  zl,
	})
	httpHost, httpPort := splitListen(m.opts.HTTPListen)
	_, tlsPort := splitListen(m.opts.Listen)
	m.issuer = certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{
		CA:    m.opts.ACMECA,
		Email: m.opts.Email,
		// Choosing tls.mode = "acme" is the operator's agreement to the CA's
		// terms; certmagic would otherwise try to prompt on stdin.
		Agreed:       true,
		TrustedRoots: roots,
		// Our own listeners answer the challenges. certmagic first tries to
		// bind these ports itself, finds them taken by us and relies on
		// HTTPChallengeHandler (HTTP-01) and GetCertificate (TLS-ALPN-01).
		ListenHost:           httpHost,
		AltHTTPPort:          httpPort,
		AltTLSALPNPort:       tlsPort,
		DisableHTTPChallenge: m.opts.HTTPListen == "",
		Logger:               zl,
	})
	magic.Issuers = []certmagic.Issuer{m.issuer}
	m.magic = magic

	tc := magic.TLSConfig()
	tc.MinVersion = tls.VersionTLS12
	// fasthttp speaks HTTP/1.1 only: offering h2 would break clients that
	// pick it. acme-tls/1 lets TLS-ALPN-01 validation reach certmagic.
	tc.NextProtos = []string{"http/1.1", acmeTLS1}
	m.tlsConfig = tc
	return nil
}

// splitListen returns the host and numeric port of a listen address; port 0
// when it has none.
func splitListen(addr string) (string, int) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0
	}
	n, _ := strconv.Atoi(port)
	return host, n
}

// redirectTarget picks where plain-HTTP requests are sent: the public URL's
// host and port when set, else the first domain and the HTTPS listener's port.
func redirectTarget(domains []string, listen, publicURL string) (host, port string) {
	if len(domains) > 0 {
		host = strings.ToLower(domains[0])
	}
	_, listenPort, _ := net.SplitHostPort(listen)
	port = listenPort
	if u, err := url.Parse(publicURL); err == nil && publicURL != "" && u.Scheme == "https" {
		host, port = strings.ToLower(u.Hostname()), u.Port()
	}
	if port == "443" {
		port = ""
	}
	return host, port
}

// listener wraps inner so every accepted connection speaks TLS.
func (m *Manager) listener(inner net.Listener) net.Listener {
	return tls.NewListener(inner, m.tlsConfig)
}

// httpHandler serves the plain-HTTP side: ACME HTTP-01 challenges in acme
// mode, and a 308 redirect to HTTPS for everything else (308 rather than 301
// so a POST callback sent to http:// is repeated as a POST).
func (m *Manager) httpHandler() http.Handler {
	redirect := http.HandlerFunc(m.redirect)
	if m.issuer != nil {
		return m.issuer.HTTPChallengeHandler(redirect)
	}
	return redirect
}

func (m *Manager) redirect(w http.ResponseWriter, r *http.Request) {
	host := strings.ToLower(r.Host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	// Only echo a Host header that names one of our domains: anything else
	// would make us an open redirector for whatever Host a client sends.
	if !m.domains[host] && m.canonical != "" {
		host = m.canonical
	}
	if m.httpsPort != "" {
		host = net.JoinHostPort(host, m.httpsPort)
	}
	http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
}

// Start wraps httpsLn in TLS, binds Options.HTTPListen (unless empty) for
// the challenge and redirect server, and starts certificate management:
// ACME obtains or renews in the background; files mode polls for replaced
// files. It returns the TLS listener to serve on. Both run until ctx ends or
// Close.
func (m *Manager) Start(ctx context.Context, httpsLn net.Listener) (net.Listener, error) {
	var httpLn net.Listener
	if addr := m.opts.HTTPListen; addr != "" {
		var err error
		if httpLn, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("listen on %s (tls.http_listen): %w", addr, err)
		}
	}
	return m.StartOn(ctx, httpsLn, httpLn)
}

// StartOn is Start with the plain-HTTP listener already bound by the caller
// (nil: none), for callers that bind their own ports.
func (m *Manager) StartOn(ctx context.Context, httpsLn, httpLn net.Listener) (net.Listener, error) {
	if httpLn != nil {
		m.httpServer = &http.Server{
			Handler:           m.httpHandler(),
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       time.Minute,
			ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelDebug),
		}
		// Exits when Close shuts the server down.
		go func() {
			if err := m.httpServer.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				m.log.Error("plain http listener failed", "addr", httpLn.Addr().String(), "err", err)
			}
		}()
		m.log.Info("plain http listener started", "addr", httpLn.Addr().String())
	}

	switch {
	case m.magic != nil:
		// Point certmagic's port probes at the ports actually bound (they
		// differ from the config when it says :0, as tests do).
		if httpLn != nil {
			m.issuer.ListenHost, m.issuer.AltHTTPPort = hostPort(httpLn.Addr())
		}
		_, m.issuer.AltTLSALPNPort = hostPort(httpsLn.Addr())
		m.log.Info("managing certificates", "domains", m.opts.Domains, "ca", m.issuer.CA)
		// Async: the listeners must be serving for the challenges, and a CA
		// outage must not keep the callback endpoint down; certmagic retries.
		if err := m.magic.ManageAsync(ctx, m.opts.Domains); err != nil {
			return nil, fmt.Errorf("manage certificates for %v: %w", m.opts.Domains, err)
		}
	default:
		// Exits when ctx ends.
		go m.pollFiles(ctx)
	}
	return m.listener(httpsLn), nil
}

// hostPort splits a bound TCP address.
func hostPort(a net.Addr) (string, int) {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String(), ta.Port
	}
	return splitListen(a.String())
}

// SetChallenges chooses the ACME challenge types offered from now on (both
// by default): HTTP-01 on the plain-HTTP listener, TLS-ALPN-01 on the HTTPS
// one. Tests use it to prove each path; it must not race a running Start or
// Renew. In files mode it does nothing.
func (m *Manager) SetChallenges(http01, tlsALPN01 bool) {
	if m.issuer == nil {
		return
	}
	m.issuer.DisableHTTPChallenge = !http01 || m.opts.HTTPListen == ""
	m.issuer.DisableTLSALPNChallenge = !tlsALPN01
}

// Close stops the plain-HTTP server and certificate maintenance.
func (m *Manager) Close() {
	m.stopOnce.Do(func() {
		if m.httpServer != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := m.httpServer.Shutdown(ctx); err != nil {
				m.log.Warn("shut down plain http listener", "err", err)
			}
		}
		if m.cache != nil {
			m.cache.Stop()
		}
	})
}

// Renew forces an ACME renewal of every configured domain now and serves the
// new certificates at once. Normal renewal is automatic (certmagic renews
// when a third of the lifetime is left); this is for operators and tests.
func (m *Manager) Renew(ctx context.Context) error {
	if m.magic == nil {
		return errors.New("renew certificates: tls.mode is not acme")
	}
	for _, d := range m.opts.Domains {
		old := m.cache.AllMatchingCertificates(d)
		// The async variant never prompts on stdin; it retries until ctx ends.
		if err := m.magic.RenewCertAsync(ctx, d, true); err != nil {
			return fmt.Errorf("renew certificate for %s: %w", d, err)
		}
		cert, err := m.magic.CacheManagedCertificate(ctx, d)
		if err != nil {
			return fmt.Errorf("load renewed certificate for %s: %w", d, err)
		}
		var stale []string
		for _, c := range old {
			if c.Hash() != cert.Hash() {
				stale = append(stale, c.Hash())
			}
		}
		m.cache.Remove(stale)
		m.log.Info("certificate renewed", "domain", d, "not_after", cert.Leaf.NotAfter)
	}
	return nil
}

// fileStamp identifies a version of the certificate and key files.
type fileStamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

func statFiles(certPath, keyPath string) (fileStamp, error) {
	c, err := os.Stat(certPath)
	if err != nil {
		return fileStamp{}, err
	}
	k, err := os.Stat(keyPath)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{certMod: c.ModTime(), keyMod: k.ModTime(), certSize: c.Size(), keySize: k.Size()}, nil
}

// Reload reads tls.cert_file and tls.key_file again (files mode; SIGHUP).
// On error the previous certificate stays in use. In acme mode it does
// nothing: certmagic renews on its own.
func (m *Manager) Reload() error {
	if m.opts.Mode != "files" {
		return nil
	}
	m.filesMu.Lock()
	defer m.filesMu.Unlock()
	certPath, keyPath := m.opts.CertFile, m.opts.KeyFile
	stamp, err := statFiles(certPath, keyPath)
	if err != nil {
		return fmt.Errorf("load tls.cert_file/tls.key_file: %w", err)
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return fmt.Errorf("load tls.cert_file %s and tls.key_file %s: %w", certPath, keyPath, err)
	}
	prev := m.files.Swap(&pair)
	m.filesSeen = stamp
	if prev != nil {
		m.log.Info("certificate reloaded", "cert_file", certPath, "not_after", pair.Leaf.NotAfter)
	}
	return nil
}

// pollFiles reloads the certificate when its files change, until ctx ends.
func (m *Manager) pollFiles(ctx context.Context) {
	t := time.NewTicker(m.pollEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		stamp, err := statFiles(m.opts.CertFile, m.opts.KeyFile)
		m.filesMu.Lock()
		changed := err == nil && stamp != m.filesSeen
		m.filesMu.Unlock()
		if !changed {
			continue
		}
		// A failure here is usually a half-written pair (new cert, old
		// key); the next poll tries again and the old pair keeps serving.
		if err := m.Reload(); err != nil {
			m.log.Warn("reload changed certificate files", "err", err)
		}
	}
}

func (m *Manager) getFileCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return m.files.Load(), nil
}

// Describe sends the expiry metric's description.
func (m *Manager) Describe(ch chan<- *prometheus.Desc) { ch <- m.expiryDesc }

// Collect reports each domain's served certificate expiry, read from the
// live certificates at scrape time so renewals show up without bookkeeping.
func (m *Manager) Collect(ch chan<- prometheus.Metric) {
	emit := func(domain string, notAfter time.Time) {
		ch <- prometheus.MustNewConstMetric(m.expiryDesc, prometheus.GaugeValue, float64(notAfter.Unix()), domain)
	}
	if m.cache != nil {
		for _, d := range m.opts.Domains {
			var latest time.Time
			for _, c := range m.cache.AllMatchingCertificates(d) {
				if c.Leaf != nil && c.Leaf.NotAfter.After(latest) {
					latest = c.Leaf.NotAfter
				}
			}
			if !latest.IsZero() {
				emit(d, latest)
			}
		}
		return
	}
	cert := m.files.Load()
	if cert == nil || cert.Leaf == nil {
		return
	}
	names := m.opts.Domains
	if len(names) == 0 {
		// Label by the certificate's own first name: still one series.
		names = cert.Leaf.DNSNames[:min(1, len(cert.Leaf.DNSNames))]
		if len(names) == 0 && cert.Leaf.Subject.CommonName != "" {
			names = []string{cert.Leaf.Subject.CommonName}
		}
	}
	for _, d := range names {
		emit(d, cert.Leaf.NotAfter)
	}
}
