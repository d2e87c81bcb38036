package storage

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrBadCursor means a ListFilter.Cursor was not produced by ListMessages.
var ErrBadCursor = errors.New("bad cursor")

// Listing limits.
const (
	defaultListLimit = 50
	maxListLimit     = 1000
	// maxListScan bounds the messages one ListMessages call reads, and
	// maxListKeys the time-index keys it examines, so a filter matching
	// little of a large store cannot pin a read transaction for long. A page
	// cut short this way has fewer than Limit messages but a NextCursor to
	// continue from.
	maxListScan = 200_000
	maxListKeys = 2_000_000

	defaultEventsLimit = 1000
	maxEventsLimit     = 10_000
)

// ListFilter selects messages for ListMessages. Zero fields do not filter.
type ListFilter struct {
	// Status is an exact status; "pending" means any non-terminal status.
	Status string
	// Query is a MessageUUID prefix when it looks like one (at least 4 hex
	// digits and dashes, dashes only where a UUID has them), otherwise a
	// substring of To or From, ignoring '+', spaces, dashes, dots and
	// parentheses. An all-digit query matches either way.
	Query string
	// Since (inclusive) and Until (exclusive) bound FirstSeen.
	Since, Until time.Time
	// OlderThan keeps only messages whose LastSeen is older than
	// now-OlderThan (stuck non-terminal messages).
	OlderThan time.Duration
	// Cursor is the NextCursor of a previous page with the same filter.
	Cursor string
	// Limit is the page size: default 50, at most 1000.
	Limit int
	// Direction is DirectionInbound or DirectionOutbound ("" = both).
	Direction Direction
	// Number keeps messages sent from or to exactly this number ('+' and
	// the separators people type ignored): a conversation.
	Number string
}

// StatusPending is the ListFilter.Status matching every non-terminal status.
const StatusPending = "pending"

// GetMessage returns a message's current state and all its events, oldest
// first by cursor, or ErrNotFound. The history is unbounded (a message can
// have any number of events): prefer GetMessagePage to show it.
func (s *Store) GetMessage(uuid string) (Message, []Event, error) {
	var (
		m      Message
		events []Event
	)
	err := s.view(func(tx *bolt.Tx) error {
		mk := messageKey(uuid)
		var idx eventIndex
		if err := getMessage(tx, mk, &m, &idx); err != nil {
			return err
		}
		eb := tx.Bucket(bucketEvents)
		var err error
		add := func(ref eventRef) bool {
			var e Event
			var ok bool
			if e, ok, err = getEvent(eb, ref.cursor); ok {
				events = append(events, e)
			}
			return err == nil
		}
		if !idx.spilled {
			events = make([]Event, 0, len(idx.refs))
			for _, ref := range idx.refs {
				if !add(ref) {
					break
				}
			}
			return err
		}
		spilledBuckets(tx).walk(indexPrefix(mk), false, 0, add)
		return err
	})
	if err != nil {
		return Message{}, nil, fmt.Errorf("get message %s: %w", uuid, err)
	}
	return m, events, nil
}

// getMessage reads the message stored under mk, or ErrNotFound. Its inline
// entries are sorted by cursor (they are appended in order; sorting also
// covers records migrated from older layouts).
func getMessage(tx *bolt.Tx, mk []byte, m *Message, idx *eventIndex) error {
	v := tx.Bucket(bucketMessages).Get(mk)
	if v == nil {
		return ErrNotFound
	}
	if err := decodeMessage(v, m, idx); err != nil {
		return err
	}
	if idx != nil {
		slices.SortFunc(idx.refs, func(a, b eventRef) int { return cmp.Compare(a.cursor, b.cursor) })
	}
	return nil
}

// getEvent reads the event at cursor; false when event retention removed it.
func getEvent(eb *bolt.Bucket, cursor uint64) (Event, bool, error) {
	v := eb.Get(u64key(cursor))
	if v == nil {
		return Event{}, false, nil
	}
	e, err := decodeEvent(cursor, v)
	if err != nil {
		return Event{}, false, fmt.Errorf("event %d: %w", cursor, err)
	}
	return e, true, nil
}

// Event paging limits of GetMessagePage.
const (
	DefaultEventPage = 100
	MaxEventPage     = 1000
	// maxPageScan bounds the index entries one page examines: entries of
	// events removed by event retention are skipped, and a page cut short
	// by the bound still carries a next cursor.
	maxPageScan = 20_000
)

