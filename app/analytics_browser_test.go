package app

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// analyticsFacts is what the Analytics view shows, read from the page.
type analyticsFacts struct {
	Hash        string   `json:"hash"`
	Bars        int      `json:"bars"`
	FilledBars  int      `json:"filledBars"`
	LastTitle   string   `json:"lastTitle"`
	Totals      string   `json:"totals"`
	Countries   []string `json:"countries"`
	Carriers    []string `json:"carriers"`
	Senders     []string `json:"senders"`
	Errors      []string `json:"errors"`
	Spend       []string `json:"spend"`
	RateWidths  []string `json:"rateWidths"`
	ListHidden  bool     `json:"listHidden"`
	ScrollWidth int      `json:"scrollWidth"`
	InnerWidth  int      `json:"innerWidth"`
	WidestWhat  string   `json:"widestWhat"`
}

const readAnalytics = `(() => {
  const v = document.querySelector("#analytics-view");
  const rows = (id) => [...v.querySelectorAll("#an-" + id + " tbody tr")].map((tr) => [...tr.cells].map((c) => c.textContent.trim()).join(" | "));
  const bars = [...v.querySelectorAll(".an-bar")];
  let widest = 0, what = "";
  for (const e of document.body.querySelectorAll("*")) {
    const b = e.getBoundingClientRect();
    if (b.width > 0 && b.right > widest) { widest = b.right; what = e.tagName + (e.id ? "#" + e.id : "") + "." + (e.className.baseVal ?? e.className); }
  }
  return {
    hash: location.hash, bars: bars.length,
    filledBars: bars.filter((b) => b.querySelector("rect:not(.an-hit)")).length,
    lastTitle: bars.length ? bars[bars.length - 1].querySelector("title").textContent : "",
    totals: v.querySelector("#an-totals").textContent,
    countries: rows("countries"), carriers: rows("carriers"), senders: rows("senders"), errors: rows("error_codes"), spend: rows("spend"),
    rateWidths: [...v.querySelectorAll("#an-countries .an-rate-bar > span")].map((s) => s.style.width),
    listHidden: document.querySelector("section.messages").getBoundingClientRect().height === 0,
    scrollWidth: document.documentElement.scrollWidth, innerWidth: innerWidth, widestWhat: widest > innerWidth ? what : "",
  };
})()`

