package storage

import (
	"encoding/binary"
	"errors"
	"slices"
	"time"
)

// Values are stored in a compact binary encoding rather than JSON: the writer
// goroutine decodes and re-encodes one message per event while holding the
// only write transaction, so every microsecond there caps ingestion.
//
// Layout rules: a leading format byte, then fields in a fixed order.
// Strings are uvarint length + bytes, integers are (zigzag) varints, a time
// is a presence byte (0 = zero/nil) followed by varint Unix nanoseconds.
// Decoders reject truncated input instead of panicking.

const (
	messageFormat byte = 1
	eventFormat   byte = 1
)

var errCorrupt = errors.New("corrupt record")

// eventRef is one entry of a message's event index: the event's cursor in the
// global log and the content hash used to recognise identical retries.
type eventRef struct {
	cursor uint64
	hash   uint64
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	return binary.AppendVarint(b, t.UnixNano())
}

func appendTimePtr(b []byte, t *time.Time) []byte {
	if t == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	return binary.AppendVarint(b, t.UnixNano())
}

// reader decodes the encoding above; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errCorrupt
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) uint64() uint64 {
	if len(r.b) < 8 {
		r.fail()
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

// bytes returns a length-prefixed field aliasing the input.
func (r *reader) bytes() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string {
	v := r.bytes()
	if len(v) == 0 {
		return ""
	}
	return string(v)
}

func (r *reader) time() time.Time {
	if r.byte() == 0 {
		return time.Time{}
	}
	return time.Unix(0, r.varint()).UTC()
}

func (r *reader) timePtr() *time.Time {
	if r.byte() == 0 {
		return nil
	}
	t := time.Unix(0, r.varint()).UTC()
	return &t
}

// encodeMessage appends m and its event index to b. FirstSeen, LastSeen,
// Status, To and From come first so list filters can peek at them without
// decoding the whole record (see peekMessage).
func encodeMessage(b []byte, m *Message, refs []eventRef) []byte {
	b = append(b, messageFormat)
	b = appendTime(b, m.FirstSeen)
	b = appendTime(b, m.LastSeen)
	b = appendString(b, m.Status)
	b = appendString(b, m.To)
	b = appendString(b, m.From)
	b = appendString(b, m.MessageUUID)
	b = appendString(b, m.ErrorCode)
	b = appendString(b, m.Type)
	b = binary.AppendVarint(b, int64(m.Units))
	b = appendString(b, m.TotalRate)
	b = appendString(b, m.TotalAmount)
	b = appendString(b, m.MCC)
	b = appendString(b, m.MNC)
	b = appendString(b, m.ParentMessageUUID)
	b = appendString(b, m.PartInfo)
	b = appendTimePtr(b, m.MessageTime)
	b = appendTimePtr(b, m.QueuedTime)
	b = appendTimePtr(b, m.SentTime)
	b = appendTimePtr(b, m.DeliveryReportTime)
	b = binary.AppendVarint(b, int64(m.EventCount))
	b = appendString(b, m.Text)
	b = binary.AppendUvarint(b, uint64(len(m.MediaURLs)))
	for _, u := range m.MediaURLs {
		b = appendString(b, u)
	}
	b = binary.AppendVarint(b, m.StatusSequence)
	// The per-message event index lives inside the message record: a message
	// has a handful of events, and keeping their (cursor, hash) pairs here
	// means duplicate detection and history lookup cost no second
	// random-key bucket (each random key dirties a 4 KiB page per commit).
	b = binary.AppendUvarint(b, uint64(len(refs)))
	for _, r := range refs {
		b = binary.BigEndian.AppendUint64(b, r.cursor)
		b = binary.BigEndian.AppendUint64(b, r.hash)
	}
	return b
}

// decodeMessage decodes a record written by encodeMessage. The event index
// is appended to refs (which may be nil). Strings are copied, so the result
// outlives the transaction.
func decodeMessage(b []byte, m *Message, refs []eventRef) ([]eventRef, error) {
	r := reader{b: b}
	if r.byte() != messageFormat {
		return refs, errCorrupt
	}
	m.FirstSeen = r.time()
	m.LastSeen = r.time()
	m.Status = r.string()
	m.To = r.string()
	m.From = r.string()
	m.MessageUUID = r.string()
	m.ErrorCode = r.string()
	m.Type = r.string()
	m.Units = int(r.varint())
	m.TotalRate = r.string()
	m.TotalAmount = r.string()
	m.MCC = r.string()
	m.MNC = r.string()
	m.ParentMessageUUID = r.string()
	m.PartInfo = r.string()
	m.MessageTime = r.timePtr()
	m.QueuedTime = r.timePtr()
	m.SentTime = r.timePtr()
	m.DeliveryReportTime = r.timePtr()
	m.EventCount = int(r.varint())
	m.Text = r.string()
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		return refs, errCorrupt
	}
	m.MediaURLs = nil
	if n > 0 {
		m.MediaURLs = make([]string, n)
		for i := range m.MediaURLs {
			m.MediaURLs[i] = r.string()
		}
	}
	m.StatusSequence = r.varint()
	n = r.uvarint()
	if n > uint64(len(r.b))/16 {
		return refs, errCorrupt
	}
	refs = slices.Grow(refs, int(n))
	for range n {
		refs = append(refs, eventRef{cursor: r.uint64(), hash: r.uint64()})
	}
	return refs, r.err
}

// messagePeek holds the leading fields of an encoded message, aliasing the
// record's bytes: valid only inside the transaction.
type messagePeek struct {
	firstSeen, lastSeen int64 // Unix nanoseconds, 0 when unknown
	status, to, from    []byte
}

func peekMessage(b []byte) (messagePeek, error) {
	var p messagePeek
	r := reader{b: b}
	if r.byte() != messageFormat {
		return p, errCorrupt
	}
	if r.byte() != 0 {
		p.firstSeen = r.varint()
	}
	if r.byte() != 0 {
		p.lastSeen = r.varint()
	}
	p.status = r.bytes()
	p.to = r.bytes()
	p.from = r.bytes()
	return p, r.err
}

// encodeEvent appends ev to b. The cursor is not stored: it is the key.
// Payload keys are written in the given order (sorted by the caller).
func encodeEvent(b []byte, ev *Event, keys []string) []byte {
	b = append(b, eventFormat)
	b = appendString(b, ev.MessageUUID)
	b = appendString(b, ev.Status)
	b = appendString(b, ev.ErrorCode)
	b = binary.AppendVarint(b, ev.Sequence)
	b = appendTime(b, ev.ReceivedAt)
	b = appendString(b, ev.Source)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, ev.Payload[k])
	}
	b = appendString(b, ev.From)
	b = appendString(b, ev.To)
	b = appendString(b, ev.Type)
	b = binary.AppendVarint(b, int64(ev.Units))
	b = appendString(b, ev.TotalRate)
	b = appendString(b, ev.TotalAmount)
	b = appendString(b, ev.MCC)
	b = appendString(b, ev.MNC)
	b = appendString(b, ev.ParentMessageUUID)
	b = appendString(b, ev.PartInfo)
	b = appendTimePtr(b, ev.MessageTime)
	b = appendTimePtr(b, ev.QueuedTime)
	b = appendTimePtr(b, ev.SentTime)
	b = appendTimePtr(b, ev.DeliveryReportTime)
	b = appendString(b, ev.Text)
	b = binary.AppendUvarint(b, uint64(len(ev.MediaURLs)))
	for _, u := range ev.MediaURLs {
		b = appendString(b, u)
	}
	return b
}

