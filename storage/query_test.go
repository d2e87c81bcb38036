package storage

import (
	"errors"
	"fmt"
	"plivo-dlr/internal/testsupport"
	"reflect"
	"strings"
	"testing"
	"time"
)

// listFixture stores 30 messages first seen one minute apart (m00 oldest),
// with statuses cycling queued/sent/delivered/undelivered/failed.
func listFixture(t *testing.T) (*Store, *testsupport.Clock) {
	t.Helper()
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now})
	statuses := []string{StatusQueued, StatusSent, StatusDelivered, StatusUndelivered, StatusFailed}
	for i := range 30 {
		e := ev(fmt.Sprintf("%02x%02xabcd-0000-4000-8000-%012d", i, i, i), statuses[i%5], 0,
			"To", fmt.Sprintf("+1 415-555-%04d", i), "From", "+44 20 7946 0000")
		e.ReceivedAt = clock.Now()
		mustApply(t, s, e)
		clock.Add(time.Minute)
	}
	return s, clock
}

func uuidIndex(m Message) int {
	var i int
	fmt.Sscanf(m.MessageUUID[:2], "%02x", &i)
	return i
}

func indexes(msgs []Message) []int {
	out := []int{}
	for _, m := range msgs {
		out = append(out, uuidIndex(m))
	}
	return out
}

func TestListMessagesFilters(t *testing.T) {
	s, clock := listFixture(t)
	t0 := newTestClock().Now()
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	_ = clock
	tests := []struct {
		name string
		f    ListFilter
		want []int
	}{
		{"newest first, limit", ListFilter{Limit: 4}, []int{29, 28, 27, 26}},
		{"status", ListFilter{Status: StatusDelivered}, []int{27, 22, 17, 12, 7, 2}},
		{"pending", ListFilter{Status: StatusPending, Limit: 5}, []int{26, 25, 21, 20, 16}},
		{"uuid prefix", ListFilter{Query: "0707"}, []int{7}},
		{"uuid prefix with letters", ListFilter{Query: "0a0aab"}, []int{10}},
		{"uuid prefix uppercase", ListFilter{Query: "0A0AABCD-0000"}, []int{10}},
		{"phone substring ignores separators", ListFilter{Query: "+1 (415) 555-0012"}, []int{12}},
		{"phone digits", ListFilter{Query: "5550011"}, []int{11}},
		{"phone of sender matches all", ListFilter{Query: "442079460000", Limit: 3}, []int{29, 28, 27}},
		{"no match", ListFilter{Query: "99999999"}, []int{}},
		{"since inclusive until exclusive", ListFilter{Since: at(3), Until: at(6)}, []int{5, 4, 3}},
		{"older than", ListFilter{OlderThan: 25 * time.Minute}, []int{4, 3, 2, 1, 0}},
		{"stuck pending", ListFilter{Status: StatusPending, OlderThan: 20 * time.Minute}, []int{6, 5, 1, 0}},
		{"status and since", ListFilter{Status: StatusFailed, Since: at(20)}, []int{29, 24}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msgs, next, err := s.ListMessages(tc.f)
			if err != nil {
				t.Fatalf("ListMessages: %v", err)
			}
			if got := indexes(msgs); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("messages = %v, want %v", got, tc.want)
			}
			if tc.f.Limit == 0 && next != "" {
				t.Errorf("next cursor = %q, want \"\" at the end", next)
			}
		})
	}
}

