package app

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"plivo-dlr/app/protocol"
)

// TestPublicURLPathPrefix (issue 11): public_url https://host:8443/hooks
// signed /hooks/plivo/callback but served only /plivo/callback, a bare 404.
// The choice: a reverse proxy strips the prefix. Through a real stripping
// proxy a callback signed over the prefixed URL is stored; a request that
// reaches plivo-dlr with the prefix gets a 404 saying a proxy must strip it
// (and a log line); sent messages carry the prefixed callback URL.
func TestPublicURLPathPrefix(t *testing.T) {
	proxyLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	public := "http://" + proxyLn.Addr().String() + "/hooks"
	env, logs := startLoggedServer(t, func(c *Config) { c.Server.PublicURL = public })
	target, _ := url.Parse(env.url)
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.URL.Path = strings.TrimPrefix(r.In.URL.Path, "/hooks")
		r.Out.URL.RawPath = ""
		r.Out.Host = r.In.Host
	}}
	proxySrv := &http.Server{Handler: proxy}
	go func() { _ = proxySrv.Serve(proxyLn) }()
	t.Cleanup(func() { _ = proxySrv.Close() })

	post := func(t *testing.T, base, path, signedURL, nonce string) (int, string) {
		t.Helper()
		body := url.Values{"MessageUUID": {"0c7e1a42-2f61-11ef-a3d5-0242ac12000a"}, "Status": {"sent"}}
		sig, err := protocol.ComputeSignatureV3(metricsTestToken, "POST", signedURL, nonce, body)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set(protocol.HeaderSignatureV3, sig)
		req.Header.Set(protocol.HeaderSignatureV3Nonce, nonce)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("post %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// Plivo calls public_url + callback_path through the proxy.
	if code, body := post(t, "http://"+proxyLn.Addr().String(), "/hooks/plivo/callback", public+"/plivo/callback", fmt.Sprintf("%020d", 1)); code != http.StatusOK {
		t.Errorf("through the stripping proxy: got %d %s, want 200", code, body)
	}
	// No proxy: the prefixed path reaches plivo-dlr.
	code, body := post(t, env.url, "/hooks/plivo/callback", public+"/plivo/callback", fmt.Sprintf("%020d", 2))
	if code != http.StatusNotFound || !strings.Contains(body, "prefix /hooks") || !strings.Contains(body, "proxy") {
		t.Errorf("unstripped: got %d %s, want 404 naming the prefix and the proxy", code, body)
	}
	if !strings.Contains(logs.String(), "no proxy stripped it") {
		t.Errorf("log: got %s, want a line about the unstripped prefix", logs.String())
	}
	// Unrelated 404s and the API are untouched.
	if code, _ := get(t, env.url, "/nothing-here", ""); code != http.StatusNotFound {
		t.Errorf("/nothing-here: got %d, want 404", code)
	}
	if code, b := get(t, env.url, "/api/config", string(metricsTestAPI)); code != http.StatusOK || !strings.Contains(string(b), public+"/plivo/callback") {
		t.Errorf("/api/config: got %d %s, want the prefixed callback URL", code, b)
	}
}

// TestPublicURLPrefixNeedsAProxy: with TLS terminated by plivo-dlr nothing
// can strip a prefix, so validation refuses it with what to do.
func TestPublicURLPrefixNeedsAProxy(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Server.PublicURL = "https://dlr.example.com:8443/hooks"
	cfg.TLS.Mode = "files"
	cfg.TLS.CertFile, cfg.TLS.KeyFile = "cert.pem", "key.pem"
	err := cfg.Validate()
	if err == nil || !strings.HasPrefix(err.Error(), "server.public_url: ") || !strings.Contains(err.Error(), "reverse proxy") {
		t.Errorf("prefix with tls.mode=files: got %v, want a server.public_url error about the proxy", err)
	}
	cfg.TLS.Mode = "off"
	if err := cfg.Validate(); err != nil {
		t.Errorf("prefix with tls.mode=off: got %v, want valid", err)
	}
}
