package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"plivo-dlr/app/sandbox"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/google/uuid"
)

// Viewports the dashboard is checked at: a common laptop and a phone.
const (
	desktopW, desktopH = 1366, 800
	phoneW, phoneH     = 390, 844
)

// seededNumbers are destinations in several countries, as Plivo sends
// them (E.164 digits without "+").
var seededNumbers = []string{"447700900123", "14155550123", "33612345678", "919876543210", "4915123456789", "61412345678", "5511912345678"}

// seedMessages stores n messages through signed callbacks, each queued ->
// sent -> final, oldest first, and returns their UUIDs (version 1, as
// Plivo's). Every seventh is undelivered with error 30, every eleventh
// failed with error 50; the rest are delivered.
func seedMessages(t *testing.T, d *dashServer, n int) []string {
	t.Helper()
	uuids := make([]string, n)
	for i := range n {
		u := uuid.Must(uuid.NewUUID()).String()
		uuids[i] = u
		final, code := "delivered", "000"
		switch {
		case i%7 == 3:
			final, code = "undelivered", "30"
		case i%11 == 5:
			final, code = "failed", "50"
		}
		for seq, st := range []string{"queued", "sent", final} {
			c := ""
			if st == final {
				c = code
			}
			form := callbackForm(u, st, c, seq+1)
			form.Set("To", seededNumbers[i%len(seededNumbers)])
			postCallback(t, d, form)
		}
	}
	return uuids
}

