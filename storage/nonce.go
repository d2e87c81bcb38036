package storage

// Replay protection.
//
// Every signature nonce must be refused when it comes back within its
// lifetime (plivo.nonce_ttl) with another request, across restarts. Plivo's
// nonces are random 20-digit strings: kept as keys of a B-tree on disk, each
// one is an insert at a random place of a large tree, which dirties a
// different leaf page per callback (3.4 page writes per event instead of
// 0.8). So the lookup structure lives in memory and the disk only keeps a
// log to rebuild it from:
//
//   - On disk, bucket nonce_log holds one record per commit that used
//     nonces: key 8-byte BE latest expiry (Unix nanos) of its nonces + 8-byte
//     BE sequence, value the commit's nonces (see appendNonceGroup). Keys
//     grow with time, so a commit appends one value at the right edge of the
//     tree (a few dozen bytes per event), and expired groups are the left
//     edge, deleted whole in small transactions by PurgeNonces.
//   - In memory, nonceIndex is a hash table of 16-byte entries (64-bit keyed
//     hash of the nonce, expiry in seconds, 32-bit hash of the request that
//     used it), split in 64 shards so growing or sweeping one never stalls
//     the writer for long. Open rebuilds it from the log (and from the
//     nonces bucket of older versions, until that expires).
//
// The index is touched only by the writer goroutine (and by Open before the
// writer starts), so it needs no lock. A transaction's nonces are staged and
// reach the index only once it committed: a rolled-back batch leaves no
// trace, and a nonce is never "used" unless its commit is durable.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketNonceLog: 8-byte BE latest expiry + 8-byte BE sequence → the nonces
// one commit used (see appendNonceGroup). Created by openNonceIndex.
var bucketNonceLog = []byte("nonce_log")

// DefaultMaxNonces is the replay window's capacity when Options.MaxNonces is
// zero: about 200–280 MB of index at 10 M nonces (see NonceStats).
const DefaultMaxNonces = 10_000_000

// ErrNonceCapacity means the replay window holds Options.MaxNonces unexpired
// nonces: a new one cannot be remembered, so its request is refused rather
// than accepted without replay protection. Nonces expiring frees room.
var ErrNonceCapacity = errors.New("replay protection full: too many unexpired nonces (lower plivo.nonce_ttl)")

const (
	nonceShardBits = 6
	nonceShards    = 1 << nonceShardBits
	nonceMinSlots  = 64
	// A shard grows by half when more than 85% of its slots are used (linear
	// probing stays short well past that with 16-byte slots, four to a cache
	// line), and is rebuilt at 70% when swept: 19–27 bytes per nonce.
	nonceLoadNum, nonceLoadDen   = 17, 20
	nonceSweepNum, nonceSweepDen = 7, 10
	// nonceSweepEvery is how often each shard drops its expired entries: an
	// expired nonce costs memory for at most this long (lookups ignore it).
	nonceSweepEvery = 5 * time.Minute
)

// nonceEntry is one remembered nonce.
type nonceEntry struct {
	fp  uint64 // keyed hash of the nonce, never 0; 0 marks an empty slot
	exp uint32 // expiry, Unix seconds rounded up
	sum uint32 // requestSum32 of the request that used it; 0 = unknown
}

type nonceShard struct {
	slots []nonceEntry
	n     int // used slots, expired ones included until swept
}

// stagedNonce is a nonce the transaction being built records.
type stagedNonce struct {
	fp    uint64
	exp   int64 // Unix nanos
	sum   uint64
	value string
}

type nonceIndex struct {
	seed   maphash.Seed
	shards [nonceShards]nonceShard
	count  int // entries over all shards
	max    int

	staged   []stagedNonce
	stagedFP map[uint64]uint32 // fp → sum32 of staged nonces, for repeats within one batch
	// unflushed are promoted (in the index, durable in the journal) but
	// not yet in the log: the open journaled transaction logs them.
	unflushed []stagedNonce

	nextSweep   int   // shard swept next
	lastSweep   int64 // Unix nanos of the last shard sweep
	forcedSweep int64 // Unix nanos of the last full sweep at capacity

	// For NonceStats, read from other goroutines.
	statEntries, statBytes atomic.Int64
}

func newNonceIndex(max int) *nonceIndex {
	if max <= 0 {
		max = DefaultMaxNonces
	}
	return &nonceIndex{seed: maphash.MakeSeed(), max: max, stagedFP: make(map[uint64]uint32)}
}

