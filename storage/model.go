package storage

import (
	"errors"
	"time"
)

// Sentinel errors callers branch on.
var (
	// ErrNotFound means the requested message does not exist.
	ErrNotFound = errors.New("not found")
	// ErrReplayed means the callback's nonce was already used within its lifetime.
	ErrReplayed = errors.New("nonce already used")
	// ErrClosed means the store has been closed.
	ErrClosed = errors.New("store closed")
)

// Sources of an event.
const (
	SourceCallback  = "callback"
	SourceSend      = "send"
	SourceReconcile = "reconcile"
)

// Plivo message statuses we rank. Any other value is stored as received.
const (
	StatusQueued      = "queued"
	StatusSent        = "sent"
	StatusDelivered   = "delivered"
	StatusUndelivered = "undelivered"
	StatusFailed      = "failed"
	StatusRejected    = "rejected"
	StatusRead        = "read"
)

// StatusRank orders statuses by how far a message has progressed. A status of
// lower rank never replaces a current status of higher rank, whatever order
// the callbacks arrive in. Unknown statuses rank 0: they are kept in the
// history but only become the current status of a message that has no other.
func StatusRank(status string) int {
	switch status {
	case StatusQueued:
		return 1
	case StatusSent:
		return 2
	case StatusDelivered, StatusUndelivered, StatusFailed, StatusRejected:
		return 3
	case StatusRead: // WhatsApp: read comes after delivered.
		return 4
	}
	return 0
}

// IsTerminal reports whether status is final for delivery purposes.
func IsTerminal(status string) bool { return StatusRank(status) >= 3 }

// Details are the descriptive fields an event reports about its message and
// Message.Fold merges into the message state. Empty means unknown. The field
// order is the JSON order of a message (DESIGN.md) and the record order of
// the codec (encode.go).
type Details struct {
	From               string     `json:"from"`
	To                 string     `json:"to"`
	Type               string     `json:"type"`
	Units              int        `json:"units"`
	TotalRate          string     `json:"total_rate"`
	TotalAmount        string     `json:"total_amount"`
	MCC                string     `json:"mcc"`
	MNC                string     `json:"mnc"`
	ParentMessageUUID  string     `json:"parent_message_uuid"`
	PartInfo           string     `json:"part_info"`
	MessageTime        *time.Time `json:"message_time"`
	QueuedTime         *time.Time `json:"queued_time"`
	SentTime           *time.Time `json:"sent_time"`
	DeliveryReportTime *time.Time `json:"delivery_report_time"`
}

// Content is what a message says, known from our own send (SourceSend
// events). It is a struct of its own, apart from Details, because a
// message's JSON lists it last, after the message's own counters.
type Content struct {
	Text      string   `json:"text,omitempty"`
	MediaURLs []string `json:"media_urls,omitempty"`
}

// merge fills d from ev: a known value of ev overwrites d's when won (ev
// set the current status), and otherwise only fills what d lacks.
func (d *Details) merge(ev *Details, won bool) {
	setStr := func(dst *string, v string) {
		if v != "" && (won || *dst == "") {
			*dst = v
		}
	}
	setTime := func(dst **time.Time, v *time.Time) {
		if v != nil && (won || *dst == nil) {
			t := *v
			*dst = &t
		}
	}
	setStr(&d.From, ev.From)
	setStr(&d.To, ev.To)
	setStr(&d.Type, ev.Type)
	if ev.Units != 0 && (won || d.Units == 0) {
		d.Units = ev.Units
	}
	setStr(&d.TotalRate, ev.TotalRate)
	setStr(&d.TotalAmount, ev.TotalAmount)
	setStr(&d.MCC, ev.MCC)
	setStr(&d.MNC, ev.MNC)
	setStr(&d.ParentMessageUUID, ev.ParentMessageUUID)
	setStr(&d.PartInfo, ev.PartInfo)
	setTime(&d.MessageTime, ev.MessageTime)
	setTime(&d.QueuedTime, ev.QueuedTime)
	setTime(&d.SentTime, ev.SentTime)
	setTime(&d.DeliveryReportTime, ev.DeliveryReportTime)
}

// times lists the timestamps of d, for code that treats them alike.
func (d *Details) times() [4]**time.Time {
	return [...]**time.Time{&d.MessageTime, &d.QueuedTime, &d.SentTime, &d.DeliveryReportTime}
}

