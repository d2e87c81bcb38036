package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// The journal decouples durability from indexing. bbolt makes every commit
// durable with two fdatasyncs over every page the commit touched; a batch of
// callbacks updates messages spread over the recent part of the key space,
// so a 27-event commit wrote about 48 scattered pages and spent 3.4 ms in
// fdatasync (BenchmarkIngest, profiled with go tool trace). The writer now
// applies each batch to a bbolt write transaction it keeps open, appends the
// batch to this journal (one sequential write into pre-zeroed blocks, one
// fdatasync: about 0.4 ms here) and only then answers; the transaction is
// committed, with bbolt's own fsyncs, every journalMaxAge or
// journalMaxEvents, when the writer goes idle, before any other kind of
// write, and at Close. A crash loses nothing acknowledged: Open applies the
// journal's batches that the database does not have yet, in order, through
// the same code, so every event gets the cursor it was acknowledged with.
//
// Committing in the background while further batches are journaled was
// tried (two journal files, events applied after the commit): on one disk
// the journal's fdatasync then waits behind the commit's page writes
// (0.29 ms became 1.6-2.7 ms), so nothing overlapped and it was removed.
//
// Readers see only committed transactions; Store.view waits for the commit
// holding everything acknowledged when the read began (at most about
// journalMaxAge under load), so an answered callback is always readable.
//
// The file is <db>.journal. Records are written from offset 0 after every
// commit, over the previous ones, so it stays as small as one open
// transaction's batches:
//
//	u32 payload length | u32 CRC-32C of payload | payload
//	payload: u64 sequence | uvarint entries | entries
//	entry:   uvarint len | encoded event | u64 content hash |
//	         uvarint nonces | (uvarint len | nonce | varint expiry | u64 sum)...
//
// The database's meta key journal_applied holds the sequence of the last
// batch committed. Open replays the records that follow it exactly
// (sequence applied+1, applied+2, ...), stopping at the first that does not:
// a torn tail (never acknowledged), the older records behind the newest
// ones, or a journal that does not continue this file.
const (
	// journalMaxAge: each bbolt commit costs two fdatasyncs and a pwrite
	// per dirty page on the writer's goroutine, and a syscall here costs
	// 5-10 us of CPU. Against 20 ms, 40 ms made the product 1.02-1.10x as
	// fast (6 of 6 shape/runs of BenchmarkIngestProcesses with
	// PLIVO_DLR_BENCH_BASELINE), and 80 ms against 40 another 0.97-1.17x
	// (median 1.05, 11 of 12). The price: reads wait up to 80 ms under
	// load, and a flood of new v4-UUID messages (more pages per event, so
	// longer commits holding the writer) has a p99 of 27-32 ms instead of
	// about 15. journalMaxEvents bounds a commit first above 25,000/s.
	journalMaxAge    = 80 * time.Millisecond
	journalMaxEvents = 2048
	// journalIdle commits the open transaction when no request arrives for
	// this long, so a quiet store is never behind.
	journalIdle = time.Millisecond
	// journalPrealloc is zero-filled once: an fdatasync over blocks already
	// written needs no filesystem metadata, half the cost of appending.
	journalPrealloc = 4 << 20
	// journalMaxRecord bounds one record when reading back (a batch holds
	// at most maxBatch events of at most a few hundred KB).
	journalMaxRecord = 256 << 20

	metaJournalApplied = "journal_applied"
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// journalEntry is one apply request as the journal keeps it: enough to
// apply it again.
type journalEntry struct {
	evBytes []byte
	hash    uint64
	nonces  []Nonce
}

type journal struct {
	f      *os.File
	path   string
	noSync bool
	off    int64 // where the next record goes
	// fault is Options.journalFault.
	fault func() error
}

func journalPath(dbPath string) string { return dbPath + ".journal" }

// openJournal opens (creating, 0600) the journal beside the database and
// zero-fills it to journalPrealloc on first use.
func openJournal(dbPath string, noSync bool) (*journal, error) {
	path := journalPath(dbPath)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	j := &journal{f: f, path: path, noSync: noSync}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("stat journal %s: %w", path, err)
	}
	if fi.Size() < journalPrealloc {
		zeros := make([]byte, journalPrealloc-fi.Size())
		if _, err := f.WriteAt(zeros, fi.Size()); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("preallocate journal %s: %w", path, err)
		}
		if err := j.sync(); err != nil {
			_ = f.Close()
			return nil, err
		}
		// A new file's name must survive a power loss with its records.
		if !noSync {
			if err := syncDir(filepath.Dir(path)); err != nil {
				_ = f.Close()
				return nil, err
			}
		}
	}
	return j, nil
}

func (j *journal) sync() error {
	if j.fault != nil {
		if err := j.fault(); err != nil {
			return fmt.Errorf("fdatasync journal %s: %w", j.path, err)
		}
	}
	if j.noSync {
		return nil
	}
	if err := unix.Fdatasync(int(j.f.Fd())); err != nil {
		return fmt.Errorf("fdatasync journal %s: %w", j.path, err)
	}
	return nil
}

