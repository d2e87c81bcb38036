package storage

import (
	"context"
	"errors"
	"testing"
	"time"
)

// inboundEv builds an inbound message event the way the app parses one.
func inboundEv(uuid, from, to, text, intent string) Event {
	p := map[string]string{"MessageUUID": uuid, "From": from, "To": to, "Text": text, "Type": "sms"}
	if intent != "" {
		p["MessageIntent"] = intent
	}
	return Event{
		MessageUUID: uuid, Status: StatusReceived, Source: SourceInbound, Payload: p,
		Details: Details{From: from, To: to, Type: "sms"},
		Content: Content{Text: text},
	}
}

func TestInboundMessageState(t *testing.T) {
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now})
	mustApply(t, s, ev("00000000-0000-1000-8000-000000000001", StatusQueued, 0))
	res := mustApply(t, s, inboundEv("00000000-0000-1000-8000-000000000002", "14155550123", "14155550199", "STOP", "OptOut"))
	if !res.OptOutChanged {
		t.Errorf("STOP: OptOutChanged = false, want true")
	}
	m, evs := mustGet(t, s, "00000000-0000-1000-8000-000000000002")
	if m.Direction != DirectionInbound || m.Intent != IntentOptOut || m.Status != StatusReceived || m.Text != "STOP" {
		t.Errorf("inbound message = direction %q intent %q status %q text %q, want inbound optout received STOP", m.Direction, m.Intent, m.Status, m.Text)
	}
	if len(evs) != 1 || evs[0].Source != SourceInbound {
		t.Errorf("events = %+v, want one inbound event", evs)
	}
	out, _ := mustGet(t, s, "00000000-0000-1000-8000-000000000001")
	if out.Direction != DirectionOutbound || out.Intent != "" {
		t.Errorf("outbound message: direction %q intent %q", out.Direction, out.Intent)
	}
	// Not pending: an inbound message waits for no report.
	counts, err := s.PendingByAge(clock.Now(), nil)
	if err != nil || counts[0] != 1 {
		t.Errorf("PendingByAge = %v, %v; want [1] (the queued one only)", counts, err)
	}
	pending, _, err := s.ListMessages(ListFilter{Status: StatusPending})
	if err != nil || len(pending) != 1 || pending[0].Direction != DirectionOutbound {
		t.Errorf("pending listing = %+v, %v; want the outbound one", pending, err)
	}

	for _, tc := range []struct {
		f    ListFilter
		want []string
	}{
		{ListFilter{Direction: DirectionInbound}, []string{"00000000-0000-1000-8000-000000000002"}},
		{ListFilter{Direction: DirectionOutbound}, []string{"00000000-0000-1000-8000-000000000001"}},
		{ListFilter{}, []string{"00000000-0000-1000-8000-000000000002", "00000000-0000-1000-8000-000000000001"}},
		// Exact number, either side, '+' ignored: the fixture's To is
		// +14155550100, the inbound's From 14155550123.
		{ListFilter{Number: "+14155550123"}, []string{"00000000-0000-1000-8000-000000000002"}},
		{ListFilter{Number: "14155550100"}, []string{"00000000-0000-1000-8000-000000000001"}},
		{ListFilter{Number: "1415555012"}, nil}, // a prefix is not the number
	} {
		got, _, err := s.ListMessages(tc.f)
		if err != nil {
			t.Fatalf("ListMessages(%+v): %v", tc.f, err)
		}
		var ids []string
		for _, m := range got {
			ids = append(ids, m.MessageUUID)
		}
		if len(ids) != len(tc.want) || (len(ids) > 0 && (ids[0] != tc.want[0] || ids[len(ids)-1] != tc.want[len(tc.want)-1])) {
			t.Errorf("ListMessages(%+v) = %v, want %v", tc.f, ids, tc.want)
		}
	}
}

// A record written before the direction fields existed decodes as
// outbound: the codec reads the fields a record declares.
func TestMessageRecordWithoutDirection(t *testing.T) {
	m := Message{MessageUUID: "u", Status: StatusDelivered}
	b := encodeMessage(nil, &m, nil)
	// The two trailing fields are empty strings, one byte each: drop them
	// and the count, as the previous encoder wrote.
	old := append([]byte(nil), b[:len(b)-2]...)
	old[1] -= 2
	var got Message
	if err := decodeMessage(old, &got, nil); err != nil {
		t.Fatalf("decode old record: %v", err)
	}
	if got.Direction.String() != "outbound" || got.Status != StatusDelivered {
		t.Errorf("old record = direction %q status %q, want outbound delivered", got.Direction, got.Status)
	}
	m.Direction, m.Intent = DirectionInbound, IntentHelp
	if err := decodeMessage(encodeMessage(nil, &m, nil), &got, nil); err != nil || got.Inbound != m.Inbound {
		t.Errorf("round trip = %+v, %v; want %+v", got.Inbound, err, m.Inbound)
	}
}

