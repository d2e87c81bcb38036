package storage

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ExportFilter selects messages for ExportMessages. Zero fields do not filter.
type ExportFilter struct {
	// Status is an exact status; "pending" means any non-terminal status.
	Status string
	// Since (inclusive) and Until (exclusive) bound FirstSeen.
	Since, Until time.Time
}

// Export chunking: each read transaction collects at most exportChunk
// messages and examines at most exportScan time-index keys, so no
// transaction stays open for long whatever the store's size or the filter.
const (
	exportChunk = 1000
	exportScan  = 20_000
)

// ExportMessages calls fn for every message matching f, oldest first by
// FirstSeen (ties by MessageUUID), and stops at fn's first error, which it
// returns. It reads the time index in chunks, each in its own short read
// transaction resumed from the last key, and calls fn between transactions:
// memory stays bounded by one chunk and a slow consumer holds no transaction
// open. The export is therefore not one snapshot: a message stored while it
// runs appears if its key is still ahead of the walk.
func (s *Store) ExportMessages(f ExportFilter, fn func(Message) error) error {
	from := u64key(uint64(max(f.Since.UnixNano(), 0)))
	if f.Since.IsZero() {
		from = nil
	}
	var until uint64 // exclusive bound on the key's time, 0 = none
	if !f.Until.IsZero() {
		until = uint64(max(f.Until.UnixNano(), 0))
	}
	msgs := make([]Message, 0, exportChunk)
	for {
		msgs = msgs[:0]
		var next []byte
		err := s.view(func(tx *bolt.Tx) error {
			mb := tx.Bucket(bucketMessages)
			c := tx.Bucket(bucketByTime).Cursor()
			k, _ := c.First()
			if from != nil {
				k, _ = c.Seek(from)
			}
			for scanned := 0; k != nil; k, _ = c.Next() {
				if len(k) < 8 {
					continue
				}
				if until != 0 && binary.BigEndian.Uint64(k) >= until {
					return nil
				}
				if len(msgs) == exportChunk || scanned == exportScan {
					// k is not examined yet: the next chunk starts at it.
					next = slices.Clone(k)
					return nil
				}
				scanned++
				v := mb.Get(messageKey(k[8:]))
				if v == nil {
					continue
				}
				p, err := peekMessage(v)
				if err != nil {
					return fmt.Errorf("message %s: %w", k[8:], err)
				}
				if !matchStatus(f.Status, string(p.status)) {
					continue
				}
				msgs = append(msgs, Message{})
				if err = decodeMessage(v, &msgs[len(msgs)-1], nil); err != nil {
					return fmt.Errorf("message %s: %w", k[8:], err)
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("export messages: %w", err)
		}
		for _, m := range msgs {
			if err := fn(m); err != nil {
				return err
			}
		}
		if next == nil {
			return nil
		}
		from = next
	}
}

// matchStatus applies a status filter: "" matches all, StatusPending every
// non-terminal status, anything else exactly.
func matchStatus(filter, status string) bool {
	switch filter {
	case "":
		return true
	case StatusPending:
		return awaitsReport(status)
	}
	return status == filter
}
