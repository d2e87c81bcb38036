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

	// Expected formats are libphonenumber's international format; the
	// country is the one libphonenumber finds for a valid number (US and
	// Canada told apart by area code), "" for a number it finds invalid.
	phones := []struct{ in, want, cc, country string }{
		{"14155550100", "+1 415 555 0100", "US", "United States"},
		{"+1 (212) 555-0199", "+1 212 555 0199", "US", "United States"},
		{"14165550100", "+1 416 555 0100", "CA", "Canada"},
		{"16135550123", "+1 613 555 0123", "CA", "Canada"},
		{"447400123456", "+44 7400 123456", "GB", "United Kingdom"},
		{"+442079460958", "+44 20 7946 0958", "GB", "United Kingdom"},
		// Ofcom's range for drama (07700 900xxx) is grouped as a UK mobile
		// but is no real number: no country claimed.
		{"447700900123", "+44 7700 900123", "", ""},
		{"919876543210", "+91 98765 43210", "IN", "India"},
		{"912223456789", "+91 22 2345 6789", "IN", "India"},
		{"4915123456789", "+49 1512 3456789", "DE", "Germany"},
		{"493012345678", "+49 30 12345678", "DE", "Germany"},
		{"5511912345678", "+55 11 91234 5678", "BR", "Brazil"},
		{"551133334444", "+55 11 3333 4444", "BR", "Brazil"},
		{"61412345678", "+61 412 345 678", "AU", "Australia"},
		{"61212345678", "+61 2 1234 5678", "AU", "Australia"},
		{"33612345678", "+33 6 12 34 56 78", "FR", "France"},
		{"31612345678", "+31 6 12345678", "NL", "Netherlands"},
		{"353851234567", "+353 85 123 4567", "IE", "Ireland"},
		{"6581234567", "+65 8123 4567", "SG", "Singapore"},
		// Not a number in international format: shown as it came.
		{"99912345678", "99912345678", "", ""},           // unknown calling code
		{"44770090", "44770090", "", ""},                 // too short for +44
		{"4477009001234567", "4477009001234567", "", ""}, // longer than E.164 allows
		{"12345", "12345", "", ""},                       // US short code
		{"60123", "60123", "", ""},                       // UK short code
		{"PLIVO", "PLIVO", "", ""},                       // alphanumeric sender ID
		{"MyShop 24", "MyShop 24", "", ""},
		{"", "", "", ""},
	}
	type phoneOut struct{ Formatted, CC, Country string }
	ins := make([]string, len(phones))
	for i, p := range phones {
		ins[i] = p.in
	}
	inJSON, _ := json.Marshal(ins)
	// Twice: the second round is answered from format.js's cache and must
	// not differ.
	for round := 0; round < 2; round++ {
		got := browserValue(t, ctx, "format phones", chromedp.Evaluate[[]phoneOut](
			`import("/assets/format.js").then((f) => `+string(inJSON)+`.map((s) => ({ Formatted: f.formatPhone(s), CC: f.phoneCountryCode(s), Country: f.phoneCountry(s) })))`,
			chromedp.EvalAwaitPromise))
		for i, p := range phones {
			if got[i].Formatted != p.want || got[i].CC != p.cc || got[i].Country != p.country {
				t.Errorf("round %d: formatPhone(%q) = %q (%q, %q), want %q (%q, %q)", round, p.in, got[i].Formatted, got[i].CC, got[i].Country, p.want, p.cc, p.country)
			}
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
