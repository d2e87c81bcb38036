package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// maxBatch caps the requests committed in one transaction, bounding both the
// latency of the batch's first caller and the size of one commit.
const maxBatch = 1024

// MaxNonceLen keeps a nonce well under bbolt's key size limit; the app
// refuses longer ones as malformed (400).
const MaxNonceLen = 1024

// Nonce is a signature nonce to remember until ExpiresAt.
type Nonce struct {
	Value     string
	ExpiresAt time.Time
	// Sum identifies the request that used the nonce (the app hashes its
	// body and signatures). The nonce coming back with the same nonzero Sum
	// is that request retried, answered Retry instead of ErrReplayed; with
	// Sum 0 every repeat is a replay.
	Sum uint64
}

// ApplyResult describes what Apply did.
type ApplyResult struct {
	// Cursor is the stored event's cursor; for a duplicate, the original's.
	Cursor uint64
	// Duplicate means an identical event was already stored for this
	// message and nothing new was written (the nonces still were).
	Duplicate bool
	// Message is the message state after the apply.
	Message Message
	// PreviousStatus is the status before the apply, "" for a new message.
	PreviousStatus string
	// StatusChanged reports whether Message.Status differs from PreviousStatus.
	StatusChanged bool
	// BecameTerminal is true the first time the message reached a terminal
	// status, so metrics count each message once.
	BecameTerminal bool
	// Retry means the nonces were already used by this same request (same
	// Nonce.Sum): it was answered Duplicate with nothing read or written,
	// and Cursor and Message are zero.
	Retry bool
	// OptOutChanged means the event added its number to the opt-out list
	// or took it off (see applyOptOut).
	OptOutChanged bool
}

// Applied is an event a commit stored, with what Apply returned for it.
type Applied struct {
	Event  Event
	Result ApplyResult
	// Missed counts the events dropped, just before this one, because the
	// consumer was behind (see Store.Applied).
	Missed uint64
}

// request is one unit of work for the writer: an event to apply, or a
// generic write (fn). Requests are pooled; done has capacity 1 so the writer
// never blocks answering.
type request struct {
	// apply
	ev      Event
	evBytes []byte
	// keys is Apply's scratch for the payload's sorted keys.
	keys   []string
	hash   uint64
	nonces []Nonce
	// replay marks an event applied again from the journal: its nonces
	// were checked when it was first applied.
	replay bool
	// generic write
	fn func(tx *bolt.Tx) error
	// statsFn is a generic write that also changes the stats counters,
	// through the transaction's one stats cache (see updateStats).
	statsFn func(tx *bolt.Tx, sc *statsCache) error

	res  ApplyResult
	err  error
	done chan struct{}
	// state settles, exactly once per submission, who owns the request:
	// the writer taking it into a transaction, or the caller giving up
	// first. A request the caller gave up on is never committed, so its
	// caller's "not stored" answer stays true; one the writer took is waited
	// for, so its caller never answers before knowing the outcome.
	state atomic.Int32
}

const (
	requestQueued    int32 = iota
	requestTaken           // the writer holds it; the caller waits for done
	requestAbandoned       // the caller gave up; the writer drops it
)

// requestError marks the failure of one request's writes inside a batch
// transaction: the batch is rolled back and retried without that request.
type requestError struct {
	i   int
	err error
}

func (e *requestError) Error() string { return e.err.Error() }

