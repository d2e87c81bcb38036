package storage

import (
	"strconv"
	"strings"
)

// Inbound messages: what people send to one of our numbers. Plivo posts them
// to the application's message URL; each is stored as a message with one
// event (SourceInbound, StatusReceived), so the listing, stream, export and
// forwarding see them like any other message.
const (
	// SourceInbound is the source of an inbound message's event.
	SourceInbound = "inbound"
	// StatusReceived is the status of an inbound message. It ranks 0 and is
	// never a delivery outcome: inbound messages are kept out of the
	// delivery rate and out of the pending index (there is no report to
	// wait for).
	StatusReceived = "received"

	DirectionOutbound Direction = "outbound"
	DirectionInbound  Direction = "inbound"
)

// Direction says who sent a message: we (outbound) or someone to one of
// our numbers (inbound). The zero value, which records written before
// inbound messages existed decode to, is outbound.
type Direction string

// String returns the direction, outbound for the zero value.
func (d Direction) String() string {
	if d == "" {
		return string(DirectionOutbound)
	}
	return string(d)
}

// MarshalJSON writes String(): a message's JSON always names its direction.
func (d Direction) MarshalJSON() ([]byte, error) {
	return strconv.AppendQuote(nil, d.String()), nil
}

// Plivo's MessageIntent values on inbound messages (Intent of a message).
const (
	IntentOptOut = "optout"
	IntentOptIn  = "optin"
	IntentHelp   = "help"
)

// Inbound holds the fields a message has because of its direction. Its
// fields come last in a message's JSON and last in the record (encode.go),
// so records written before them decode as outbound with no intent.
type Inbound struct {
	// Direction is DirectionInbound or DirectionOutbound.
	Direction Direction `json:"direction"`
	// Intent is Plivo's MessageIntent of an inbound message (optout, optin,
	// help, or "").
	Intent string `json:"intent,omitempty"`
}

// IntentOf reads Plivo's MessageIntent from an inbound event's payload,
// lowercased; anything but the three documented values reads as "". The
// payload is the only place the intent is stored for an event, so a fold of
// events read back from the log finds it too.
func IntentOf(payload map[string]string) string {
	switch v := strings.ToLower(strings.TrimSpace(payload["MessageIntent"])); v {
	case IntentOptOut, IntentOptIn, IntentHelp:
		return v
	}
	return ""
}

// fold sets the direction fields from ev (called by Message.Fold).
func (in *Inbound) fold(ev *Event) {
	if ev.Source == SourceInbound {
		in.Direction = DirectionInbound
		in.Intent = IntentOf(ev.Payload)
		return
	}
	if in.Direction == "" {
		in.Direction = DirectionOutbound
	}
}

// awaitsReport reports whether a message with status still waits for a
// delivery report: the pending index and its count hold exactly these.
func awaitsReport(status string) bool {
	return !IsTerminal(status) && status != StatusReceived
}
