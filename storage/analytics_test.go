package storage

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestCountryOf(t *testing.T) {
	for number, want := range map[string]string{
		"+14155550100": "US", "14165550100": "CA", "+44 7700 900123": "GB", "447700910038": "GB",
		"+91-98765-43210": "IN", "+77012345678": "KZ", "+74951234567": "RU", "+353861234567": "IE",
		"+8613800138000": "CN", "": "", "abc": "", "+999": "", "+2": "",
	} {
		if got := countryOf(number); got != want {
			t.Errorf("countryOf(%q) = %q, want %q", number, got, want)
		}
	}
}

func TestParseMicros(t *testing.T) {
	for v, want := range map[string]int64{"0.00650": 6500, "1": 1_000_000, "0.1234567": 123456, "12.5": 12_500_000, ".5": 500_000} {
		if got, ok := parseMicros(v); !ok || got != want {
			t.Errorf("parseMicros(%q) = %d %v, want %d", v, got, ok, want)
		}
	}
	for _, v := range []string{"", "-1", "1e3", "abc", "1.2.3", "99999999999"} {
		if got, ok := parseMicros(v); ok {
			t.Errorf("parseMicros(%q) = %d, want refused", v, got)
		}
	}
}

// analyticsEvent is an outbound callback with the fields the analytics
// counters read.
func analyticsEvent(uuid, status, to, from, mcc, mnc, amount, code string) Event {
	e := ev(uuid, status, 0, "To", to, "From", from, "ErrorCode", code)
	e.MCC, e.MNC, e.TotalAmount = mcc, mnc, amount
	return e
}