// postCallback posts a signed callback form and fails unless it is stored.
func postCallback(t *testing.T, d *dashServer, form map[string][]string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(signedCallback(t, d.cfg, d.addr, form))
	if err != nil {
		t.Fatalf("callback: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("callback: got %d %s, want 200", resp.StatusCode, body)
	}
}

// loginBrowser logs in through the form and waits for the live stream.
func loginBrowser(t *testing.T, ctx context.Context, d *dashServer) {
	t.Helper()
	within(t, ctx, 20*time.Second, "log in",
		chromedp.Navigate(d.url("/login")),
		chromedp.WaitVisible(chromedp.CSS(`#username`)),
		chromedp.SendKeys(chromedp.CSS(`#username`), dashUser),
		chromedp.SendKeys(chromedp.CSS(`#password`), dashPassword),
		chromedp.Click(chromedp.CSS(`#login`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-state="live"]`)),
	)
}

// setViewport emulates a desktop window or, for phone widths, a mobile
// device (the page's meta viewport then applies, as on a real phone).
func setViewport(w, h int64) chromedp.Action[chromedp.Void] {
	if w < 600 {
		return chromedp.EmulateViewport(w, h, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulatePortrait)
	}
	return chromedp.EmulateViewport(w, h)
}

// timezone makes the page's local time zone tz.
func timezone(tz string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: tz})
		return err
	})
}

// screenshot saves the viewport as a PNG under $PLIVO_DLR_SCREENSHOTS (for
// looking at the layout), or nowhere when that is unset.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("PLIVO_DLR_SCREENSHOTS")
	if dir == "" {
		return
	}
	png := browserValue(t, ctx, "screenshot "+name, chromedp.CaptureScreenshot())
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Errorf("save screenshot: %v", err)
		return
	}
	t.Logf("screenshot: %s", p)
}

// failureScreenshot logs a screenshot's path when the test has failed.
func failureScreenshot(t *testing.T, ctx context.Context) {
	if !t.Failed() {
		return
	}
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	png, err := chromedp.Run(c, chromedp.CaptureScreenshot())
	if err != nil {
		t.Logf("screenshot failed: %v", err)
		return
	}
	p := filepath.Join(t.TempDir(), "failure.png")
	if err := os.WriteFile(p, png, 0o600); err == nil {
		t.Logf("screenshot of the failure: %s", p)
	}
}

// viewportFacts measures the first screen: rows wholly visible below the
// sticky header, and how far anything sticks out on the right.
type viewportFacts struct {
	VisibleRows  int     `json:"visibleRows"`
	Rows         int     `json:"rows"`
	ScrollWidth  int     `json:"scrollWidth"`
	InnerWidth   int     `json:"innerWidth"`
	WidestRight  float64 `json:"widestRight"`
	WidestWhat   string  `json:"widestWhat"`
	ScrollY      float64 `json:"scrollY"`
	HeaderBottom float64 `json:"headerBottom"`
}

const measureViewport = `(() => {
  const top = document.querySelector("header").getBoundingClientRect().bottom;
  const rows = [...document.querySelectorAll("#messages tbody tr")];
  const visible = rows.filter((r) => { const b = r.getBoundingClientRect(); return b.height > 0 && b.top >= top && b.bottom <= innerHeight; }).length;
  let widest = 0, what = "";
  for (const e of document.body.querySelectorAll("*")) {
    const b = e.getBoundingClientRect();
    if (b.width > 0 && b.right > widest) { widest = b.right; what = e.tagName + (e.id ? "#" + e.id : "") + "." + e.className; }
  }
  return { visibleRows: visible, rows: rows.length, scrollWidth: document.documentElement.scrollWidth, innerWidth: innerWidth,
    widestRight: widest, widestWhat: what, scrollY: scrollY, headerBottom: top };
})()`

// TestDashboardFirstViewport checks that the list is the page: with 60
// stored messages, many rows are in the first screen on a laptop and on a
// phone, nothing scrolls sideways, and a phone row still says what
// happened (status, number, time, the error in words).
func TestDashboardFirstViewport(t *testing.T) {
	d := startDashServer(t, nil)
	seedMessages(t, d, 60)
	ctx := newBrowser(t)
	defer failureScreenshot(t, ctx)
	loginBrowser(t, ctx, d)

	for _, vp := range []struct {
		name    string
		w, h    int64
		minRows int
	}{
		{"desktop", desktopW, desktopH, 12},
		{"phone", phoneW, phoneH, 6},
	} {
		within(t, ctx, 20*time.Second, vp.name+": load the list",
			setViewport(vp.w, vp.h),
			chromedp.Navigate(d.url("/")),
			chromedp.WaitVisible(chromedp.CSS(`#conn[data-state="live"]`)),
			chromedp.Poll[chromedp.Void](`document.querySelectorAll("#messages tbody tr").length >= 50 && document.querySelector("#counts").textContent.includes("total")`,
				chromedp.WithPollingTimeout(15*time.Second)),
		)
		f := browserValue(t, ctx, vp.name+": measure", chromedp.Evaluate[viewportFacts](measureViewport))
		t.Logf("%s %dx%d: %d of %d rows wholly visible; scrollWidth %d, innerWidth %d, rightmost %.0f (%s)",
			vp.name, vp.w, vp.h, f.VisibleRows, f.Rows, f.ScrollWidth, f.InnerWidth, f.WidestRight, f.WidestWhat)
		screenshot(t, ctx, "list-"+vp.name)
		if f.ScrollY != 0 {
			t.Errorf("%s: page is scrolled (%v) before measuring", vp.name, f.ScrollY)
		}
		if f.InnerWidth != int(vp.w) {
			t.Errorf("%s: innerWidth %d, want %d (viewport not applied)", vp.name, f.InnerWidth, vp.w)
		}
		if f.VisibleRows < vp.minRows {
			t.Errorf("%s: %d message rows wholly visible in the first viewport, want >= %d", vp.name, f.VisibleRows, vp.minRows)
		}
		if f.ScrollWidth > f.InnerWidth {
			t.Errorf("%s: page scrolls sideways: scrollWidth %d > innerWidth %d", vp.name, f.ScrollWidth, f.InnerWidth)
		}
		if f.WidestRight > float64(f.InnerWidth)+0.5 {
			t.Errorf("%s: %s ends at x=%.0f, beyond the %d px viewport", vp.name, f.WidestWhat, f.WidestRight, f.InnerWidth)
		}
		// Hidden controls stay hidden (an author display rule can undo the
		// hidden attribute).
		if shown := browserValue(t, ctx, vp.name+": hidden controls", chromedp.Evaluate[[]string](
			`[...document.querySelectorAll("[hidden]")].filter((e) => e.getBoundingClientRect().width > 0).map((e) => e.id || e.className)`)); len(shown) > 0 {
			t.Errorf("%s: elements with the hidden attribute are shown: %v", vp.name, shown)
		}
		// The send form is not in the page flow: it is a dialog behind a button.
		if open := browserValue(t, ctx, vp.name+": send dialog state", chromedp.Evaluate[bool](`document.querySelector("#send-dialog").open`)); open {
			t.Errorf("%s: send dialog open on load", vp.name)
		}
		if vp.name == "phone" {
			// "First seen" is hidden; status, number, time and the error in words are shown.
			firstSeenShown := browserValue(t, ctx, "first seen column", chromedp.Evaluate[bool](
				`[...document.querySelectorAll("#messages th")].some((th) => th.textContent === "First seen" && th.getBoundingClientRect().width > 0)`))
			if firstSeenShown {
				t.Error("phone: First seen column is shown")
			}
			row := browserValue(t, ctx, "read an undelivered row", chromedp.Evaluate[string](
				`(() => { const r = document.querySelector('#messages tbody tr[data-status="undelivered"]'); return r ? r.innerText : ""; })()`))
			for _, want := range []string{"undelivered", "+91 98765 43210", "30 – Spam detected"} {
				if !strings.Contains(row, want) {
					t.Errorf("phone: undelivered row %q lacks %q", row, want)
				}
			}
			if !regexp.MustCompile(`just now|\d+ s ago|\d+ min ago`).MatchString(row) {
				t.Errorf("phone: undelivered row %q shows no relative time", row)
			}
		}
	}
}

// TestDashboardReadableValues checks the row values a person reads:
// numbers in international format, relative times with the absolute time
// (in a named zone) on hover, error codes with their meaning.
func TestDashboardReadableValues(t *testing.T) {
	d := startDashServer(t, nil)
	uuids := seedMessages(t, d, 8)
	ctx := newBrowser(t)
	defer failureScreenshot(t, ctx)
	loginBrowser(t, ctx, d)
	within(t, ctx, 10*time.Second, "rows",
		chromedp.WaitVisible(chromedp.CSS(`tr[data-uuid="`+uuids[7]+`"]`)))

	type cells struct {
		Number, Error, Time, TimeTitle string
	}
	read := func(u string) cells {
		return browserValue(t, ctx, "read row "+u, chromedp.Evaluate[cells](fmt.Sprintf(`(() => {
  const r = document.querySelector('tr[data-uuid="%s"]');
  const t = r.querySelector(".time-cell time");
  return { Number: r.querySelector(".number .phone").textContent, Error: r.querySelector(".error-cell").textContent,
    Time: t.textContent, TimeTitle: t.title };
})()`, u)))
	}
	want := map[int]struct{ number, err string }{
		0: {"+44 7700 900123", ""},
		1: {"+1 415 555 0123", ""},
		2: {"+33 6 12 34 56 78", ""},
		3: {"+91 98765 43210", "30 – Spam detected"},
		4: {"+49 1512 3456789", ""},
		5: {"+61 412 345 678", "50 – Invalid destination number"},
		6: {"+55 11 91234 5678", ""},
	}
	for i, w := range want {
		c := read(uuids[i])
		if c.Number != w.number {
			t.Errorf("message %d: number %q, want %q", i, c.Number, w.number)
		}
		if w.err == "" && c.Error != "" || !strings.HasPrefix(c.Error, w.err) {
			t.Errorf("message %d: error cell %q, want it to start with %q", i, c.Error, w.err)
		}
		if !regexp.MustCompile(`^(just now|\d+ s ago)$`).MatchString(c.Time) {
			t.Errorf("message %d: time %q, want a relative time of a fresh message", i, c.Time)
		}
		if !regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$`).MatchString(c.TimeTitle) {
			t.Errorf("message %d: time tooltip %q, want an absolute UTC time", i, c.TimeTitle)
		}
	}
}

// TestDashboardDetailAndDeepLink opens a message from a filtered list,
// checks what the panel says, then opens the page's URL in a new tab: the
// same filters and the same message. Back closes the panel.
func TestDashboardDetailAndDeepLink(t *testing.T) {
	d := startDashServer(t, nil)
	uuids := seedMessages(t, d, 12)
	target := uuids[10] // i%7 == 3: undelivered, error 30
	ctx := newBrowser(t)
	defer failureScreenshot(t, ctx)
	loginBrowser(t, ctx, d)
	within(t, ctx, 10*time.Second, "set the status filter and open the message",
		setViewport(desktopW, desktopH),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-uuid="`+uuids[11]+`"]`)),
		chromedp.Evaluate[chromedp.Void](`(() => { const s = document.querySelector('#filters [name=status]'); s.value = "undelivered"; s.dispatchEvent(new Event("change", { bubbles: true })); })()`),
		chromedp.Poll[chromedp.Void](`(() => { const rs = [...document.querySelectorAll("#messages tbody tr")]; return rs.length === 2 && rs.every((r) => r.dataset.status === "undelivered"); })()`,
			chromedp.WithPollingTimeout(5*time.Second)),
		chromedp.Click(chromedp.CSS(`tr[data-uuid="`+target+`"] .status-cell`)),
		chromedp.WaitVisible(chromedp.CSS(`#detail[open] ol.events li:nth-child(3)`)),
	)
	screenshot(t, ctx, "detail-filtered-desktop")
	link := browserValue(t, ctx, "read the URL", chromedp.Location())
	if !strings.Contains(link, "status=undelivered") || !strings.Contains(link, "m="+target) {
		t.Fatalf("URL %s does not name the filter and the message", link)
	}

	// What the panel says: status, the error in words with advice, the
	// steps with the time between them, where reports arrive, every event.
	detail := browserValue(t, ctx, "read the detail", chromedp.TextContent(chromedp.CSS(`#detail-body`)))
	for _, want := range []string{
		target, "Error 30", "Spam detected", "Review the text",
		"queued", "sent +1.1 s", "undelivered +3.1 s",
		"Queued 2024-05-01 10:00:00.234 UTC", d.cfg.CallbackURL(), "Raw payload", "+91 98765 43210", "India",
	} {
		if !strings.Contains(detail, want) {
			t.Errorf("detail lacks %q:\n%s", want, detail)
		}
	}
	events := browserValue(t, ctx, "read the events",
		chromedp.Evaluate[[]string](`[...document.querySelectorAll("#detail ol.events li .status")].map(e => e.textContent)`))
	if got := strings.Join(events, ","); got != "queued,sent,undelivered" {
		t.Errorf("events: got %s, want queued,sent,undelivered", got)
	}
	// Copy buttons put the UUID on the clipboard (or say they tried).
	within(t, ctx, 5*time.Second, "copy the UUID",
		chromedp.Click(chromedp.CSS(`#detail button.copy[aria-label="Copy message UUID"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#detail button.copy[data-copied="`+target+`"]`)),
	)

	// The time-zone toggle: local time names its offset and is remembered.
	within(t, ctx, 5*time.Second, "switch to local time",
		timezone("Asia/Kolkata"),
		chromedp.Click(chromedp.CSS(`#detail .tz button[data-tz="local"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#detail .tz button[data-tz="local"][aria-pressed="true"]`)),
	)
	detail = browserValue(t, ctx, "read the local detail", chromedp.TextContent(chromedp.CSS(`#detail-body`)))
	if !strings.Contains(detail, "Queued 2024-05-01 15:30:00.234 UTC+05:30") {
		t.Errorf("local detail lacks the queued time in UTC+05:30:\n%s", detail)
	}

	// The link in a new tab: same filter, same message, same zone.
	tab, cancel := chromedp.NewContext(ctx)
	defer cancel()
	// The first action on a context opens its tab; run it without a
	// deadline, or the deadline's end would close the tab.
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	within(t, tab, 20*time.Second, "open the link in a new tab",
		timezone("Asia/Kolkata"),
		setViewport(desktopW, desktopH),
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.CSS(`#detail[open] ol.events li:nth-child(3)`)),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#messages tbody tr").length === 2`, chromedp.WithPollingTimeout(5*time.Second)),
	)
	got := browserValue(t, tab, "read the new tab", chromedp.Evaluate[[]string](`[
  document.querySelector("#detail-body").textContent.includes("`+target+`") ? "message" : "other message",
  document.querySelector("#filters [name=status]").value,
  document.querySelector("#messages tbody tr.selected")?.dataset.uuid || "none selected",
  document.querySelector('#detail .tz button[aria-pressed="true"]').dataset.tz,
]`))
	if strings.Join(got, ",") != "message,undelivered,"+target+",local" {
		t.Errorf("new tab shows %v, want [message undelivered %s local]", got, target)
	}

	// Back closes the panel in the first tab and keeps the filter.
	within(t, ctx, 5*time.Second, "back closes the panel",
		chromedp.NavigateBack(),
		chromedp.WaitNotPresent(chromedp.CSS(`#detail[open]`)),
	)
	if loc := browserValue(t, ctx, "URL after back", chromedp.Location()); strings.Contains(loc, "m=") || !strings.Contains(loc, "status=undelivered") {
		t.Errorf("URL after back: %s, want the filter without the message", loc)
	}

	// Someone not logged in opens the link: after logging in they see the
	// view it names.
	within(t, ctx, 20*time.Second, "open the link logged out, log in",
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, network.ClearBrowserCookies, cdp.Empty{})
			return err
		}),
		// A fresh load, as from another application (same-document
		// navigation would only change the fragment).
		// With its cookie gone the open page may move to the login page by
		// itself; a navigation that replaces ours reports net::ERR_ABORTED.
		// Either way the link is then loaded afresh from another document.
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			if _, err := chromedp.Navigate("about:blank")(ctx, tg); err != nil && !strings.Contains(err.Error(), "ERR_ABORTED") {
				return err
			}
			return nil
		}),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf("location.assign(%q)", link)),
		chromedp.WaitVisible(chromedp.CSS(`#username`)),
		chromedp.SendKeys(chromedp.CSS(`#username`), dashUser),
		chromedp.SendKeys(chromedp.CSS(`#password`), dashPassword),
		chromedp.Click(chromedp.CSS(`#login`)),
		chromedp.WaitVisible(chromedp.CSS(`#detail[open] ol.events li:nth-child(3)`)),
	)
	if loc := browserValue(t, ctx, "URL after login", chromedp.Location()); loc != link {
		t.Errorf("after logging in the page is at %s, want %s", loc, link)
	}
}