// Event is one status report about one message: a Plivo callback, the record
// of our own send, or a reconciliation lookup.
type Event struct {
	// Cursor is the event's position in the global log, assigned by the store.
	Cursor      uint64 `json:"cursor"`
	MessageUUID string `json:"message_uuid"`
	Status      string `json:"status"`
	ErrorCode   string `json:"error_code"`
	// Sequence is Plivo's per-message ordering number; 0 when absent.
	Sequence   int64     `json:"sequence"`
	ReceivedAt time.Time `json:"received_at"`
	Source     string    `json:"source"`
	// Payload holds every field as received (first value of repeated keys).
	Payload map[string]string `json:"payload"`

	// Details and Content are folded into the message state; they are not
	// part of an event's JSON (the payload carries what was received).
	Details `json:"-"`
	Content `json:"-"`
}

// Validate checks the invariants every stored event must satisfy.
func (e *Event) Validate() error {
	if e.MessageUUID == "" {
		return errors.New("missing MessageUUID")
	}
	if len(e.MessageUUID) > 128 {
		return errors.New("MessageUUID longer than 128 bytes")
	}
	if e.Status == "" {
		return errors.New("missing Status")
	}
	return nil
}

// Message is the current state of one message, folded from all its events.
type Message struct {
	MessageUUID string `json:"message_uuid"`
	Status      string `json:"status"`
	ErrorCode   string `json:"error_code"`
	Details
	FirstSeen  time.Time `json:"first_seen"`
	LastSeen   time.Time `json:"last_seen"`
	EventCount int       `json:"event_count"`
	Content
	Inbound

	// Sequence of the event that set Status; used to order same-rank events.
	StatusSequence int64 `json:"-"`
}

// Fold applies ev to the message state m and reports whether ev became the
// current status. A message with no status yet takes ev's status. Otherwise
// ev wins when its status ranks higher, or ranks the same and carries a higher
// Plivo Sequence (or, lacking sequences on either side, simply arrived later).
// Descriptive fields are filled from every event but only overwritten by the
// winning one, so a late "sent" still contributes its SentTime.
func (m *Message) Fold(ev *Event) (won bool) {
	if m.MessageUUID == "" {
		m.MessageUUID = ev.MessageUUID
		m.FirstSeen = ev.ReceivedAt
	}
	if ev.ReceivedAt.After(m.LastSeen) {
		m.LastSeen = ev.ReceivedAt
	}
	if ev.ReceivedAt.Before(m.FirstSeen) {
		m.FirstSeen = ev.ReceivedAt
	}
	m.EventCount++

	won = m.Status == "" || beats(ev, m)
	if won {
		m.Status = ev.Status
		m.ErrorCode = ev.ErrorCode
		m.StatusSequence = ev.Sequence
	}
	m.Details.merge(&ev.Details, won)
	if ev.Text != "" {
		m.Text = ev.Text
	}
	if len(ev.MediaURLs) > 0 {
		m.MediaURLs = append([]string(nil), ev.MediaURLs...)
	}
	m.Inbound.fold(ev)
	return won
}

// beats reports whether ev should replace m's current status.
func beats(ev *Event, m *Message) bool {
	newRank, curRank := StatusRank(ev.Status), StatusRank(m.Status)
	if newRank != curRank {
		return newRank > curRank
	}
	if ev.Sequence != 0 && m.StatusSequence != 0 {
		return ev.Sequence > m.StatusSequence
	}
	// Same rank and no sequences to compare: a different status that arrives
	// later wins (delivered, then undelivered); a repeat of the current status
	// only wins when it adds an error code the current state lacks.
	return ev.Status != m.Status || ev.ErrorCode != "" && m.ErrorCode == ""
}

// TimeToDeliver returns the delay Plivo reports between queueing and the
// delivery report, or false when either timestamp is unknown or inconsistent.
func (m *Message) TimeToDeliver() (time.Duration, bool) {
	if m.QueuedTime == nil || m.DeliveryReportTime == nil {
		return 0, false
	}
	d := m.DeliveryReportTime.Sub(*m.QueuedTime)
	if d < 0 {
		return 0, false
	}
	return d, true
}
