// Package forward delivers every stored event, durably and in order, to the
// team's own systems: Standard Webhooks endpoints and NATS JetStream.
//
// The store's event log is the outbox. Each sink reads it from disk in pages
// after its delivered-through cursor (kept in the store's meta), so a sink
// that is a day behind costs a bounded window of memory, and ingestion never
// waits for a sink: the store only wakes the forwarder after a commit. The
// cursor advances only past events the sink confirmed (or dead-lettered), so
// a restart redelivers at least once, with the same content-derived id.
// The package needs no HTTP server; app wires its routes and metrics.
package forward

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"plivo-dlr/storage"
)

// Event types, the payload's "type" and the sinks' types filter.
const (
	TypeStatus  = "message.status"
	TypeInbound = "message.inbound"
)

// TypeOf is the feed type of a stored event.
func TypeOf(ev *storage.Event) string {
	if ev.Source == "inbound" || ev.Status == "received" {
		return TypeInbound
	}
	return TypeStatus
}

// EventID is the content-derived id of an event, the same on every instance
// that stored the same Plivo callback: "evt_" + the first 16 bytes, hex, of
// SHA-256 over "MessageUUID\nstatus\nSequence\n" (Sequence empty when absent)
// and "key=value\n" for every payload field in byte order of the keys.
func EventID(ev *storage.Event) string {
	h := sha256.New()
	seq := ""
	if ev.Sequence != 0 {
		seq = strconv.FormatInt(ev.Sequence, 10)
	}
	fmt.Fprintf(h, "%s\n%s\n%s\n", ev.MessageUUID, ev.Status, seq)
	keys := make([]string, 0, len(ev.Payload))
	for k := range ev.Payload {
		keys = append(keys, k)
	}
	slices.Sort(keys) // Go compares strings bytewise
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{'='})
		h.Write([]byte(ev.Payload[k]))
		h.Write([]byte{'\n'})
	}
	sum := h.Sum(nil)
	return "evt_" + hex.EncodeToString(sum[:16])
}

// Payload is the JSON body both sinks deliver.
type Payload struct {
	Type      string      `json:"type"`
	Timestamp string      `json:"timestamp"`
	Data      PayloadData `json:"data"`
}

// PayloadData is Payload.data.
type PayloadData struct {
	ID      string          `json:"id"`
	Cursor  uint64          `json:"cursor"`
	Event   storage.Event   `json:"event"`
	Message storage.Message `json:"message"`
}

// BuildPayload encodes the body for ev and msg, the message's state right
// after ev.
func BuildPayload(ev *storage.Event, msg *storage.Message) ([]byte, error) {
	p := Payload{
		Type:      TypeOf(ev),
		Timestamp: ev.ReceivedAt.UTC().Format(time.RFC3339Nano),
		Data:      PayloadData{ID: EventID(ev), Cursor: ev.Cursor, Event: *ev, Message: *msg},
	}
	if p.Data.Event.Payload == nil {
		p.Data.Event.Payload = map[string]string{}
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode payload of event %d: %w", ev.Cursor, err)
	}
	return b, nil
}

// messageAt returns the event at cursor and its message's state right after
// it: the stored state when it is the message's newest event, otherwise the
// fold of the message's events up to it (events removed by retention are
// missing from that fold).
func messageAt(store *storage.Store, uuid string, cursor uint64) (storage.Event, storage.Message, error) {
	// Usually the event is the message's newest: one page of one event,
	// whatever the length of the history.
	page, err := store.GetMessagePage(uuid, storage.EventPage{Limit: 1, Desc: true})
	if err != nil {
		return storage.Event{}, storage.Message{}, err
	}
	if len(page.Events) == 1 && page.Events[0].Cursor == cursor {
		return page.Events[0], page.Message, nil
	}
	msg, events, err := store.GetMessage(uuid)
	if err != nil {
		return storage.Event{}, storage.Message{}, err
	}
	i := slices.IndexFunc(events, func(e storage.Event) bool { return e.Cursor == cursor })
	if i < 0 {
		return storage.Event{}, storage.Message{}, fmt.Errorf("event %d of %s: %w", cursor, uuid, storage.ErrNotFound)
	}
	if i == len(events)-1 {
		return events[i], msg, nil
	}
	var m storage.Message
	for j := 0; j <= i; j++ {
		m.Fold(&events[j])
	}
	// Fields only the stored state knows (the send's text survives retention).
	if m.Text == "" {
		m.Text = msg.Text
	}
	if len(m.MediaURLs) == 0 {
		m.MediaURLs = msg.MediaURLs
	}
	return events[i], m, nil
}