// TestAnalyticsView drives the Analytics view in Chromium at 1366×800 and
// 390×844: reached from the header, it draws a bar per interval with the
// numbers on hover and keyboard focus, the tables by country, carrier,
// sender, error code and spend for the seeded messages, sorts a table, has
// its own URL per window, nothing scrolls sideways, and axe-core finds no
// serious or critical violation.
func TestAnalyticsView(t *testing.T) {
	axe := axeSource(t)
	d := startDashServer(t, nil)
	// 20 messages to 7 countries: 15 delivered, 3 undelivered (30), 2
	// failed (50); plus one inbound.
	seedMessages(t, d, 20)
	d.sendInbound(t, "5b000000-0000-4000-8000-000000000002", "447700900999", "14155550100", "hello", "")
	ctx := newBrowser(t)
	defer failureScreenshot(t, ctx)
	loginBrowser(t, ctx, d)

	read := func(what string) analyticsFacts {
		t.Helper()
		return browserValue(t, ctx, what, chromedp.Evaluate[analyticsFacts](readAnalytics))
	}
	for _, vp := range []struct {
		name string
		w, h int64
	}{{"desktop", desktopW, desktopH}, {"phone", phoneW, phoneH}} {
		t.Run(vp.name, func(t *testing.T) {
			within(t, ctx, 20*time.Second, vp.name+": open from the header",
				setViewport(vp.w, vp.h),
				chromedp.Navigate(d.url("/")),
				chromedp.WaitVisible(chromedp.CSS(`#conn[data-state="live"]`)),
				// The header's link, or on a phone the strip's.
				chromedp.Click(chromedp.CSS(map[string]string{"desktop": `#analytics-link`, "phone": `.strip .an-strip-link`}[vp.name])),
				chromedp.WaitVisible(chromedp.CSS(`#analytics-view`)),
				chromedp.Poll[chromedp.Void](`document.querySelectorAll("#an-countries tbody tr").length === 7`, chromedp.WithPollingTimeout(10*time.Second)),
			)
			f := read("analytics 24h")
			if f.Hash != "#analytics" || !f.ListHidden {
				t.Errorf("hash %q, list hidden %v: want #analytics with the list hidden", f.Hash, f.ListHidden)
			}
			if f.Bars != 24 || f.FilledBars != 1 {
				t.Errorf("24h chart: %d bars, %d drawn; want 24 with the current hour drawn", f.Bars, f.FilledBars)
			}
			if !strings.Contains(f.LastTitle, "15 delivered, 5 failed, 0 in flight, 1 inbound") {
				t.Errorf("last bar's hover text = %q, want its counts", f.LastTitle)
			}
			for _, want := range []string{"Delivery rate 75.0%", "Messages 20", "Failed 5", "Inbound 1", "Spend 0.09"} {
				if !strings.Contains(f.Totals, want) {
					t.Errorf("totals %q lack %q", f.Totals, want)
				}
			}
			joined := strings.Join(f.Countries, "\n")
			for _, want := range []string{"United Kingdom (GB) | 3 | 3 | 0 | 100.0%", "India (IN) | 3 | 0 | 3 | 0.0%"} {
				if !strings.Contains(joined, want) {
					t.Errorf("countries table:\n%s\nlacks %q", joined, want)
				}
			}
			if len(f.RateWidths) != 7 || !containsStr(f.RateWidths, "100%") || !containsStr(f.RateWidths, "0%") {
				t.Errorf("rate bar widths = %v, want 7 with 100%% and 0%%", f.RateWidths)
			}
			if len(f.Carriers) != 1 || !strings.HasPrefix(f.Carriers[0], "234-10 | 20 | 15 | 5 | 75.0%") {
				t.Errorf("carriers = %v", f.Carriers)
			}
			if len(f.Senders) != 1 || !strings.Contains(f.Senders[0], "| 20 | 15 | 5 |") {
				t.Errorf("senders = %v", f.Senders)
			}
			if len(f.Errors) != 2 || !strings.HasPrefix(f.Errors[0], "30 ") || !strings.Contains(f.Errors[0], "| 3 | 60.0%") {
				t.Errorf("error codes = %v, want 30 (3, 60%%) then 50", f.Errors)
			}
			if len(f.Spend) != 1 || !strings.HasSuffix(f.Spend[0], "| 0.09") {
				t.Errorf("spend per day = %v, want one day of 0.09", f.Spend)
			}
			if f.ScrollWidth > f.InnerWidth {
				t.Errorf("page scrolls sideways: scrollWidth %d > innerWidth %d (widest: %s)", f.ScrollWidth, f.InnerWidth, f.WidestWhat)
			}
			screenshot(t, ctx, "analytics-"+vp.name)
			checkA11y(t, ctx, axe, vp.name+" analytics")

			// Sorting: Delivery rate descending, then ascending.
			within(t, ctx, 5*time.Second, "sort by rate", chromedp.Click(chromedp.CSS(`#an-countries .an-sort[data-col="rate"]`)))
			if f := read("sorted"); !strings.HasSuffix(f.Countries[0], "100.0%") || !strings.HasPrefix(f.Countries[6], "India") {
				t.Errorf("sorted by rate descending: %v", f.Countries)
			}
			within(t, ctx, 5*time.Second, "sort by rate again", chromedp.Click(chromedp.CSS(`#an-countries .an-sort[data-col="rate"]`)))
			sorted := browserValue(t, ctx, "aria-sort", chromedp.Evaluate[string](`document.querySelector('#an-countries th[data-col="rate"]').getAttribute("aria-sort")`))
			if f := read("sorted ascending"); !strings.HasPrefix(f.Countries[0], "India") || sorted != "ascending" {
				t.Errorf("sorted by rate ascending (aria-sort %q): %v", sorted, f.Countries)
			}

			// The keyboard reads the bars: focus the chart, step left.
			within(t, ctx, 5*time.Second, "focus the chart", chromedp.Focus(chromedp.CSS(`#an-plot svg`)))
			readout := browserValue(t, ctx, "readout", chromedp.Evaluate[string](`document.querySelector("#an-readout").textContent`))
			if !strings.Contains(readout, "15 delivered") {
				t.Errorf("readout on focus = %q, want the current hour's counts", readout)
			}

			// 1 hour: one bar a minute, its own URL.
			within(t, ctx, 10*time.Second, "1h window",
				chromedp.Click(chromedp.CSS(`.an-windows a[data-window="1h"]`)),
				chromedp.Poll[chromedp.Void](`document.querySelectorAll(".an-bar").length === 60`, chromedp.WithPollingTimeout(5*time.Second)),
			)
			f = read("analytics 1h")
			if f.Hash != "#analytics=1h" || f.FilledBars < 1 || f.ScrollWidth > f.InnerWidth {
				t.Errorf("1h: hash %q, %d bars drawn, scrollWidth %d > %d? (%s)", f.Hash, f.FilledBars, f.ScrollWidth, f.InnerWidth, f.WidestWhat)
			}
			within(t, ctx, 10*time.Second, "30d window",
				chromedp.Click(chromedp.CSS(`.an-windows a[data-window="30d"]`)),
				chromedp.Poll[chromedp.Void](`document.querySelectorAll(".an-bar").length === 30`, chromedp.WithPollingTimeout(5*time.Second)),
			)
			// Back to the list.
			within(t, ctx, 10*time.Second, "back to the messages",
				chromedp.Click(chromedp.CSS(`.an-back`)),
				chromedp.WaitVisible(chromedp.CSS(`#messages tbody tr`)),
				chromedp.WaitNotVisible(chromedp.CSS(`#analytics-view`)),
			)
		})
	}
}

func containsStr(l []string, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}