func TestListMessagesPagination(t *testing.T) {
	s, _ := listFixture(t)
	for _, f := range []ListFilter{
		{Limit: 7},
		{Limit: 1},
		{Limit: 30},
		{Limit: 4, Status: StatusPending},
		{Limit: 2, Query: "415555"},
		{Limit: 3, Query: "abcd-0000"},
	} {
		t.Run(fmt.Sprintf("%+v", f), func(t *testing.T) {
			all := f
			all.Limit = 1000
			want, _, err := s.ListMessages(all)
			if err != nil {
				t.Fatal(err)
			}
			var got []Message
			for pages := 0; ; pages++ {
				if pages > 40 {
					t.Fatal("pagination does not end")
				}
				msgs, next, err := s.ListMessages(f)
				if err != nil {
					t.Fatalf("page %d: %v", pages, err)
				}
				if len(msgs) > f.Limit {
					t.Fatalf("page %d has %d messages, want at most %d", pages, len(msgs), f.Limit)
				}
				got = append(got, msgs...)
				if next == "" {
					break
				}
				if len(msgs) != f.Limit {
					t.Errorf("page %d: %d messages with a next cursor, want a full page of %d", pages, len(msgs), f.Limit)
				}
				f.Cursor = next
			}
			if fmt.Sprint(indexes(got)) != fmt.Sprint(indexes(want)) {
				t.Errorf("paged = %v, want %v", indexes(got), indexes(want))
			}
		})
	}
}

func TestListMessagesBadCursor(t *testing.T) {
	s, _ := listFixture(t)
	for _, c := range []string{"!!!", "AQ", "AgAAAAAAAAAAAA", strings.Repeat("x", 3)} {
		_, _, err := s.ListMessages(ListFilter{Cursor: c})
		if !errors.Is(err, ErrBadCursor) {
			t.Errorf("cursor %q: error = %v, want ErrBadCursor", c, err)
		}
	}
}

func TestListMessagesTies(t *testing.T) {
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now})
	for _, u := range []string{"b", "a", "c", "d"} {
		mustApply(t, s, ev(u, StatusQueued, 0))
	}
	var got []string
	f := ListFilter{Limit: 1}
	for {
		msgs, next, err := s.ListMessages(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			got = append(got, m.MessageUUID)
		}
		if next == "" {
			break
		}
		f.Cursor = next
	}
	if fmt.Sprint(got) != "[d c b a]" {
		t.Errorf("same FirstSeen order = %v, want [d c b a]", got)
	}
}

// A late event with an earlier ReceivedAt (a reconciliation lookup) moves
// FirstSeen back: the time index and the stats hour must follow.
func TestFirstSeenMovesEarlier(t *testing.T) {
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now})
	t0 := clock.Now()
	mustApply(t, s, ev("early", StatusQueued, 0))
	clock.Add(3 * time.Hour)
	mustApply(t, s, ev("other", StatusQueued, 0))
	e := ev("early", StatusDelivered, 0)
	e.Source = SourceReconcile
	e.ReceivedAt = t0.Add(-2 * time.Hour)
	mustApply(t, s, e)

	msgs, _, err := s.ListMessages(ListFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range msgs {
		got = append(got, m.MessageUUID)
	}
	if fmt.Sprint(got) != "[other early]" {
		t.Errorf("list = %v, want [other early] (no stale index entry)", got)
	}
	st, err := s.Stats(t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if st.Total != 1 || st.Counts[StatusQueued] != 1 {
		t.Errorf("stats since t0-1h = %+v, want only the other message", st)
	}
	st, _ = s.Stats(t0.Add(-3 * time.Hour))
	if st.Total != 2 || st.Counts[StatusDelivered] != 1 {
		t.Errorf("stats since t0-3h = %+v, want both messages, one delivered", st)
	}
}

func TestMessageStates(t *testing.T) {
	s := mustOpenStore(t, Options{NoSync: true})
	mustApply(t, s, ev("a", StatusQueued, 1))
	mustApply(t, s, ev("a", StatusDelivered, 3))
	mustApply(t, s, ev("b", StatusSent, 2))
	states, err := s.MessageStates([]string{"a", "missing", "b", "a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 2 {
		t.Fatalf("MessageStates = %d states %v, want a and b only", len(states), states)
	}
	for _, u := range []string{"a", "b"} {
		want, _ := mustGet(t, s, u)
		if got := states[u]; !reflect.DeepEqual(got, want) {
			t.Errorf("state of %s = %+v, want GetMessage's %+v", u, got, want)
		}
	}
	if states["a"].Status != StatusDelivered || states["a"].EventCount != 2 {
		t.Errorf("state of a = %+v, want delivered after 2 events", states["a"])
	}
}
