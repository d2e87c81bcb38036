package app

import (
	"net/http"
	"strings"
	"testing"

	"plivo-dlr/app/apiclient"
)

// TestListMessagesRejectsUnknownStatus: a misspelt status filter is a 400
// naming the key and the accepted values, not an empty 200 that reads as
// "no such messages" (issue 11).
func TestListMessagesRejectsUnknownStatus(t *testing.T) {
	env := startMetricsServer(t, "", nil, nil)
	code, body := get(t, env.url, "/api/messages?status=bogus", string(metricsTestAPI))
	if code != http.StatusBadRequest || !strings.Contains(string(body), "status") || !strings.Contains(string(body), "delivered") {
		t.Errorf("status=bogus: got %d %s, want 400 naming status and the valid values", code, body)
	}
	for _, ok := range []string{"delivered", "undelivered", "pending", "queued", ""} {
		if code, body := get(t, env.url, "/api/messages?status="+ok, string(metricsTestAPI)); code != http.StatusOK {
			t.Errorf("status=%s: got %d %s, want 200", ok, code, body)
		}
	}
}

// TestUnauthorizedCarriesChallenge: every 401 of the API and /metrics names
// the scheme in WWW-Authenticate (RFC 9110 section 11.6.1).
func TestUnauthorizedCarriesChallenge(t *testing.T) {
	env := startMetricsServer(t, "", nil, func(c *Config) { c.Metrics.Token = "metrics-token-0123456789" })
	for _, path := range []string{"/api/messages", "/api/stats", "/metrics"} {
		resp, err := http.Get(env.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without a token: got %d, want 401", path, resp.StatusCode)
			continue
		}
		if h := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer ") {
			t.Errorf("GET %s: 401 with WWW-Authenticate %q, want a Bearer challenge", path, h)
		}
	}
}

// TestSendViaAPIHints: the CLI's refusals say what to do, not only the code.
func TestSendViaAPIHints(t *testing.T) {
	env := startMetricsServer(t, "", nil, nil)
	_, err := newAPIClient(t, env.url, "").Send(t.Context(), apiclient.SendRequest{To: []string{"+14155550123"}, Text: "hi"})
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "--token") {
		t.Errorf("send without a token: got %v, want a 401 naming --token", err)
	}
}

// newAPIClient is the CLI's client of the server at serverURL.
func newAPIClient(tb testing.TB, serverURL, token string) *apiclient.Client {
	tb.Helper()
	c, err := apiclient.New(serverURL, token)
	if err != nil {
		tb.Fatalf("api client: %v", err)
	}
	return c
}
