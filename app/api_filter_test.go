package app

import (
	"net/http"
	"strings"
	"testing"
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
