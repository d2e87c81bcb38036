package app

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestDashboardFormatters runs the page's own formatters (assets/format.js)
// in Chromium on numbers as Plivo sends them and on Plivo's timestamps.
func TestDashboardFormatters(t *testing.T) {
	d := startDashServer(t, nil)
	ctx := newBrowser(t)
	loginBrowser(t, ctx, d)

	phones := []struct{ in, want, country string }{
		{"447700900123", "+44 7700 900123", "United Kingdom"},
		{"+447700900123", "+44 7700 900123", "United Kingdom"},
		{"442079460958", "+44 20 7946 0958", "United Kingdom"},
		{"14155550100", "+1 415 555 0100", "United States / Canada"},
		{"33612345678", "+33 6 12 34 56 78", "France"},
		{"919876543210", "+91 98765 43210", "India"},
		{"31612345678", "+31 6 12345678", "Netherlands"},
		{"353851234567", "+353 85 123 4567", "Ireland"},
		{"6581234567", "+65 8123 4567", "Singapore"},
		// Unknown calling code: digits kept whole, never grouped wrongly.
		{"99912345678", "+99912345678", ""},
		// A known code with an unexpected length: code split off only.
		{"4477009001234567", "4477009001234567", ""},
		{"44770090", "+44 770090", "United Kingdom"},
		// Not phone numbers: sender IDs and short codes stay as they are.
		{"PLIVO", "PLIVO", ""},
		{"12345", "12345", ""},
		{"", "", ""},
	}
	type phoneOut struct{ Formatted, Country string }
	ins := make([]string, len(phones))
	for i, p := range phones {
		ins[i] = p.in
	}
	inJSON, _ := json.Marshal(ins)
	got := browserValue(t, ctx, "format phones", chromedp.Evaluate[[]phoneOut](
		`import("/assets/format.js").then((f) => `+string(inJSON)+`.map((s) => ({ Formatted: f.formatPhone(s), Country: f.phoneCountry(s) })))`,
		chromedp.EvalAwaitPromise))
	for i, p := range phones {
		if got[i].Formatted != p.want || got[i].Country != p.country {
			t.Errorf("formatPhone(%q) = %q (%q), want %q (%q)", p.in, got[i].Formatted, got[i].Country, p.want, p.country)
		}
	}

	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	times := []struct {
		ago  time.Duration
		want string
	}{
		{0, "just now"}, {9 * time.Second, "just now"}, {42 * time.Second, "42 s ago"},
		{3*time.Minute + 10*time.Second, "3 min ago"}, {5 * time.Hour, "5 h ago"},
		{30 * time.Hour, "yesterday"}, {72 * time.Hour, "3 days ago"}, {40 * 24 * time.Hour, "2024-03-22"},
		{-5 * time.Minute, "in the future"},
	}
	type relIn struct {
		T   string `json:"t"`
		Now int64  `json:"now"`
	}
	rel := make([]relIn, len(times))
	for i, c := range times {
		rel[i] = relIn{now.Add(-c.ago).Format(time.RFC3339Nano), now.UnixMilli()}
	}
	relJSON, _ := json.Marshal(rel)
	gotRel := browserValue(t, ctx, "relative times", chromedp.Evaluate[[]string](
		`import("/assets/format.js").then((f) => `+string(relJSON)+`.map((c) => f.relativeTime(c.t, c.now)))`, chromedp.EvalAwaitPromise))
	for i, c := range times {
		if gotRel[i] != c.want {
			t.Errorf("relativeTime(now - %s) = %q, want %q", c.ago, gotRel[i], c.want)
		}
	}

	// Plivo's zone-less timestamps are UTC; local time names its offset.
	within(t, ctx, 5*time.Second, "time zone", timezone("America/New_York"))
	abs := browserValue(t, ctx, "absolute times", chromedp.Evaluate[[]string](`import("/assets/format.js").then((f) => [
  f.absTime("2024-05-01 10:00:00.234567", "utc", true),
  f.absTime("2024-05-01 10:00:00.234567", "local", true),
  f.absTime("2024-05-01T10:00:00Z", "utc"),
  f.absTime("not a time", "utc"),
  f.duration(0.25), f.duration(1.14), f.duration(245), f.duration(7260),
])`, chromedp.EvalAwaitPromise))
	want := []string{
		"2024-05-01 10:00:00.234 UTC", "2024-05-01 06:00:00.234 UTC−04:00", "2024-05-01 10:00:00 UTC", "not a time",
		"250 ms", "1.1 s", "4 min 5 s", "2 h 1 min",
	}
	for i := range want {
		if abs[i] != want[i] {
			t.Errorf("time formatting %d: got %q, want %q", i, abs[i], want[i])
		}
	}
}
