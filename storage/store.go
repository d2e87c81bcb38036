package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrLocked means another process holds the database file open.
var ErrLocked = errors.New("data dir locked by another plivo-dlr process")

// Bucket names. Every bucket is created once by Open.
var (
	// bucketMessages: messageKey(MessageUUID) → encoded Message + its event
	// index, inline or spilled (see encodeMessage, eventindex.go).
	bucketMessages = []byte("messages")
	// bucketEvents: 8-byte big-endian cursor → encoded Event (append-only).
	bucketEvents = []byte("events")
	// bucketByTime: 8-byte big-endian FirstSeen Unix nanos + MessageUUID →
	// empty. Newest-first listing and, later, retention.
	bucketByTime = []byte("by_time")
	// bucketNonces: nonce → 8-byte big-endian expiry Unix nanos. Written by
	// versions before nonce_log (nonce.go): now only read at Open and purged.
	bucketNonces = []byte("nonces")
	// bucketNonceExpiry: 8-byte expiry + nonce → empty, so PurgeNonces reads
	// only expired entries instead of scanning every nonce.
	bucketNonceExpiry = []byte("nonce_expiry")
	// bucketStats: 8-byte big-endian hour start (Unix seconds) → hourStats.
	bucketStats = []byte("stats")
	// bucketMeta: free-form key → value (schema version, app settings).
	bucketMeta = []byte("meta")

	allBuckets = [][]byte{bucketMessages, bucketEvents, bucketByTime, bucketNonces, bucketNonceExpiry, bucketStats, bucketMeta, bucketPending,
		bucketMessageEvents, bucketMessageHashes, bucketOptOuts, bucketStatsMinute}
)

// Meta keys the store itself uses.
const (
	metaSchemaVersion = "schema_version"
	metaLastPing      = "last_ping"
)

// Options tune Open.
type Options struct {
	// Now is the clock, for tests; nil means time.Now.
	Now func() time.Time
	// LockTimeout bounds the wait for bbolt's file lock; 0 means 1s. A second
	// process fails with ErrLocked instead of hanging.
	LockTimeout time.Duration
	// NoSync skips fsync on commit. Only for benchmarks and bulk loads: a
	// crash can lose acknowledged writes or corrupt the file.
	NoSync bool
	// SyncFreelist makes every commit write bbolt's freelist, as bbolt does
	// by default, so Open reads it instead of rebuilding it. Off by default:
	// see Open.
	SyncFreelist bool
	// OnCommit, if set, is called by the writer after each batch made
	// durable with its duration (apply and journal write with its
	// fdatasync, or apply and bbolt commit for a batch holding other
	// writes) and the number of requests it held: an observer of the
	// writer's timing, for metrics, that runs on the writer goroutine and
	// must only record the numbers.
	// What a commit stored goes to the consumer of Store.Applied instead.
	//
	// (It is not merged into Applied: a histogram observation is constant
	// work, and commit latency must be measured even when no one consumes
	// events.)
	OnCommit func(d time.Duration, requests int)
	// AppliedBuffer bounds the events waiting for the consumer of
	// Store.Applied; 0 means DefaultAppliedBuffer.
	AppliedBuffer int
	// BeforeCommit, if set, runs on the writer goroutine before each batch
	// is applied. Tests use it to inject a slow commit (a stalled disk).
	BeforeCommit func()
	// CheckTimeout bounds the integrity check Open runs on an existing
	// file before bbolt maps it (check.go); 0 means DefaultCheckTimeout,
	// negative skips the check.
	CheckTimeout time.Duration
	// MaxNonces caps the unexpired nonces remembered (see nonce.go); 0
	// means DefaultMaxNonces. At the cap new nonces get ErrNonceCapacity.
	MaxNonces int

	// holdJournal keeps the journaled transaction open until another kind
	// of write or Close (no idle or age commits): tests use it to catch the
	// state a crash leaves.
	holdJournal bool
	// applyFault, if set, is called by the writer after an event's first
	// write into the transaction: an error fails that request as a bbolt
	// put would, so tests reach the rollback and rebuild of the journaled
	// transaction (bbolt puts fail only on corruption or resource
	// exhaustion).
	applyFault func(ev *Event) error
	// journalFault, if set, is called before each fdatasync of the
	// journal: an error stands for the fdatasync failing (EIO).
	journalFault func() error
}