// decodeEvent decodes a record written by encodeEvent, copying all strings.
func decodeEvent(cursor uint64, b []byte) (Event, error) {
	var ev Event
	r := reader{b: b}
	if r.byte() != eventFormat {
		return ev, errCorrupt
	}
	ev.Cursor = cursor
	ev.MessageUUID = r.string()
	ev.Status = r.string()
	ev.ErrorCode = r.string()
	ev.Sequence = r.varint()
	ev.ReceivedAt = r.time()
	ev.Source = r.string()
	n := r.uvarint()
	if n > uint64(len(r.b))/2 {
		return ev, errCorrupt
	}
	ev.Payload = make(map[string]string, n)
	for range n {
		k := r.string()
		ev.Payload[k] = r.string()
	}
	ev.From = r.string()
	ev.To = r.string()
	ev.Type = r.string()
	ev.Units = int(r.varint())
	ev.TotalRate = r.string()
	ev.TotalAmount = r.string()
	ev.MCC = r.string()
	ev.MNC = r.string()
	ev.ParentMessageUUID = r.string()
	ev.PartInfo = r.string()
	ev.MessageTime = r.timePtr()
	ev.QueuedTime = r.timePtr()
	ev.SentTime = r.timePtr()
	ev.DeliveryReportTime = r.timePtr()
	ev.Text = r.string()
	n = r.uvarint()
	if n > uint64(len(r.b)) {
		return ev, errCorrupt
	}
	if n > 0 {
		ev.MediaURLs = make([]string, n)
		for i := range ev.MediaURLs {
			ev.MediaURLs[i] = r.string()
		}
	}
	return ev, r.err
}

