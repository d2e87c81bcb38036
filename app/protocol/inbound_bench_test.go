package protocol

import (
	"net/url"
	"slices"
	"testing"
	"time"
)

// BenchmarkParseHotPath puts the status-callback parse before inbound
// messages (ParseCallback) and after (ParsePosted, which first tells a
// report from an inbound message) side by side in one run, in short
// interleaved rounds so a shared machine's noise hits both alike, and
// reports the median of the per-round ratios; an inbound message's parse
// is timed beside them:
//
//	go test -run '^$' -bench BenchmarkParseHotPath -benchtime 400000x ./app/protocol
func BenchmarkParseHotPath(b *testing.B) {
	report := url.Values{
		"MessageUUID": {"0c7e1a42-2f61-11ef-a3d5-0242ac120003"}, "Status": {"delivered"}, "Sequence": {"3"},
		"To": {"447700900123"}, "From": {"14155550100"}, "Type": {"sms"},
		"Units": {"1"}, "TotalRate": {"0.00450"}, "TotalAmount": {"0.00450"},
		"MCC": {"234"}, "MNC": {"10"}, "ParentMessageUUID": {"0c7e1a42-2f61-11ef-a3d5-0242ac120003"},
		"ErrorCode": {""}, "PartInfo": {""}, "PowerpackUUID": {""},
		"MessageTime": {"2024-05-01 10:00:00.123456"}, "QueuedTime": {"2024-05-01 10:00:00.234567"},
		"SentTime": {"2024-05-01 10:00:01.345678"}, "DeliveryReportTime": {"2024-05-01 10:00:04.456789"},
	}
	inbound := url.Values{
		"MessageUUID": {"2d55b4f0-b0c6-11ef-a7a3-0242ac110003"}, "From": {"447700900123"}, "To": {"14155550100"},
		"Text": {"Yes, 7pm works. See you there!"}, "Type": {"sms"}, "Units": {"1"},
		"TotalRate": {"0.00000"}, "TotalAmount": {"0.00000"}, "MessageIntent": {""}, "PowerpackUUID": {""},
	}
	callback := func(p url.Values) error { _, err := ParseCallback(p); return err }
	posted := func(p url.Values) error { _, err := ParsePosted(p); return err }
	// time runs parse n times on params and returns ns per call.
	time1 := func(parse func(url.Values) error, params url.Values, n int) float64 {
		start := time.Now()
		for range n {
			if err := parse(params); err != nil {
				b.Fatal(err)
			}
		}
		return float64(time.Since(start).Nanoseconds()) / float64(n)
	}
	// Short rounds, alternating which goes first: a burst of load from
	// another process lands on both sides of a pair.
	const per = 2000
	var before, after, in, ratios []float64
	for r := 0; r*per < max(b.N, 50*per); r++ {
		var x, y float64
		if r%2 == 0 {
			x = time1(callback, report, per)
			y = time1(posted, report, per)
		} else {
			y = time1(posted, report, per)
			x = time1(callback, report, per)
		}
		before, after, ratios = append(before, x), append(after, y), append(ratios, y/x)
		in = append(in, time1(posted, inbound, per))
	}
	median := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
	b.ReportMetric(median(before), "before_ns/status")
	b.ReportMetric(median(after), "after_ns/status")
	b.ReportMetric(median(ratios), "after/before")
	b.ReportMetric(median(in), "ns/inbound")
	b.ReportMetric(0, "ns/op")
}
