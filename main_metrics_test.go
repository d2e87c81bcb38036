package main

import (
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

var metricsAddrRE = regexp.MustCompile(`msg="metrics listening".* addr=(127\.0\.0\.1:\d+)`)

// TestBinaryMetricsListener runs the real binary with metrics.listen and a
// token: /metrics is served there, behind the token, with the storage
// commit histogram main wires into the store, and not on the main listener.
func TestBinaryMetricsListener(t *testing.T) {
	cfgPath := writeConfig(t, t.TempDir())
	f, err := os.OpenFile(cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("\n[metrics]\nlisten = \"127.0.0.1:0\"\ntoken = \"scrape-token-0123456789\"\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p := startBinary(t, cfgPath)
	m := metricsAddrRE.FindStringSubmatch(p.stderr.String())
	if m == nil {
		t.Fatalf("no metrics listener in the log:\n%s", p.stderr.String())
	}
	metricsURL := "http://" + m[1] + "/metrics"

	if code, _ := p.send(t, http.DefaultClient, signedForm(t, statusFields("6a6a6a6a-0000-4000-8000-000000000001", "queued", 1), "metrics-bin-nonce-1")); code != 200 {
		t.Fatalf("callback: got %d, want 200", code)
	}
	fetch := func(url, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		client := &http.Client{Timeout: 10 * time.Second}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := fetch(metricsURL, ""); code != http.StatusUnauthorized {
		t.Errorf("metrics without token: got %d, want 401", code)
	}
	code, body := fetch(metricsURL, "scrape-token-0123456789")
	if code != http.StatusOK {
		t.Fatalf("metrics with token: got %d, want 200", code)
	}
	for _, want := range []string{
		`plivo_dlr_callbacks_total{result="stored"} 1`,
		`plivo_dlr_status_events_total{status="queued"} 1`,
		`plivo_dlr_messages_pending{age="under_5m"} 1`,
		"plivo_dlr_storage_commit_duration_seconds_count ",
		"plivo_dlr_db_size_bytes ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(body, "plivo_dlr_storage_commit_duration_seconds_count 0\n") {
		t.Error("storage commit histogram is empty: the store's OnCommit hook is not wired")
	}
	if _, body := fetch("http://"+p.addr+"/metrics", "scrape-token-0123456789"); strings.Contains(body, "plivo_dlr_") {
		t.Error("the main listener serves /metrics although metrics.listen is set")
	}
	p.stop(t)
}
