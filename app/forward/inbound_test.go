package forward

import (
	"context"
	"encoding/json"
	"net/url"
	"path/filepath"
	"testing"

	"plivo-dlr/app/protocol"
	"plivo-dlr/storage"
)

// An inbound message, as the callback path parses and stores it, is fed as
// message.inbound to <prefix>.inbound, with the message's direction and
// text in the payload.
func TestInboundEventForwardedAsInbound(t *testing.T) {
	params, _ := url.ParseQuery("MessageUUID=2d55b4f0-b0c6-11ef-a7a3-0242ac110003&From=14155550123&To=14155550199&Text=STOP&Type=sms&MessageIntent=optout")
	ev, err := protocol.ParsePosted(params)
	if err != nil {
		t.Fatal(err)
	}
	store, err := storage.Open(filepath.Join(t.TempDir(), "f.db"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	res, err := store.Apply(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	events, err := store.EventsAfter(0, 10)
	if err != nil || len(events) != 1 {
		t.Fatalf("EventsAfter = %d events, %v", len(events), err)
	}
	stored := events[0]
	if got := TypeOf(&stored); got != TypeInbound {
		t.Errorf("TypeOf(stored inbound) = %q, want %q", got, TypeInbound)
	}
	n, err := NewNATS(NATSOptions{URL: "nats://127.0.0.1:4222", Stream: "S", SubjectPrefix: "plivo.dlr"})
	if err != nil {
		t.Fatal(err)
	}
	if got := n.Subject(&Delivery{Type: TypeOf(&stored), Event: &stored}); got != "plivo.dlr.inbound" {
		t.Errorf("subject = %q, want plivo.dlr.inbound", got)
	}
	body, err := BuildPayload(&stored, &res.Message)
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Type string `json:"type"`
		Data struct {
			Event   map[string]any `json:"event"`
			Message map[string]any `json:"message"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Type != TypeInbound || p.Data.Event["source"] != "inbound" || p.Data.Message["direction"] != "inbound" ||
		p.Data.Message["text"] != "STOP" || p.Data.Message["intent"] != "optout" {
		t.Errorf("payload = %s", body)
	}
	// A status report stays message.status.
	st, _ := protocol.ParsePosted(url.Values{"MessageUUID": {"u"}, "Status": {"delivered"}})
	if got := TypeOf(&st); got != TypeStatus {
		t.Errorf("TypeOf(report) = %q", got)
	}
}
