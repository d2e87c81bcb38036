package storage

import (
	"encoding/binary"
	"errors"
	"slices"
	"time"
)

// Values are stored in a compact binary encoding rather than JSON: the writer
// goroutine decodes and re-encodes one message per event while holding the
// only write transaction, so every microsecond there caps ingestion
// (BenchmarkCodec measures encode+decode against encoding/json).
//
// Layout (format 2): a format byte, a uvarint field count, then that many
// fields in a fixed order. Strings are uvarint length + bytes, integers are
// (zigzag) varints, a time is a presence byte (0 = zero/nil) followed by
// varint Unix nanoseconds, a list is a uvarint count and its items.
//
// The record evolves by appending fields, never by reordering or removing
// them: a decoder reads the fields a record declares and leaves the fields
// it does not have zero (a record written before a field was added), and
// ignores fields past the ones it knows (a record written by a newer
// binary). Adding a field is therefore a code change only, with no rewrite
// migration: append it to the encoder and the decoder, in the same position.
//
// Format 1 (schema versions ≤ 2) had no field count: its decoders are kept
// below, frozen, so older files still open. Decoders reject truncated input
// instead of panicking (FuzzDecodeEvent, FuzzDecodeMessage).

const (
	formatV1 byte = 1
	formatV2 byte = 2
	// messageFormat and eventFormat are what the encoders write.
	messageFormat = formatV2
	eventFormat   = formatV2

	// eventFieldsV1 is the field count of a format-1 event, which was fixed:
	// 7 of its own, then Details (14) and Content (2).
	eventFieldsV1 = 7 + 14 + 2
	// maxFields bounds the fields of one record so the count is one byte.
	maxFields = 127
)

var errCorrupt = errors.New("corrupt record")

// eventRef is one entry of a message's event index: the event's cursor in the
// global log and the content hash used to recognise identical retries.
type eventRef struct {
	cursor uint64
	hash   uint64
}

// eventIndex is a message's event index as its record holds it. Up to
// inlineEvents entries live inside the record, in cursor order: a message
// normally has a handful of events, and keeping them there costs no page of
// another bucket. Past that the index spills, for good, to
// bucketMessageEvents and bucketMessageHashes (see spill.go), so the record
// and the work per event stay the same size however long the history.
type eventIndex struct {
	refs    []eventRef // the inline entries; empty when spilled
	spilled bool
}

// inlineEvents is the most entries a message record holds inline.
const inlineEvents = 32

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

// recordWriter appends one format-2 record, counting its fields.
type recordWriter struct {
	b       []byte
	countAt int
	n       int
}

func beginRecord(b []byte, format byte) recordWriter {
	b = append(b, format, 0)
	return recordWriter{b: b, countAt: len(b) - 1}
}

// end writes the field count and returns the record.
func (w *recordWriter) end() []byte {
	if w.n > maxFields {
		panic("storage: record has more than 127 fields") // a programming error
	}
	w.b[w.countAt] = byte(w.n)
	return w.b
}

func (w *recordWriter) string(s string)      { w.b = appendString(w.b, s); w.n++ }
func (w *recordWriter) int(v int64)          { w.b = binary.AppendVarint(w.b, v); w.n++ }
func (w *recordWriter) time(t time.Time)     { w.b = appendTime(w.b, t); w.n++ }
func (w *recordWriter) timePtr(t *time.Time) { w.b = appendTimePtr(w.b, t); w.n++ }

func (w *recordWriter) strings(l []string) {
	w.b = binary.AppendUvarint(w.b, uint64(len(l)))
	for _, s := range l {
		w.b = appendString(w.b, s)
	}
	w.n++
}

func (w *recordWriter) details(d *Details) {
	w.string(d.From)
	w.string(d.To)
	w.string(d.Type)
	w.int(int64(d.Units))
	w.string(d.TotalRate)
	w.string(d.TotalAmount)
	w.string(d.MCC)
	w.string(d.MNC)
	w.string(d.ParentMessageUUID)
	w.string(d.PartInfo)
	w.timePtr(d.MessageTime)
	w.timePtr(d.QueuedTime)
	w.timePtr(d.SentTime)
	w.timePtr(d.DeliveryReportTime)
}

func (w *recordWriter) content(c *Content) {
	w.string(c.Text)
	w.strings(c.MediaURLs)
}

// reader decodes the encoding above; the first error sticks. Field methods
// (the f-prefixed ones) read the record's next field, or yield zero once
// the fields the record declares are used up.
type reader struct {
	b   []byte
	err error
	// fields is the number of fields of the record not read yet.
	fields uint64
}