// Apply durably stores ev (assigning ev.Cursor and, if zero, ev.ReceivedAt),
// folds it into its message, updates the indexes and stats counters and
// records the nonces. It returns once the transaction holding it has been
// committed and fsync'd, group-committed with concurrent callers.
//
// If any nonce was already recorded by another request and has not expired,
// Apply returns ErrReplayed and stores nothing; if by this same request (see
// Nonce.Sum), Retry. ErrNonceCapacity means the replay window is full. An
// event identical to one already stored for the message yields Duplicate
// (its nonces are recorded). If ctx ends
// before the writer took the request into a transaction, Apply returns
// ctx.Err() and nothing of it is written; once the writer has taken it,
// Apply waits for the commit's outcome whatever ctx says.
func (s *Store) Apply(ctx context.Context, ev Event, nonces ...Nonce) (ApplyResult, error) {
	if err := ev.Validate(); err != nil {
		return ApplyResult{}, fmt.Errorf("apply event: invalid: %w", err)
	}
	for _, n := range nonces {
		if len(n.Value) > MaxNonceLen {
			return ApplyResult{}, fmt.Errorf("apply event: nonce longer than %d bytes", MaxNonceLen)
		}
	}
	r := s.pool.Get().(*request)
	r.ev = ev
	r.nonces = nonces
	if r.ev.ReceivedAt.IsZero() {
		r.ev.ReceivedAt = s.now()
	}
	normalise(&r.ev)
	// Encode and hash here, on the caller's goroutine, to keep the single
	// writer's work per event small.
	// The sorted keys are only read here: the pooled request keeps the
	// slice for the next event, cleared so it holds no strings.
	keys := r.keys[:0]
	for k := range r.ev.Payload {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	r.hash = contentHash(&r.ev, keys)
	r.evBytes = encodeEvent(r.evBytes[:0], &r.ev, keys)
	clear(keys)
	r.keys = keys[:0]

	if err := s.submit(ctx, r); err != nil {
		return ApplyResult{}, fmt.Errorf("apply event: %w", err)
	}
	res, err := r.res, r.err
	s.release(r)
	if err != nil {
		return ApplyResult{}, fmt.Errorf("apply event: %w", err)
	}
	return res, nil
}

// normalise drops monotonic clock readings and zones so that what Apply
// returns equals what a later read decodes.
func normalise(ev *Event) {
	ev.ReceivedAt = ev.ReceivedAt.UTC().Round(0)
	for _, p := range ev.Details.times() {
		// A time already in normal form (every callback's: parsed in
		// UTC, no monotonic reading) is kept, not copied; the event's
		// other references (Payload) are the caller's too.
		if *p != nil && **p != (*p).UTC().Round(0) {
			t := (*p).UTC().Round(0)
			*p = &t
		}
	}
}

// update runs fn in a write transaction through the writer.
func (s *Store) update(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	r := s.pool.Get().(*request)
	r.fn = fn
	if err := s.submit(ctx, r); err != nil {
		return err
	}
	err := r.err
	s.release(r)
	return err
}

// updateStats runs fn in a write transaction through the writer, with the
// transaction's stats cache: counters fn moves are flushed with those of
// the events applied beside it, so neither overwrites the other.
func (s *Store) updateStats(ctx context.Context, fn func(tx *bolt.Tx, sc *statsCache) error) error {
	r := s.pool.Get().(*request)
	r.statsFn = fn
	if err := s.submit(ctx, r); err != nil {
		return err
	}
	err := r.err
	s.release(r)
	return err
}

// submit queues r and waits for its answer. If ctx ends before the writer
// took r, r is abandoned: the writer drops it unwritten and submit returns
// ctx.Err(). If the writer already took it, submit waits for the commit, so
// the caller never reports "not stored" for a write that lands. On error r
// is not returned to the pool: the writer may still hold it.
func (s *Store) submit(ctx context.Context, r *request) error {
	r.state.Store(requestQueued)
	s.mu.RLock()
	if s.closing {
		s.mu.RUnlock()
		return ErrClosed
	}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	s.mu.RUnlock()
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		if r.state.CompareAndSwap(requestQueued, requestAbandoned) {
			return ctx.Err()
		}
		<-r.done
		return nil
	}
}

// take claims r for the transaction being built; false means its caller
// gave up and r must be dropped unwritten.
func take(r *request) bool {
	return r.state.CompareAndSwap(requestQueued, requestTaken)
}

func (s *Store) release(r *request) {
	done, buf, keys := r.done, r.evBytes, r.keys
	if cap(buf) > 64<<10 {
		buf = nil
	}
	if cap(keys) > 256 {
		keys = nil
	}
	*r = request{done: done, evBytes: buf[:0], keys: keys[:0]}
	s.pool.Put(r)
}

