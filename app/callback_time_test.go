package app

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"plivo-dlr/internal/testsupport"
	"plivo-dlr/storage"
)

// startLoggedServer is startMetricsServer with the server's log collected.
func startLoggedServer(t *testing.T, mutate func(*Config)) (*metricsEnv, *testsupport.LockedBuffer) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Plivo.AuthID, cfg.Plivo.AuthToken = metricsTestAuthID, metricsTestToken
	cfg.Dashboard.APITokens = []Secret{metricsTestAPI}
	cfg.Reconcile.Enabled = false
	store, err := storage.Open(filepath.Join(t.TempDir(), "dlr.db"), storage.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	base := "http://" + ln.Addr().String()
	cfg.Server.PublicURL = base
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &testsupport.LockedBuffer{}
	reg := prometheus.NewRegistry()
	srv, err := NewServer(Options{Config: cfg, Store: store, Registry: reg, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	env := &metricsEnv{srv: srv, store: store, reg: reg, url: base}
	env.stopFn = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if err := store.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	}
	t.Cleanup(env.stopFn)
	return env, logs
}

// TestCallbackUnparsedTimeStored (issue 11): DeliveryReportTime in a
// spelling Plivo does not document got a 400, and after three retries Plivo
// dropped the report. Readable spellings are now read; an unreadable one is
// stored empty with its raw value in the payload, counted (the series
// exists at zero from the start, so increase() sees the first one) and
// logged, sampled.
func TestCallbackUnparsedTimeStored(t *testing.T) {
	env, logs := startLoggedServer(t, nil)
	const unparsed = "plivo_dlr_callback_unparsed_times_total"
	for _, f := range []string{"MessageTime", "QueuedTime", "SentTime", "DeliveryReportTime"} {
		if m := series(scrape(t, env.url, ""), unparsed, "field="+f); m == nil || m.GetCounter().GetValue() != 0 {
			t.Fatalf("%s{field=%s} before any callback: got %v, want 0", unparsed, f, m)
		}
	}

	const readable, odd = "0c7e1a42-2f61-11ef-a3d5-0242ac120003", "0c7e1a42-2f61-11ef-a3d5-0242ac120004"
	for _, spelling := range []string{"2024-05-01 10:00:05+0000", "2024-05-01 10:00:05 UTC", "2024-05-01 10:00:05 +00:00"} {
		env.mustCallback(t, http.StatusOK, url.Values{"MessageUUID": {readable}, "Status": {"delivered"}, "DeliveryReportTime": {spelling}}, "")
	}
	_, body := get(t, env.url, "/api/messages/"+readable, string(metricsTestAPI))
	var d struct {
		Message storage.Message `json:"message"`
		Events  []storage.Event `json:"events"`
	}
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("message %s: %v", body, err)
	}
	if d.Message.DeliveryReportTime == nil || !d.Message.DeliveryReportTime.Equal(time.Date(2024, 5, 1, 10, 0, 5, 0, time.UTC)) {
		t.Errorf("readable spellings: got delivery_report_time %v, want 2024-05-01T10:00:05Z", d.Message.DeliveryReportTime)
	}

	for i, v := range []string{"2024-05-01 10:00:05 CEST", "01/05/2024 10:00", "2024-05-01 10:00:05 IST"} {
		f := url.Values{"MessageUUID": {odd}, "Status": {"delivered"}, "Sequence": {string(rune('1' + i))}, "DeliveryReportTime": {v}}
		env.mustCallback(t, http.StatusOK, f, "")
	}
	_, body = get(t, env.url, "/api/messages/"+odd, string(metricsTestAPI))
	d.Message, d.Events = storage.Message{}, nil
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("message %s: %v", body, err)
	}
	if d.Message.DeliveryReportTime != nil || len(d.Events) != 3 || d.Events[0].Payload["DeliveryReportTime"] != "2024-05-01 10:00:05 CEST" {
		t.Errorf("unreadable: got time %v, %d events, first payload %v; want no time, 3 events, the raw value kept",
			d.Message.DeliveryReportTime, len(d.Events), d.Events)
	}
	if m := series(scrape(t, env.url, ""), unparsed, "field=DeliveryReportTime"); m == nil || m.GetCounter().GetValue() != 3 {
		t.Errorf("%s{field=DeliveryReportTime}: got %v, want 3", unparsed, m)
	}
	// Sampled: at most one line a second, so 1 or 2 lines for 3 callbacks.
	if n := strings.Count(logs.String(), "callback stored without a time it could not read"); n < 1 || n > 2 {
		t.Errorf("log lines about unreadable times: got %d, want 1 or 2 (sampled)\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `field=DeliveryReportTime`) || !strings.Contains(logs.String(), "CEST") {
		t.Errorf("log: got %s, want the field and its raw value", logs.String())
	}
}