// begin reads the format byte and the field count.
func (r *reader) begin() byte {
	format := r.byte()
	switch format {
	case formatV1:
	case formatV2:
		r.fields = r.uvarint()
	default:
		r.fail()
	}
	return format
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errCorrupt
	}
	r.b = nil
	r.fields = 0
}

// field reports whether the record has another field, and consumes it.
func (r *reader) field() bool {
	if r.fields == 0 {
		return false
	}
	r.fields--
	return true
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

// count reads a list length, refusing one that cannot fit in the rest of
// the input at minSize bytes per item.
func (r *reader) count(minSize int) int {
	n := r.uvarint()
	if n > uint64(len(r.b)/minSize) {
		r.fail()
		return 0
	}
	return int(n)
}

func (r *reader) strings() []string {
	n := r.count(1)
	if n == 0 {
		return nil
	}
	l := make([]string, n)
	for i := range l {
		l[i] = r.string()
	}
	return l
}

func (r *reader) fString() string {
	if !r.field() {
		return ""
	}
	return r.string()
}

func (r *reader) fBytes() []byte {
	if !r.field() {
		return nil
	}
	return r.bytes()
}

func (r *reader) fVarint() int64 {
	if !r.field() {
		return 0
	}
	return r.varint()
}

func (r *reader) fTime() time.Time {
	if !r.field() {
		return time.Time{}
	}
	return r.time()
}

func (r *reader) fTimePtr() *time.Time {
	if !r.field() {
		return nil
	}
	return r.timePtr()
}

func (r *reader) fStrings() []string {
	if !r.field() {
		return nil
	}
	return r.strings()
}

func (r *reader) details(d *Details) {
	d.From = r.fString()
	d.To = r.fString()
	d.Type = r.fString()
	d.Units = int(r.fVarint())
	d.TotalRate = r.fString()
	d.TotalAmount = r.fString()
	d.MCC = r.fString()
	d.MNC = r.fString()
	d.ParentMessageUUID = r.fString()
	d.PartInfo = r.fString()
	d.MessageTime = r.fTimePtr()
	d.QueuedTime = r.fTimePtr()
	d.SentTime = r.fTimePtr()
	d.DeliveryReportTime = r.fTimePtr()
}

func (r *reader) content(c *Content) {
	c.Text = r.fString()
	c.MediaURLs = r.fStrings()
}

// encodeMessage appends m and its event index to b. FirstSeen, LastSeen,
// Status, From and To come first so list filters can peek at them without
// decoding the whole record (see peekMessage). New fields go at the end.
func encodeMessage(b []byte, m *Message, idx *eventIndex) []byte {
	w := beginRecord(b, messageFormat)
	w.time(m.FirstSeen)
	w.time(m.LastSeen)
	w.string(m.Status)
	w.details(&m.Details) // From and To first
	w.string(m.MessageUUID)
	w.string(m.ErrorCode)
	w.int(int64(m.EventCount))
	w.int(m.StatusSequence)
	w.content(&m.Content)
	// The event index: uvarint(entries<<1 | spilled), then the inline
	// entries as big-endian (cursor, hash) pairs.
	var refs []eventRef
	var spilled uint64
	if idx != nil {
		refs = idx.refs
		if idx.spilled {
			refs, spilled = nil, 1
		}
	}
	w.b = binary.AppendUvarint(w.b, uint64(len(refs))<<1|spilled)
	for _, r := range refs {
		w.b = binary.BigEndian.AppendUint64(w.b, r.cursor)
		w.b = binary.BigEndian.AppendUint64(w.b, r.hash)
	}
	w.n++
	w.string(string(m.Direction))
	w.string(m.Intent)
	return w.end()
}

// decodeMessage decodes a record written by encodeMessage (or its format-1
// predecessor) into m, and its event index into idx unless idx is nil (the
// entries are appended to idx.refs[:0]). Strings are copied, so the result
// outlives the transaction.
func decodeMessage(b []byte, m *Message, idx *eventIndex) error {
	r := reader{b: b}
	if idx != nil {
		idx.refs, idx.spilled = idx.refs[:0], false
	}
	switch r.begin() {
	case formatV1:
		return decodeMessageV1(&r, m, idx)
	case formatV2:
	default:
		return errCorrupt
	}
	*m = Message{}
	m.FirstSeen = r.fTime()
	m.LastSeen = r.fTime()
	m.Status = r.fString()
	r.details(&m.Details)
	m.MessageUUID = r.fString()
	m.ErrorCode = r.fString()
	m.EventCount = int(r.fVarint())
	m.StatusSequence = r.fVarint()
	r.content(&m.Content)
	if r.field() {
		n := r.uvarint()
		if idx != nil {
			idx.spilled = n&1 == 1
			r.refs(idx, n>>1)
		} else {
			// Fields added later follow it.
			if c := n >> 1; c > uint64(len(r.b)/16) {
				r.fail()
			} else {
				r.skip(c * 16)
			}
		}
	}
	m.Direction = Direction(r.fString())
	m.Intent = r.fString()
	return r.err
}

// skip passes n bytes.
func (r *reader) skip(n uint64) {
	if n > uint64(len(r.b)) {
		r.fail()
		return
	}
	r.b = r.b[n:]
}

// refs reads n (cursor, hash) pairs into idx.
func (r *reader) refs(idx *eventIndex, n uint64) {
	if n > uint64(len(r.b)/16) {
		r.fail()
		return
	}
	idx.refs = slices.Grow(idx.refs, int(n))
	for range n {
		idx.refs = append(idx.refs, eventRef{cursor: r.uint64(), hash: r.uint64()})
	}
}

// decodeMessageV1 decodes the rest of a format-1 message record (frozen).
// Its index is always inline, however long (the schema-3 migration spills
// the long ones).
func decodeMessageV1(r *reader, m *Message, idx *eventIndex) error {
	*m = Message{}
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
	m.MediaURLs = r.strings()
	m.StatusSequence = r.varint()
	n := r.uvarint()
	if idx != nil {
		r.refs(idx, n)
	} else if n > uint64(len(r.b)/16) {
		// The same record must not decode without the index and fail with it.
		r.fail()
	}
	return r.err
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
	peekTime := func() int64 {
		if r.byte() != 0 {
			return r.varint()
		}
		return 0
	}
	switch r.begin() {
	case formatV1:
		p.firstSeen = peekTime()
		p.lastSeen = peekTime()
		p.status = r.bytes()
		p.to = r.bytes()
		p.from = r.bytes()
	case formatV2:
		if r.field() {
			p.firstSeen = peekTime()
		}
		if r.field() {
			p.lastSeen = peekTime()
		}
		p.status = r.fBytes()
		p.from = r.fBytes()
		p.to = r.fBytes()
	default:
		return p, errCorrupt
	}
	return p, r.err
}

// encodeEvent appends ev to b. The cursor is not stored: it is the key.
// Payload keys are written in the given order (sorted by the caller).
func encodeEvent(b []byte, ev *Event, keys []string) []byte {
	w := beginRecord(b, eventFormat)
	w.string(ev.MessageUUID)
	w.string(ev.Status)
	w.string(ev.ErrorCode)
	w.int(ev.Sequence)
	w.time(ev.ReceivedAt)
	w.string(ev.Source)
	w.b = binary.AppendUvarint(w.b, uint64(len(keys)))
	for _, k := range keys {
		w.b = appendString(w.b, k)
		w.b = appendString(w.b, ev.Payload[k])
	}
	w.n++
	w.details(&ev.Details)
	w.content(&ev.Content)
	return w.end()
}

// decodeEvent decodes a record written by encodeEvent, copying all strings.
// A format-1 event has the same fields as format 2, without the count.
func decodeEvent(cursor uint64, b []byte) (Event, error) {
	var ev Event
	r := reader{b: b}
	switch r.begin() {
	case formatV1:
		r.fields = eventFieldsV1
	case formatV2:
	default:
		return ev, errCorrupt
	}
	ev.Cursor = cursor
	ev.MessageUUID = r.fString()
	ev.Status = r.fString()
	ev.ErrorCode = r.fString()
	ev.Sequence = r.fVarint()
	ev.ReceivedAt = r.fTime()
	ev.Source = r.fString()
	n := 0
	if r.field() {
		n = r.count(2)
	}
	// Never nil, even for a record without the field: the JSON shape is an
	// object.
	ev.Payload = make(map[string]string, n)
	for range n {
		k := r.string()
		ev.Payload[k] = r.string()
	}
	r.details(&ev.Details)
	r.content(&ev.Content)
	return ev, r.err
}

// peekEventTime decodes only an encoded event's ReceivedAt (Unix nanos).
func peekEventTime(b []byte) (int64, error) {
	r := reader{b: b}
	switch r.begin() {
	case formatV1:
		r.fields = eventFieldsV1
	case formatV2:
	default:
		return 0, errCorrupt
	}
	r.fBytes() // MessageUUID
	r.fBytes() // Status
	r.fBytes() // ErrorCode
	r.fVarint()
	var at int64
	if r.field() && r.byte() != 0 {
		at = r.varint()
	}
	return at, r.err
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
	// The order is frozen: stored hashes recognise retries across upgrades
	// (a new field is hashed after these, and only when set).
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
