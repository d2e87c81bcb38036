package storage

import (
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Forwarding state (see app/forward). Each sink keeps its delivered-through
// cursor in meta under ForwardCursorKey(sink) and its dead letters in a
// sub-bucket of bucketForward named after the sink: 8-byte big-endian cursor
// → the forwarder's opaque record, plus the key "n" holding their count so
// listing the sinks does not walk millions of records.
var (
	bucketForward = []byte("forward")
	forwardCount  = []byte("n")
)

// ForwardCursorKey is the meta key of a sink's delivered-through cursor.
func ForwardCursorKey(sink string) string { return "forward." + sink + ".cursor" }

// ForwardCursor returns a sink's delivered-through cursor, 0 when it has none.
func (s *Store) ForwardCursor(sink string) (uint64, error) {
	var c uint64
	err := s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get([]byte(ForwardCursorKey(sink))); len(v) == 8 {
			c = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("forward cursor of %s: %w", sink, err)
	}
	return c, nil
}

// ForwardUpdate is one durable step of a sink, committed atomically: the
// cursor moves (when SetCursor), dead letters are added, dead letters are
// removed (delivered on retry, or re-queued).
type ForwardUpdate struct {
	SetCursor bool
	Cursor    uint64
	Put       map[uint64][]byte
	Delete    []uint64
}

// ForwardCommit applies u for sink in one transaction through the writer,
// so it is group-committed with callbacks and never races them.
func (s *Store) ForwardCommit(ctx context.Context, sink string, u ForwardUpdate) error {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		if u.SetCursor {
			if err := tx.Bucket(bucketMeta).Put([]byte(ForwardCursorKey(sink)), u64key(u.Cursor)); err != nil {
				return err
			}
		}
		if len(u.Put) == 0 && len(u.Delete) == 0 {
			return nil
		}
		root, err := tx.CreateBucketIfNotExists(bucketForward)
		if err != nil {
			return err
		}
		b, err := root.CreateBucketIfNotExists([]byte(sink))
		if err != nil {
			return err
		}
		n := forwardDeadCount(b)
		for c, v := range u.Put {
			k := u64key(c)
			if b.Get(k) == nil {
				n++
			}
			if err := b.Put(k, v); err != nil {
				return err
			}
		}
		for _, c := range u.Delete {
			k := u64key(c)
			if b.Get(k) == nil {
				continue
			}
			if err := b.Delete(k); err != nil {
				return err
			}
			n--
		}
		return b.Put(forwardCount, u64key(n))
	})
	if err != nil {
		return fmt.Errorf("forward commit for %s: %w", sink, err)
	}
	return nil
}

func forwardDeadCount(b *bolt.Bucket) uint64 {
	if v := b.Get(forwardCount); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// ForwardDeadCount returns how many dead letters sink holds.
func (s *Store) ForwardDeadCount(sink string) (uint64, error) {
	var n uint64
	err := s.view(func(tx *bolt.Tx) error {
		if b := forwardBucket(tx, sink); b != nil {
			n = forwardDeadCount(b)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("forward dead count of %s: %w", sink, err)
	}
	return n, nil
}

func forwardBucket(tx *bolt.Tx, sink string) *bolt.Bucket {
	root := tx.Bucket(bucketForward)
	if root == nil {
		return nil
	}
	return root.Bucket([]byte(sink))
}

// ForwardDead calls fn with up to limit dead letters of sink, by cursor:
// ascending from just after from when !newestFirst, descending from just
// before from (0: the newest) when newestFirst. fn gets a copy of the value.
func (s *Store) ForwardDead(sink string, from uint64, newestFirst bool, limit int, fn func(cursor uint64, val []byte) error) error {
	err := s.view(func(tx *bolt.Tx) error {
		b := forwardBucket(tx, sink)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		var k, v []byte
		switch {
		case !newestFirst:
			k, v = c.Seek(u64key(from + 1))
			if from == ^uint64(0) {
				return nil
			}
		case from == 0:
			k, v = c.Last()
		default:
			k, v = c.Seek(u64key(from))
			if k == nil {
				k, v = c.Last()
			}
			for k != nil && (len(k) != 8 || binary.BigEndian.Uint64(k) >= from) {
				k, v = c.Prev()
			}
		}
		for n := 0; k != nil && n < limit; {
			if len(k) == 8 {
				if err := fn(binary.BigEndian.Uint64(k), append([]byte(nil), v...)); err != nil {
					return err
				}
				n++
			}
			if newestFirst {
				k, v = c.Prev()
			} else {
				k, v = c.Next()
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("forward dead letters of %s: %w", sink, err)
	}
	return nil
}
