package storage

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The pending index lists every message whose status is not terminal,
// ordered by its last event:
//
//	pending  8-byte BE LastSeen Unix nanos + MessageUUID → empty
//
// and meta "pending_count" holds how many entries it has. The writer keeps
// both in the transaction that changes the message, so counting stuck
// messages by age reads only the recent end of the index (see
// PendingByAge) and listing ?status=pending walks pending messages only,
// however many delivered ones the store holds.
var bucketPending = []byte("pending")

// metaPendingCount is the meta key of the pending index's entry count
// (8-byte BE).
const metaPendingCount = "pending_count"

// pendingKey is the pending index key of a message last seen at lastSeen.
func pendingKey(lastSeen time.Time, uuid string) []byte {
	return byTimeKey(lastSeen, uuid)
}

// indexPending moves message m in the pending index after an apply: prev*
// describe the message before it (existed false for a new message). It
// returns the change in the number of entries.
func indexPending(b *bolt.Bucket, existed bool, prevStatus string, prevLast time.Time, m *Message) (int64, error) {
	was := existed && awaitsReport(prevStatus)
	is := awaitsReport(m.Status)
	moved := !prevLast.Equal(m.LastSeen)
	if was && (!is || moved) {
		if err := b.Delete(pendingKey(prevLast, m.MessageUUID)); err != nil {
			return 0, fmt.Errorf("delete pending index: %w", err)
		}
	}
	if is && (!was || moved) {
		if err := b.Put(pendingKey(m.LastSeen, m.MessageUUID), nil); err != nil {
			return 0, fmt.Errorf("put pending index: %w", err)
		}
	}
	switch {
	case is && !was:
		return 1, nil
	case was && !is:
		return -1, nil
	}
	return 0, nil
}

// addPendingCount adds delta to the stored pending count, clamping at zero.
func addPendingCount(meta *bolt.Bucket, delta int64) error {
	if delta == 0 {
		return nil
	}
	n := int64(readPendingCount(meta)) + delta
	if n < 0 {
		n = 0
	}
	if err := meta.Put([]byte(metaPendingCount), u64key(uint64(n))); err != nil {
		return fmt.Errorf("put pending count: %w", err)
	}
	return nil
}

func readPendingCount(meta *bolt.Bucket) uint64 {
	v := meta.Get([]byte(metaPendingCount))
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// unindexPending removes message m from the pending index, if it is there,
// and lowers the pending count. Code deleting messages (retention) calls it
// in the same transaction, so the index never points at a missing message.
func unindexPending(tx *bolt.Tx, m *Message) error {
	if !awaitsReport(m.Status) {
		return nil
	}
	b := tx.Bucket(bucketPending)
	k := pendingKey(m.LastSeen, m.MessageUUID)
	if b.Get(k) == nil {
		return nil
	}
	if err := b.Delete(k); err != nil {
		return fmt.Errorf("delete pending index: %w", err)
	}
	return addPendingCount(tx.Bucket(bucketMeta), -1)
}

// buildPendingIndex is the schema 2 migration: it indexes every
// non-terminal message of an existing file.
func buildPendingIndex(tx *bolt.Tx) error {
	idx, err := tx.CreateBucketIfNotExists(bucketPending)
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", bucketPending, err)
	}
	var (
		m Message
		n uint64
	)
	err = tx.Bucket(bucketMessages).ForEach(func(k, v []byte) error {
		m = Message{}
		if err = decodeMessage(v, &m, nil); err != nil {
			return fmt.Errorf("message %q: %w", k, err)
		}
		if !awaitsReport(m.Status) {
			return nil
		}
		n++
		return idx.Put(pendingKey(m.LastSeen, m.MessageUUID), nil)
	})
	if err != nil {
		return fmt.Errorf("index pending messages: %w", err)
	}
	return tx.Bucket(bucketMeta).Put([]byte(metaPendingCount), u64key(n))
}

// PendingByAge counts the messages that are not terminal by the age of their
// last event at now. bounds are ascending ages; the result has
// len(bounds)+1 counts: [0] younger than bounds[0], [i] at least
// bounds[i-1] and younger than bounds[i], and the last at least the last
// bound. Only entries younger than the last bound are read; the oldest
// count is the stored total minus the others, so the cost does not grow
// with messages that stay pending forever (carriers that send no reports).
func (s *Store) PendingByAge(now time.Time, bounds []time.Duration) ([]int, error) {
	counts := make([]int, len(bounds)+1)
	err := s.view(func(tx *bolt.Tx) error {
		total := int(readPendingCount(tx.Bucket(bucketMeta)))
		if len(bounds) == 0 {
			counts[0] = total
			return nil
		}
		nowNanos := now.UnixNano()
		oldest := nowNanos - int64(bounds[len(bounds)-1])
		c := tx.Bucket(bucketPending).Cursor()
		j, recent := 0, 0
		for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
			if len(k) < 8 {
				continue
			}
			t := int64(binary.BigEndian.Uint64(k))
			if t <= oldest {
				break
			}
			for age := nowNanos - t; j < len(bounds)-1 && age >= int64(bounds[j]); {
				j++
			}
			counts[j]++
			recent++
		}
		counts[len(bounds)] = max(total-recent, 0)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count pending messages: %w", err)
	}
	return counts, nil
}
