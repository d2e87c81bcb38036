package app

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"plivo-dlr/app/protocol"
	"plivo-dlr/internal/testsupport"
	"plivo-dlr/storage"
)

const (
	metricsTestAuthID = "MAMETRICSTEST0000001"
	metricsTestToken  = "metrics-test-auth-token-0123456789"
	metricsTestAPI    = "metrics-test-api-token-0123456789"
)

// metricsEnv is a real Server on 127.0.0.1:0 over a real store whose
// commits feed the server's registry, wired as main wires them.
type metricsEnv struct {
	srv   *Server
	store *storage.Store
	reg   *prometheus.Registry
	url   string
	nonce atomic.Int64
	// stopFn shuts the server down and closes the store, once.
	stopFn func()
}

// startMetricsServer serves cfg (DefaultConfig with Plivo credentials when
// nil mutate) on a loopback port with the store at path (a fresh one when
// empty).
func startMetricsServer(tb testing.TB, path string, now func() time.Time, mutate func(*Config)) *metricsEnv {
	tb.Helper()
	if path == "" {
		path = filepath.Join(tb.TempDir(), "metrics.db")
	}
	cfg := DefaultConfig()
	cfg.Plivo.AuthID, cfg.Plivo.AuthToken = metricsTestAuthID, metricsTestToken
	cfg.Dashboard.APITokens = []Secret{metricsTestAPI}
	cfg.Reconcile.Enabled = false
	if mutate != nil {
		mutate(&cfg)
	}
	publicURL := cfg.Server.PublicURL
	reg := prometheus.NewRegistry()
	var storeOpts storage.Options
	storeOpts.Now = now
	if cfg.Metrics.Enabled {
		storeOpts.OnCommit = NewCommitObserver(reg)
	}
	store, err := storage.Open(path, storeOpts)
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	base := "http://" + ln.Addr().String()
	if publicURL == "" {
		cfg.Server.PublicURL = base
	}
	if err := cfg.Validate(); err != nil {
		tb.Fatalf("config: %v", err)
	}
	srv, err := NewServer(Options{Config: cfg, Store: store, Registry: reg, Now: now})
	if err != nil {
		tb.Fatalf("new server: %v", err)
	}
	serveStop := testsupport.Serve(tb, srv, ln, "")
	env := &metricsEnv{srv: srv, store: store, reg: reg, url: base}
	var once atomic.Bool
	env.stopFn = func() {
		if !once.CompareAndSwap(false, true) {
			return
		}
		serveStop()
		if err := store.Close(); err != nil {
			tb.Errorf("close store: %v", err)
		}
	}
	tb.Cleanup(env.stop)
	return env
}

func (e *metricsEnv) stop() { e.stopFn() }

