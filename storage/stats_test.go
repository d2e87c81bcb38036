package storage

import (
	"fmt"
	"math"
	"testing"
	"time"
)

func TestTTDBuckets(t *testing.T) {
	for _, d := range []time.Duration{0, 100 * time.Millisecond, 250 * time.Millisecond, 353 * time.Millisecond,
		time.Second, 3 * time.Second, time.Minute, time.Hour, 24 * time.Hour, 30 * 24 * time.Hour} {
		i := ttdBucket(d)
		if d < ttdLower(i) || (i < ttdBuckets-1 && d >= ttdUpper(i)) {
			t.Errorf("ttdBucket(%s) = %d = [%s, %s), want a bucket holding it", d, i, ttdLower(i), ttdUpper(i))
		}
	}
}

func TestStats(t *testing.T) {
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now})
	t0 := clock.Now()
	plivo := func(d time.Duration) *time.Time { x := t0.Add(d); return &x }

	// 10 messages delivered after 1s..10s, 1 read after 30s, 3 undelivered
	// (2× 30007, 1× 30003), 1 failed 40001, 1 rejected without code, 2 sent,
	// 1 queued. One old message in an earlier hour, outside the window.
	apply := func(uuid, status, code string, seq int64, ttd time.Duration) {
		t.Helper()
		e := ev(uuid, status, seq, "ErrorCode", code)
		if ttd > 0 {
			e.QueuedTime = plivo(0)
			e.DeliveryReportTime = plivo(ttd)
			e.Payload["DeliveryReportTime"] = e.DeliveryReportTime.String()
		}
		mustApply(t, s, e)
	}
	clock.Add(-2 * time.Hour)
	apply("old", StatusDelivered, "", 0, time.Hour)
	clock.Add(2 * time.Hour)
	for i := 1; i <= 10; i++ {
		uuid := fmt.Sprintf("ok%d", i)
		apply(uuid, StatusQueued, "", 1, 0)
		apply(uuid, StatusSent, "", 2, 0)
		apply(uuid, StatusDelivered, "000", 3, time.Duration(i)*time.Second)
	}
	apply("rd", StatusDelivered, "", 0, 30*time.Second)
	apply("rd", StatusRead, "", 0, 30*time.Second)
	apply("u1", StatusSent, "", 0, 0)
	apply("u1", StatusUndelivered, "30007", 0, 0)
	apply("u2", StatusUndelivered, "30007", 0, 0)
	apply("u3", StatusUndelivered, "30003", 0, time.Hour) // failure report time: not a time to deliver
	apply("f1", StatusFailed, "40001", 0, 0)
	apply("r1", StatusRejected, "", 0, 0)
	apply("s1", StatusSent, "", 0, 0)
	apply("s2", StatusQueued, "", 0, 0)
	apply("s2", StatusSent, "", 0, 0)
	apply("q1", StatusQueued, "", 0, 0)
	clock.Add(90 * time.Minute) // later hour, same window

	check := func(t *testing.T, st Stats) {
		t.Helper()
		wantCounts := map[string]int64{StatusDelivered: 10, StatusRead: 1, StatusUndelivered: 3, StatusFailed: 1, StatusRejected: 1, StatusSent: 2, StatusQueued: 1}
		if fmt.Sprint(st.Counts) != fmt.Sprint(wantCounts) || st.Total != 19 {
			t.Errorf("counts = %v total %d, want %v total 19", st.Counts, st.Total, wantCounts)
		}
		if want := 11.0 / 16.0; math.Abs(st.DeliveryRate-want) > 1e-9 {
			t.Errorf("delivery rate = %v, want %v", st.DeliveryRate, want)
		}
		// 11 samples: 1..10s and 30s. Exact p50 = 6s, p90 = 10s; the
		// histogram is within one √2 bucket.
		within := func(got, want time.Duration) bool {
			r := float64(got) / float64(want)
			return r > 1/math.Sqrt2 && r < math.Sqrt2
		}
		if !st.HaveTimeToDeliver || !within(st.P50ToDeliver, 6*time.Second) || !within(st.P90ToDeliver, 10*time.Second) {
			t.Errorf("ttd p50 = %s p90 = %s (have %v), want ≈6s and ≈10s", st.P50ToDeliver, st.P90ToDeliver, st.HaveTimeToDeliver)
		}
		wantTop := "[{30007 2} {30003 1} {40001 1}]"
		if fmt.Sprint(st.TopErrorCodes) != wantTop {
			t.Errorf("top error codes = %v, want %v", st.TopErrorCodes, wantTop)
		}
	}
	st, err := s.Stats(t0.Add(-30 * time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	check(t, st)
	s = reopen(t, s, Options{Now: clock.Now})
	st, err = s.Stats(t0.Add(-30 * time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("after reopen", func(t *testing.T) { check(t, st) })

	all, _ := s.Stats(time.Time{})
	if all.Total != 20 || all.Counts[StatusDelivered] != 11 {
		t.Errorf("all-time total = %d delivered = %d, want 20 and 11", all.Total, all.Counts[StatusDelivered])
	}
	future, _ := s.Stats(clock.Now().Add(2 * time.Hour))
	if future.Total != 0 || future.DeliveryRate != 0 || future.HaveTimeToDeliver || len(future.TopErrorCodes) != 0 {
		t.Errorf("empty window = %+v, want zeros", future)
	}
}