func optOutNumbers(t *testing.T, s *Store) map[string]OptOut {
	t.Helper()
	list, err := s.OptOuts()
	if err != nil {
		t.Fatalf("OptOuts: %v", err)
	}
	got := map[string]OptOut{}
	for _, o := range list {
		got[o.Number] = o
	}
	return got
}

func TestOptOutList(t *testing.T) {
	clock := newTestClock()
	s := mustOpenStore(t, Options{Now: clock.Now})
	ctx := context.Background()

	stop := inboundEv("00000000-0000-1000-8000-000000000010", "14155550123", "14155550199", "STOP", "optout")
	mustApply(t, s, stop)
	got := optOutNumbers(t, s)
	o, ok := got["+14155550123"]
	if !ok || o.Source != OptOutSourceInbound || o.To != "+14155550199" || o.MessageUUID != stop.MessageUUID || !o.Since.Equal(clock.Now()) {
		t.Fatalf("after STOP: %+v, want +14155550123 from optout to +14155550199 since %v", got, clock.Now())
	}
	if _, err := s.OptedOut("+1 415 555 0123"); err != nil {
		t.Errorf("OptedOut(formatted) = %v, want listed", err)
	}
	// HELP changes nothing; a retried STOP is a duplicate.
	mustApply(t, s, inboundEv("00000000-0000-1000-8000-000000000011", "14155550123", "14155550199", "HELP", "help"))
	if res := mustApply(t, s, stop); !res.Duplicate || res.OptOutChanged {
		t.Errorf("retried STOP: %+v, want a duplicate that changes nothing", res)
	}
	clock.Add(time.Minute)
	if res := mustApply(t, s, inboundEv("00000000-0000-1000-8000-000000000012", "14155550123", "14155550199", "START", "optin")); !res.OptOutChanged {
		t.Errorf("START: OptOutChanged = false")
	}
	if _, err := s.OptedOut("14155550123"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after START: OptedOut = %v, want ErrNotFound", err)
	}

	// Error 200 on a failed report lists the destination; on a delivered
	// one, or another code, nothing.
	mustApply(t, s, ev("00000000-0000-1000-8000-000000000020", StatusDelivered, 0, "To", "14155550301", "ErrorCode", "200"))
	mustApply(t, s, ev("00000000-0000-1000-8000-000000000021", StatusUndelivered, 0, "To", "14155550302", "ErrorCode", "30"))
	mustApply(t, s, ev("00000000-0000-1000-8000-000000000022", StatusUndelivered, 0, "To", "14155550303", "ErrorCode", "200"))
	got = optOutNumbers(t, s)
	if len(got) != 1 || got["+14155550303"].Source != OptOutSourceError200 || got["+14155550303"].To != "+14155550199" {
		t.Errorf("after reports: %+v, want only +14155550303 from error_200", got)
	}

	// API: add (once), remove, remove again.
	if added, err := s.AddOptOut(ctx, OptOut{Number: "+14155550400"}); err != nil || !added {
		t.Errorf("AddOptOut = %v, %v; want added", added, err)
	}
	if added, err := s.AddOptOut(ctx, OptOut{Number: "14155550400"}); err != nil || added {
		t.Errorf("AddOptOut again = %v, %v; want not added", added, err)
	}
	if n, err := s.OptOutCount(); err != nil || n != 2 {
		t.Errorf("OptOutCount = %d, %v; want 2", n, err)
	}
	if err := s.RemoveOptOut(ctx, "+14155550303"); err != nil {
		t.Errorf("RemoveOptOut: %v", err)
	}
	if err := s.RemoveOptOut(ctx, "+14155550303"); !errors.Is(err, ErrNotFound) {
		t.Errorf("RemoveOptOut again = %v, want ErrNotFound", err)
	}

	// Survives a restart, and retention deleting every message.
	s = reopen(t, s, Options{Now: clock.Now})
	clock.Add(400 * 24 * time.Hour)
	res, err := s.Sweep(ctx, RetentionPolicy{EventsBefore: clock.Now(), MessagesBefore: clock.Now()})
	if err != nil || res.Messages == 0 {
		t.Fatalf("Sweep = %+v, %v; want messages deleted", res, err)
	}
	got = optOutNumbers(t, s)
	if len(got) != 1 || got["+14155550400"].Source != OptOutSourceAPI {
		t.Errorf("after restart and retention: %+v, want +14155550400 from api", got)
	}
}