// writer is the single goroutine that writes. It takes the first queued
// request, drains whatever else is queued (up to maxBatch) and handles them
// as one batch. Batches of events go into the open journaled transaction
// (see journal.go and applyJournaled); a batch holding any other write
// commits that transaction first, then runs in a transaction of its own,
// committed before its callers are answered. Taking whatever is queued as
// soon as the previous batch ends, rather than waiting for a batch to fill
// (as db.Batch does), is what lets concurrent callers share each fsync.
func (s *Store) writer() {
	defer close(s.done)
	w := s.w
	idle := time.NewTimer(time.Hour)
	idle.Stop()
	for {
		var first *request
		if w.tx != nil {
			// Commit when no request comes for journalIdle, or the
			// transaction reaches journalMaxAge.
			wait := min(w.idleCommit, max(w.maxAge-time.Since(w.txStart), 0))
			idle.Reset(wait)
			select {
			case r, ok := <-s.reqs:
				idle.Stop()
				if !ok {
					w.closeJournal()
					return
				}
				first = r
			case <-idle.C:
				_ = w.commitTx()
				continue
			}
		} else {
			r, ok := <-s.reqs
			if !ok {
				w.closeJournal()
				return
			}
			first = r
		}
		w.batch = w.batch[:0]
		if take(first) {
			w.batch = append(w.batch, first)
		}
	drain:
		for len(w.batch) < maxBatch {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break drain
				}
				if take(r) {
					w.batch = append(w.batch, r)
				}
			default:
				break drain
			}
		}
		if len(w.batch) == 0 {
			continue
		}
		if w.s.beforeCommit != nil {
			w.s.beforeCommit()
		}
		if onlyApplies(w.batch) {
			w.applyJournaled()
		} else if err := w.commitTx(); err != nil {
			w.failLive(w.batch, fmt.Errorf("commit: %w", err))
		} else {
			w.commit()
		}
		for _, r := range w.batch {
			r.done <- struct{}{}
		}
		clear(w.batch)
		if w.tx != nil && (w.txEvents >= journalMaxEvents || time.Since(w.txStart) >= w.maxAge) {
			_ = w.commitTx()
		}
	}
}

// closeJournal commits what the journal holds at Close and empties it.
func (w *writerState) closeJournal() {
	if err := w.commitTx(); err == nil && w.tx == nil {
		_ = w.s.journal.clear()
	}
}

func onlyApplies(batch []*request) bool {
	for _, r := range batch {
		if r.fn != nil || r.statsFn != nil {
			return false
		}
	}
	return true
}

// writerState is reused across batches to keep the hot loop allocation-light.
type writerState struct {
	s     *Store
	batch []*request
	live  []*request // requests still part of the transaction being tried
	stats statsCache
	idx   eventIndex
	buf   []byte
	msg   Message
	now   int64 // Unix nanos at the start of the batch
	// pendingDelta is the change of the pending count in this transaction.
	pendingDelta int64

	// The open journaled transaction (journal.go): nil when none.
	tx      *bolt.Tx
	b       buckets
	cursor  uint64 // last cursor assigned in tx
	txStart time.Time
	// txEvents counts the journaled events tx holds.
	txEvents int
	// seq is the last journal record written; records holds the payloads
	// of those not yet committed, to apply again if tx is rolled back.
	seq     uint64
	records [][]byte
	entries []journalEntry
	replay  request
	// idleCommit and maxAge are journalIdle and journalMaxAge (see
	// Options.holdJournal).
	idleCommit, maxAge time.Duration
	// broken is the error of the last failed commit of journaled batches:
	// until one succeeds, new events are refused.
	broken error
}

// commit applies w.batch in one transaction of its own. A request whose
// writes fail is answered with its error and the batch retried without it;
// a failed commit fails every request still in the batch.
func (w *writerState) commit() {
	w.live = append(w.live[:0], w.batch...)
	for len(w.live) > 0 {
		start := time.Now()
		err := w.s.db.Update(w.applyAll)
		if err == nil && w.s.onCommit != nil {
			w.s.onCommit(time.Since(start), len(w.live))
		}
		if err == nil {
			w.s.nonces.promote(w.now)
			w.s.nonces.committed()
			w.publish()
		}
		var re *requestError
		if errors.As(err, &re) {
			w.live[re.i].err = re.err
			w.live = slices.Delete(w.live, re.i, re.i+1)
			continue
		}
		if err != nil {
			if errors.Is(err, bolt.ErrDatabaseNotOpen) {
				err = ErrClosed
			}
			for _, r := range w.live {
				r.res, r.err = ApplyResult{}, fmt.Errorf("commit: %w", err)
			}
		}
		w.s.health.noteCommit(w.s.now(), countApplies(w.live), err)
		break
	}
	clear(w.live)
}

