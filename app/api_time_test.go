package app

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestListMessagesRefusesOutOfRangeTimes (issue 9): since=3000-01-01
// wrapped to a time in the past and returned messages. A time the store
// cannot hold is a 400 naming the key; times at the edges still work.
func TestListMessagesRefusesOutOfRangeTimes(t *testing.T) {
	env := startMetricsServer(t, "", nil, nil)
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"since=3000-01-01T00:00:00Z", http.StatusBadRequest},
		{"until=9999-12-31T23:59:59Z", http.StatusBadRequest},
		{"since=1600-01-01T00:00:00Z", http.StatusBadRequest},
		{"since=99999999999", http.StatusBadRequest}, // unix seconds, year 5138
		{"until=-99999999999", http.StatusBadRequest},
		{"since=2262-04-11T23:47:16Z", http.StatusOK},
		{"since=1677-09-22T00:00:00Z", http.StatusOK},
		{"since=24h", http.StatusOK},
		{"until=1700000000", http.StatusOK},
	} {
		code, body := get(t, env.url, "/api/messages?"+tc.query, string(metricsTestAPI))
		key, _, _ := strings.Cut(tc.query, "=")
		if code != tc.want || tc.want == http.StatusBadRequest && !strings.Contains(string(body), key+":") {
			t.Errorf("%s: got %d %s, want %d", tc.query, code, body, tc.want)
		}
		// The export takes the same filters.
		code, body = get(t, env.url, "/api/export?"+tc.query+"&format="+url.QueryEscape("ndjson"), string(metricsTestAPI))
		if code != tc.want {
			t.Errorf("export %s: got %d %s, want %d", tc.query, code, body, tc.want)
		}
	}
}
