package app

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"plivo-dlr/app/sandbox"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"
)

// axeSource reads axe-core, which .ci/deps installs into .ci/node_modules
// of this repository. Without it the test fails (like a missing chromium)
// unless PLIVO_DLR_SKIP_BROWSER=1.
func axeSource(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	// The repository root is the nearest directory with go.mod; the test
	// reads nothing outside it.
	for range 10 {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		dir = filepath.Dir(dir)
	}
	p := filepath.Join(dir, ".ci", "node_modules", "axe-core", "axe.min.js")
	b, err := os.ReadFile(p)
	if err != nil {
		if os.Getenv("PLIVO_DLR_SKIP_BROWSER") == "1" {
			t.Skipf("no axe-core (%v) and PLIVO_DLR_SKIP_BROWSER=1", err)
		}
		t.Fatalf("axe-core not installed (%v): run bash .ci/deps", err)
	}
	return string(b)
}

// axeViolation is one failed axe rule with the elements it failed on.
type axeViolation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []struct {
		Target  []any  `json:"target"`
		Summary string `json:"failureSummary"`
	} `json:"nodes"`
}

// checkA11y runs axe-core on the page as it is and fails on serious or
// critical violations, naming the rule and the elements.
func checkA11y(t *testing.T, ctx context.Context, axe, view string) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// Injected through DevTools, so the page's CSP (script-src 'self')
	// does not apply to it, and the page itself is unchanged.
	if _, err := chromedp.Run(c, chromedp.Evaluate[chromedp.Void](axe+";0")); err != nil {
		t.Fatalf("%s: inject axe-core: %v", view, err)
	}
	raw, err := chromedp.Run(c, chromedp.Evaluate[string](
		`axe.run(document, { resultTypes: ["violations"] }).then((r) => JSON.stringify({ violations: r.violations, passes: r.passes.length }))`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: run axe-core: %v", view, err)
	}
	var res struct {
		Violations []axeViolation `json:"violations"`
		Passes     int            `json:"passes"`
	}
	if err := json.Unmarshal([]byte(raw), &res); err != nil {
		t.Fatalf("%s: axe result: %v", view, err)
	}
	// A run that checked nothing would pass vacuously.
	if res.Passes < 5 {
		t.Errorf("%s: axe-core passed only %d rules: did it run on the page?", view, res.Passes)
	}
	var minor []string
	for _, v := range res.Violations {
		if v.Impact != "serious" && v.Impact != "critical" {
			minor = append(minor, v.ID+" ("+v.Impact+")")
			continue
		}
		var where []string
		for i, n := range v.Nodes {
			if i == 5 {
				where = append(where, "…")
				break
			}
			tj, _ := json.Marshal(n.Target)
			where = append(where, string(tj)+": "+strings.ReplaceAll(n.Summary, "\n", " "))
		}
		t.Errorf("%s: %s violation %s (%s) on %d elements:\n  %s", view, v.Impact, v.ID, v.Help, len(v.Nodes), strings.Join(where, "\n  "))
	}
	t.Logf("%s: axe-core: %d rules passed, %d serious/critical violations, minor: %v", view, res.Passes, len(res.Violations)-len(minor), minor)
}

// TestDashboardAccessibility runs axe-core on the login page, the list at
// both sizes, the detail panel, the charts and the send dialog.
func TestDashboardAccessibility(t *testing.T) {
	axe := axeSource(t)
	sb, err := sandbox.Start(sandbox.Options{Step: 20 * time.Millisecond, Chaos: -1, NoCallbacks: true})
	if err != nil {
		t.Fatal(err)
	}
	// The sandbox lets the send button show; the banner has a problem to
	// show too (a wrongly signed callback).
	d := startDashServer(t, func(c *Config) { configureForSandbox(c, sb) })
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Errorf("close sandbox: %v", err)
		}
	})
	uuids := seedMessages(t, d, 20)
	// An inbound reply: its row, the opt-out list and the conversation link.
	d.sendInbound(t, uuid.Must(uuid.NewUUID()).String(), "447700900123", "14155550100", "Running late, 10 min", "")
	sendMisSigned(t, d)
	ctx := newBrowser(t)
	defer failureScreenshot(t, ctx)

	within(t, ctx, 10*time.Second, "login page", chromedp.Navigate(d.url("/login")), chromedp.WaitVisible(chromedp.CSS(`#username`)))
	checkA11y(t, ctx, axe, "login")
	loginBrowser(t, ctx, d)

	undelivered := uuids[17] // i%7 == 3
	for _, vp := range []struct {
		name string
		w, h int64
	}{{"desktop", desktopW, desktopH}, {"phone", phoneW, phoneH}} {
		within(t, ctx, 20*time.Second, vp.name+": list",
			setViewport(vp.w, vp.h),
			chromedp.Navigate(d.url("/")),
			chromedp.WaitVisible(chromedp.CSS(`#conn[data-state="live"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#problems [data-kind="callbacks_refused"]`)),
			chromedp.Poll[chromedp.Void](`document.querySelectorAll("#messages tbody tr").length === 21 && document.querySelector("#counts").textContent.includes("total")`,
				chromedp.WithPollingTimeout(10*time.Second)),
			// Wait for the rows' change highlight to fade: axe would measure
			// contrast against the animation's yellow.
			chromedp.Sleep(3*time.Second),
		)
		checkA11y(t, ctx, axe, vp.name+" list")

		within(t, ctx, 10*time.Second, vp.name+": detail panel",
			chromedp.Click(chromedp.CSS(`tr[data-uuid="`+undelivered+`"] .status-cell`)),
			chromedp.WaitVisible(chromedp.CSS(`#detail[open] ol.events li:nth-child(3)`)),
		)
		screenshot(t, ctx, "detail-"+vp.name)
		checkA11y(t, ctx, axe, vp.name+" detail panel")
		within(t, ctx, 5*time.Second, vp.name+": close the panel",
			chromedp.Click(chromedp.CSS(`#detail .close`)),
			chromedp.WaitNotPresent(chromedp.CSS(`#detail[open]`)),
		)

		within(t, ctx, 5*time.Second, vp.name+": charts",
			chromedp.Click(chromedp.CSS(`#charts-toggle`)),
			chromedp.WaitVisible(chromedp.CSS(`#analytics #chart`)),
		)
		screenshot(t, ctx, "charts-"+vp.name)
		checkA11y(t, ctx, axe, vp.name+" charts")

		within(t, ctx, 5*time.Second, vp.name+": send dialog",
			chromedp.Click(chromedp.CSS(`#send-open`)),
			chromedp.WaitVisible(chromedp.CSS(`#send-dialog[open] [name=to]`)),
		)
		screenshot(t, ctx, "send-"+vp.name)
		checkA11y(t, ctx, axe, vp.name+" send dialog")
		within(t, ctx, 5*time.Second, vp.name+": close the send dialog",
			chromedp.Click(chromedp.CSS(`#send-cancel`)),
			chromedp.WaitNotPresent(chromedp.CSS(`#send-dialog[open]`)),
		)
	}
}