// applyJournaled applies a batch of events to the open transaction, writes
// them to the journal and, once that is durable, lets their callers be
// answered. A request whose writes fail is answered with its error: the
// transaction is rolled back and rebuilt from the journal's records, and
// the batch tried again without it.
func (w *writerState) applyJournaled() {
	if w.broken != nil {
		// The last commit failed: nothing new until the journaled events
		// are in the database.
		if err := w.commitTx(); err != nil {
			w.failLive(w.batch, fmt.Errorf("commit: %w", err))
			return
		}
	}
	start := time.Now()
	w.live = append(w.live[:0], w.batch...)
	defer clear(w.live)
	for len(w.live) > 0 {
		if w.tx == nil {
			if err := w.beginTx(); err != nil {
				w.failLive(w.live, err)
				return
			}
		}
		w.now = w.s.now().UnixNano()
		i, err := w.applyLive()
		if err == nil {
			break
		}
		w.live[i].err = err
		w.live = slices.Delete(w.live, i, i+1)
		w.rollbackTx()
	}
	w.entries = w.entries[:0]
	for _, r := range w.live {
		if r.err == nil && !r.res.Retry {
			w.entries = append(w.entries, journalEntry{evBytes: r.evBytes, hash: r.hash, nonces: r.nonces})
		}
	}
	if len(w.entries) > 0 {
		rec, err := w.s.journal.append(w.seq+1, w.entries)
		if err != nil {
			// Nothing of this batch is durable: roll it back (with the
			// journaled batches before it, rebuilt on the next batch) and
			// answer every event of it with the error, retries included.
			w.rollbackTx()
			w.failLive(w.live, err)
			return
		}
		w.seq++
		w.records = append(w.records, rec)
		w.txEvents += len(w.entries)
		w.s.acked.Store(w.seq)
	}
	w.s.nonces.promote(w.now)
	if w.s.onCommit != nil {
		w.s.onCommit(time.Since(start), len(w.live))
	}
	w.s.health.noteCommit(w.s.now(), countApplies(w.live), nil)
	w.publish()
}

// failLive answers every request in rs with err.
func (w *writerState) failLive(rs []*request, err error) {
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		err = ErrClosed
	}
	for _, r := range rs {
		r.res, r.err = ApplyResult{}, err
	}
	w.s.health.noteCommit(w.s.now(), countApplies(rs), err)
}

// applyLive applies w.live to the open transaction; on a request's failure
// it returns its index and error.
func (w *writerState) applyLive() (int, error) {
	for i, r := range w.live {
		r.res, r.err = ApplyResult{}, nil
		next, err := w.applyOne(&w.b, r, w.cursor)
		if err != nil {
			return i, err
		}
		w.cursor = next
	}
	return 0, nil
}

// beginTx opens the journaled transaction and applies to it again the
// journaled batches not yet committed (after a rollback or at Open).
func (w *writerState) beginTx() error {
	tx, err := w.s.db.Begin(true)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	w.tx = tx
	w.setup(tx, &w.b)
	w.cursor = w.b.events.Sequence()
	w.txStart, w.txEvents = time.Now(), 0
	w.now = w.s.now().UnixNano()
	r := &w.replay
	for _, rec := range w.records {
		entries, err := decodeJournalBatch(rec)
		if err != nil {
			w.rollbackTx()
			return fmt.Errorf("journal: %w", err)
		}
		for _, e := range entries {
			ev, err := decodeEvent(0, e.evBytes)
			if err != nil {
				w.rollbackTx()
				return fmt.Errorf("journal: event: %w", err)
			}
			*r = request{ev: ev, evBytes: e.evBytes, hash: e.hash, nonces: e.nonces, replay: true}
			next, err := w.applyOne(&w.b, r, w.cursor)
			if err == nil {
				err = r.err
			}
			if err != nil {
				w.rollbackTx()
				return fmt.Errorf("journal: apply again: %w", err)
			}
			w.cursor = next
		}
		w.txEvents += len(entries)
	}
	*r = request{}
	w.s.nonces.promote(w.now)
	return nil
}

func (w *writerState) rollbackTx() {
	if w.tx != nil {
		_ = w.tx.Rollback()
		w.tx = nil
	}
	w.s.nonces.rollback()
}

// commitTx commits the journaled transaction (rebuilding it first if a
// failed commit rolled it back) and starts the journal over.
func (w *writerState) commitTx() error {
	if w.tx == nil {
		if len(w.records) == 0 {
			return nil
		}
		if err := w.beginTx(); err != nil {
			w.broken = err
			w.s.health.noteCommit(w.s.now(), 1, err)
			return err
		}
	}
	err := w.finish(w.tx, &w.b, w.cursor, true)
	if err == nil {
		err = w.tx.Commit()
	} else {
		_ = w.tx.Rollback()
	}
	w.tx = nil
	if err != nil {
		w.s.nonces.rollback()
		if errors.Is(err, bolt.ErrDatabaseNotOpen) {
			err = ErrClosed
		}
		w.broken = fmt.Errorf("commit journaled events: %w", err)
		w.s.health.noteCommit(w.s.now(), 1, w.broken)
		return w.broken
	}
	w.broken = nil
	w.s.nonces.committed()
	clear(w.records)
	w.records = w.records[:0]
	w.s.journal.reset()
	w.s.markApplied(w.seq)
	return nil
}