// EventPage selects a page of one message's events for GetMessagePage.
type EventPage struct {
	// Cursor is the NextCursor of the previous page in the same order; ""
	// starts at the oldest (ascending) or newest (descending) event.
	Cursor string
	// Limit is the page size: 0 means DefaultEventPage, at most MaxEventPage.
	Limit int
	// Desc lists the newest events first.
	Desc bool
}

// MessagePage is one page of a message's history.
type MessagePage struct {
	Message Message
	Events  []Event
	// NextCursor continues in the same order; "" when no event is left.
	// The page it leads to can be empty when only removed events remain.
	NextCursor string
}

// cursorEvents is the kind byte of a GetMessagePage cursor.
const cursorEvents = 3

// GetMessagePage returns a message's current state and one page of its
// events by cursor, or ErrNotFound. Its cost depends on the page size, not
// on the length of the history. A cursor not produced here (or from the
// other order) yields an error wrapping ErrBadCursor.
func (s *Store) GetMessagePage(uuid string, p EventPage) (MessagePage, error) {
	var page MessagePage
	limit := p.Limit
	if limit <= 0 {
		limit = DefaultEventPage
	}
	limit = min(limit, MaxEventPage)
	var from uint64 // exclusive bound, 0 = the start in this order
	if p.Cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(p.Cursor)
		desc := byte(0)
		if p.Desc {
			desc = 1
		}
		if err != nil || len(raw) != 10 || raw[0] != cursorEvents || raw[1] != desc {
			return page, fmt.Errorf("get message %s: events cursor: %w", uuid, ErrBadCursor)
		}
		from = binary.BigEndian.Uint64(raw[2:])
	}
	err := s.view(func(tx *bolt.Tx) error {
		mk := messageKey(uuid)
		var idx eventIndex
		if err := getMessage(tx, mk, &page.Message, &idx); err != nil {
			return err
		}
		eb := tx.Bucket(bucketEvents)
		var (
			err     error
			scanned int
			last    uint64
			more    bool
		)
		visit := func(ref eventRef) bool {
			if len(page.Events) == limit || scanned == maxPageScan {
				more = true
				return false
			}
			scanned++
			last = ref.cursor
			var e Event
			var ok bool
			if e, ok, err = getEvent(eb, ref.cursor); ok {
				page.Events = append(page.Events, e)
			}
			return err == nil
		}
		if idx.spilled {
			spilledBuckets(tx).walk(indexPrefix(mk), p.Desc, from, visit)
		} else {
			walkInline(idx.refs, p.Desc, from, visit)
		}
		if err != nil {
			return err
		}
		if more {
			c := []byte{cursorEvents, 0}
			if p.Desc {
				c[1] = 1
			}
			page.NextCursor = base64.RawURLEncoding.EncodeToString(binary.BigEndian.AppendUint64(c, last))
		}
		return nil
	})
	if err != nil {
		return MessagePage{}, fmt.Errorf("get message %s: %w", uuid, err)
	}
	return page, nil
}

// walkInline is indexBuckets.walk over sorted inline entries.
func walkInline(refs []eventRef, desc bool, from uint64, fn func(eventRef) bool) {
	if !desc {
		for _, r := range refs {
			if r.cursor > from && !fn(r) {
				return
			}
		}
		return
	}
	for i := len(refs) - 1; i >= 0; i-- {
		if (from == 0 || refs[i].cursor < from) && !fn(refs[i]) {
			return
		}
	}
}