// callback posts a V2-signed callback with the given fields and nonce
// ("" takes a fresh one) and returns the status code.
func (e *metricsEnv) callback(tb testing.TB, fields url.Values, nonce string) int {
	tb.Helper()
	if nonce == "" {
		nonce = fmt.Sprintf("metrics-nonce-%012d", e.nonce.Add(1))
	}
	u := e.url + "/plivo/callback"
	sig, err := protocol.ComputeSignatureV2(metricsTestToken, u, nonce)
	if err != nil {
		tb.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(fields.Encode()))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(protocol.HeaderSignatureV2, sig)
	req.Header.Set(protocol.HeaderSignatureV2Nonce, nonce)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("post callback: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// mustCallback posts a callback that must be answered want.
func (e *metricsEnv) mustCallback(tb testing.TB, want int, fields url.Values, nonce string) {
	tb.Helper()
	if got := e.callback(tb, fields, nonce); got != want {
		tb.Fatalf("callback %v: got %d, want %d", fields, got, want)
	}
}

// get fetches path from the main listener with an optional bearer token.
func get(tb testing.TB, base, path, token string) (int, []byte) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, body
}

// scrape GETs /metrics and parses it with Prometheus' own text parser.
func scrape(tb testing.TB, base, token string) map[string]*dto.MetricFamily {
	tb.Helper()
	code, body := get(tb, base, "/metrics", token)
	if code != http.StatusOK {
		tb.Fatalf("GET /metrics: got %d %s, want 200", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		tb.Fatalf("parse /metrics: %v", err)
	}
	return mfs
}

// series finds the metric of family name whose labels are exactly labels
// ("k=v" pairs); nil when absent.
func series(mfs map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	mf := mfs[name]
	if mf == nil {
		return nil
	}
	want := slices.Clone(labels)
	slices.Sort(want)
	for _, m := range mf.GetMetric() {
		var got []string
		for _, l := range m.GetLabel() {
			got = append(got, l.GetName()+"="+l.GetValue())
		}
		slices.Sort(got)
		if slices.Equal(got, want) {
			return m
		}
	}
	return nil
}

// value returns a counter's or gauge's value, NaN when the series is absent.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	m := series(mfs, name, labels...)
	switch {
	case m == nil:
		return math.NaN()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return math.NaN()
}

// status builds the fields of a Plivo callback.
func status(uuid, st string, seq int, extra ...string) url.Values {
	v := url.Values{
		"MessageUUID": {uuid}, "Status": {st}, "Sequence": {fmt.Sprint(seq)},
		"To": {"447700900123"}, "From": {"14155550100"}, "Type": {"sms"}, "Units": {"1"},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	return v
}

// delivered builds a delivered callback whose Plivo timestamps are ttd apart.
func delivered(uuid string, seq int, ttd time.Duration) url.Values {
	q := time.Date(2025, 3, 1, 11, 0, 0, 0, time.UTC)
	const layout = "2006-01-02 15:04:05.000000"
	return status(uuid, storage.StatusDelivered, seq,
		"QueuedTime", q.Format(layout), "DeliveryReportTime", q.Add(ttd).Format(layout))
}

func TestMetricsCountDelivery(t *testing.T) {
	env := startMetricsServer(t, "", nil, nil)
	msgs := []string{
		"a0000000-0000-4000-8000-000000000001", "b0000000-0000-4000-8000-000000000002",
		"c0000000-0000-4000-8000-000000000003", "d0000000-0000-4000-8000-000000000004",
		"e0000000-0000-4000-8000-000000000005", "f0000000-0000-4000-8000-000000000006",
	}
	a, b, c, d, e, f := msgs[0], msgs[1], msgs[2], msgs[3], msgs[4], msgs[5]
	for i, uuid := range []string{a, b, c} {
		env.mustCallback(t, 200, status(uuid, storage.StatusQueued, 1), "")
		env.mustCallback(t, 200, status(uuid, storage.StatusSent, 2), "")
		env.mustCallback(t, 200, delivered(uuid, 3, []time.Duration{4 * time.Second, 40 * time.Second, 400 * time.Second}[i]), "")
	}
	env.mustCallback(t, 200, status(d, storage.StatusQueued, 1), "")
	env.mustCallback(t, 200, status(d, storage.StatusSent, 2), "")
	env.mustCallback(t, 200, status(d, storage.StatusUndelivered, 3, "ErrorCode", "30"), "")
	// Repeats: Plivo's retry of A's delivered report (same fields, new
	// nonce) is a duplicate, and so is the same request again (same nonce,
	// same bytes); that nonce with another body is a replay.
	env.mustCallback(t, 200, delivered(a, 3, 4*time.Second), "retry-nonce-0001")
	env.mustCallback(t, 200, delivered(a, 3, 4*time.Second), "retry-nonce-0001")
	env.mustCallback(t, 403, delivered(a, 4, 4*time.Second), "retry-nonce-0001")
	// B ends undelivered after delivered: stored, a new status event, but B
	// was already final and is not counted again.
	env.mustCallback(t, 200, status(b, storage.StatusUndelivered, 4, "ErrorCode", "030"), "")
	env.mustCallback(t, 200, status(e, storage.StatusFailed, 1, "ErrorCode", "12345"), "")
	env.mustCallback(t, 200, status(f, storage.StatusQueued, 1), "")
	env.mustCallback(t, 400, url.Values{"MessageUUID": {f}}, "")
	req, _ := http.NewRequest(http.MethodPost, env.url+"/plivo/callback", strings.NewReader(status(f, "sent", 2).Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(protocol.HeaderSignatureV2, "Zm9yZ2Vk")
	req.Header.Set(protocol.HeaderSignatureV2Nonce, "forged-nonce")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 403 {
		t.Fatalf("forged callback: %v %v, want 403", resp, err)
	} else {
		resp.Body.Close()
	}

	mfs := scrape(t, env.url, "")
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"plivo_dlr_callbacks_total", []string{"result=stored"}, 15},
		{"plivo_dlr_callbacks_total", []string{"result=duplicate"}, 2},
		{"plivo_dlr_callbacks_total", []string{"result=replayed"}, 1},
		{"plivo_dlr_callbacks_total", []string{"result=invalid_signature"}, 1},
		{"plivo_dlr_callbacks_total", []string{"result=malformed"}, 1},
		{"plivo_dlr_callbacks_total", []string{"result=error"}, 0},
		{"plivo_dlr_status_events_total", []string{"status=queued"}, 5},
		{"plivo_dlr_status_events_total", []string{"status=sent"}, 4},
		{"plivo_dlr_status_events_total", []string{"status=delivered"}, 3},
		{"plivo_dlr_status_events_total", []string{"status=undelivered"}, 2},
		{"plivo_dlr_status_events_total", []string{"status=failed"}, 1},
		{"plivo_dlr_status_events_total", []string{"status=other"}, 0},
		{"plivo_dlr_messages_final_total", []string{"status=delivered"}, 3},
		{"plivo_dlr_messages_final_total", []string{"status=undelivered"}, 1},
		{"plivo_dlr_messages_final_total", []string{"status=failed"}, 1},
		{"plivo_dlr_messages_final_total", []string{"status=rejected"}, 0},
		{"plivo_dlr_error_codes_total", []string{"code=30"}, 1},
		{"plivo_dlr_error_codes_total", []string{"code=other"}, 1},
		{"plivo_dlr_error_codes_total", []string{"code=900"}, 0},
		{"plivo_dlr_messages_pending", []string{"age=under_5m"}, 1},
		{"plivo_dlr_messages_pending", []string{"age=5m_to_30m"}, 0},
		{"plivo_dlr_messages_pending", []string{"age=over_24h"}, 0},
		{"plivo_dlr_signature_failures_total", []string{"header_set=v2", "cause=token_or_forgery"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name+"{"+strings.Join(tc.labels, ",")+"}", func(t *testing.T) {
			if got := value(mfs, tc.name, tc.labels...); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}

	t.Run("time to deliver", func(t *testing.T) {
		h := series(mfs, "plivo_dlr_time_to_deliver_seconds").GetHistogram()
		if h.GetSampleCount() != 3 || h.GetSampleSum() != 444 {
			t.Fatalf("count, sum: got %d, %v, want 3, 444", h.GetSampleCount(), h.GetSampleSum())
		}
		want := map[float64]uint64{1: 0, 5: 1, 30: 1, 60: 2, 300: 2, 600: 3, 3600: 3}
		for _, bk := range h.GetBucket() {
			if w, ok := want[bk.GetUpperBound()]; ok && bk.GetCumulativeCount() != w {
				t.Errorf("bucket le=%v: got %d, want %d", bk.GetUpperBound(), bk.GetCumulativeCount(), w)
			}
		}
	})
	t.Run("callback duration", func(t *testing.T) {
		if got := series(mfs, "plivo_dlr_callback_duration_seconds").GetHistogram().GetSampleCount(); got != 20 {
			t.Errorf("count: got %d, want 20 (every callback)", got)
		}
	})
	t.Run("storage commits", func(t *testing.T) {
		h := series(mfs, "plivo_dlr_storage_commit_duration_seconds").GetHistogram()
		// Sequential callbacks commit one by one; the duplicate and the
		// replay commit too (nonces).
		if h.GetSampleCount() < 15 || h.GetSampleSum() <= 0 {
			t.Errorf("count, sum: got %d, %v, want at least 15 commits taking time", h.GetSampleCount(), h.GetSampleSum())
		}
	})
	t.Run("db size", func(t *testing.T) {
		if got := value(mfs, "plivo_dlr_db_size_bytes"); !(got >= 32<<10) {
			t.Errorf("got %v, want the file size (at least 32 KiB)", got)
		}
	})
	t.Run("dropped notifications", func(t *testing.T) {
		// Present from the start (NaN when missing), 0 without overload.
		if got := value(mfs, "plivo_dlr_applied_events_dropped_total"); got != 0 {
			t.Errorf("got %v, want 0", got)
		}
	})
	t.Run("go and process collectors", func(t *testing.T) {
		for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "process_start_time_seconds"} {
			if mfs[name] == nil {
				t.Errorf("%s missing", name)
			}
		}
	})
	t.Run("lint", func(t *testing.T) {
		problems, err := testutil.GatherAndLint(env.reg)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	})
	t.Run("bounded labels", func(t *testing.T) {
		// Error code 12345 and every status went in: the series are still
		// exactly the closed sets.
		for name, want := range map[string]int{
			"plivo_dlr_status_events_total":  len(metricStatuses),
			"plivo_dlr_messages_final_total": len(finalStatuses),
			"plivo_dlr_error_codes_total":    len(protocol.ErrorCodes) + 1,
		} {
			if n := len(mfs[name].GetMetric()); n != want {
				t.Errorf("%s has %d series, want %d", name, n, want)
			}
		}
	})
}

func TestMetricsPendingByAge(t *testing.T) {
	clock := testsupport.NewClock(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	env := startMetricsServer(t, "", clock.Now, nil)
	pending := func() []float64 {
		mfs := scrape(t, env.url, "")
		var out []float64
		for _, age := range pendingAgeLabels {
			out = append(out, value(mfs, "plivo_dlr_messages_pending", "age="+age))
		}
		return out
	}
	check := func(step string, want ...float64) {
		t.Helper()
		if got := pending(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: pending %v = %v, want %v", step, pendingAgeLabels, got, want)
		}
	}
	const p1, p2, p3 = "11111111-0000-4000-8000-000000000001", "22222222-0000-4000-8000-000000000002", "33333333-0000-4000-8000-000000000003"
	env.mustCallback(t, 200, status(p1, storage.StatusQueued, 1), "")
	clock.Add(10 * time.Minute)
	env.mustCallback(t, 200, status(p2, storage.StatusSent, 2), "")
	clock.Add(time.Hour)
	env.mustCallback(t, 200, status(p3, storage.StatusQueued, 1), "")
	env.mustCallback(t, 200, delivered("44444444-0000-4000-8000-000000000004", 3, time.Second), "")
	check("p1 70m, p2 60m, p3 now", 1, 0, 2, 0)

	// Within the refresh interval a scrape reuses the counts.
	env.mustCallback(t, 200, status(p3, storage.StatusSent, 2), "")
	clock.Add(29 * time.Second)
	env.mustCallback(t, 200, delivered(p1, 3, time.Second), "")
	check("cached", 1, 0, 2, 0)

	clock.Add(10 * time.Minute)
	check("p1 delivered, p3 10m", 0, 1, 1, 0)
	clock.Add(24 * time.Hour)
	check("a day later", 0, 0, 0, 2)
	env.mustCallback(t, 200, status(p2, storage.StatusRejected, 3), "")
	clock.Add(pendingRefresh)
	check("p2 rejected", 0, 0, 0, 1)

	// The count is stored, not rebuilt: it survives a restart.
	path := env.store.Path()
	env.stop()
	env = startMetricsServer(t, path, clock.Now, nil)
	check("after restart", 0, 0, 0, 1)
}

func TestMetricsEndpoint(t *testing.T) {
	tests := []struct {
		name      string
		cfg       func(*Config)
		token     string
		wantCode  int
		wantBody  bool // the answer is the metrics
		wantCount float64
	}{
		{"open", nil, "", 200, true, 1},
		{"token required", func(c *Config) { c.Metrics.Token = "scrape-token-0123" }, "", 401, false, 1},
		{"wrong token", func(c *Config) { c.Metrics.Token = "scrape-token-0123" }, "scrape-token-0124", 401, false, 1},
		{"API token is not the metrics token", func(c *Config) { c.Metrics.Token = "scrape-token-0123" }, metricsTestAPI, 401, false, 1},
		{"right token", func(c *Config) { c.Metrics.Token = "scrape-token-0123" }, "scrape-token-0123", 200, true, 1},
		{"own listener: not on the main one", func(c *Config) { c.Metrics.Listen = "127.0.0.1:9109" }, "", 0, false, 1},
		{"disabled", func(c *Config) { c.Metrics.Enabled = false }, "", 0, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := startMetricsServer(t, "", nil, tc.cfg)
			env.mustCallback(t, 200, status("55555555-0000-4000-8000-000000000005", storage.StatusQueued, 1), "")
			code, body := get(t, env.url, "/metrics", tc.token)
			isMetrics := bytes.Contains(body, []byte("# TYPE plivo_dlr_callbacks_total counter"))
			if tc.wantCode != 0 && code != tc.wantCode || isMetrics != tc.wantBody {
				t.Errorf("GET /metrics: got %d (metrics: %v), want %d (metrics: %v)", code, isMetrics, tc.wantCode, tc.wantBody)
			}
			if got := testutil.ToFloat64(env.srv.metrics.callbacks.WithLabelValues(resultStored)); got != tc.wantCount {
				t.Errorf("callbacks_total{stored}: got %v, want %v", got, tc.wantCount)
			}
			if tc.wantCode == 401 {
				return
			}
			// MetricsHandler is what main serves on metrics.listen.
			n, err := testutil.GatherAndCount(env.reg, "plivo_dlr_status_events_total")
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			if env.srv.cfg.Metrics.Enabled {
				want = len(metricStatuses)
			}
			if n != want {
				t.Errorf("status_events_total series: got %d, want %d", n, want)
			}
		})
	}
	t.Run("own listener serves them", func(t *testing.T) {
		env := startMetricsServer(t, "", nil, func(c *Config) {
			c.Metrics.Listen = "127.0.0.1:9109"
			c.Metrics.Token = "scrape-token-0123"
		})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		hs := &http.Server{Handler: env.srv.MetricsHandler()}
		go func() { _ = hs.Serve(ln) }()
		t.Cleanup(func() { _ = hs.Close() })
		base := "http://" + ln.Addr().String()
		if code, _ := get(t, base, "/metrics", ""); code != 401 {
			t.Errorf("without token: got %d, want 401", code)
		}
		if mfs := scrape(t, base, "scrape-token-0123"); mfs["plivo_dlr_callbacks_total"] == nil {
			t.Error("no plivo_dlr_callbacks_total on the metrics listener")
		}
	})
}

// TestStatsSurviveRestart: /api/stats comes from the store, so a restart
// changes nothing; Prometheus counters start again from zero (rate()
// handles the reset).
func TestStatsSurviveRestart(t *testing.T) {
	clock := testsupport.NewClock(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	env := startMetricsServer(t, "", clock.Now, nil)
	for i := range 12 {
		uuid := fmt.Sprintf("%08x-0000-4000-8000-000000000000", i+1)
		env.mustCallback(t, 200, status(uuid, storage.StatusQueued, 1), "")
		switch i % 3 {
		case 0:
			env.mustCallback(t, 200, delivered(uuid, 2, time.Duration(i+1)*time.Second), "")
		case 1:
			env.mustCallback(t, 200, status(uuid, storage.StatusUndelivered, 2, "ErrorCode", "80"), "")
		}
		clock.Add(time.Minute)
	}
	statsOf := func(env *metricsEnv) string {
		t.Helper()
		code, body := get(t, env.url, "/api/stats?window=24h", metricsTestAPI)
		if code != 200 {
			t.Fatalf("GET /api/stats: got %d %s", code, body)
		}
		return string(body)
	}
	before := statsOf(env)
	for _, want := range []string{`"delivered":4`, `"undelivered":4`, `"code":"80"`} {
		if !strings.Contains(before, want) {
			t.Fatalf("stats before restart lack %s: %s", want, before)
		}
	}
	path := env.store.Path()
	env.stop()
	env = startMetricsServer(t, path, clock.Now, nil)
	if after := statsOf(env); after != before {
		t.Errorf("stats after restart:\n%s\nwant as before:\n%s", after, before)
	}
	if got := value(scrape(t, env.url, ""), "plivo_dlr_messages_final_total", "status=delivered"); got != 0 {
		t.Errorf("messages_final_total{delivered} after restart: got %v, want 0 (a new process)", got)
	}
}

// TestAlertRules checks systemd/plivo-dlr.rules.yml with promtool (Debian's
// prometheus package) and that the README shows the same rules.
func TestAlertRules(t *testing.T) {
	rules := filepath.Join("..", "systemd", "plivo-dlr.rules.yml")
	data, err := os.ReadFile(rules)
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(readme, data) {
		t.Errorf("README.md does not show %s as it is; copy the file into the Metrics section", rules)
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("PLIVO_DLR_SKIP_PROMTOOL") == "1" {
			t.Skip("promtool not installed and PLIVO_DLR_SKIP_PROMTOOL=1")
		}
		t.Fatal("promtool not found: run .ci/deps (or set PLIVO_DLR_SKIP_PROMTOOL=1)")
	}
	out, err := exec.Command(promtool, "check", "rules", rules).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	tests := filepath.Join("testdata", "plivo-dlr.rules.test.yml")
	out, err = exec.Command(promtool, "test", "rules", tests).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// BenchmarkIngestMetrics measures what metrics cost ingestion: the same
// load against a server with metrics on (notifier, per-callback
// observations, commit hook) and one with metrics off, interleaved over
// rounds because the machine is shared and noisy; it reports the median
// ratio of throughputs. Run with a fixed count, e.g.
//
//	go test -run '^$' -bench BenchmarkIngestMetrics -benchtime 30000x ./app
func BenchmarkIngestMetrics(b *testing.B) {
	const clients, rounds = 64, 7
	total := max(b.N, 3*clients)
	start := func(on bool) string {
		env := startMetricsServer(b, "", nil, func(c *Config) {
			c.Metrics.Enabled = on
			// runLoad signs with the benchmark's token and URL.
			c.Plivo.AuthToken = benchToken
			c.Server.PublicURL = "https://hooks.example.com"
		})
		return strings.TrimPrefix(env.url, "http://")
	}
	onAddr, offAddr := start(true), start(false)
	var ratios, onRates, offRates []float64
	b.ResetTimer()
	for r := range rounds {
		runID := fmt.Sprintf("%06x%02d", time.Now().UnixNano()&0xffffff, r)
		var on, off loadResult
		if r%2 == 0 {
			on = runLoad(b, onAddr, clients, total, runID+"a")
			off = runLoad(b, offAddr, clients, total, runID+"b")
		} else {
			off = runLoad(b, offAddr, clients, total, runID+"b")
			on = runLoad(b, onAddr, clients, total, runID+"a")
		}
		if on.non200 > 0 || off.non200 > 0 {
			b.Fatalf("non-200 answers: metrics on %d, off %d", on.non200, off.non200)
		}
		ratios = append(ratios, off.perSecond/on.perSecond)
		onRates = append(onRates, on.perSecond)
		offRates = append(offRates, off.perSecond)
	}
	b.StopTimer()
	median := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
	b.ReportMetric(median(onRates), "on_callbacks/s")
	b.ReportMetric(median(offRates), "off_callbacks/s")
	b.ReportMetric(median(ratios), "off/on")
	b.Logf("off/on per round: %.3f", ratios)
}

// BenchmarkMetricsPerCallback measures the CPU a stored callback spends on
// metrics with metrics on: the notifier (a final delivered message, the
// most work it does), the callback counter and duration, and the commit
// hook's observation. Compare with the cost of a callback from
// BenchmarkIngest (tens of microseconds of CPU).
//
//	go test -run '^$' -bench BenchmarkMetricsPerCallback -benchmem ./app
func BenchmarkMetricsPerCallback(b *testing.B) {
	store, err := storage.Open(filepath.Join(b.TempDir(), "bench.db"), storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })
	reg := prometheus.NewRegistry()
	m := newServerMetrics(reg)
	d := newDeliveryMetrics(reg, store, time.Now, slog.New(slog.DiscardHandler))
	commit := NewCommitObserver(reg)
	q := time.Date(2025, 3, 1, 11, 0, 0, 0, time.UTC)
	r := q.Add(5 * time.Second)
	ev := storage.Event{MessageUUID: "a0000000-0000-4000-8000-000000000001", Status: storage.StatusDelivered}
	res := storage.ApplyResult{BecameTerminal: true, StatusChanged: true, Message: storage.Message{
		Status:    storage.StatusDelivered,
		ErrorCode: "000",
		Details:   storage.Details{QueuedTime: &q, DeliveryReportTime: &r},
	}}
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		d.Notify(ev, res)
		m.callbacks.WithLabelValues(resultStored).Inc()
		m.callbackDuration.Observe(time.Since(start).Seconds())
		commit(time.Since(start), 1)
	}
}

// TestLabelledCountersStartAtZero scrapes a fresh server and finds every
// known label combination of the labelled counters at 0. A series created on
// first use gives Prometheus its first increment as the baseline, so
// increase() would miss it and PlivoDLRNoCallbacks or
// PlivoDLRSignatureFailures would stay silent after a restart (issue 11;
// the rules test has the scrape sequence that shows it).
func TestLabelledCountersStartAtZero(t *testing.T) {
	env := startMetricsServer(t, "", nil, nil)
	mfs := scrape(t, env.url, "")
	check := func(name string, labels ...string) {
		t.Helper()
		if got := value(mfs, name, labels...); got != 0 {
			t.Errorf("%s%v right after start: got %v, want a series at 0", name, labels, got)
		}
	}
	for _, hs := range []string{"none", "v2", "v3"} {
		for _, c := range []string{"missing", "url_mismatch", "token_or_forgery", "undiagnosed"} {
			check("plivo_dlr_signature_failures_total", "header_set="+hs, "cause="+c)
		}
	}
	for _, typ := range []string{"sms", "mms"} {
		for _, r := range []string{"accepted", "invalid", "rejected", "error"} {
			check("plivo_dlr_messages_sent_total", "type="+typ, "result="+r)
		}
	}
	for _, r := range []string{"resolved", "pending", "gave_up", "not_found", "error"} {
		check("plivo_dlr_reconcile_total", "result="+r)
	}
	for _, r := range []string{"stored", "duplicate", "invalid_signature", "replayed", "malformed", "error"} {
		check("plivo_dlr_callbacks_total", "result="+r)
	}
}