// publish hands every event the commit newly stored to the Applied feed,
// in cursor order, before any caller is answered: publishing from the
// callers' goroutines instead would reorder events of one batch. It never
// waits (see feed).
func (w *writerState) publish() {
	for _, r := range w.live {
		if r.fn == nil && r.statsFn == nil && r.err == nil && !r.res.Duplicate {
			w.s.feed.send(Applied{Event: r.ev, Result: r.res})
		}
	}
}

// setup prepares a write transaction for applying events.
func (w *writerState) setup(tx *bolt.Tx, b *buckets) {
	w.s.nonces.begin()
	w.stats.reset()
	w.pendingDelta = 0
	*b = buckets{
		messages:    tx.Bucket(bucketMessages),
		events:      tx.Bucket(bucketEvents),
		byTime:      tx.Bucket(bucketByTime),
		nonces:      tx.Bucket(bucketNonces),
		nonceExpiry: tx.Bucket(bucketNonceExpiry),
		stats:       tx.Bucket(bucketStats),
		pending:     tx.Bucket(bucketPending),
		index:       spilledBuckets(tx),
		optouts:     tx.Bucket(bucketOptOuts),
	}
	b.msgCursor = b.messages.Cursor()
	// Append-only buckets: pack pages full instead of bbolt's default 50%
	// split, halving the pages written and stored.
	b.events.FillPercent = 1.0
	b.nonceExpiry.FillPercent = 0.95
	b.byTime.FillPercent = 0.95
}

// finish writes what a transaction's applies accumulated: the event
// sequence, pending count, nonces, stats and, for the journaled
// transaction, the last journal record it holds.
func (w *writerState) finish(tx *bolt.Tx, b *buckets, cursor uint64, journaled bool) error {
	if cursor != b.events.Sequence() {
		if err := b.events.SetSequence(cursor); err != nil {
			return fmt.Errorf("set event sequence: %w", err)
		}
	}
	meta := tx.Bucket(bucketMeta)
	if err := addPendingCount(meta, w.pendingDelta); err != nil {
		return err
	}
	if journaled {
		if err := meta.Put([]byte(metaJournalApplied), u64key(w.seq)); err != nil {
			return fmt.Errorf("put journal sequence: %w", err)
		}
	}
	if err := w.s.nonces.flush(tx); err != nil {
		return err
	}
	return w.stats.flush(b.stats)
}

func (w *writerState) applyAll(tx *bolt.Tx) error {
	var b buckets
	w.setup(tx, &b)
	cursor := b.events.Sequence()
	w.now = w.s.now().UnixNano()
	for i, r := range w.live {
		r.res, r.err = ApplyResult{}, nil
		if r.fn != nil {
			if err := r.fn(tx); err != nil {
				return &requestError{i: i, err: err}
			}
			continue
		}
		if r.statsFn != nil {
			if err := r.statsFn(tx, &w.stats); err != nil {
				return &requestError{i: i, err: err}
			}
			continue
		}
		next, err := w.applyOne(&b, r, cursor)
		if err != nil {
			return &requestError{i: i, err: err}
		}
		cursor = next
	}
	return w.finish(tx, &b, cursor, false)
}

type buckets struct {
	messages, events, byTime, nonces, nonceExpiry, stats, pending, optouts *bolt.Bucket
	index                                                                  indexBuckets
	// msgCursor serves the per-event message lookup: Bucket.Get makes a
	// new cursor (and grows its stack) every call, a kept one reuses its
	// stack. Seek repositions from the root, so puts in between are fine.
	msgCursor *bolt.Cursor
}

// getMessage is b.messages.Get(key) through the transaction's cursor.
func (b *buckets) getMessage(key []byte) []byte {
	k, v := b.msgCursor.Seek(key)
	if !bytes.Equal(k, key) {
		return nil
	}
	return v
}

