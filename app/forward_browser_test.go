package app

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"plivo-dlr/internal/testsupport"
	"plivo-dlr/storage"
	"plivo-dlr/ui"
)

// TestDashboardForwardingBanner: a sink whose endpoint is down shows as
// failing on the dashboard, with a banner, in a real browser.
func TestDashboardForwardingBanner(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dashServer{addr: ln.Addr().String(), dbDir: t.TempDir()}
	d.cfg = dashConfig(d.addr)
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downURL := "http://" + down.Addr().String() + "/hooks"
	down.Close() // nothing listens there: connection refused
	d.cfg.Forward.Webhooks = []WebhookConfig{{Name: "app", URL: downURL, Secrets: []Secret{goodSecret}}}
	d.cfg.Forward.applyDefaults()
	if err := d.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if d.store, err = storage.Open(filepath.Join(d.dbDir, "dlr.db"), storage.Options{}); err != nil {
		t.Fatal(err)
	}
	fwd, err := NewForwarder(d.cfg, d.store, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.srv, err = NewServer(Options{Config: d.cfg, Store: d.store, UI: ui.FS, Forward: fwd}); err != nil {
		t.Fatal(err)
	}
	if err := fwd.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.serveStop = testsupport.Serve(t, d.srv, ln, d.url("/healthz"))
	t.Cleanup(func() {
		fwd.Stop()
		d.stop(t)
	})
	d.sendCallback(t, "0c0c0c0c-1111-4222-8333-444455556666", "queued", "", 1)

	ctx := newBrowser(t)
	within(t, ctx, 20*time.Second, "log in",
		chromedp.Navigate(d.url("/")),
		chromedp.WaitVisible(chromedp.CSS(`#username`)),
		chromedp.SendKeys(chromedp.CSS(`#username`), dashUser),
		chromedp.SendKeys(chromedp.CSS(`#password`), dashPassword),
		chromedp.Click(chromedp.CSS(`#login`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-state="live"]`)),
	)
	// The page polls every 10 s; the first poll may predate the failure.
	within(t, ctx, 25*time.Second, "failing banner",
		chromedp.WaitVisible(chromedp.CSS(`#forward-banner`)),
		chromedp.WaitVisible(chromedp.CSS(`#sinks li.sink.failing`)),
	)
	banner := browserValue(t, ctx, "read banner", chromedp.TextContent(chromedp.CSS(`#forward-banner`)))
	if !strings.Contains(banner, "Forwarding sink app is failing") {
		t.Errorf("banner: %q", banner)
	}
	// GET /api/health names it too, for API clients and monitors.
	req, _ := http.NewRequest(http.MethodGet, d.url("/api/health"), nil)
	req.Header.Set("Authorization", "Bearer "+string(dashAPIToken))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	health, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(health), `"kind":"sink_failing"`) || !strings.Contains(string(health), "Forwarding to app fails") {
		t.Errorf("GET /api/health: %d %s, want a sink_failing problem for app", resp.StatusCode, health)
	}
	sink := browserValue(t, ctx, "read sink", chromedp.TextContent(chromedp.CSS(`#sinks li`)))
	if !strings.Contains(sink, "1 behind") {
		t.Errorf("sink line: %q", sink)
	}
}