// append writes one batch as record seq and makes it durable. It returns the
// record's entries (decodeJournalBatch reads them), kept for applying them
// again should the open transaction be rolled back: the record is built in
// a buffer of its own, which the caller keeps. A failed append leaves off
// where it was: the next record overwrites the torn one.
func (j *journal) append(seq uint64, entries []journalEntry) ([]byte, error) {
	size := 8 + 8 + binary.MaxVarintLen64
	for _, e := range entries {
		size += len(e.evBytes) + 8 + 2*binary.MaxVarintLen64
		for _, n := range e.nonces {
			size += len(n.Value) + 8 + 2*binary.MaxVarintLen64
		}
	}
	b := make([]byte, 8, size)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for _, e := range entries {
		b = binary.AppendUvarint(b, uint64(len(e.evBytes)))
		b = append(b, e.evBytes...)
		b = binary.BigEndian.AppendUint64(b, e.hash)
		b = binary.AppendUvarint(b, uint64(len(e.nonces)))
		for _, n := range e.nonces {
			b = binary.AppendUvarint(b, uint64(len(n.Value)))
			b = append(b, n.Value...)
			b = binary.AppendVarint(b, n.ExpiresAt.UnixNano())
			b = binary.BigEndian.AppendUint64(b, n.Sum)
		}
	}
	payload := b[8:]
	binary.BigEndian.PutUint32(b[0:4], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[4:8], crc32.Checksum(payload, crc32c))
	if _, err := j.f.WriteAt(b, j.off); err != nil {
		return nil, fmt.Errorf("write journal %s: %w", j.path, err)
	}
	if err := j.sync(); err != nil {
		return nil, err
	}
	j.off += int64(len(b))
	return payload[8:], nil
}

// reset starts the next record at offset 0: every record so far is in a
// committed transaction.
func (j *journal) reset() { j.off = 0 }

// clear zeroes the first record's header so a clean shutdown leaves nothing
// to read (replay would skip it anyway: its sequence is applied).
func (j *journal) clear() error {
	if _, err := j.f.WriteAt(make([]byte, 8), 0); err != nil {
		return fmt.Errorf("clear journal %s: %w", j.path, err)
	}
	j.off = 0
	return j.sync()
}

func (j *journal) close() error { return j.f.Close() }

// errJournalRecord marks a record that cannot be read back: the end of the
// journal's valid part.
var errJournalRecord = errors.New("journal record invalid")

// readJournal returns the batches that follow sequence applied, in order:
// the records from offset 0 whose sequences are applied+1, applied+2, ...
// It stops at the first record that is torn, corrupt or out of sequence.
// gap reports a valid first record that is newer than applied+1: a journal
// that does not continue this database (left beside a restored backup).
func readJournal(f *os.File, applied uint64) (batches [][]byte, events int, last uint64, gap bool, err error) {
	r := io.NewSectionReader(f, 0, 1<<62)
	last = applied
	var hdr [8]byte
	for {
		// A short read, a bad length or CRC ends the valid part.
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return batches, events, last, gap, nil
		}
		n := binary.BigEndian.Uint32(hdr[0:4])
		if n < 9 || n > journalMaxRecord {
			return batches, events, last, gap, nil
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			return batches, events, last, gap, nil
		}
		if crc32.Checksum(payload, crc32c) != binary.BigEndian.Uint32(hdr[4:8]) {
			return batches, events, last, gap, nil
		}
		seq := binary.BigEndian.Uint64(payload)
		if seq != last+1 {
			gap = len(batches) == 0 && seq > last+1
			return batches, events, last, gap, nil
		}
		entries, err := decodeJournalBatch(payload[8:])
		if err != nil {
			// The CRC matched: this is not a torn write but a record this
			// binary cannot read.
			return nil, 0, applied, false, fmt.Errorf("journal record %d: %w", seq, err)
		}
		batches = append(batches, payload[8:])
		events += len(entries)
		last = seq
	}
}

func decodeJournalBatch(b []byte) ([]journalEntry, error) {
	r := reader{b: b}
	count := r.uvarint()
	if count > uint64(len(b)) {
		return nil, errJournalRecord
	}
	entries := make([]journalEntry, 0, count)
	for range count {
		var e journalEntry
		e.evBytes = r.bytes()
		e.hash = r.uint64()
		nn := r.uvarint()
		if nn > uint64(len(b)) {
			return nil, errJournalRecord
		}
		for range nn {
			v := r.string()
			exp := r.varint()
			sum := r.uint64()
			e.nonces = append(e.nonces, Nonce{Value: v, ExpiresAt: time.Unix(0, exp), Sum: sum})
		}
		if r.err != nil {
			return nil, errJournalRecord
		}
		entries = append(entries, e)
	}
	if r.err != nil || len(r.b) != 0 {
		return nil, errJournalRecord
	}
	return entries, nil
}
