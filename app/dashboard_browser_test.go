package app

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// findChromium returns the browser to drive. Without one the test fails
// (CI installs Debian's chromium) unless PLIVO_DLR_SKIP_BROWSER=1.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("PLIVO_DLR_SKIP_BROWSER") == "1" {
		t.Skip("no chromium on PATH and PLIVO_DLR_SKIP_BROWSER=1")
	}
	t.Fatal("chromium not found on PATH: install it (apt-get install -y chromium) or set PLIVO_DLR_SKIP_BROWSER=1 to skip the browser test")
	return ""
}

// newBrowser starts a headless Chromium that makes no network requests of
// its own, with a fresh profile.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	// Not t.TempDir: Chromium's helpers can still write there right after
	// it exits, which would fail the test's own cleanup.
	dataDir, err := os.MkdirTemp("", "plivo-dlr-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if os.RemoveAll(dataDir) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(findChromium(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(dataDir),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
	})
	// Start the browser now so a launch failure is reported as such.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// within runs actions with a deadline and fails the test naming what.
func within(t *testing.T, ctx context.Context, d time.Duration, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := chromedp.Do(c, actions...); err != nil {
		t.Fatalf("%s (within %s): %v", what, d, err)
	}
}

// browserValue runs one action that returns a value, within 5 s.
func browserValue[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// TestDashboardBrowser drives the real dashboard in Chromium: log in, see a
// callback's row appear live, open its history, then survive a server
// restart during which more callbacks arrive.
func TestDashboardBrowser(t *testing.T) {
	d := startDashServer(t, nil)
	ctx := newBrowser(t)
	defer func() {
		if !t.Failed() {
			return
		}
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		png, err := chromedp.Run(c, chromedp.FullScreenshot(90))
		if err != nil {
			t.Logf("screenshot failed: %v", err)
			return
		}
		p := filepath.Join(t.TempDir(), "dashboard-failure.png")
		if err := os.WriteFile(p, png, 0o600); err == nil {
			t.Logf("screenshot of the failure: %s", p)
		}
	}()

	// A wrongly signed callback before anyone looks: the dashboard's banner
	// says so and names the URL that would verify.
	wrongURL := sendMisSigned(t, d)

	// Logging in through the form lands on the dashboard with a live stream.
	within(t, ctx, 20*time.Second, "log in",
		chromedp.Navigate(d.url("/")),
		chromedp.WaitVisible(chromedp.CSS(`#username`)),
		chromedp.SendKeys(chromedp.CSS(`#username`), dashUser),
		chromedp.SendKeys(chromedp.CSS(`#password`), dashPassword),
		chromedp.Click(chromedp.CSS(`#login`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-state="live"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#problems [data-kind="callbacks_refused"]`)),
	)
	if banner := browserValue(t, ctx, "read the banner", chromedp.TextContent(chromedp.CSS(`#problems`))); !strings.Contains(banner, wrongURL) {
		t.Errorf("banner %q does not name %s", banner, wrongURL)
	}

	const uuidA = "0a0a0a0a-1111-4222-8333-444455556666"
	rowA := func(status string) string {
		return `tr[data-uuid="` + uuidA + `"][data-status="` + status + `"]`
	}
	// A callback's row appears within a second, without reload.
	d.sendCallback(t, uuidA, "queued", "", 1)
	within(t, ctx, time.Second, "queued row to appear", chromedp.WaitVisible(chromedp.CSS(rowA("queued"))))
	d.sendCallback(t, uuidA, "sent", "", 2)
	d.sendCallback(t, uuidA, "undelivered", "30", 3)
	within(t, ctx, time.Second, "row to turn undelivered and be marked",
		chromedp.WaitVisible(chromedp.CSS(rowA("undelivered")+`.changed`)))

	// The detail shows every event in order, the error in words and the payload.
	within(t, ctx, 5*time.Second, "open the message detail",
		chromedp.Click(chromedp.CSS(rowA("undelivered"))),
		chromedp.WaitVisible(chromedp.CSS(`#detail[open] ol.events li:nth-child(3)`)),
	)
	events := browserValue(t, ctx, "read the events",
		chromedp.Evaluate[[]string](`[...document.querySelectorAll("#detail ol.events li .status")].map(e => e.textContent)`))
	detail := browserValue(t, ctx, "read the detail", chromedp.TextContent(chromedp.CSS(`#detail-body`)))
	if got, want := strings.Join(events, ","), "queued,sent,undelivered"; got != want {
		t.Errorf("detail events: got %s, want %s", got, want)
	}
	for _, want := range []string{"Spam detected", "Queued 2024-05-01 10:00:00.234 UTC", "0.00450", "Raw payload"} {
		if !strings.Contains(detail, want) {
			t.Errorf("detail text lacks %q:\n%s", want, detail)
		}
	}
	within(t, ctx, 5*time.Second, "close the detail",
		chromedp.Click(chromedp.CSS(`#detail .close`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#detail[open]`)),
	)

	// Restart the server on the same port and database. While the page
	// waits to reconnect, more callbacks arrive; it catches up after.
	d.stop(t)
	within(t, ctx, 20*time.Second, "page to notice the outage and back off",
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-state="reconnecting"]`)),
		chromedp.Poll[chromedp.Void](`Number(document.querySelector("#conn").dataset.retryMs || 0) >= 1500`, chromedp.WithPollingTimeout(15*time.Second)),
	)
	d.start(t, nil)
	const uuidB = "0b0b0b0b-1111-4222-8333-444455556666"
	d.sendCallback(t, uuidB, "queued", "", 1)
	d.sendCallback(t, uuidB, "delivered", "000", 2)
	d.sendCallback(t, uuidA, "undelivered", "30", 4) // a repeat with a new sequence: a new event
	if n := d.srv.hub.Clients(); n != 0 {
		t.Errorf("the page reconnected before the callbacks were sent (%d clients): catch-up not tested", n)
	}
	within(t, ctx, 20*time.Second, "page to reconnect and catch up",
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-state="live"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-uuid="`+uuidB+`"][data-status="delivered"]`)),
	)
	rows := browserValue(t, ctx, "count rows", chromedp.Evaluate[int](`document.querySelectorAll("#messages tbody tr").length`))
	if rows != 2 {
		t.Errorf("rows after catch-up: got %d, want 2", rows)
	}

	// Statistics reflect what was stored.
	within(t, ctx, 10*time.Second, "stats to show both messages",
		chromedp.Poll[chromedp.Void](`document.querySelector("#counts").textContent.includes("total2")`, chromedp.WithPollingTimeout(8*time.Second)))
	t.Logf("stats after catch-up: %s", browserValue(t, ctx, "read stats", chromedp.TextContent(chromedp.CSS(`#counts`))))
}