// Store is the bbolt-backed system of record. All writes go through one
// writer goroutine that group-commits whatever is queued; reads run
// concurrently in their own read transactions.
type Store struct {
	db       *bolt.DB
	path     string
	now      func() time.Time
	onCommit func(time.Duration, int)
	// beforeCommit is Options.BeforeCommit.
	beforeCommit func()
	applyFault   func(ev *Event) error
	// nonces is the replay-protection index (nonce.go), writer-owned.
	nonces *nonceIndex
	// health tracks recent commit outcomes for readiness (health.go).
	health commitHealth
	// feed is the Applied channel.
	feed feed
	// checked is what the integrity check at Open found.
	checked CheckReport
	// backupMu makes backup copies one at a time, so each one's free-space
	// check sees the space the previous copies took.
	backupMu sync.Mutex

	// mu guards sending on reqs against Close closing it: senders hold the
	// read lock, Close takes the write lock.
	mu      sync.RWMutex
	closing bool
	closed  atomic.Bool
	reqs    chan *request
	done    chan struct{} // closed when the writer has exited
	pool    sync.Pool     // of *request

	// journalReplayed and journalGap are what Open found in the journal.
	journalReplayed int
	journalGap      bool
	// w is the writer's state; journal its journal (journal.go).
	w       *writerState
	journal *journal
	// acked is the last journal record whose events were acknowledged,
	// applied the last one committed to the database; appliedCh is closed
	// (and replaced) at each commit, for readers waiting in awaitApplied.
	acked, applied atomic.Uint64
	appliedMu      sync.Mutex
	appliedCh      chan struct{}
}

// ErrEmptyFile is returned by Open for an existing zero-length database file.
var ErrEmptyFile = errors.New("database file is empty (zero bytes): restore it from a backup, or remove it to start a new database")

// Open opens (creating if needed) the database at path, creates its buckets,
// checks the schema version and starts the writer.
func Open(path string, opts Options) (*Store, error) {
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = time.Second
	}
	// bbolt initialises a zero-length file as a new, empty database: after
	// a botched copy or restore that would silently start over with no
	// history. An empty file is refused; a missing one is created.
	if fi, err := os.Stat(path); err == nil && fi.Size() == 0 {
		return nil, fmt.Errorf("open store %s: %w", path, ErrEmptyFile)
	}
	var checked CheckReport
	if budget := opts.CheckTimeout; budget >= 0 {
		if budget == 0 {
			budget = DefaultCheckTimeout
		}
		var err error
		if checked, err = checkFile(path, timeout, budget); err != nil {
			var ce *CorruptError
			if errors.As(err, &ce) { // names the file already
				return nil, fmt.Errorf("open store: %w", err)
			}
			return nil, fmt.Errorf("open store %s: %w", path, err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: timeout,
		NoSync:  opts.NoSync,
		// The hashmap freelist keeps allocation O(1) as the file grows.
		FreelistType: bolt.FreelistMapType,
		// The freelist is not written on commit (as etcd does). After a
		// retention sweep it lists every freed page, and writing it made
		// each commit write about 180 KB more (22,500 free pages after
		// deleting 27,000 messages; BenchmarkCommitAfterSweep), growing
		// with what a sweep frees; commits are the bottleneck of ingestion.
		// The price is paid once, at Open, which rebuilds the list by
		// walking the file: 20-240 ms for that ~100 MB file (seconds for a
		// multi-GB file on a cold cache). Crash safety is the same: a
		// rebuilt list is always right.
		NoFreelistSync: !opts.SyncFreelist,
		// A large initial mapping avoids remaps, which must wait for every
		// open read transaction (a long backup would stall ingestion).
		InitialMmapSize: 1 << 30,
	})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: %w (waited %s): %w", path, ErrLocked, timeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := db.Update(initialize); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	nonces, err := openNonceIndex(db, now(), opts.MaxNonces)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{
		nonces:       nonces,
		db:           db,
		path:         path,
		now:          opts.Now,
		reqs:         make(chan *request, maxBatch),
		onCommit:     opts.OnCommit,
		beforeCommit: opts.BeforeCommit,
		applyFault:   opts.applyFault,
		done:         make(chan struct{}),
		checked:      checked,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.feed.size = opts.AppliedBuffer; s.feed.size <= 0 {
		s.feed.size = DefaultAppliedBuffer
	}
	s.pool.New = func() any { return &request{done: make(chan struct{}, 1)} }
	s.appliedCh = make(chan struct{})
	s.w = &writerState{s: s, batch: make([]*request, 0, maxBatch), stats: statsCache{now: s.now},
		idleCommit: journalIdle, maxAge: journalMaxAge}
	if opts.holdJournal {
		s.w.idleCommit, s.w.maxAge = time.Hour, time.Hour
	}
	if err := s.openJournal(opts.NoSync, opts.journalFault); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	go s.writer()
	return s, nil
}

