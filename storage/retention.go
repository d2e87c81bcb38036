package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// RetentionPolicy says what Sweep deletes. A zero time deletes nothing of
// that kind.
type RetentionPolicy struct {
	// EventsBefore: events (raw payloads) received before it are deleted.
	// Messages keep their current state, their event count (the total ever
	// received) and their duplicate-detection index.
	EventsBefore time.Time
	// MessagesBefore: messages last seen before it are deleted with their
	// remaining events and index entries, their contribution to the stats
	// counters, and stats hours no remaining message falls in.
	MessagesBefore time.Time
	// BatchKeys bounds the keys one write transaction deletes; 0 means 1000.
	BatchKeys int
	// Pause is slept between transactions, leaving the writer to
	// ingestion; 0 means none.
	Pause time.Duration
}

// SweepResult counts what Sweep deleted.
type SweepResult struct {
	Events   int // events deleted on their own (older than EventsBefore)
	Messages int // messages deleted
	// MessageEvents counts the events deleted with their messages.
	MessageEvents int
	StatsHours    int // stats hour entries deleted
	Transactions  int
}

const (
	defaultRetentionBatch = 1000
	// retentionScan bounds the time-index keys one message batch examines,
	// so a run of old but still active messages cannot make a long
	// transaction.
	retentionScan = 10_000
)

// Sweep deletes what p says is too old, in bounded write transactions, and
// returns what it deleted, also when ctx ends or an error stops it early.
//
// bbolt returns the pages of deleted keys to its freelist and reuses them
// for later writes, so once retention keeps the data steady the file stops
// growing; it never shrinks on its own (compact a copy offline for that).
// Pages freed while a long read transaction (a backup) is open are reused
// only after it ends.
//
// Each batch is a request to the writer, like an event: it shares the
// writer's commits (and fsyncs) with ingestion, and moves the stats
// counters through the transaction's one stats cache. Ingestion waits at
// most one batch.
func (s *Store) Sweep(ctx context.Context, p RetentionPolicy) (SweepResult, error) {
	var res SweepResult
	batch := p.BatchKeys
	if batch <= 0 {
		batch = defaultRetentionBatch
	}
	pause := func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if p.Pause > 0 {
			t := time.NewTimer(p.Pause)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
			}
		}
		return nil
	}
	// Events first: they go from the front of the log, the cheapest
	// deletions, and leave fewer for the message pass to look up.
	if !p.EventsBefore.IsZero() {
		cutoff := p.EventsBefore.UnixNano()
		for {
			if err := pause(); err != nil {
				return res, fmt.Errorf("sweep events: %w", err)
			}
			n, more, err := s.pruneEvents(ctx, cutoff, batch)
			res.Events += n
			res.Transactions++
			if err != nil {
				return res, fmt.Errorf("sweep events: %w", err)
			}
			if !more {
				break
			}
		}
	}
	if !p.MessagesBefore.IsZero() {
		cutoff := p.MessagesBefore.UnixNano()
		var from []byte
		oldest := int64(-1) // FirstSeen of the oldest message kept, -1 = none seen
		for {
			if err := pause(); err != nil {
				return res, fmt.Errorf("sweep messages: %w", err)
			}
			var b messageBatch
			err := s.updateStats(ctx, func(tx *bolt.Tx, sc *statsCache) error {
				b = messageBatch{}
				return b.run(tx, sc, from, cutoff, batch)
			})
			res.Transactions++
			if err != nil {
				return res, fmt.Errorf("sweep messages: %w", err)
			}
			res.Messages += b.messages
			res.MessageEvents += b.events
			if oldest < 0 && b.oldestKept >= 0 {
				oldest = b.oldestKept
			}
			if b.next == nil {
				break
			}
			from = b.next
		}
		// Stats hours before both the cutoff's hour and the oldest kept
		// message's hour describe no stored message any more; between the
		// two, hours whose counts dropped to zero go too.
		floor := hourOf(time.Unix(0, cutoff))
		if oldest >= 0 {
			floor = min(floor, hourOf(time.Unix(0, oldest)))
		}
		from = nil
		for {
			if err := pause(); err != nil {
				return res, fmt.Errorf("sweep stats: %w", err)
			}
			n, next, err := s.pruneStats(ctx, from, floor, hourOf(time.Unix(0, cutoff)), batch)
			res.StatsHours += n
			res.Transactions++
			if err != nil {
				return res, fmt.Errorf("sweep stats: %w", err)
			}
			if next == nil {
				break
			}
			from = next
		}
	}
	return res, nil
}