// fingerprint hashes a nonce with a per-process random seed, so nobody can
// pick nonces that collide. Two nonces colliding on 63 bits in a window of
// 10 M has a probability of about 1e-5 over the window's lifetime.
func (ix *nonceIndex) fingerprint(nonce string) uint64 {
	return maphash.String(ix.seed, nonce) | 1
}

// fingerprintBytes is fingerprint of a nonce read from the log, without
// copying it into a string.
func (ix *nonceIndex) fingerprintBytes(nonce []byte) uint64 {
	return maphash.Bytes(ix.seed, nonce) | 1
}

// requestSum32 folds a request's 64-bit sum into the 32 bits the index keeps;
// 0 stays 0 (unknown).
func requestSum32(sum uint64) uint32 {
	if sum == 0 {
		return 0
	}
	if s := uint32(sum) ^ uint32(sum>>32); s != 0 {
		return s
	}
	return 1
}

// expSeconds rounds an expiry up to whole seconds: a nonce is remembered at
// least until its ExpiresAt.
func expSeconds(nanos int64) uint32 {
	s := nanos / 1e9
	if nanos%1e9 > 0 {
		s++
	}
	if s <= 0 {
		return 0
	}
	if s > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(s)
}

func (sh *nonceShard) home(fp uint64) int {
	// The shard took the top bits and the low bit is always 1.
	return int((uint64(uint32(fp>>1)) * uint64(len(sh.slots))) >> 32)
}

// find returns the slot holding fp, or -1.
func (sh *nonceShard) find(fp uint64) int {
	if len(sh.slots) == 0 {
		return -1
	}
	for i := sh.home(fp); ; {
		switch sh.slots[i].fp {
		case fp:
			return i
		case 0:
			return -1
		}
		if i++; i == len(sh.slots) {
			i = 0
		}
	}
}

// insert stores e in a slot known not to hold e.fp; the shard has room.
func (sh *nonceShard) insert(e nonceEntry) {
	for i := sh.home(e.fp); ; {
		if sh.slots[i].fp == 0 {
			sh.slots[i] = e
			sh.n++
			return
		}
		if i++; i == len(sh.slots) {
			i = 0
		}
	}
}

// rebuild moves the shard's entries unexpired at nowSec into a new table of
// at least slots slots, and at least enough for them at 70% load, dropping
// the expired. It returns the change in entries.
func (sh *nonceShard) rebuild(slots int, nowSec uint32) int {
	live := 0
	for i := range sh.slots {
		if e := &sh.slots[i]; e.fp != 0 && e.exp > nowSec {
			live++
		}
	}
	slots = max(slots, nonceMinSlots, live*nonceSweepDen/nonceSweepNum+1)
	old, before := sh.slots, sh.n
	sh.slots, sh.n = make([]nonceEntry, slots), 0
	for _, e := range old {
		if e.fp != 0 && e.exp > nowSec {
			sh.insert(e)
		}
	}
	return sh.n - before
}

func (ix *nonceIndex) shard(fp uint64) *nonceShard {
	return &ix.shards[fp>>(64-nonceShardBits)]
}

// put records e, replacing an entry of the same nonce (an expired one, or
// one reloaded twice).
func (ix *nonceIndex) put(e nonceEntry, nowSec uint32) {
	sh := ix.shard(e.fp)
	if i := sh.find(e.fp); i >= 0 {
		if e.exp > sh.slots[i].exp || sh.slots[i].exp <= nowSec {
			sh.slots[i] = e
		}
		return
	}
	if (sh.n+1)*nonceLoadDen > len(sh.slots)*nonceLoadNum {
		ix.count += sh.rebuild(len(sh.slots)*3/2, nowSec)
	}
	sh.insert(e)
	ix.count++
}

// nonceVerdict is what the nonces of a request say about it.
type nonceVerdict int

const (
	nonceFresh    nonceVerdict = iota // none used: record them
	nonceRetry                        // used by this same request (same sum): a retry
	nonceReplayed                     // used by another request
	nonceFull                         // fresh, but the window is at capacity
)

