package app

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// sendInbound posts a signed inbound SMS and fails unless it is answered
// 200 with Plivo XML.
func (d *dashServer) sendInbound(tb testing.TB, uuid, from, to, text, intent string) {
	tb.Helper()
	form := url.Values{
		"MessageUUID": {uuid}, "From": {from}, "To": {to}, "Text": {text}, "Type": {"sms"},
		"Units": {"1"}, "TotalRate": {"0.00000"}, "TotalAmount": {"0.00000"}, "MessageIntent": {intent},
	}
	resp, err := http.DefaultClient.Do(signedCallback(tb, d.cfg, d.addr, form))
	if err != nil {
		tb.Fatalf("inbound %s: %v", uuid, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != emptyPlivoXML {
		tb.Fatalf("inbound %s: got %d %s, want 200 %s", uuid, resp.StatusCode, body, emptyPlivoXML)
	}
}

// TestInboundBrowser drives the dashboard in Chromium: an inbound message
// appears live in the list, marked and with its text; its detail leads to
// the conversation with that number, which shows both directions in time
// order and takes a new inbound STOP live; the opt-out list shows the
// number and removes it.
func TestInboundBrowser(t *testing.T) {
	d := startDashServer(t, nil)
	ctx := newBrowser(t)
	defer func() {
		if !t.Failed() {
			return
		}
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if png, err := chromedp.Run(c, chromedp.FullScreenshot(90)); err == nil {
			p := filepath.Join(t.TempDir(), "inbound-failure.png")
			if os.WriteFile(p, png, 0o600) == nil {
				t.Logf("screenshot of the failure: %s", p)
			}
		}
	}()
	within(t, ctx, 20*time.Second, "log in",
		chromedp.Navigate(d.url("/")),
		chromedp.WaitVisible(chromedp.CSS(`#username`)),
		chromedp.SendKeys(chromedp.CSS(`#username`), dashUser),
		chromedp.SendKeys(chromedp.CSS(`#password`), dashPassword),
		chromedp.Click(chromedp.CSS(`#login`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-state="live"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#optouts`)),
	)

	// We sent 447700900123 a message (callbackForm's To), then they reply.
	const outUUID = "0c0c0c0c-1111-4222-8333-444455556666"
	d.sendCallback(t, outUUID, "queued", "", 1)
	d.sendCallback(t, outUUID, "delivered", "000", 2)
	within(t, ctx, 2*time.Second, "outbound row", chromedp.WaitVisible(chromedp.CSS(`tr[data-uuid="`+outUUID+`"][data-status="delivered"]`)))
	const replyUUID = "1d1d1d1d-b0c6-11ef-a7a3-0242ac110003"
	d.sendInbound(t, replyUUID, "447700900123", "14155550100", "Running late ☕, 10 min", "")
	row := `tr.inbound[data-uuid="` + replyUUID + `"][data-status="received"]`
	within(t, ctx, 2*time.Second, "inbound row to appear live, marked, with its text",
		chromedp.WaitVisible(chromedp.CSS(row+` .dir`)),
		chromedp.Poll[chromedp.Void](`(document.querySelector('`+row+` .inbound-text')?.textContent || "") === "Running late ☕, 10 min"`, chromedp.WithPollingTimeout(2*time.Second)),
	)
	if n := browserValue(t, ctx, "count inbound rows", chromedp.Evaluate[int](`document.querySelectorAll("#messages tbody tr.inbound").length`)); n != 1 {
		t.Errorf("rows marked inbound: %d, want 1 (the outbound one is not)", n)
	}

	// Its detail leads to the conversation, both directions, oldest first.
	within(t, ctx, 5*time.Second, "open the conversation from the detail",
		chromedp.Click(chromedp.CSS(row)),
		chromedp.WaitVisible(chromedp.CSS(`#detail[open] button.open-conversation[data-number="447700900123"]`)),
		chromedp.Click(chromedp.CSS(`#detail button.open-conversation`)),
		chromedp.WaitVisible(chromedp.CSS(`#conversation[open] ol.bubbles li:nth-child(2)`)),
	)
	bubbles := func() string {
		v := browserValue(t, ctx, "read the conversation", chromedp.Evaluate[[]string](
			`[...document.querySelectorAll("#conversation ol.bubbles li")].map(li => li.className + ":" + li.querySelector(".bubble-text").textContent)`))
		return strings.Join(v, " | ")
	}
	if got, want := bubbles(), "bubble outbound:(no text) | bubble inbound:Running late ☕, 10 min"; got != want {
		t.Errorf("conversation: %s, want %s", got, want)
	}

	// A STOP while the conversation is open shows up in it, live, and the
	// number is marked opted out.
	d.sendInbound(t, "1d1d1d1e-b0c6-11ef-a7a3-0242ac110003", "447700900123", "14155550100", "STOP", "optout")
	within(t, ctx, 3*time.Second, "STOP to appear in the open conversation",
		chromedp.WaitVisible(chromedp.CSS(`#conversation[open] ol.bubbles li:nth-child(3).inbound`)),
		chromedp.WaitVisible(chromedp.CSS(`#conversation h2 .optout-badge`)),
	)
	if got := bubbles(); !strings.HasSuffix(got, "bubble inbound:STOP") {
		t.Errorf("conversation after STOP: %s", got)
	}

	// The opt-out list has the number, the rows carry the badge; Remove
	// takes it off.
	within(t, ctx, 5*time.Second, "opt-out list and badges",
		chromedp.Click(chromedp.CSS(`#conversation .close`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#conversation[open]`)),
		chromedp.WaitVisible(chromedp.CSS(`#optout-list li[data-number="+447700900123"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-uuid="`+outUUID+`"] .optout-badge`)),
	)
	listed := browserValue(t, ctx, "read the opt-out list", chromedp.TextContent(chromedp.CSS(`#optout-list`)))
	if !strings.Contains(listed, "+447700900123 STOP") || !strings.Contains(listed, "to +14155550100") {
		t.Errorf("opt-out list: %q, want the number, STOP and our number", listed)
	}
	within(t, ctx, 5*time.Second, "remove the opt-out",
		chromedp.Click(chromedp.CSS(`#optout-list button.remove[data-number="+447700900123"]`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#optout-list li`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#messages .optout-badge`)),
	)
	if _, err := d.store.OptedOut("447700900123"); err == nil {
		t.Errorf("the number is still listed in the store after Remove")
	}
}