// pruneEvents deletes up to max events from the front of the log while they
// were received before cutoff (Unix nanos). The log is in arrival order, so
// it stops at the first newer event; an older one behind it (a caller-set
// ReceivedAt) goes with its message.
func (s *Store) pruneEvents(ctx context.Context, cutoff int64, max int) (n int, more bool, err error) {
	err = s.update(ctx, func(tx *bolt.Tx) error {
		n, more = 0, false
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.First(); k != nil; k, v = c.First() {
			at, err := peekEventTime(v)
			if err != nil {
				return fmt.Errorf("event %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if at >= cutoff {
				return nil
			}
			if n == max {
				more = true
				return nil
			}
			// Deleting at the cursor and going back to First avoids
			// bbolt's skip-after-delete when iterating with Next.
			if err := c.Delete(); err != nil {
				return fmt.Errorf("delete event: %w", err)
			}
			n++
		}
		return nil
	})
	return n, more, err
}

// messageBatch is one transaction of the message pass.
type messageBatch struct {
	messages, events int
	// next is the first time-index key not examined, nil at the end.
	next []byte
	// oldestKept is the FirstSeen of the first message examined and kept,
	// -1 if none.
	oldestKept int64
}

// run walks the time index from from (nil = the start) and deletes the
// messages last seen before cutoff, until it has deleted about max keys or
// examined retentionScan entries. FirstSeen ≤ LastSeen, so the walk ends at
// the first entry first seen at or after cutoff.
func (b *messageBatch) run(tx *bolt.Tx, sc *statsCache, from []byte, cutoff int64, max int) error {
	b.oldestKept = -1
	mb, eb, tb := tx.Bucket(bucketMessages), tx.Bucket(bucketEvents), tx.Bucket(bucketByTime)
	type victim struct {
		timeKey, msgKey []byte
		msg             Message
		idx             eventIndex
	}
	// Collect first, delete after: deleting under a bbolt cursor that keeps
	// moving can skip keys.
	var victims []victim
	keys := 0
	c := tb.Cursor()
	k, _ := c.First()
	if from != nil {
		k, _ = c.Seek(from)
	}
	for scanned := 0; ; k, _ = c.Next() {
		if k == nil {
			break
		}
		if len(k) < 8 {
			continue
		}
		first := int64(binary.BigEndian.Uint64(k))
		if first >= cutoff {
			if b.oldestKept < 0 {
				b.oldestKept = first
			}
			break
		}
		if keys >= max || scanned >= retentionScan {
			b.next = slices.Clone(k)
			break
		}
		scanned++
		mk := messageKey(k[8:])
		v := mb.Get(mk)
		if v == nil {
			// A dangling index entry: nothing else to delete.
			victims = append(victims, victim{timeKey: slices.Clone(k)})
			keys++
			continue
		}
		p, err := peekMessage(v)
		if err != nil {
			return fmt.Errorf("message %s: %w", k[8:], err)
		}
		if p.lastSeen >= cutoff {
			if b.oldestKept < 0 {
				b.oldestKept = first
			}
			continue
		}
		vi := victim{timeKey: slices.Clone(k), msgKey: mk}
		if err = decodeMessage(v, &vi.msg, &vi.idx); err != nil {
			return fmt.Errorf("message %s: %w", k[8:], err)
		}
		victims = append(victims, vi)
		if vi.idx.spilled {
			// A spilled history can be any length: it is deleted with what
			// is left of this batch's budget, the message last, and the
			// next batch starts again at this message.
			b.next = slices.Clone(k)
			break
		}
		keys += 2 + len(vi.idx.refs)
	}

	ib := spilledBuckets(tx)
	deleteEvent := func(ref eventRef) error {
		ek := u64key(ref.cursor)
		if eb.Get(ek) == nil {
			return nil // pruned with the old events
		}
		if err := eb.Delete(ek); err != nil {
			return fmt.Errorf("delete event: %w", err)
		}
		b.events++
		return nil
	}
	for i := range victims {
		vi := &victims[i]
		if vi.idx.spilled {
			budget := max - keys
			if budget < 1 {
				budget = 1
			}
			more, err := ib.drop(indexPrefix(vi.msgKey), budget, deleteEvent)
			if err != nil {
				return err
			}
			if more {
				break // the message and its time key go with its last entries
			}
		}
		if err := tb.Delete(vi.timeKey); err != nil {
			return fmt.Errorf("delete time index: %w", err)
		}
		if vi.msgKey == nil {
			continue
		}
		for _, ref := range vi.idx.refs {
			if err := deleteEvent(ref); err != nil {
				return err
			}
		}
		if err := unindexPending(tx, &vi.msg); err != nil {
			return err
		}
		if err := sc.move(tx.Bucket(bucketStats), contributionOf(&vi.msg), contribution{}); err != nil {
			return err
		}
		if err := mb.Delete(vi.msgKey); err != nil {
			return fmt.Errorf("delete message: %w", err)
		}
		b.messages++
	}
	return nil // the writer flushes sc with the transaction
}

// pruneStats deletes up to batch stats hour entries before cutoffHour (Unix
// seconds) that are before floorHour or count no message, walking from from
// (nil = the start). It returns where to continue, nil at the end.
func (s *Store) pruneStats(ctx context.Context, from []byte, floorHour, cutoffHour int64, batch int) (n int, next []byte, err error) {
	if cutoffHour <= 0 {
		return 0, nil, nil
	}
	floor, limit := u64key(uint64(max(floorHour, 0))), u64key(uint64(cutoffHour))
	err = s.updateStats(ctx, func(tx *bolt.Tx, sc *statsCache) error {
		n, next = 0, nil
		b := tx.Bucket(bucketStats)
		// Events applied earlier in this transaction may have moved
		// counters still in the cache: write them first, so the hours read
		// here are current (and a deleted hour is not put back).
		if err := sc.flush(b); err != nil {
			return err
		}
		sc.reset()
		var doomed [][]byte
		c := b.Cursor()
		k, v := c.First()
		if from != nil {
			k, v = c.Seek(from)
		}
		for scanned := 0; k != nil && bytes.Compare(k, limit) < 0; k, v = c.Next() {
			if len(doomed) == batch || scanned == retentionScan {
				next = slices.Clone(k)
				break
			}
			scanned++
			if bytes.Compare(k, floor) >= 0 {
				h := newHourStats()
				if err := decodeHourStats(v, h); err != nil {
					return fmt.Errorf("decode stats hour: %w", err)
				}
				if summarise(h).Total != 0 {
					continue
				}
			}
			doomed = append(doomed, slices.Clone(k))
		}
		for _, k := range doomed {
			if err := b.Delete(k); err != nil {
				return fmt.Errorf("delete stats hour: %w", err)
			}
			n++
		}
		return nil
	})
	return n, next, err
}