// Content hash: 64-bit FNV-1a over length-prefixed fields, stable across
// processes and versions (unlike hash/maphash), allocation-free.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

type hasher uint64

func (h *hasher) bytes(s string) {
	x := uint64(*h)
	n := uint64(len(s))
	for i := 0; i < 8; i++ {
		x ^= n & 0xff
		x *= fnvPrime
		n >>= 8
	}
	for i := 0; i < len(s); i++ {
		x ^= uint64(s[i])
		x *= fnvPrime
	}
	*h = hasher(x)
}

func (h *hasher) int(v int64) {
	x := uint64(*h)
	for i := 0; i < 8; i++ {
		x ^= uint64(v) & 0xff
		x *= fnvPrime
		v >>= 8
	}
	*h = hasher(x)
}

func (h *hasher) time(t *time.Time) {
	if t == nil {
		h.int(0)
		h.int(0)
		return
	}
	h.int(1)
	h.int(t.UnixNano())
}

// contentHash identifies an event by what it says, ignoring when it arrived:
// Plivo retries a callback with a new nonce but the same body, and such a
// retry must be stored once. keys are the payload keys, sorted.
func contentHash(ev *Event, keys []string) uint64 {
	h := hasher(fnvOffset)
	h.bytes(ev.Status)
	h.bytes(ev.ErrorCode)
	h.int(ev.Sequence)
	h.bytes(ev.Source)
	h.int(int64(len(keys)))
	for _, k := range keys {
		h.bytes(k)
		h.bytes(ev.Payload[k])
	}
	// The normalised fields come from the payload for callbacks, but events
	// built by the app (send, reconcile) may carry them without a payload.
	for _, s := range [...]string{ev.From, ev.To, ev.Type, ev.TotalRate, ev.TotalAmount, ev.MCC, ev.MNC, ev.ParentMessageUUID, ev.PartInfo, ev.Text} {
		h.bytes(s)
	}
	h.int(int64(ev.Units))
	h.time(ev.MessageTime)
	h.time(ev.QueuedTime)
	h.time(ev.SentTime)
	h.time(ev.DeliveryReportTime)
	h.int(int64(len(ev.MediaURLs)))
	for _, u := range ev.MediaURLs {
		h.bytes(u)
	}
	return uint64(h)
}

func u64key(v uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v)
}

// messageKey maps a MessageUUID to its key in the messages bucket.
//
// Plivo's message UUIDs are version-1 UUIDs, whose first group is the fastest
// moving part of the timestamp: as text they sort randomly, so every event
// would dirty its own 4 KiB page of the messages bucket. Reordering the
// timestamp groups most significant first (time_hi, time_mid, time_low) makes
// the keys of messages created close together adjacent, and since a message
// gets its events within seconds of creation, a batch's messages share a
// few recent pages. The mapping is injective: reordered keys start with 0x01,
// other UUIDs are stored as they are (or behind 0x00 if they could collide).
// The value holds the UUID as received, so the key is never decoded.
func messageKey[T string | []byte](uuid T) []byte {
	if isUUIDv1(uuid) {
		k := make([]byte, 0, 33)
		k = append(k, 1)
		k = append(k, uuid[14:18]...) // time_hi_and_version
		k = append(k, uuid[9:13]...)  // time_mid
		k = append(k, uuid[0:8]...)   // time_low
		k = append(k, uuid[19:23]...) // clock sequence
		return append(k, uuid[24:36]...)
	}
	if len(uuid) > 0 && uuid[0] <= 1 {
		return append([]byte{0}, uuid...)
	}
	return append([]byte(nil), uuid...)
}

func isUUIDv1[T string | []byte](s T) bool {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' || s[14] != '1' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			continue
		}
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}