// check looks the request's nonces up among the committed and the staged
// ones. A nonce used with a different sum, or with no sum known, is a
// replay; one used with the same nonzero sum is the same request again.
func (ix *nonceIndex) check(nonces []Nonce, now int64) nonceVerdict {
	nowSec := uint32(max(now/1e9, 0))
	verdict, fresh := nonceFresh, 0
	for _, n := range nonces {
		if n.Value == "" {
			continue
		}
		fp, sum := ix.fingerprint(n.Value), requestSum32(n.Sum)
		used, ok := ix.stagedFP[fp]
		if !ok {
			sh := ix.shard(fp)
			if i := sh.find(fp); i >= 0 && sh.slots[i].exp > nowSec {
				used, ok = sh.slots[i].sum, true
			}
		}
		switch {
		case !ok:
			fresh++
		case used == 0 || used != sum:
			return nonceReplayed
		default:
			verdict = nonceRetry
		}
	}
	if verdict == nonceFresh && fresh > 0 && ix.count+len(ix.staged)+fresh > ix.max {
		// Expired entries wait for their shard's sweep: drop them all
		// before refusing, at most once a second.
		if now-ix.forcedSweep >= int64(time.Second) {
			ix.forcedSweep = now
			for i := range ix.shards {
				ix.count += ix.shards[i].rebuild(0, nowSec)
			}
			ix.publishStats()
		}
		if ix.count+len(ix.staged)+fresh > ix.max {
			return nonceFull
		}
	}
	return verdict
}

// stage records the request's nonces in the transaction being built.
func (ix *nonceIndex) stage(nonces []Nonce) {
	for _, n := range nonces {
		if n.Value == "" {
			continue
		}
		fp := ix.fingerprint(n.Value)
		ix.staged = append(ix.staged, stagedNonce{fp: fp, exp: n.ExpiresAt.UnixNano(), sum: n.Sum, value: n.Value})
		ix.stagedFP[fp] = requestSum32(n.Sum)
	}
}

// begin forgets what a previous try of the batch staged.
func (ix *nonceIndex) begin() {
	clear(ix.staged)
	ix.staged = ix.staged[:0]
	clear(ix.stagedFP)
}

// rollback forgets the staged nonces and those promoted but not yet
// flushed: the transaction that was to log them is gone. (Promoted ones
// stay in the index; the transaction rebuilt from the journal logs them
// again.)
func (ix *nonceIndex) rollback() {
	ix.begin()
	clear(ix.unflushed)
	ix.unflushed = ix.unflushed[:0]
}

// flush appends the promoted and staged nonces to the log, as one group,
// in the transaction that commits them.
func (ix *nonceIndex) flush(tx *bolt.Tx) error {
	if len(ix.staged) == 0 && len(ix.unflushed) == 0 {
		return nil
	}
	b := tx.Bucket(bucketNonceLog)
	b.FillPercent = 0.95
	seq, err := b.NextSequence()
	if err != nil {
		return fmt.Errorf("nonce log sequence: %w", err)
	}
	group := ix.unflushed
	if len(ix.staged) > 0 {
		group = append(group, ix.staged...)
	}
	key, val := appendNonceGroup(nil, seq, group)
	if err := b.Put(key, val); err != nil {
		return fmt.Errorf("put nonce log: %w", err)
	}
	return nil
}

// promote moves the staged nonces into the index once the request that
// used them is durable (journaled or committed), then sweeps one shard if
// one is due. They are logged by the next flush.
func (ix *nonceIndex) promote(now int64) {
	nowSec := uint32(max(now/1e9, 0))
	for _, n := range ix.staged {
		ix.put(nonceEntry{fp: n.fp, exp: expSeconds(n.exp), sum: requestSum32(n.sum)}, nowSec)
	}
	ix.unflushed = append(ix.unflushed, ix.staged...)
	ix.begin()
	if now-ix.lastSweep >= int64(nonceSweepEvery/nonceShards) {
		ix.lastSweep = now
		sh := &ix.shards[ix.nextSweep]
		ix.nextSweep = (ix.nextSweep + 1) % nonceShards
		// Rebuilt at 70% load: a shard whose nonces expired gives its
		// memory back.
		ix.count += sh.rebuild(0, nowSec)
	}
	ix.publishStats()
}

// committed forgets the flushed nonces once their transaction committed.
func (ix *nonceIndex) committed() {
	clear(ix.unflushed)
	ix.unflushed = ix.unflushed[:0]
}

func (ix *nonceIndex) publishStats() {
	slots := 0
	for i := range ix.shards {
		slots += len(ix.shards[i].slots)
	}
	ix.statEntries.Store(int64(ix.count))
	ix.statBytes.Store(int64(slots) * 16)
}