func TestStatsRangeAnalytics(t *testing.T) {
	clock := newTestClock() // 12:00 UTC
	s := mustOpenStore(t, Options{Now: clock.Now})
	// Yesterday: one delivered message (spend on another day).
	clock.Add(-24 * time.Hour)
	mustApply(t, s, analyticsEvent("y1", StatusDelivered, "+14155550100", "+15550001", "310", "260", "0.01000", ""))
	clock.Add(24 * time.Hour)
	// Now: 3 to GB (2 delivered, 1 undelivered), 1 to CA in flight, one
	// inbound; each outbound queued first, then its outcome minutes later.
	send := func(uuid, to, final, code string) {
		mustApply(t, s, analyticsEvent(uuid, StatusQueued, to, "+15550001", "", "", "", ""))
	}
	send("g1", "+447700900001", StatusDelivered, "")
	send("g2", "+447700900002", StatusDelivered, "")
	clock.Add(3 * time.Minute)
	send("g3", "+447700900003", StatusUndelivered, "30007")
	send("c1", "+14165550100", StatusSent, "")
	in := Event{MessageUUID: "in1", Status: StatusReceived, Source: SourceInbound, Payload: map[string]string{"From": "+447700900009"},
		Details: Details{From: "+447700900009", To: "+15550001"}}
	mustApply(t, s, in)
	clock.Add(2 * time.Minute)
	mustApply(t, s, analyticsEvent("g1", StatusDelivered, "+447700900001", "+15550001", "234", "10", "0.04000", ""))
	mustApply(t, s, analyticsEvent("g2", StatusDelivered, "+447700900002", "+15550002", "234", "15", "0.04000", ""))
	mustApply(t, s, analyticsEvent("g3", StatusUndelivered, "+447700900003", "+15550001", "234", "10", "0.04000", "30007"))
	mustApply(t, s, analyticsEvent("c1", StatusSent, "+14165550100", "+15550001", "302", "720", "", ""))

	now := clock.Now()
	r, err := s.StatsRangeRead(now.Add(-time.Hour), now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Points) != 61 {
		t.Fatalf("points = %d, want 61 (one a minute)", len(r.Points))
	}
	at := func(d time.Duration) map[string]int64 {
		for _, p := range r.Points {
			if p.Start.Equal(time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC).Add(d)) {
				return p.Counts
			}
		}
		t.Fatalf("no point at 12:00+%s", d)
		return nil
	}
	if got := fmt.Sprint(at(0)); got != "map[delivered:2]" {
		t.Errorf("12:00 = %s, want 2 delivered (first seen then, delivered later)", got)
	}
	if got := fmt.Sprint(at(3 * time.Minute)); got != "map[received:1 sent:1 undelivered:1]" {
		t.Errorf("12:03 = %s", got)
	}
	if got := fmt.Sprint(r.Countries); got != "[{GB 3 2 1} {CA 1 0 0}]" {
		t.Errorf("countries = %s", got)
	}
	if got := fmt.Sprint(r.Carriers); got != "[{234-10 2 1 1} {234-15 1 1 0} {302-720 1 0 0}]" {
		t.Errorf("carriers = %s", got)
	}
	// The sender is the winning event's From: g2's delivery report says +15550002.
	if got := fmt.Sprint(r.Senders); got != "[{+15550001 3 1 1} {+15550002 1 1 0}]" {
		t.Errorf("senders = %s", got)
	}
	if got := fmt.Sprint(r.ErrorCodes); got != "[{30007 1}]" {
		t.Errorf("error codes = %s", got)
	}
	if r.Spend != 120_000 || len(r.SpendByDay) != 1 || r.SpendByDay[0].Micros != 120_000 {
		t.Errorf("spend = %d by day %v, want 120000 today", r.Spend, r.SpendByDay)
	}

	week, err := s.StatsRangeRead(now.Add(-7*24*time.Hour), now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(week.SpendByDay); got != "[{2025-03-09 00:00:00 +0000 UTC 10000} {2025-03-10 00:00:00 +0000 UTC 120000}]" {
		t.Errorf("week spend by day = %s", got)
	}
	if week.Total != 6 || len(week.Points) != 8 {
		t.Errorf("week total %d points %d, want 6 and 8", week.Total, len(week.Points))
	}

	// Minute counters older than minuteRetention are deleted as the writer
	// goes; the hours stay.
	clock.Add(minuteRetention + time.Hour)
	mustApply(t, s, analyticsEvent("late", StatusQueued, "+14155550100", "+15550001", "", "", "", ""))
	var minutes int
	if err := s.view(func(tx *bolt.Tx) error {
		minutes = tx.Bucket(bucketStatsMinute).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if minutes != 1 {
		t.Errorf("minute records after 49 h = %d, want 1 (the new one)", minutes)
	}
	if _, err := s.StatsRangeRead(now.Add(-2*time.Hour), now, time.Minute); err == nil {
		t.Errorf("minute series older than the retention: no error")
	}
}

// encodeHourStatsV1 is the format-1 layout older versions wrote (frozen).
func encodeHourStatsV1(h *hourStats) []byte {
	b := []byte{1}
	b = appendCounts(b, h.counts)
	b = appendTTD(b, &h.ttd)
	return appendCounts(b, h.errors)
}

func TestHourStatsV1Record(t *testing.T) {
	old := newHourStats()
	old.counts[StatusDelivered] = 5
	old.ttd[3] = 5
	old.errors["30007"] = 2
	h := newHourStats()
	if err := decodeHourStats(encodeHourStatsV1(old), h); err != nil {
		t.Fatal(err)
	}
	if h.counts[StatusDelivered] != 5 || h.ttd[3] != 5 || h.errors["30007"] != 2 || len(h.countries) != 0 || h.spend != 0 {
		t.Errorf("v1 record decoded as %+v", h)
	}
	// A record with a field this version does not know decodes too.
	cur := encodeHourStats(nil, old)
	n, k := binary.Uvarint(cur[1:])
	future := append([]byte{hourFormatV2}, binary.AppendUvarint(nil, n+1)...)
	future = append(future, cur[1+k:]...)
	future = append(future, 3, 'x', 'y', 'z')
	h = newHourStats()
	if err := decodeHourStats(future, h); err != nil || h.counts[StatusDelivered] != 5 {
		t.Errorf("record with an extra field: %v, %+v", err, h)
	}
	// Long fields (length over one byte) round-trip.
	big := newHourStats()
	for i := range 60 {
		big.countries[fmt.Sprintf("K%02d", i)] = outcomes{int64(i + 1), 1, 0}
	}
	big.spend = 42
	h = newHourStats()
	if err := decodeHourStats(encodeHourStats(nil, big), h); err != nil || len(h.countries) != 60 || h.countries["K59"] != (outcomes{60, 1, 0}) || h.spend != 42 {
		t.Errorf("long field round trip: %v, %d countries, spend %d", err, len(h.countries), h.spend)
	}
}

func TestAnalyticsCountersBounded(t *testing.T) {
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now})
	const n = 200
	for i := range n {
		to := fmt.Sprintf("+%d5550100", 200+i) // many calling codes, known and not
		mustApply(t, s, analyticsEvent(fmt.Sprint("m", i), StatusDelivered, to, fmt.Sprintf("+1555%07d", i),
			fmt.Sprint(100+i), fmt.Sprint(i), "0.001", ""))
	}
	rec := hourRecord(t, s, clock)
	h := newHourStats()
	if err := decodeHourStats(rec, h); err != nil {
		t.Fatal(err)
	}
	t.Logf("hour record with %d distinct senders and carriers: %d bytes", n, len(rec))
	for name, m := range map[string]map[string]outcomes{"countries": h.countries, "carriers": h.carriers, "senders": h.senders} {
		var sum int64
		for _, v := range m {
			sum += v[outMessages]
		}
		if sum != n || len(m) > maxStatsCountries {
			t.Errorf("%s: %d keys summing to %d, want at most %d keys summing to %d", name, len(m), sum, maxStatsCountries, n)
		}
	}
	if len(h.senders) > maxStatsSenders || h.senders[statsOther][outMessages] != n-maxStatsSenders+1 {
		t.Errorf("senders: %d keys, other %v", len(h.senders), h.senders[statsOther])
	}
	if h.spend != n*1000 {
		t.Errorf("spend = %d, want %d", h.spend, n*1000)
	}
}