// openJournal opens the journal and commits the batches it holds that the
// database does not: what was acknowledged before a crash.
func (s *Store) openJournal(noSync bool, fault func() error) error {
	j, err := openJournal(s.path, noSync)
	if err != nil {
		return err
	}
	j.fault = fault
	var applied uint64
	err = s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get([]byte(metaJournalApplied)); len(v) == 8 {
			applied = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	if err != nil {
		_ = j.close()
		return fmt.Errorf("read journal sequence: %w", err)
	}
	records, events, last, gap, err := readJournal(j.f, applied)
	if err != nil {
		_ = j.close()
		return fmt.Errorf("read journal %s: %w", j.path, err)
	}
	s.journal = j
	s.journalReplayed, s.journalGap = events, gap
	s.w.seq, s.w.records = last, records
	s.acked.Store(last)
	s.applied.Store(applied)
	if err := s.w.commitTx(); err != nil {
		_ = j.close()
		return fmt.Errorf("apply journal %s: %w", j.path, err)
	}
	return nil
}

// JournalReplayed reports how many acknowledged events Open found in the
// journal and not in the database (after a crash) and committed; gap, that
// the journal held records that do not continue this database (it was
// replaced, e.g. by a restored backup) and were ignored.
func (s *Store) JournalReplayed() (events int, gap bool) { return s.journalReplayed, s.journalGap }

// markApplied records that journal records up to seq are committed and
// wakes the readers waiting for them.
func (s *Store) markApplied(seq uint64) {
	s.applied.Store(seq)
	s.appliedMu.Lock()
	close(s.appliedCh)
	s.appliedCh = make(chan struct{})
	s.appliedMu.Unlock()
}

// awaitApplied waits until every event acknowledged so far is committed,
// so a read sees what was answered before it began. It gives up after
// maxApplyWait (a failing disk must not hang every reader) and reads what
// is committed.
func (s *Store) awaitApplied() {
	target := s.acked.Load()
	if s.applied.Load() >= target {
		return
	}
	timer := time.NewTimer(maxApplyWait)
	defer timer.Stop()
	for s.applied.Load() < target {
		s.appliedMu.Lock()
		ch := s.appliedCh
		s.appliedMu.Unlock()
		if s.applied.Load() >= target {
			return
		}
		select {
		case <-ch:
		case <-s.done:
			return
		case <-timer.C:
			return
		}
	}
}

// maxApplyWait bounds awaitApplied.
const maxApplyWait = 2 * time.Second

func initialize(tx *bolt.Tx) error {
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	meta := tx.Bucket(bucketMeta)
	var version uint64
	if v := meta.Get([]byte(metaSchemaVersion)); v != nil {
		if len(v) != 8 {
			return fmt.Errorf("schema version: %w", errCorrupt)
		}
		version = binary.BigEndian.Uint64(v)
	} else if tx.Bucket(bucketEvents).Sequence() == 0 {
		version = schemaVersion // fresh file
	}
	if version > schemaVersion {
		return fmt.Errorf("schema version %d is newer than this binary supports (%d)", version, schemaVersion)
	}
	// Upgrade an older file step by step (see migrate.go).
	version, err := migrate(tx, version, migrations)
	if err != nil {
		return err
	}
	return meta.Put([]byte(metaSchemaVersion), u64key(version))
}

// Close drains queued writes, stops the writer and closes the file. Later
// calls, and every other method afterwards, return ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closing = true
	close(s.reqs)
	s.mu.Unlock()
	<-s.done
	s.feed.close()
	s.closed.Store(true)
	jerr := s.journal.close()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	if jerr != nil {
		return fmt.Errorf("close store: journal: %w", jerr)
	}
	return nil
}

