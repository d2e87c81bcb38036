package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/letsencrypt/challtestsrv"

	"plivo-dlr/app/certs"
	"plivo-dlr/app/protocol"
	"plivo-dlr/internal/testsupport"
)

// freePort finds a loopback port free for both TCP and UDP, for servers
// that insist on binding an address themselves (pebble, challtestsrv).
func freePort(tb testing.TB) int {
	tb.Helper()
	for range 20 {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("listen: %v", err)
		}
		port := tl.Addr().(*net.TCPAddr).Port
		ul, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		tl.Close()
		if err == nil {
			ul.Close()
			return port
		}
	}
	tb.Fatal("no loopback port free for both TCP and UDP")
	return 0
}

// pebbleBinary builds (or finds in the build cache) the pebble declared as a
// tool in go.mod and returns its path. A missing pebble fails the test: the
// ACME path must never go untested silently.
func pebbleBinary(tb testing.TB) string {
	tb.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		tb.Fatalf("ACME test needs the go command to build pebble (go.mod tool github.com/letsencrypt/pebble/v2/cmd/pebble): %v", err)
	}
	// -n prints the built tool's path instead of running it, so the test
	// owns the pebble process itself and can kill it cleanly.
	// Only stdout is the path: on a cold module cache the go command also
	// reports its downloads, on stderr.
	cmd := exec.Command(goBin, "tool", "-n", "pebble")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("cannot build pebble with `go tool -n pebble` (is the module proxy reachable, or the module cache warm?): %v\n%s", err, stderr.Bytes())
	}
	path := strings.TrimSpace(string(out))
	if _, err := os.Stat(path); err != nil {
		tb.Fatalf("`go tool -n pebble` printed %q, which is not a file: %v", path, err)
	}
	return path
}

// pebbleEnv is a running pebble ACME server and the DNS server it asks.
type pebbleEnv struct {
	dirURL     string
	caRootFile string         // PEM of the CA that signed pebble's own HTTPS certificate
	issuerRoot *x509.CertPool // pebble's root for the certificates it issues
	log        *testsupport.LockedBuffer
}

// startPebble runs challtestsrv's DNS (every name resolves to 127.0.0.1)
// and pebble validating challenges at httpPort and tlsPort.
func startPebble(t *testing.T, httpPort, tlsPort int) *pebbleEnv {
	t.Helper()
	bin := pebbleBinary(t)
	dir := t.TempDir()

	dnsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	dns, err := challtestsrv.New(challtestsrv.Config{DNSAddrs: []string{dnsAddr}, Log: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatalf("challtestsrv: %v", err)
	}
	// IPv4 only: our listeners are on 127.0.0.1, and an AAAA answer of ::1
	// could send pebble's validation to a port nobody listens on.
	dns.SetDefaultDNSIPv6("")
	dns.Run()
	t.Cleanup(dns.Shutdown)
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, dnsAddr)
	}}
	testsupport.WaitFor(t, 10*time.Second, "challtestsrv DNS to answer", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		addrs, err := resolver.LookupHost(ctx, "dlr.test")
		return err == nil && len(addrs) > 0 && addrs[0] == "127.0.0.1"
	})

	// Pebble's HTTPS certificate comes from a CA made here rather than the
	// minica files in pebble's module: nothing to expire in testdata, and
	// tls.acme_ca_root is exercised with a root nobody else trusts.
	ca := newTestCA(t)
	certPEM, keyPEM := ca.issue(t, 10, 24*time.Hour, "127.0.0.1", "localhost")
	env := &pebbleEnv{caRootFile: filepath.Join(dir, "acme-ca-root.pem"), log: &testsupport.LockedBuffer{}}
	writeTestFile(t, env.caRootFile, ca.pem)
	writeTestFile(t, filepath.Join(dir, "pebble-cert.pem"), certPEM)
	writeTestFile(t, filepath.Join(dir, "pebble-key.pem"), keyPEM)

	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	mgmt := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":           listen,
		"managementListenAddress": mgmt,
		"certificate":             filepath.Join(dir, "pebble-cert.pem"),
		"privateKey":              filepath.Join(dir, "pebble-key.pem"),
		"httpPort":                httpPort,
		"tlsPort":                 tlsPort,
		"ocspResponderURL":        "",
		"retryAfter":              map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":            "ecdsa",
		"profiles": map[string]any{
			"default": map[string]any{"description": "test", "validityPeriod": 7776000},
		},
	}}
	confJSON, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	confFile := filepath.Join(dir, "pebble.json")
	writeTestFile(t, confFile, confJSON)

	cmd := exec.Command(bin, "-config", confFile, "-dnsserver", dnsAddr)
	cmd.Env = append(os.Environ(),
		"PEBBLE_VA_NOSLEEP=1",      // validate at once
		"PEBBLE_WFE_NONCEREJECT=0", // no random badNonce errors
		"PEBBLE_AUTHZREUSE=0",      // renewal must solve a fresh challenge
	)
	cmd.Stdout, cmd.Stderr = env.log, env.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pebble %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("pebble output:\n%s", env.log.String())
		}
	})

	env.dirURL = "https://" + listen + "/dir"
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool()}}}
	testsupport.WaitFor(t, 30*time.Second, "pebble's ACME directory", func() bool {
		select {
		case err := <-exited:
			t.Fatalf("pebble exited early: %v\n%s", err, env.log.String())
		default:
		}
		resp, err := client.Get(env.dirURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	resp, err := client.Get("https://" + mgmt + "/roots/0")
	if err != nil {
		t.Fatalf("fetch pebble root: %v", err)
	}
	defer resp.Body.Close()
	rootPEM, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read pebble root: %v", err)
	}
	env.issuerRoot = x509.NewCertPool()
	if !env.issuerRoot.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("pebble /roots/0 is not PEM: %q", rootPEM)
	}
	return env
}