// TestDashboardKeyboard walks the list with the keyboard: arrows move a
// visible focus, Enter opens the message, Escape closes it and returns.
func TestDashboardKeyboard(t *testing.T) {
	d := startDashServer(t, nil)
	uuids := seedMessages(t, d, 5)
	ctx := newBrowser(t)
	defer failureScreenshot(t, ctx)
	loginBrowser(t, ctx, d)
	newest, second := uuids[4], uuids[3]
	// Only the focus is checked: chromedp types a key as keyDown plus a
	// separate "char" event, which inserts the "/" even though the page
	// cancels the keydown (a real keyboard's would not).
	within(t, ctx, 5*time.Second, `"/" goes to the search box`,
		chromedp.WaitVisible(chromedp.CSS(`tr[data-uuid="`+newest+`"]`)),
		chromedp.KeyEvent("/"),
		chromedp.Poll[chromedp.Void](`document.activeElement === document.querySelector("#filters [name=q]")`,
			chromedp.WithPollingTimeout(time.Second)),
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#filters [name=q]").value = ""`),
	)
	within(t, ctx, 10*time.Second, "focus the list",
		chromedp.WaitVisible(chromedp.CSS(`tr[data-uuid="`+uuids[0]+`"]`)),
		// The last control before the list; the list is the next tab stop.
		chromedp.Focus(chromedp.CSS(`#filters .filter-submit`)),
		chromedp.KeyEvent(kb.Tab),
	)
	active := browserValue(t, ctx, "focused element", chromedp.Evaluate[string](`document.activeElement.dataset.uuid || document.activeElement.outerHTML.slice(0, 80)`))
	if active != newest {
		t.Fatalf("after tabbing past the filters the focus is on %s, want the newest row %s", active, newest)
	}
	within(t, ctx, 5*time.Second, "arrow down, Enter",
		chromedp.KeyEvent(kb.ArrowDown),
		chromedp.Poll[chromedp.Void](`document.activeElement.dataset.uuid === "`+second+`"`, chromedp.WithPollingTimeout(time.Second)),
	)
	outline := browserValue(t, ctx, "focus outline", chromedp.Evaluate[string](`getComputedStyle(document.activeElement).outlineStyle + " " + getComputedStyle(document.activeElement).outlineWidth`))
	if strings.HasPrefix(outline, "none") || strings.HasSuffix(outline, " 0px") {
		t.Errorf("focused row has no visible outline: %s", outline)
	}
	within(t, ctx, 5*time.Second, "Enter opens, Escape closes",
		chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(chromedp.CSS(`#detail[open] ol.events li:nth-child(3)`)),
		chromedp.Poll[chromedp.Void](`location.hash.includes("m=`+second+`")`, chromedp.WithPollingTimeout(time.Second)),
		chromedp.KeyEvent(kb.Escape),
		chromedp.WaitNotPresent(chromedp.CSS(`#detail[open]`)),
		chromedp.Poll[chromedp.Void](`document.activeElement.dataset.uuid === "`+second+`" && !location.hash.includes("m=")`, chromedp.WithPollingTimeout(time.Second)),
	)

	// With the panel open, arrows in the list move the panel along; Escape
	// then closes it without leaving the page, also when the panel came
	// from a link (no history entry of this page's own to step back to).
	third := uuids[2]
	for _, how := range []string{"opened here", "opened by a link"} {
		if how == "opened by a link" {
			within(t, ctx, 10*time.Second, "open by a link",
				chromedp.Navigate("about:blank"),
				chromedp.Navigate(d.url("/#m="+second)),
				chromedp.WaitVisible(chromedp.CSS(`#detail[open] ol.events li:nth-child(3)`)),
				chromedp.Focus(chromedp.CSS(`tr[data-uuid="`+second+`"]`)),
			)
		} else {
			within(t, ctx, 5*time.Second, "open with Enter", chromedp.KeyEvent(kb.Enter),
				chromedp.WaitVisible(chromedp.CSS(`#detail[open] ol.events li:nth-child(3)`)),
				chromedp.Focus(chromedp.CSS(`tr[data-uuid="`+second+`"]`)))
		}
		within(t, ctx, 5*time.Second, how+": arrow down moves the panel, Escape closes it",
			chromedp.KeyEvent(kb.ArrowDown),
			chromedp.Poll[chromedp.Void](`location.hash.includes("m=`+third+`") && document.querySelector("#detail-body").textContent.includes("`+third+`")`,
				chromedp.WithPollingTimeout(3*time.Second)),
			chromedp.KeyEvent(kb.Escape),
			chromedp.WaitNotPresent(chromedp.CSS(`#detail[open]`)),
			chromedp.Sleep(200*time.Millisecond), // a wrong history.back() would have left by now
		)
		if loc := browserValue(t, ctx, how+": URL after Escape", chromedp.Location()); loc != d.url("/") {
			t.Errorf("%s: after Escape the page is at %s, want %s", how, loc, d.url("/"))
		}
	}
}

