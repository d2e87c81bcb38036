package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// Snapshot is a consistent read-only view of the whole database, for a
// backup streamed while writes go on. It holds a bbolt read transaction:
// until Close, pages freed by later writes cannot be reused (the file grows
// instead) and a remap past the initial mmap size waits for it, so close it
// as soon as the copy ends or its reader goes away.
type Snapshot struct {
	s    *Store
	tx   *bolt.Tx
	once sync.Once
}

// closingWriter fails writes once the store is closing.
type closingWriter struct {
	w io.Writer
	s *Store
}

func (cw closingWriter) Write(p []byte) (int, error) {
	if cw.s.closed.Load() {
		return 0, ErrClosed
	}
	return cw.w.Write(p)
}

// Snapshot begins a consistent view of the database; the caller must Close it.
func (s *Store) Snapshot() (*Snapshot, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("begin snapshot: %w", ErrClosed)
	}
	s.awaitApplied() // everything acknowledged is in the snapshot
	tx, err := s.db.Begin(false)
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		err = ErrClosed
	}
	if err != nil {
		return nil, fmt.Errorf("begin snapshot: %w", err)
	}
	return &Snapshot{s: s, tx: tx}, nil
}

// Size is the number of bytes WriteTo writes.
func (sn *Snapshot) Size() int64 { return sn.tx.Size() }

// WriteTo writes the snapshot, itself a valid bbolt file, to w. It fails
// with ErrClosed once the store starts closing, whose last step waits for
// every read transaction to end.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	n, err := sn.tx.WriteTo(closingWriter{w: w, s: sn.s})
	if err != nil {
		return n, fmt.Errorf("write snapshot: %w", err)
	}
	return n, nil
}

// Close ends the snapshot's read transaction. Later calls do nothing.
func (sn *Snapshot) Close() error {
	var err error
	sn.once.Do(func() { err = sn.tx.Rollback() })
	if err != nil {
		return fmt.Errorf("close snapshot: %w", err)
	}
	return nil
}

// ErrNoSpace means the data dir lacks the free space a backup copy needs.
var ErrNoSpace = errors.New("not enough free space in the data dir")

// BackupReserve is the free space a backup copy must leave in the data dir,
// so that taking a backup never fills the disk under the callbacks.
const BackupReserve = 64 << 20

// SnapshotToTemp copies a consistent snapshot of the database into a
// temporary file in the data dir, at disk speed, and ends its read
// transaction before returning. A backup streamed from that file to a slow
// client then holds nothing of the database: pages freed meanwhile are
// reused and no remap waits for it. The file has no name (O_TMPFILE, mode
// 0600, or created and unlinked at once where that is unsupported), so it
// disappears when closed, even after a crash. Copies are made one at a
// time and refused with ErrNoSpace when one would leave less than
// BackupReserve free. The caller must close the file;
// it is positioned at its start and size is its length.
func (s *Store) SnapshotToTemp() (f *os.File, size int64, err error) {
	s.backupMu.Lock()
	defer s.backupMu.Unlock()
	snap, err := s.Snapshot()
	if err != nil {
		return nil, 0, err
	}
	defer snap.Close()
	size = snap.Size()
	free, err := s.FreeBytes()
	if err != nil {
		return nil, 0, fmt.Errorf("snapshot to temp file: %w", err)
	}
	if need := uint64(size) + BackupReserve; free < need {
		return nil, 0, fmt.Errorf("snapshot to temp file: %w (%d bytes free, need %d)", ErrNoSpace, free, need)
	}
	if f, err = openUnnamed(s.Dir()); err != nil {
		return nil, 0, fmt.Errorf("snapshot to temp file: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
		}
	}()
	if _, err := snap.WriteTo(f); err != nil {
		return nil, 0, fmt.Errorf("snapshot to temp file: %w", err)
	}
	if err := snap.Close(); err != nil {
		return nil, 0, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, 0, fmt.Errorf("snapshot to temp file: %w", err)
	}
	ok = true
	return f, size, nil
}

// openUnnamed opens a new file in dir that has no name, so nothing can
// leave it behind.
func openUnnamed(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), dir+"/(backup temp)"), nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
		return nil, fmt.Errorf("open temp file in %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".backup-*.tmp") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("create temp file: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("unlink temp file: %w", err)
	}
	return f, nil
}

// OpenReadTxs returns the number of read transactions open right now
// (snapshots, queries in flight).
func (s *Store) OpenReadTxs() int { return s.db.Stats().OpenTxN }

// BackupInfo describes a verified backup file.
type BackupInfo struct {
	SchemaVersion uint64
	Messages      int
	// LastCursor is the cursor of the newest event the backup holds.
	LastCursor uint64
}

// VerifyBackup opens the bbolt file at path read-only, checks every page
// (bbolt's consistency check) and that it has this store's buckets and a
// schema version this binary can open, and describes it. It never writes to
// the file.
func VerifyBackup(path string) (BackupInfo, error) {
	var info BackupInfo
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return info, fmt.Errorf("verify backup %s: %w", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		// Drain the whole channel: Check's goroutine blocks on every error.
		var checkErr error
		for err := range tx.Check() {
			if checkErr == nil {
				checkErr = err
			}
		}
		if checkErr != nil {
			return fmt.Errorf("consistency check: %w", checkErr)
		}
		// The buckets every version has had; later ones (pending, opt-outs,
		// the spilled event index) are created when a store opens, so a
		// backup written by an older version restores fine without them.
		for _, name := range [][]byte{bucketMessages, bucketEvents, bucketByTime, bucketMeta} {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("bucket %s missing", name)
			}
		}
		v := tx.Bucket(bucketMeta).Get([]byte(metaSchemaVersion))
		if len(v) != 8 {
			return fmt.Errorf("schema version: %w", errCorrupt)
		}
		info.SchemaVersion = binary.BigEndian.Uint64(v)
		if info.SchemaVersion > schemaVersion {
			return fmt.Errorf("schema version %d is newer than this binary supports (%d)", info.SchemaVersion, schemaVersion)
		}
		info.Messages = tx.Bucket(bucketMessages).Stats().KeyN
		info.LastCursor = tx.Bucket(bucketEvents).Sequence()
		return nil
	})
	if err != nil {
		return info, fmt.Errorf("verify backup %s: %w", path, err)
	}
	return info, nil
}
