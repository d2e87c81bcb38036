package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// A message's event index is inline in its record until it has more than
// inlineEvents entries; then it spills to two buckets, keyed under the
// message so the entries of one message are adjacent (and, for Plivo's
// version-1 UUIDs, those of messages created together too):
var (
	// bucketMessageEvents: indexPrefix(messageKey) + 8-byte cursor →
	// 8-byte content hash. A spilled message's events in cursor order,
	// for paging its history.
	bucketMessageEvents = []byte("message_events")
	// bucketMessageHashes: indexPrefix(messageKey) + 8-byte content hash →
	// 8-byte cursor. Duplicate detection in one lookup, however long the
	// history.
	bucketMessageHashes = []byte("message_hashes")
)

// indexPrefix starts the index keys of the message stored under mk. The
// length byte keeps one message's keys from being a prefix range of
// another's (messageKey is at most 129 bytes).
func indexPrefix(mk []byte) []byte {
	k := make([]byte, 0, 1+len(mk)+8)
	k = append(k, byte(len(mk)))
	return append(k, mk...)
}

// indexKey is prefix followed by v, in a new slice (bbolt keeps keys until
// commit).
func indexKey(prefix []byte, v uint64) []byte {
	k := make([]byte, len(prefix), len(prefix)+8)
	copy(k, prefix)
	return binary.BigEndian.AppendUint64(k, v)
}

// indexBuckets are the spilled-index buckets of one transaction.
type indexBuckets struct {
	events, hashes *bolt.Bucket
}

func spilledBuckets(tx *bolt.Tx) indexBuckets {
	return indexBuckets{events: tx.Bucket(bucketMessageEvents), hashes: tx.Bucket(bucketMessageHashes)}
}

// put records ref for the message with index prefix p.
func (ib indexBuckets) put(p []byte, ref eventRef) error {
	if err := ib.events.Put(indexKey(p, ref.cursor), u64key(ref.hash)); err != nil {
		return fmt.Errorf("put event index: %w", err)
	}
	// A hash seen twice (possible only through a migration of old data)
	// keeps its first cursor, as the inline scan would find it.
	hk := indexKey(p, ref.hash)
	if ib.hashes.Get(hk) != nil {
		return nil
	}
	if err := ib.hashes.Put(hk, u64key(ref.cursor)); err != nil {
		return fmt.Errorf("put hash index: %w", err)
	}
	return nil
}

// spill moves the inline entries of idx to the buckets and marks it spilled.
func (ib indexBuckets) spill(p []byte, idx *eventIndex) error {
	for _, ref := range idx.refs {
		if err := ib.put(p, ref); err != nil {
			return err
		}
	}
	idx.refs, idx.spilled = idx.refs[:0], true
	return nil
}

// find returns the cursor of the message's event with content hash h.
func (ib indexBuckets) find(p []byte, h uint64) (uint64, bool) {
	v := ib.hashes.Get(indexKey(p, h))
	if len(v) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}

// add appends ref to the message's index, spilling it when the record
// would hold more than inlineEvents entries.
func (ib indexBuckets) add(p []byte, idx *eventIndex, ref eventRef) error {
	if !idx.spilled && len(idx.refs) < inlineEvents {
		idx.refs = append(idx.refs, ref)
		return nil
	}
	if !idx.spilled {
		if err := ib.spill(p, idx); err != nil {
			return err
		}
	}
	return ib.put(p, ref)
}

// walk calls fn with the spilled entries of the message with prefix p, in
// cursor order from the first after `after` (ascending) or before `before`
// (descending, before 0 = from the newest), until fn returns false.
func (ib indexBuckets) walk(p []byte, desc bool, from uint64, fn func(eventRef) bool) {
	c := ib.events.Cursor()
	var k, v []byte
	switch {
	case !desc:
		if from == ^uint64(0) {
			return
		}
		k, v = c.Seek(indexKey(p, from+1))
	case from == 0:
		// Past the last key of the prefix: the prefix with the cursor
		// bytes all 0xff is the largest possible key.
		k, v = c.Seek(indexKey(p, ^uint64(0)))
		if k == nil {
			k, v = c.Last()
		} else if !bytes.Equal(k, indexKey(p, ^uint64(0))) {
			k, v = c.Prev()
		}
	default:
		k, v = c.Seek(indexKey(p, from))
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
	}
	for ; k != nil; k, v = step(c, desc) {
		if len(k) != len(p)+8 || !bytes.HasPrefix(k, p) || len(v) != 8 {
			return
		}
		if !fn(eventRef{cursor: binary.BigEndian.Uint64(k[len(p):]), hash: binary.BigEndian.Uint64(v)}) {
			return
		}
	}
}

func step(c *bolt.Cursor, desc bool) ([]byte, []byte) {
	if desc {
		return c.Prev()
	}
	return c.Next()
}

// drop deletes up to max spilled entries of the message with prefix p
// (max ≤ 0: all), oldest first, calling fn with each, and reports whether
// entries remain.
func (ib indexBuckets) drop(p []byte, max int, fn func(eventRef) error) (more bool, err error) {
	var refs []eventRef
	ib.walk(p, false, 0, func(r eventRef) bool {
		if max > 0 && len(refs) == max {
			more = true
			return false
		}
		refs = append(refs, r)
		return true
	})
	for _, r := range refs {
		if err := fn(r); err != nil {
			return more, err
		}
		if err := ib.events.Delete(indexKey(p, r.cursor)); err != nil {
			return more, fmt.Errorf("delete event index: %w", err)
		}
		hk := indexKey(p, r.hash)
		if v := ib.hashes.Get(hk); len(v) == 8 && binary.BigEndian.Uint64(v) == r.cursor {
			if err := ib.hashes.Delete(hk); err != nil {
				return more, fmt.Errorf("delete hash index: %w", err)
			}
		}
	}
	return more, nil
}