// appendNonceGroup encodes one log group: key = latest expiry + seq, value =
// uvarint count, then per nonce: uvarint length, the nonce, 8-byte BE expiry
// Unix nanos, 8-byte BE request sum.
func appendNonceGroup(val []byte, seq uint64, nonces []stagedNonce) (key, value []byte) {
	latest := int64(0)
	val = binary.AppendUvarint(val, uint64(len(nonces)))
	for _, n := range nonces {
		latest = max(latest, n.exp)
		val = binary.AppendUvarint(val, uint64(len(n.value)))
		val = append(val, n.value...)
		val = binary.BigEndian.AppendUint64(val, uint64(n.exp))
		val = binary.BigEndian.AppendUint64(val, n.sum)
	}
	key = binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(max(latest, 0)))
	key = binary.BigEndian.AppendUint64(key, seq)
	return key, val
}

// decodeNonceGroup calls fn for each nonce of a log value.
func decodeNonceGroup(v []byte, fn func(nonce []byte, exp int64, sum uint64)) (int, error) {
	count, k := binary.Uvarint(v)
	if k <= 0 {
		return 0, errCorrupt
	}
	v = v[k:]
	for i := uint64(0); i < count; i++ {
		l, k := binary.Uvarint(v)
		if k <= 0 || uint64(len(v)-k) < l+16 {
			return int(i), errCorrupt
		}
		v = v[k:]
		nonce := v[:l]
		v = v[l:]
		fn(nonce, int64(binary.BigEndian.Uint64(v)), binary.BigEndian.Uint64(v[8:]))
		v = v[16:]
	}
	return int(count), nil
}

// groupCount returns the number of nonces of a log value without decoding it.
func groupCount(v []byte) int {
	n, k := binary.Uvarint(v)
	if k <= 0 {
		return 0
	}
	return int(n)
}