// TestACMEEndToEnd obtains a certificate from pebble through a real HTTP-01
// challenge on our plain-HTTP listener, serves a signed callback over HTTPS
// verified against pebble's root, then forces a renewal through a real
// TLS-ALPN-01 challenge on our HTTPS listener and checks the new certificate
// is served.
func TestACMEEndToEnd(t *testing.T) {
	httpsLn, httpLn := listenLoopback(t), listenLoopback(t)
	httpsPort := httpsLn.Addr().(*net.TCPAddr).Port
	pebble := startPebble(t, httpLn.Addr().(*net.TCPAddr).Port, httpsPort)

	cfg := DefaultConfig()
	cfg.Server.DataDir = t.TempDir()
	cfg.Server.Listen = httpsLn.Addr().String()
	cfg.Server.PublicURL = fmt.Sprintf("https://dlr.test:%d", httpsPort)
	cfg.TLS = TLSConfig{
		Mode: "acme", Domains: []string{"dlr.test"}, Email: "ops@dlr.test",
		ACMECA: pebble.dirURL, ACMECARoot: pebble.caRootFile, HTTPListen: httpLn.Addr().String(),
	}
	cfg.Plivo.AuthID, cfg.Plivo.AuthToken = "MAXXXXXXXXXXXXXXXXXX", "test-auth-token"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &testsupport.LockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("plivo-dlr log:\n%s", logs.String())
		}
	})
	ts := startTLSServer(t, cfg, logger, httpsLn, httpLn, nil, func(tm *certs.Manager) {
		// First certificate through HTTP-01 only; the renewal below through
		// TLS-ALPN-01 only, so both challenge paths are proven.
		tm.SetChallenges(true, false)
	})

	// Each request dials afresh so a renewed certificate is seen at once.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{RootCAs: pebble.issuerRoot},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == fmt.Sprintf("dlr.test:%d", httpsPort) {
				addr = ts.httpsAddr
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	base := cfg.EffectivePublicURL()
	servedCert := func() (*x509.Certificate, error) {
		resp, err := client.Get(base + "/healthz")
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("healthz: %s", resp.Status)
		}
		if got := resp.Header.Get("Strict-Transport-Security"); got != hstsValue {
			t.Errorf("Strict-Transport-Security: got %q, want %q", got, hstsValue)
		}
		return resp.TLS.PeerCertificates[0], nil
	}

	var first *x509.Certificate
	testsupport.WaitFor(t, 60*time.Second, "a certificate from pebble to be served", func() bool {
		c, err := servedCert()
		first = c
		return err == nil
	})
	if got := first.DNSNames; len(got) != 1 || got[0] != "dlr.test" {
		t.Fatalf("certificate names: got %v, want [dlr.test]", got)
	}
	// certmagic logs each challenge it answers; through our slog bridge.
	if got := logs.String(); !strings.Contains(got, "challenge=http-01") || strings.Contains(got, "challenge=tls-alpn-01") {
		t.Errorf("first certificate: want only an http-01 challenge answered; log:\n%s", got)
	}
	if got, ok := expiryMetric(t, ts.reg, "dlr.test"); !ok || int64(got) != first.NotAfter.Unix() {
		t.Errorf("expiry metric: got %v (present %v), want %d", int64(got), ok, first.NotAfter.Unix())
	}

	t.Run("signed callback over HTTPS", func(t *testing.T) {
		form := url.Values{"MessageUUID": {"ac3e0001-2f61-11ef-a3d5-0242ac120003"}, "Status": {"delivered"}, "To": {"14155550100"}, "From": {"14155550199"}}
		nonce := "acme-e2e-nonce-1"
		sig, err := protocol.ComputeSignatureV2(string(cfg.Plivo.AuthToken), cfg.CallbackURL(), nonce)
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequest(http.MethodPost, cfg.CallbackURL(), strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Plivo-Signature-V2", sig)
		req.Header.Set("X-Plivo-Signature-V2-Nonce", nonce)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("callback: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("callback status: got %d (%s), want 200", resp.StatusCode, body)
		}
		msg, _, err := ts.store.GetMessage("ac3e0001-2f61-11ef-a3d5-0242ac120003")
		if err != nil {
			t.Fatalf("stored message: %v", err)
		}
		if msg.Status != "delivered" {
			t.Errorf("stored status: got %q, want delivered", msg.Status)
		}
	})

	t.Run("forced renewal", func(t *testing.T) {
		ts.tm.SetChallenges(false, true)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		// Pebble reuses a valid authorization 1% of the time even with
		// PEBBLE_AUTHZREUSE=0 (it compares rand.Intn(100) > percent, and 0
		// is drawn), and then no challenge is solved: such a renewal is
		// done again, at most twice more.
		var second *x509.Certificate
		answered := false
		for attempt := 0; attempt < 3 && !answered; attempt++ {
			before := len(logs.String())
			if err := ts.tm.Renew(ctx); err != nil {
				t.Fatalf("renew: %v", err)
			}
			var err error
			if second, err = servedCert(); err != nil {
				t.Fatalf("after renewal: %v", err)
			}
			if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
				t.Fatalf("serial after renewal: got %s, want a new one (was %s)", second.SerialNumber, first.SerialNumber)
			}
			answered = strings.Contains(logs.String()[before:], "challenge=tls-alpn-01")
		}
		if !answered {
			t.Errorf("renewal: want a tls-alpn-01 challenge answered; log:\n%s", logs.String())
		}
		if got, _ := expiryMetric(t, ts.reg, "dlr.test"); int64(got) != second.NotAfter.Unix() {
			t.Errorf("expiry metric after renewal: got %d, want %d", int64(got), second.NotAfter.Unix())
		}
	})
}
