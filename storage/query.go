package storage

import (
	"bytes"
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

// GetMessage returns a message's current state and its events, oldest first
// by cursor, or ErrNotFound.
func (s *Store) GetMessage(uuid string) (Message, []Event, error) {
	var (
		m      Message
		events []Event
	)
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMessages).Get(messageKey(uuid))
		if v == nil {
			return ErrNotFound
		}
		refs, err := decodeMessage(v, &m, nil)
		if err != nil {
			return err
		}
		slices.SortFunc(refs, func(a, b eventRef) int {
			return cmpU64(a.cursor, b.cursor)
		})
		eb := tx.Bucket(bucketEvents)
		events = make([]Event, 0, len(refs))
		for _, ref := range refs {
			ev := eb.Get(u64key(ref.cursor))
			if ev == nil {
				continue // removed by event retention
			}
			e, err := decodeEvent(ref.cursor, ev)
			if err != nil {
				return fmt.Errorf("event %d: %w", ref.cursor, err)
			}
			events = append(events, e)
		}
		return nil
	})
	if err != nil {
		return Message{}, nil, fmt.Errorf("get message %s: %w", uuid, err)
	}
	return m, events, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
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
		refs    []eventRef
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
		if refs, err = decodeMessage(v, &m, refs[:0]); err != nil {
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