// applyOne applies one event request. Checks that reject the request
// (replay) come before any write, so the request is answered with r.err and
// the transaction goes on. An error returned means writes may have happened
// and the batch must be retried without this request.
func (w *writerState) applyOne(b *buckets, r *request, cursor uint64) (uint64, error) {
	if !r.replay && w.checkNonces(r) {
		return cursor, nil
	}

	ev := &r.ev
	key := messageKey(ev.MessageUUID)
	m := &w.msg
	*m = Message{}
	idx := &w.idx
	idx.refs, idx.spilled = idx.refs[:0], false
	exists := false
	if v := b.getMessage(key); v != nil {
		if err := decodeMessage(v, m, idx); err != nil {
			// Answer this request with the error; nothing was written yet.
			r.err = fmt.Errorf("decode message %s: %w", ev.MessageUUID, err)
			return cursor, nil
		}
		exists = true
	}
	if err := w.recordNonces(b, r); err != nil {
		return cursor, err
	}
	if dup, ok := findDuplicate(b.index, key, idx, r.hash); ok {
		r.res = ApplyResult{Cursor: dup, Duplicate: true, Message: cloneMessage(m), PreviousStatus: m.Status}
		return cursor, nil
	}

	before := contributionOf(m)
	prevStatus, prevFirst, prevLast := m.Status, m.FirstSeen, m.LastSeen
	cursor++
	ev.Cursor = cursor
	m.Fold(ev)
	if err := b.index.add(indexPrefix(key), idx, eventRef{cursor: cursor, hash: r.hash}); err != nil {
		return cursor, err
	}

	// The value must outlive the request (pooled, its buffer reused once
	// its caller is answered): the journaled transaction commits later.
	if err := b.events.Put(u64key(cursor), bytes.Clone(r.evBytes)); err != nil {
		return cursor, fmt.Errorf("put event: %w", err)
	}
	if w.s.applyFault != nil {
		if err := w.s.applyFault(ev); err != nil {
			return cursor, err
		}
	}
	w.buf = encodeMessage(w.buf[:0], m, idx)
	// bbolt keeps a reference to the value until commit: it cannot be a
	// reused buffer.
	if err := b.messages.Put(key, bytes.Clone(w.buf)); err != nil {
		return cursor, fmt.Errorf("put message: %w", err)
	}
	if !exists || !prevFirst.Equal(m.FirstSeen) {
		if exists {
			if err := b.byTime.Delete(byTimeKey(prevFirst, ev.MessageUUID)); err != nil {
				return cursor, fmt.Errorf("delete time index: %w", err)
			}
		}
		if err := b.byTime.Put(byTimeKey(m.FirstSeen, ev.MessageUUID), nil); err != nil {
			return cursor, fmt.Errorf("put time index: %w", err)
		}
	}
	delta, err := indexPending(b.pending, exists, prevStatus, prevLast, m)
	if err != nil {
		return cursor, err
	}
	w.pendingDelta += delta
	if err := w.stats.move(b.stats, before, contributionOf(m)); err != nil {
		return cursor, err
	}
	optOutChanged, err := applyOptOut(b.optouts, ev, m)
	if err != nil {
		return cursor, err
	}
	r.res = ApplyResult{
		OptOutChanged:  optOutChanged,
		Cursor:         cursor,
		Message:        cloneMessage(m),
		PreviousStatus: prevStatus,
		StatusChanged:  prevStatus != m.Status,
		BecameTerminal: !IsTerminal(prevStatus) && IsTerminal(m.Status),
	}
	return cursor, nil
}

// findDuplicate returns the cursor of the message's event with content hash
// h: a scan of the inline entries, or one lookup once the index spilled.
func findDuplicate(ib indexBuckets, key []byte, idx *eventIndex, h uint64) (uint64, bool) {
	if idx.spilled {
		return ib.find(indexPrefix(key), h)
	}
	for _, ref := range idx.refs {
		if ref.hash == h {
			return ref.cursor, true
		}
	}
	return 0, false
}

// cloneMessage copies m so the caller's result shares nothing with the
// writer's reused state.
func cloneMessage(m *Message) Message {
	c := *m
	if m.MediaURLs != nil {
		c.MediaURLs = slices.Clone(m.MediaURLs)
	}
	return c
}

func byTimeKey(t time.Time, uuid string) []byte {
	k := make([]byte, 8, 8+len(uuid))
	binary.BigEndian.PutUint64(k, uint64(t.UnixNano()))
	return append(k, uuid...)
}