// Checked reports the integrity check Open ran on the file.
func (s *Store) Checked() CheckReport { return s.checked }

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Size returns the database file's size in bytes, 0 if unknown.
func (s *Store) Size() int64 {
	fi, err := os.Stat(s.path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// view runs fn in a read transaction, mapping a closed database to ErrClosed.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	s.awaitApplied()
	err := s.db.View(fn)
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// GetMeta returns a copy of the meta value stored under key, or ErrNotFound.
func (s *Store) GetMeta(key string) ([]byte, error) {
	var val []byte
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get([]byte(key))
		if v == nil {
			return ErrNotFound
		}
		val = append([]byte{}, v...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get meta %q: %w", key, err)
	}
	return val, nil
}

// PutMeta durably stores val under key in the meta bucket. The store's own
// schema version key cannot be written.
func (s *Store) PutMeta(key string, val []byte) error {
	if key == metaSchemaVersion || key == "" {
		return fmt.Errorf("put meta %q: reserved or empty key", key)
	}
	val = append([]byte{}, val...)
	err := s.update(context.Background(), func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte(key), val)
	})
	if err != nil {
		return fmt.Errorf("put meta %q: %w", key, err)
	}
	return nil
}

// Ping proves the store can commit: it writes the time to meta "last_ping"
// through the writer and waits for the fsync'd commit.
func (s *Store) Ping(ctx context.Context) error {
	now := s.now().UnixNano()
	err := s.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte(metaLastPing), u64key(uint64(now)))
	})
	if err != nil {
		return fmt.Errorf("ping store: %w", err)
	}
	return nil
}

// LastCursor returns the cursor of the newest stored event, 0 when none.
func (s *Store) LastCursor() (uint64, error) {
	var c uint64
	err := s.view(func(tx *bolt.Tx) error {
		c = tx.Bucket(bucketEvents).Sequence()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("last cursor: %w", err)
	}
	return c, nil
}

// purgeBatch bounds the deletions of one PurgeNonces transaction so the
// writer is never held for long.
const purgeBatch = 1000

// purgeLegacyNonces deletes up to max nonces of the buckets older versions
// wrote (nonces, nonce_expiry) that expired at or before now (max ≤ 0 means
// no limit), in transactions of at most purgeBatch deletions, and returns
// how many it deleted. Nothing writes these buckets any more (see nonce.go).
func (s *Store) purgeLegacyNonces(now time.Time, max int) (int, error) {
	total := 0
	limit := uint64(now.UnixNano())
	for max <= 0 || total < max {
		want := purgeBatch
		if max > 0 {
			want = min(want, max-total)
		}
		n := 0
		err := s.update(context.Background(), func(tx *bolt.Tx) error {
			n = 0
			nonces, idx := tx.Bucket(bucketNonces), tx.Bucket(bucketNonceExpiry)
			c := idx.Cursor()
			for k, _ := c.First(); k != nil && n < want; k, _ = c.First() {
				if len(k) < 8 || binary.BigEndian.Uint64(k) > limit {
					break
				}
				nonce := append([]byte{}, k[8:]...)
				if err := c.Delete(); err != nil {
					return err
				}
				// The nonce may have been recorded again since with a later
				// expiry; only delete it if this entry is still its own.
				if v := nonces.Get(nonce); v != nil && len(v) == 8 && binary.BigEndian.Uint64(v) <= limit {
					if err := nonces.Delete(nonce); err != nil {
						return err
					}
				}
				n++
			}
			return nil
		})
		total += n
		if err != nil {
			return total, fmt.Errorf("purge nonces: %w", err)
		}
		if n < want {
			break
		}
	}
	return total, nil
}
