package storage

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkApplyParallelAnalytics is BenchmarkApplyParallel (Plivo's
// traffic shape: version-1 UUIDs, each message queued, sent, delivered,
// fsync'd, random 20-digit nonces) with the analytics counters off (the
// ingestion before them) and on, alternating in one run so both see the
// same machine. The rounds interleave off and on, so a change of the
// machine's load (fsync latency on a shared disk) hits both alike; compare
// the median events/s of counters=off and counters=on.
//
//	go test -run '^$' -bench 'ApplyParallelAnalytics' -benchtime 20000x ./storage
func BenchmarkApplyParallelAnalytics(b *testing.B) {
	defer func(v bool) { analyticsCounters = v }(analyticsCounters)
	for _, writers := range []int{64, 256} {
		for round := range 6 {
			for _, on := range []bool{false, true} {
				name := map[bool]string{false: "off", true: "on"}[on]
				b.Run(fmt.Sprintf("writers=%d/round=%d/counters=%s", writers, round, name), func(b *testing.B) {
					analyticsCounters = on
					benchApplyParallel(b, false, 0, writers)
				})
			}
		}
	}
}

// BenchmarkContribution measures what the writer computes per message
// whose counters move, with the analytics keys (country from the calling
// code, carrier, sender, spend) and without.
func BenchmarkContribution(b *testing.B) {
	defer func(v bool) { analyticsCounters = v }(analyticsCounters)
	now := time.Now()
	msgs := make([]Message, len(benchCountryNumbers))
	for i, to := range benchCountryNumbers {
		e := benchEvent(i, false, StatusDelivered, now)
		e.To = to
		msgs[i].Fold(&e)
	}
	for _, on := range []bool{false, true} {
		b.Run(map[bool]string{false: "counters=off", true: "counters=on"}[on], func(b *testing.B) {
			analyticsCounters = on
			var sink contribution
			i := 0
			for b.Loop() {
				sink = contributionOf(&msgs[i%len(msgs)])
				i++
			}
			_ = sink
		})
	}
	b.Run("countryOf", func(b *testing.B) {
		var sink string
		i := 0
		for b.Loop() {
			sink = countryOf(benchCountryNumbers[i%len(benchCountryNumbers)])
			i++
		}
		_ = sink
	})
}

var benchCountryNumbers = []string{"447700900123", "14155550123", "33612345678", "919876543210", "4915123456789", "61412345678",
	"5511912345678", "+14165550100", "+77012345678", "+353861234567", "+8613800138000", "+2348031234567"}