// TestDashboardSendAndTextSearch sends from the dialog to the sandbox,
// sees the message go to delivered live, then finds it by a word of its
// text (searched in the browser over recent messages) and by number.
func TestDashboardSendAndTextSearch(t *testing.T) {
	sb, err := sandbox.Start(sandbox.Options{Step: 20 * time.Millisecond, Chaos: -1, Seed: 3, ReplyShare: -1})
	if err != nil {
		t.Fatal(err)
	}
	d := startDashServer(t, func(c *Config) { configureForSandbox(c, sb) })
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Errorf("close sandbox: %v", err)
		}
	})
	seedMessages(t, d, 5)
	ctx := newBrowser(t)
	defer failureScreenshot(t, ctx)
	loginBrowser(t, ctx, d)
	within(t, ctx, 10*time.Second, "send from the dialog",
		chromedp.WaitVisible(chromedp.CSS(`#send-open`)),
		chromedp.Click(chromedp.CSS(`#send-open`)),
		chromedp.WaitVisible(chromedp.CSS(`#send-dialog[open] [name=to]`)),
		chromedp.SendKeys(chromedp.CSS(`#send-dialog [name=to]`), "+447700900555"),
		chromedp.SendKeys(chromedp.CSS(`#send-dialog [name=text]`), "Your parcel arrives Tuesday"),
		chromedp.Click(chromedp.CSS(`#send-dialog button[type=submit]`)),
		chromedp.Poll[chromedp.Void](`document.querySelector("#send-result").textContent.startsWith("Queued: ")`, chromedp.WithPollingTimeout(5*time.Second)),
	)
	screenshot(t, ctx, "send-dialog-desktop")
	sent := browserValue(t, ctx, "read the result", chromedp.TextContent(chromedp.CSS(`#send-result`)))
	u := strings.TrimPrefix(sent, "Queued: ")
	within(t, ctx, 10*time.Second, "close the dialog and see the row delivered",
		chromedp.Click(chromedp.CSS(`#send-cancel`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#send-dialog[open]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-uuid="`+u+`"][data-status="delivered"]`)),
	)
	row := browserValue(t, ctx, "read the row", chromedp.TextContent(chromedp.CSS(`tr[data-uuid="`+u+`"]`)))
	if !strings.Contains(row, "+44 7700 900555") || !strings.Contains(row, "Your parcel arrives Tuesday") {
		t.Errorf("sent row %q lacks the formatted number or the text", row)
	}

	// The sandbox may answer with an inbound reply from the same number:
	// a number search finds it too (its other party is that number), the
	// text and UUID searches do not.
	for _, c := range []struct {
		q          string
		onlyTheOne bool
	}{{"parcel", true}, {"+44 7700 900555", false}, {u[:8], true}} {
		q := c.q
		within(t, ctx, 10*time.Second, "search "+q,
			chromedp.Evaluate[chromedp.Void](`document.querySelector("#filters [name=q]").value = ""`),
			chromedp.SendKeys(chromedp.CSS(`#filters [name=q]`), q+kb.Enter),
			// The rows of the previous search stay while the next loads:
			// wait for this search's own answer.
			chromedp.Poll[chromedp.Void](fmt.Sprintf(`(() => { const rs = [...document.querySelectorAll("#messages tbody tr")];
  const ok = %t ? rs.length === 1 : rs.every((r) => r.querySelector("td.number").dataset.number === "447700900555");
  return location.hash.includes(%q) && !document.querySelector("#messages").ariaBusy && ok && rs.some((r) => r.dataset.uuid === %q); })()`,
				c.onlyTheOne, url.Values{"q": {q}}.Encode(), u), chromedp.WithPollingTimeout(5*time.Second)),
		)
		if loc := browserValue(t, ctx, "URL", chromedp.Location()); !strings.Contains(loc, "q=") {
			t.Errorf("search %q: URL %s does not name it", q, loc)
		}
	}
	state := browserValue(t, ctx, "list state", chromedp.TextContent(chromedp.CSS(`#list-state`)))
	if state != "" {
		t.Errorf("list state after a UUID search: %q, want none", state)
	}
	within(t, ctx, 10*time.Second, "a text search with no match says so",
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#filters [name=q]").value = ""`),
		chromedp.SendKeys(chromedp.CSS(`#filters [name=q]`), "nonexistent words"+kb.Enter),
		chromedp.Poll[chromedp.Void](`/^No message matches\. Searched in the [67] most recent messages \(all\)\.$/.test(document.querySelector("#list-state").textContent)`,
			chromedp.WithPollingTimeout(5*time.Second)),
	)
}

// TestDashboardDetailPhone opens a failed message on a phone: the panel
// fills the screen without sideways scrolling, the status, the error in
// words and the close button are in its first screen, and closing it
// returns to the same place in the list.
func TestDashboardDetailPhone(t *testing.T) {
	d := startDashServer(t, nil)
	uuids := seedMessages(t, d, 12)
	target := uuids[5] // i%11 == 5: failed, error 50
	ctx := newBrowser(t)
	defer failureScreenshot(t, ctx)
	loginBrowser(t, ctx, d)
	within(t, ctx, 20*time.Second, "open the message on a phone",
		setViewport(phoneW, phoneH),
		chromedp.Navigate(d.url("/")),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-uuid="`+target+`"]`)),
		chromedp.Click(chromedp.CSS(`tr[data-uuid="`+target+`"] .status-cell`)),
		chromedp.WaitVisible(chromedp.CSS(`#detail[open] ol.events li:nth-child(3)`)),
	)
	screenshot(t, ctx, "detail-failed-phone")
	type facts struct {
		PanelLeft, PanelWidth, InnerWidth   float64
		PanelScrollWidth, PanelClientWidth  float64
		DocScrollWidth                      float64
		ErrorBottom, CloseRight, CloseTop   float64
		StatusText, ErrorText, WidestInside string
		WidestRight                         float64
	}
	f := browserValue(t, ctx, "measure the panel", chromedp.Evaluate[facts](`(() => {
  const p = document.querySelector("#detail").getBoundingClientRect();
  const panel = document.querySelector("#detail");
  const err = document.querySelector("#detail .error-box");
  const close = document.querySelector("#detail .close").getBoundingClientRect();
  let widest = 0, what = "";
  for (const e of panel.querySelectorAll("*")) {
    const b = e.getBoundingClientRect();
    if (b.width > 0 && b.right > widest && !e.closest("pre")) { widest = b.right; what = e.tagName + "." + e.className; }
  }
  return { PanelLeft: p.left, PanelWidth: p.width, InnerWidth: innerWidth,
    PanelScrollWidth: panel.scrollWidth, PanelClientWidth: panel.clientWidth,
    DocScrollWidth: document.documentElement.scrollWidth,
    ErrorBottom: err ? err.getBoundingClientRect().bottom : -1, CloseRight: close.right, CloseTop: close.top,
    StatusText: document.querySelector("#detail .detail-status").innerText, ErrorText: err ? err.innerText : "",
    WidestInside: what, WidestRight: widest };
})()`))
	t.Logf("phone panel: %+v", f)
	if f.PanelLeft != 0 || f.PanelWidth != f.InnerWidth {
		t.Errorf("panel spans x=%.0f..%.0f, want the whole %.0f px screen", f.PanelLeft, f.PanelLeft+f.PanelWidth, f.InnerWidth)
	}
	if f.PanelScrollWidth > f.PanelClientWidth || f.DocScrollWidth > f.InnerWidth {
		t.Errorf("sideways scrolling: panel %.0f > %.0f or page %.0f > %.0f", f.PanelScrollWidth, f.PanelClientWidth, f.DocScrollWidth, f.InnerWidth)
	}
	if f.WidestRight > f.InnerWidth+0.5 {
		t.Errorf("%s in the panel ends at x=%.0f, beyond the screen", f.WidestInside, f.WidestRight)
	}
	if !strings.Contains(f.StatusText, "failed") || !strings.Contains(f.StatusText, "+61 412 345 678") {
		t.Errorf("panel headline %q lacks the status or the number", f.StatusText)
	}
	if !strings.Contains(f.ErrorText, "Error 50") || !strings.Contains(f.ErrorText, "Invalid destination number") {
		t.Errorf("error box %q lacks the code or its meaning", f.ErrorText)
	}
	if f.ErrorBottom < 0 || f.ErrorBottom > phoneH {
		t.Errorf("the error box ends at y=%.0f: not in the panel's first screen (%d px)", f.ErrorBottom, phoneH)
	}
	if f.CloseRight > f.InnerWidth || f.CloseTop < 0 {
		t.Errorf("close button at right=%.0f top=%.0f: off screen", f.CloseRight, f.CloseTop)
	}
	within(t, ctx, 5*time.Second, "close returns to the list",
		chromedp.Click(chromedp.CSS(`#detail .close`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#detail[open]`)),
		chromedp.Poll[chromedp.Void](`document.activeElement.dataset.uuid === "`+target+`"`, chromedp.WithPollingTimeout(time.Second)),
	)
}

// TestDashboardErrorFilter lists the messages with one error code, from
// the top errors and from a message's panel; the URL names the filter.
func TestDashboardErrorFilter(t *testing.T) {
	d := startDashServer(t, nil)
	uuids := seedMessages(t, d, 12) // error 30: messages 3 and 10; error 50: message 5
	ctx := newBrowser(t)
	defer failureScreenshot(t, ctx)
	loginBrowser(t, ctx, d)
	rowsAre := func(want ...string) string {
		return fmt.Sprintf(`[...document.querySelectorAll("#messages tbody tr")].map((r) => r.dataset.uuid).join(",") === %q`, strings.Join(want, ","))
	}
	within(t, ctx, 10*time.Second, "filter by error 30 from the top errors",
		setViewport(desktopW, desktopH),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-uuid="`+uuids[11]+`"]`)),
		chromedp.Click(chromedp.CSS(`#charts-toggle`)),
		chromedp.WaitVisible(chromedp.CSS(`#top-errors button[data-err="30"]`)),
		chromedp.Click(chromedp.CSS(`#top-errors button[data-err="30"]`)),
		chromedp.Poll[chromedp.Void](rowsAre(uuids[10], uuids[3]), chromedp.WithPollingTimeout(5*time.Second)),
		chromedp.WaitVisible(chromedp.CSS(`#err-chip`)),
	)
	if loc := browserValue(t, ctx, "URL", chromedp.Location()); !strings.Contains(loc, "err=30") {
		t.Errorf("URL %s does not name the error filter", loc)
	}
	if chip := browserValue(t, ctx, "chip", chromedp.TextContent(chromedp.CSS(`#err-chip`))); !strings.Contains(chip, "30 – Spam detected") {
		t.Errorf("error chip says %q", chip)
	}
	within(t, ctx, 10*time.Second, "the filter survives a reload; removing it lists all",
		chromedp.Reload(),
		chromedp.Poll[chromedp.Void](rowsAre(uuids[10], uuids[3]), chromedp.WithPollingTimeout(5*time.Second)),
		chromedp.Click(chromedp.CSS(`#err-chip button`)),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#messages tbody tr").length === 12 && !location.hash.includes("err=")`, chromedp.WithPollingTimeout(5*time.Second)),
	)
	within(t, ctx, 10*time.Second, "filter by error 50 from the panel",
		chromedp.Click(chromedp.CSS(`tr[data-uuid="`+uuids[5]+`"] .status-cell`)),
		chromedp.WaitVisible(chromedp.CSS(`#detail[open] button.err-filter`)),
		chromedp.Click(chromedp.CSS(`#detail button.err-filter`)),
		chromedp.Poll[chromedp.Void](rowsAre(uuids[5]), chromedp.WithPollingTimeout(5*time.Second)),
	)
}

// TestDashboardEmptyStates: an empty store says so (and no rate), a first
// message still in flight gives no rate either, and a filter without a
// match says that rather than "no messages".
func TestDashboardEmptyStates(t *testing.T) {
	d := startDashServer(t, nil)
	ctx := newBrowser(t)
	defer failureScreenshot(t, ctx)
	loginBrowser(t, ctx, d)
	text := func(sel string) string {
		return browserValue(t, ctx, "read "+sel, chromedp.TextContent(chromedp.CSS(sel)))
	}
	within(t, ctx, 10*time.Second, "empty list",
		chromedp.Poll[chromedp.Void](`document.querySelector("#list-state").textContent === "No messages yet." && document.querySelector("#counts").textContent.includes("total")`,
			chromedp.WithPollingTimeout(5*time.Second)))
	if r := text(`#rate`); r != "– delivered" {
		t.Errorf("rate on an empty store: %q, want – delivered", r)
	}
	u := uuid.Must(uuid.NewUUID()).String()
	d.sendCallback(t, u, "queued", "", 1)
	within(t, ctx, 5*time.Second, "the first message appears",
		chromedp.WaitVisible(chromedp.CSS(`tr[data-uuid="`+u+`"]`)),
		chromedp.Poll[chromedp.Void](`document.querySelector("#list-state").textContent === "" && document.querySelector("#counts").textContent.includes("total1")`,
			chromedp.WithPollingTimeout(5*time.Second)))
	if r := text(`#rate`); r != "– delivered" {
		t.Errorf("rate with only a queued message: %q, want – delivered", r)
	}
	within(t, ctx, 5*time.Second, "a filter without a match",
		chromedp.Evaluate[chromedp.Void](`(() => { const s = document.querySelector('#filters [name=status]'); s.value = "failed"; s.dispatchEvent(new Event("change", { bubbles: true })); })()`),
		chromedp.Poll[chromedp.Void](`document.querySelector("#list-state").textContent === "No message matches these filters." && document.querySelectorAll("#messages tbody tr").length === 0`,
			chromedp.WithPollingTimeout(5*time.Second)),
		chromedp.WaitVisible(chromedp.CSS(`#filters-clear`)),
	)
}

// TestDashboardDirectionFilter lists inbound or outbound messages only;
// the URL names the choice and a live row of the other way stays out.
func TestDashboardDirectionFilter(t *testing.T) {
	d := startDashServer(t, nil)
	out := seedMessages(t, d, 3)
	in := uuid.Must(uuid.NewUUID()).String()
	d.sendInbound(t, in, "447700900123", "14155550100", "See you at 5", "")
	ctx := newBrowser(t)
	defer failureScreenshot(t, ctx)
	loginBrowser(t, ctx, d)
	choose := func(dir string) chromedp.Action[chromedp.Void] {
		return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const s = document.querySelector('#filters [name=direction]'); s.value = %q; s.dispatchEvent(new Event("change", { bubbles: true })); })()`, dir))
	}
	rowsAre := func(want ...string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](fmt.Sprintf(`!document.querySelector("#messages").ariaBusy && [...document.querySelectorAll("#messages tbody tr")].map((r) => r.dataset.uuid).join(",") === %q`,
			strings.Join(want, ",")), chromedp.WithPollingTimeout(5*time.Second))
	}
	within(t, ctx, 10*time.Second, "inbound only",
		chromedp.WaitVisible(chromedp.CSS(`tr[data-uuid="`+in+`"]`)),
		choose("inbound"), rowsAre(in),
		chromedp.Poll[chromedp.Void](`location.hash.includes("direction=inbound")`, chromedp.WithPollingTimeout(time.Second)),
	)
	// A live outbound update does not join the inbound list.
	d.sendCallback(t, out[0], "delivered", "000", 9)
	within(t, ctx, 10*time.Second, "outbound only",
		chromedp.Sleep(300*time.Millisecond), rowsAre(in),
		choose("outbound"), rowsAre(out[2], out[1], out[0]),
	)
}