// openNonceIndex creates the log bucket if needed and rebuilds the index
// from every unexpired nonce: the log's, and those of the nonces bucket
// written by versions before the log (without a request sum, so any repeat
// of those is a replay). The old bucket is no longer written; PurgeNonces
// empties it as its nonces expire, so upgrading needs no long migration.
func openNonceIndex(db *bolt.DB, now time.Time, max int) (*nonceIndex, error) {
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketNonceLog)
		return err
	}); err != nil {
		return nil, fmt.Errorf("create nonce log: %w", err)
	}
	ix := newNonceIndex(max)
	nowNanos := now.UnixNano()
	nowSec := uint32(max0(nowNanos / 1e9))
	err := db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketNonceLog).Cursor()
		// Groups whose latest expiry passed hold nothing live.
		seek := binary.BigEndian.AppendUint64(nil, uint64(max0(nowNanos)+1))
		// Size the shards for the nonces the log holds (counted without
		// decoding them) at the sweep's 70% load, rather than growing
		// each 1.5x at a time while loading, which ended 11% larger at
		// 1 M nonces (BenchmarkNonceIndexOpen) with an old and a new
		// table alive at each step.
		live := 0
		for k, v := c.Seek(seek); k != nil; k, v = c.Next() {
			live += groupCount(v)
		}
		if perShard := live / nonceShards; perShard > nonceMinSlots {
			// Shards differ by a few standard deviations (√perShard).
			perShard += 4 * int(math.Sqrt(float64(perShard)))
			for i := range ix.shards {
				ix.shards[i].rebuild(perShard*nonceSweepDen/nonceSweepNum+1, nowSec)
			}
		}
		for k, v := c.Seek(seek); k != nil; k, v = c.Next() {
			if _, err := decodeNonceGroup(v, func(nonce []byte, exp int64, sum uint64) {
				if exp > nowNanos {
					ix.put(nonceEntry{fp: ix.fingerprintBytes(nonce), exp: expSeconds(exp), sum: requestSum32(sum)}, nowSec)
				}
			}); err != nil {
				return fmt.Errorf("nonce log group %x: %w", k, err)
			}
		}
		if old := tx.Bucket(bucketNonces); old != nil {
			err := old.ForEach(func(k, v []byte) error {
				if len(v) == 8 {
					if exp := int64(binary.BigEndian.Uint64(v)); exp > nowNanos {
						ix.put(nonceEntry{fp: ix.fingerprintBytes(k), exp: expSeconds(exp)}, nowSec)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load nonces: %w", err)
	}
	ix.lastSweep = nowNanos
	ix.publishStats()
	return ix, nil
}

func max0(v int64) int64 { return max(v, 0) }

// checkNonces decides r's nonces before anything of r is written: a replay
// or a full window answers r with an error, a retry of the same request
// answers it as a duplicate with nothing written. It returns true when r is
// answered.
func (w *writerState) checkNonces(r *request) bool {
	switch w.s.nonces.check(r.nonces, w.now) {
	case nonceReplayed:
		r.err = ErrReplayed
		return true
	case nonceRetry:
		r.res = ApplyResult{Duplicate: true, Retry: true}
		return true
	case nonceFull:
		r.err = ErrNonceCapacity
		return true
	}
	return false
}

// recordNonces stages r's nonces in the transaction being built.
func (w *writerState) recordNonces(_ *buckets, r *request) error {
	w.s.nonces.stage(r.nonces)
	return nil
}

// ConsumeNonces records nonces without an event: the request that carried
// them had a valid signature but was refused (malformed), and its signed
// headers must not be usable again with another body. It returns nil when
// they are recorded, or were already by this same request (same Sum), and
// ErrReplayed when another request used one.
func (s *Store) ConsumeNonces(ctx context.Context, nonces ...Nonce) error {
	some := false
	for _, n := range nonces {
		if len(n.Value) > MaxNonceLen {
			return fmt.Errorf("consume nonces: nonce longer than %d bytes", MaxNonceLen)
		}
		some = some || n.Value != ""
	}
	if !some {
		return nil // nothing to record: no commit
	}
	var verdict nonceVerdict
	err := s.update(ctx, func(*bolt.Tx) error {
		verdict = s.nonces.check(nonces, s.now().UnixNano())
		if verdict == nonceFresh {
			s.nonces.stage(nonces)
		}
		return nil
	})
	switch {
	case err != nil:
		return fmt.Errorf("consume nonces: %w", err)
	case verdict == nonceReplayed:
		return fmt.Errorf("consume nonces: %w", ErrReplayed)
	case verdict == nonceFull:
		return fmt.Errorf("consume nonces: %w", ErrNonceCapacity)
	}
	return nil
}

// NonceStats describes the replay-protection index.
type NonceStats struct {
	// Entries is the number of nonces remembered (expired ones included
	// until their shard is swept, at most nonceSweepEvery later).
	Entries int64
	// IndexBytes is the memory of the index's tables.
	IndexBytes int64
	// Max is the capacity (Options.MaxNonces).
	Max int
}

// NonceStats returns the replay-protection index's size as of the last commit.
func (s *Store) NonceStats() NonceStats {
	return NonceStats{Entries: s.nonces.statEntries.Load(), IndexBytes: s.nonces.statBytes.Load(), Max: s.nonces.max}
}

// purgeNonceLog deletes up to max nonces' worth of log groups whose every
// nonce expired at or before limit (Unix nanos), whole groups at a time, in
// transactions of at most purgeBatch groups. It returns the nonces deleted.
func (s *Store) purgeNonceLog(limit int64, max int) (int, error) {
	total := 0
	for max <= 0 || total < max {
		n, groups := 0, 0
		err := s.update(context.Background(), func(tx *bolt.Tx) error {
			n, groups = 0, 0
			c := tx.Bucket(bucketNonceLog).Cursor()
			for k, v := c.First(); k != nil && groups < purgeBatch && (max <= 0 || total+n < max); k, v = c.First() {
				if len(k) < 8 || int64(binary.BigEndian.Uint64(k)) > limit {
					break
				}
				count := groupCount(v)
				if err := c.Delete(); err != nil {
					return err
				}
				n += count
				groups++
			}
			return nil
		})
		total += n
		if err != nil {
			return total, fmt.Errorf("purge nonce log: %w", err)
		}
		if groups < purgeBatch {
			break
		}
	}
	return total, nil
}

// PurgeNonces deletes from disk up to about max nonces (max ≤ 0 means no
// limit) that expired at or before now, in short transactions, and returns
// how many it deleted. The log is purged a whole commit's group at a time,
// once the group's last nonce expired, so the count can pass max by less
// than one group. The in-memory index drops expired nonces by itself.
func (s *Store) PurgeNonces(now time.Time, max int) (int, error) {
	n, err := s.purgeLegacyNonces(now, max)
	if err != nil || (max > 0 && n >= max) {
		return n, err
	}
	rest := 0
	if max > 0 {
		rest = max - n
	}
	m, err := s.purgeNonceLog(now.UnixNano(), rest)
	return n + m, err
}