// MessageStates returns the current state of each message of uuids that
// exists, by MessageUUID, read in one transaction without their histories.
func (s *Store) MessageStates(uuids []string) (map[string]Message, error) {
	states := make(map[string]Message, len(uuids))
	err := s.view(func(tx *bolt.Tx) error {
		mb := tx.Bucket(bucketMessages)
		for _, u := range uuids {
			if _, ok := states[u]; ok {
				continue
			}
			v := mb.Get(messageKey(u))
			if v == nil {
				continue
			}
			var m Message
			if err := decodeMessage(v, &m, nil); err != nil {
				return fmt.Errorf("message %s: %w", u, err)
			}
			states[u] = m
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("message states: %w", err)
	}
	return states, nil
}

// EventsAfter returns up to limit events of the global log with a cursor
// greater than cursor, ascending (limit ≤ 0 means 1000, at most 10000).
func (s *Store) EventsAfter(cursor uint64, limit int) ([]Event, error) {
	if limit <= 0 {
		limit = defaultEventsLimit
	}
	limit = min(limit, maxEventsLimit)
	var events []Event
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek(u64key(cursor + 1)); k != nil && len(events) < limit; k, v = c.Next() {
			cur := binary.BigEndian.Uint64(k)
			if cur <= cursor {
				continue // cursor+1 overflowed
			}
			e, err := decodeEvent(cur, v)
			if err != nil {
				return fmt.Errorf("event %d: %w", cur, err)
			}
			events = append(events, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("events after %d: %w", cursor, err)
	}
	return events, nil
}

// ListMessages returns messages newest first by FirstSeen (ties by
// MessageUUID, descending) and the cursor of the next page, "" at the end.
// With Status StatusPending it walks the pending index instead and returns
// messages newest first by LastSeen: stuck messages are found without
// reading the delivered ones.
// A page may hold fewer than Limit messages with a non-empty cursor when a
// rare filter hit the scan bound; keep following the cursor. A cursor not
// produced here yields an error wrapping ErrBadCursor.
func (s *Store) ListMessages(f ListFilter) ([]Message, string, error) {
	q, err := compileFilter(f, s.now())
	if err != nil {
		return nil, "", fmt.Errorf("list messages: %w", err)
	}
	var (
		msgs []Message
		next string
	)
	err = s.view(func(tx *bolt.Tx) error {
		var err error
		msgs, next, err = q.run(tx)
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("list messages: %w", err)
	}
	return msgs, next, nil
}

type listQuery struct {
	limit int
	// index is the bucket walked: the time index, or the pending index
	// (keyed by LastSeen) for StatusPending.
	index      []byte
	cursorKind byte
	// firstSince and firstUntil bound FirstSeen (Unix nanos, 0 = none) when
	// the walked index is not keyed by it.
	firstSince, firstUntil int64
	upper                  []byte // exclusive bound on time-index keys, nil = none
	since                  uint64 // inclusive bound on FirstSeen nanos
	status                 string
	lastBefore             int64 // LastSeen must be before this (Unix nanos), 0 = none
	uuidPrefix             []byte
	phone                  []byte
	// uuidOnly: the query can only be a UUID prefix, checked on the
	// time-index key before reading the message.
	uuidOnly bool
	// inbound holds the Direction and Number filters (inbound_query.go).
	inbound inboundFilter
}

func compileFilter(f ListFilter, now time.Time) (*listQuery, error) {
	q := &listQuery{limit: f.Limit, status: f.Status, index: bucketByTime, cursorKind: cursorByTime}
	pending := f.Status == StatusPending
	if pending {
		q.index, q.cursorKind = bucketPending, cursorPending
	}
	if q.limit <= 0 {
		q.limit = defaultListLimit
	}
	q.limit = min(q.limit, maxListLimit)
	if f.Cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(f.Cursor)
		if err != nil || len(raw) < 9 || raw[0] != q.cursorKind {
			return nil, ErrBadCursor
		}
		q.upper = raw[1:]
	}
	lower := func(t time.Time) {
		k := u64key(uint64(max(t.UnixNano(), 0)))
		if q.upper == nil || bytes.Compare(k, q.upper) < 0 {
			q.upper = k
		}
	}
	switch {
	case f.Until.IsZero():
	case pending:
		// Until bounds FirstSeen, which the pending index is not ordered by.
		q.firstUntil = f.Until.UnixNano()
	default:
		lower(f.Until)
	}
	if f.OlderThan > 0 {
		cutoff := now.Add(-f.OlderThan)
		q.lastBefore = cutoff.UnixNano()
		// FirstSeen ≤ LastSeen < cutoff: newer entries cannot match.
		lower(cutoff)
	}
	if !f.Since.IsZero() {
		// On the pending index this bounds LastSeen, which is never before
		// FirstSeen: the walk can still stop there, but each message's
		// FirstSeen must be checked too.
		q.since = uint64(max(f.Since.UnixNano(), 0))
		if pending {
			q.firstSince = f.Since.UnixNano()
		}
	}
	query := strings.TrimSpace(f.Query)
	if query != "" {
		uuidLike, digitsOnly := classifyQuery(query)
		if uuidLike {
			q.uuidPrefix = []byte(strings.ToLower(query))
			q.uuidOnly = !digitsOnly
		}
		if !q.uuidOnly {
			q.phone = appendPhone(nil, query)
			if len(q.phone) == 0 {
				q.phone = nil
				q.uuidPrefix = nil
			}
		}
	}
	q.inbound = compileInboundFilter(f)
	return q, nil
}

// classifyQuery reports whether s can be a MessageUUID prefix and whether it
// is all digits (then it can also be a phone number).
func classifyQuery(s string) (uuidLike, digitsOnly bool) {
	if len(s) < 4 || len(s) > 36 {
		return false, false
	}
	digitsOnly = true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
		case c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
			digitsOnly = false
		case c == '-' && (i == 8 || i == 13 || i == 18 || i == 23):
			digitsOnly = false
		default:
			return false, false
		}
	}
	return true, digitsOnly
}

// appendPhone appends s lowercased without the separators people type in
// phone numbers.
func appendPhone[T string | []byte](dst []byte, s T) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+' || c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
		case c >= 'A' && c <= 'Z':
			dst = append(dst, c+('a'-'A'))
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// Cursor kinds: the first byte of a decoded cursor names the index it
// points into, so a cursor from one listing cannot misplace another.
const (
	cursorByTime  = 1
	cursorPending = 2
)

func encodeCursor(kind byte, key []byte) string {
	return base64.RawURLEncoding.EncodeToString(append([]byte{kind}, key...))
}

// first positions c on the newest time-index key below upper (nil = none).
func first(c *bolt.Cursor, upper []byte) []byte {
	if upper == nil {
		k, _ := c.Last()
		return k
	}
	k, _ := c.Seek(upper)
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	for k != nil && bytes.Compare(k, upper) >= 0 {
		k, _ = c.Prev()
	}
	return k
}

func (q *listQuery) run(tx *bolt.Tx) ([]Message, string, error) {
	mb := tx.Bucket(bucketMessages)
	c := tx.Bucket(q.index).Cursor()
	var (
		msgs    []Message
		last    []byte // key of the last message returned
		phone   []byte
		scanned int // messages read
		keys    int // time-index keys examined
	)
	for k := first(c, q.upper); k != nil; k, _ = c.Prev() {
		if len(k) < 8 || binary.BigEndian.Uint64(k) < q.since {
			break
		}
		if keys++; keys > maxListKeys || scanned >= maxListScan {
			// Continue from here next time, whatever we have. k itself is
			// not examined yet: k+0x00 is the smallest bound above it.
			if len(msgs) < q.limit {
				last = append(slices.Clip(k), 0)
			}
			return msgs, encodeCursor(q.cursorKind, last), nil
		}
		uuid := k[8:]
		// A UUID prefix is checked on the index key, without reading the
		// message.
		if q.uuidOnly && !hasPrefixFold(uuid, q.uuidPrefix) {
			continue
		}
		scanned++
		v := mb.Get(messageKey(uuid))
		if v == nil {
			continue
		}
		p, err := peekMessage(v)
		if err != nil {
			return nil, "", fmt.Errorf("message %s: %w", uuid, err)
		}
		if !q.match(uuid, &p, &phone) {
			continue
		}
		if len(msgs) == q.limit {
			// One more match exists: there is a next page.
			return msgs, encodeCursor(q.cursorKind, last), nil
		}
		var m Message
		if err = decodeMessage(v, &m, nil); err != nil {
			return nil, "", fmt.Errorf("message %s: %w", uuid, err)
		}
		msgs = append(msgs, m)
		last = append(last[:0], k...)
	}
	return msgs, "", nil
}

func hasPrefixFold(s, prefix []byte) bool {
	return len(s) >= len(prefix) && bytes.EqualFold(s[:len(prefix)], prefix)
}

func (q *listQuery) match(uuid []byte, p *messagePeek, scratch *[]byte) bool {
	switch q.status {
	case "":
	case StatusPending:
		if IsTerminal(string(p.status)) {
			return false
		}
	default:
		if string(p.status) != q.status {
			return false
		}
	}
	if q.lastBefore != 0 && p.lastSeen >= q.lastBefore {
		return false
	}
	if p.firstSeen < q.firstSince || q.firstUntil != 0 && p.firstSeen >= q.firstUntil {
		return false
	}
	if !q.inbound.match(p, scratch) {
		return false
	}
	if q.uuidOnly || (q.uuidPrefix == nil && q.phone == nil) {
		return true // run already matched the UUID prefix
	}
	if q.uuidPrefix != nil && hasPrefixFold(uuid, q.uuidPrefix) {
		return true
	}
	*scratch = appendPhone((*scratch)[:0], p.to)
	if bytes.Contains(*scratch, q.phone) {
		return true
	}
	*scratch = appendPhone((*scratch)[:0], p.from)
	return bytes.Contains(*scratch, q.phone)
}
