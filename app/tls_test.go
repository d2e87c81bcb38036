package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"plivo-dlr/app/certs"
	"plivo-dlr/internal/testsupport"
	"plivo-dlr/storage"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(tb testing.TB) *testCA {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("generate CA key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "plivo-dlr test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("create CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("parse CA certificate: %v", err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns PEM certificate and key for names (DNS names or IPs) with
// the given serial and lifetime.
func (ca *testCA) issue(tb testing.TB, serial int64, lifetime time.Duration, names ...string) (certPEM, keyPEM []byte) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("generate key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(lifetime).Truncate(time.Second),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatalf("create certificate: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatalf("marshal key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

func writeTestFile(tb testing.TB, path string, data []byte) {
	tb.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatalf("write %s: %v", path, err)
	}
}

// tlsTestServer is the real Server on a real store, served through a
// certificate manager on loopback listeners.
type tlsTestServer struct {
	cfg       Config
	srv       *Server
	tm        *certs.Manager
	store     *storage.Store
	reg       *prometheus.Registry
	httpsAddr string
	httpAddr  string
}

// listenLoopback binds 127.0.0.1 on a free port.
func listenLoopback(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	return ln
}

// startTLSServer starts cfg's server on the given listeners; configure may
// adjust the certificate manager's options, beforeStart the manager itself
// before it starts.
func startTLSServer(tb testing.TB, cfg Config, logger *slog.Logger, httpsLn, httpLn net.Listener, configure func(*certs.Options), beforeStart func(*certs.Manager)) *tlsTestServer {
	tb.Helper()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	store, err := storage.Open(filepath.Join(tb.TempDir(), "dlr.db"), storage.Options{})
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() { store.Close() })
	reg := prometheus.NewRegistry()
	srv, err := NewServer(Options{Config: cfg, Store: store, Logger: logger, Registry: reg})
	if err != nil {
		tb.Fatalf("new server: %v", err)
	}
	opts, err := tlsOptions(cfg, logger, reg)
	if err != nil {
		tb.Fatalf("tls options: %v", err)
	}
	if configure != nil {
		configure(&opts)
	}
	tm, err := certs.New(opts)
	if err != nil {
		tb.Fatalf("new tls: %v", err)
	}
	if beforeStart != nil {
		beforeStart(tm)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &tlsTestServer{cfg: cfg, srv: srv, tm: tm, store: store, reg: reg, httpsAddr: httpsLn.Addr().String()}
	if httpLn != nil {
		ts.httpAddr = httpLn.Addr().String()
	}
	tln, err := tm.StartOn(ctx, httpsLn, httpLn)
	if err != nil {
		cancel()
		tb.Fatalf("start tls: %v", err)
	}
	stop := testsupport.Serve(tb, srv, tln, "")
	tb.Cleanup(func() {
		cancel()
		tm.Close()
		stop()
	})
	return ts
}

// filesConfig is a files-mode config for loopback tests.
func filesConfig(dir, certFile, keyFile string) Config {
	cfg := DefaultConfig()
	cfg.Server.DataDir = dir
	cfg.Server.Listen = "127.0.0.1:0"
	cfg.Server.PublicURL = "https://dlr.test:8443"
	cfg.TLS = TLSConfig{Mode: "files", Domains: []string{"dlr.test"}, CertFile: certFile, KeyFile: keyFile, HTTPListen: "127.0.0.1:0"}
	return cfg
}

// servedSerial dials addr as dlr.test, verifying against roots, and returns
// the serial number of the certificate the server presented.
func servedSerial(tb testing.TB, addr string, roots *x509.CertPool) (int64, error) {
	tb.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: "dlr.test", RootCAs: roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	st := conn.ConnectionState()
	if st.NegotiatedProtocol != "http/1.1" {
		tb.Errorf("ALPN: got %q, want http/1.1", st.NegotiatedProtocol)
	}
	return st.PeerCertificates[0].SerialNumber.Int64(), nil
}

// expiryMetric returns the expiry gauge for domain from reg.
func expiryMetric(tb testing.TB, reg *prometheus.Registry, domain string) (float64, bool) {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "plivo_dlr_tls_certificate_expiry_timestamp_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "domain" && l.GetValue() == domain {
					return m.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

func TestTLSFilesReload(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	c1, k1 := ca.issue(t, 1, 48*time.Hour, "dlr.test")
	writeTestFile(t, certFile, c1)
	writeTestFile(t, keyFile, k1)

	// No polling during this test: only Reload may change the certificate.
	ts := startTLSServer(t, filesConfig(dir, certFile, keyFile), nil, listenLoopback(t), listenLoopback(t), func(o *certs.Options) {
		o.PollInterval = time.Hour
	}, nil)
	serial := func() int64 {
		t.Helper()
		s, err := servedSerial(t, ts.httpsAddr, ca.pool())
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		return s
	}
	if got := serial(); got != 1 {
		t.Fatalf("serial served at start: got %d, want 1", got)
	}
	leaf := func(certPEM []byte) *x509.Certificate {
		b, _ := pem.Decode(certPEM)
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		return c
	}
	if got, ok := expiryMetric(t, ts.reg, "dlr.test"); !ok || int64(got) != leaf(c1).NotAfter.Unix() {
		t.Fatalf("expiry metric: got %v (present %v), want %d", got, ok, leaf(c1).NotAfter.Unix())
	}

	t.Run("reload", func(t *testing.T) {
		c2, k2 := ca.issue(t, 2, 72*time.Hour, "dlr.test")
		writeTestFile(t, certFile, c2)
		writeTestFile(t, keyFile, k2)
		if got := serial(); got != 1 {
			t.Fatalf("serial before reload: got %d, want 1 (nothing reloads on its own here)", got)
		}
		if err := ts.tm.Reload(); err != nil {
			t.Fatalf("reload: %v", err)
		}
		if got := serial(); got != 2 {
			t.Fatalf("serial after reload: got %d, want 2", got)
		}
		if got, _ := expiryMetric(t, ts.reg, "dlr.test"); int64(got) != leaf(c2).NotAfter.Unix() {
			t.Fatalf("expiry metric after reload: got %v, want %d", int64(got), leaf(c2).NotAfter.Unix())
		}
	})

	t.Run("bad files keep the old certificate", func(t *testing.T) {
		writeTestFile(t, keyFile, []byte("not a key"))
		if err := ts.tm.Reload(); err == nil {
			t.Fatal("reload of a broken key: got nil error, want one")
		}
		if got := serial(); got != 2 {
			t.Fatalf("serial after failed reload: got %d, want 2", got)
		}
	})
}

func TestTLSFilesPoll(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	c1, k1 := ca.issue(t, 1, 48*time.Hour, "dlr.test")
	writeTestFile(t, certFile, c1)
	writeTestFile(t, keyFile, k1)
	ts := startTLSServer(t, filesConfig(dir, certFile, keyFile), nil, listenLoopback(t), listenLoopback(t), func(o *certs.Options) {
		o.PollInterval = 20 * time.Millisecond
	}, nil)
	serial := func() int64 {
		s, err := servedSerial(t, ts.httpsAddr, ca.pool())
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		return s
	}
	if got := serial(); got != 1 {
		t.Fatalf("serial served at start: got %d, want 1", got)
	}
	// Key first, as a renewal tool might: the poller may see a mismatched
	// pair for a moment, keep serial 1, and pick up the pair on a later poll.
	c2, k2 := ca.issue(t, 2, 72*time.Hour, "dlr.test")
	writeTestFile(t, keyFile, k2)
	writeTestFile(t, certFile, c2)
	testsupport.WaitFor(t, 5*time.Second, "serial 2 to be served", func() bool { return serial() == 2 })
}

func TestTLSFilesBadStart(t *testing.T) {
	dir := t.TempDir()
	cfg := filesConfig(dir, filepath.Join(dir, "missing.pem"), filepath.Join(dir, "missing.key"))
	if _, err := NewTLS(cfg, nil, prometheus.NewRegistry()); err == nil || !strings.Contains(err.Error(), "tls.cert_file") {
		t.Fatalf("NewTLS with missing files: got %v, want an error naming tls.cert_file", err)
	}
}

func TestTLSRedirectAndHSTS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	c, k := ca.issue(t, 1, 48*time.Hour, "dlr.test")
	writeTestFile(t, certFile, c)
	writeTestFile(t, keyFile, k)
	ts := startTLSServer(t, filesConfig(dir, certFile, keyFile), nil, listenLoopback(t), listenLoopback(t), nil, nil)

	plain := &http.Client{
		Timeout:       5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	tests := []struct {
		name, method, host, target string
		wantLocation               string
	}{
		{"callback POST keeps path and query", http.MethodPost, "dlr.test", "/plivo/callback?a=1&b=x%20y", "https://dlr.test:8443/plivo/callback?a=1&b=x%20y"},
		{"dashboard GET", http.MethodGet, "DLR.test:80", "/api/messages?status=delivered", "https://dlr.test:8443/api/messages?status=delivered"},
		{"root", http.MethodGet, "dlr.test", "/", "https://dlr.test:8443/"},
		{"foreign Host goes to our domain", http.MethodGet, "evil.example", "/login", "https://dlr.test:8443/login"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, "http://"+ts.httpAddr+tt.target, strings.NewReader("MessageUUID=x"))
			if err != nil {
				t.Fatal(err)
			}
			req.Host = tt.host
			resp, err := plain.Do(req)
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusPermanentRedirect {
				t.Errorf("status: got %d, want 308", resp.StatusCode)
			}
			if got := resp.Header.Get("Location"); got != tt.wantLocation {
				t.Errorf("Location: got %q, want %q", got, tt.wantLocation)
			}
		})
	}

	t.Run("HSTS over TLS", func(t *testing.T) {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{ServerName: "dlr.test", RootCAs: ca.pool()},
		}}
		for _, path := range []string{"/healthz", "/api/messages"} {
			resp, err := client.Get("https://" + ts.httpsAddr + path)
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("Strict-Transport-Security"); got != hstsValue {
				t.Errorf("GET %s Strict-Transport-Security: got %q, want %q", path, got, hstsValue)
			}
		}
	})

	t.Run("no HSTS without TLS", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Server.DataDir = t.TempDir()
		store, err := storage.Open(filepath.Join(cfg.Server.DataDir, "dlr.db"), storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		srv, err := NewServer(Options{Config: cfg, Store: store})
		if err != nil {
			t.Fatal(err)
		}
		ln := listenLoopback(t)
		go srv.Serve(ln)
		defer srv.Shutdown(context.Background())
		resp, err := plain.Get("http://" + ln.Addr().String() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Strict-Transport-Security"); got != "" {
			t.Errorf("Strict-Transport-Security over plain HTTP: got %q, want none", got)
		}
	})
}
