package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// checkTestFile writes a database of n messages (queued, sent, delivered
// each, version-1 UUIDs), closes it and returns its path.
func checkTestFile(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dlr.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)
	for i := range n {
		for _, st := range []string{"queued", "sent", "delivered"} {
			e := benchEvent(i, false, st, now)
			if _, err := s.Apply(context.Background(), e); err != nil {
				t.Fatalf("apply %d %s: %v", i, st, err)
			}
			mustCommit(t, s) // a commit per event, as a busy file has
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// bucketRoot returns the root page of a bucket, read with bbolt itself.
func bucketRoot(t *testing.T, path string, name []byte) (pgid uint64, pageSize int) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		pgid = uint64(tx.Bucket(name).Root())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if pgid == 0 {
		t.Fatalf("bucket %s is inline: the test needs more data", name)
	}
	return pgid, db.Info().PageSize
}

// pagesSize is the size bbolt's pages reach (high-water mark × page size).
func pagesSize(t *testing.T, path string) int64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	if err := db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// A clean file passes, and bbolt's own check agrees.
func TestCheckCleanFile(t *testing.T) {
	path := checkTestFile(t, 400)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open of a clean file: %v", err)
	}
	rep := s.Checked()
	if !rep.Complete || rep.Pages < 10 || rep.HighWater < uint64(rep.Pages) {
		t.Errorf("check report %+v: want complete, at least 10 pages read, no more than the high-water mark", rep)
	}
	var boltErrs []error
	err = s.db.View(func(tx *bolt.Tx) error {
		for e := range tx.Check() {
			boltErrs = append(boltErrs, e)
		}
		return nil
	})
	if err != nil || len(boltErrs) > 0 {
		t.Errorf("bbolt check on the same file: %v %v", err, boltErrs)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// corruptAt overwrites bytes of the file at off.
func corruptAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// Each kind of damage is refused by Open with one line naming the file,
// the page and how to restore, instead of a bbolt panic or a SIGBUS.
func TestCheckRefusesCorruptFiles(t *testing.T) {
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, path string)
		wantMsg string
	}{
		{"page type zeroed", func(t *testing.T, path string) {
			id, ps := bucketRoot(t, path, bucketEvents)
			corruptAt(t, path, int64(id)*int64(ps)+8, []byte{0, 0}) // flags
		}, `bucket "events": page %d has type 0x0`},
		{"page header garbage", func(t *testing.T, path string) {
			id, ps := bucketRoot(t, path, bucketMessages)
			corruptAt(t, path, int64(id)*int64(ps), []byte("garbage!garbage!"))
		}, `bucket "messages": page %d has id`},
		{"element past the page", func(t *testing.T, path string) {
			id, ps := bucketRoot(t, path, bucketEvents)
			// The first element's pos (a branch's or a leaf's second word
			// is pos or ksize; both far out of the page).
			el := make([]byte, 8)
			binary.LittleEndian.PutUint32(el, 0x7fffffff)
			binary.LittleEndian.PutUint32(el[4:], 0x7fffffff)
			corruptAt(t, path, int64(id)*int64(ps)+16, el)
		}, `lies past the page`},
		{"truncated to half", func(t *testing.T, path string) {
			// bbolt grows the file ahead of its pages: cut into the pages.
			if err := os.Truncate(path, pagesSize(t, path)/2); err != nil {
				t.Fatal(err)
			}
		}, "truncated"},
		{"both meta pages", func(t *testing.T, path string) {
			_, ps := bucketRoot(t, path, bucketEvents)
			corruptAt(t, path, 20, []byte{1, 2, 3, 4})
			corruptAt(t, path, int64(ps)+20, []byte{1, 2, 3, 4})
		}, "both meta pages are invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := checkTestFile(t, 400)
			id, _ := bucketRoot(t, path, bucketEvents)
			if mid, _ := bucketRoot(t, path, bucketMessages); strings.Contains(tc.name, "garbage") {
				id = mid
			}
			tc.damage(t, path)
			s, err := Open(path, Options{})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded on a damaged file")
			}
			want := tc.wantMsg
			if strings.Contains(want, "%d") {
				want = fmt.Sprintf(want, id)
			}
			msg := err.Error()
			if !errors.Is(err, ErrCorruptFile) || !strings.Contains(msg, want) || !strings.Contains(msg, path) ||
				!strings.Contains(msg, "restore the newest backup") || strings.Contains(msg, "\n") {
				t.Errorf("Open error:\n%s\nwant one line wrapping ErrCorruptFile, naming %s, containing %q and the restore advice", msg, path, want)
			}
		})
	}
}

// One damaged meta page is what a crash during a commit can leave; bbolt
// falls back to the other, and so does the check.
func TestCheckToleratesOneBadMetaPage(t *testing.T) {
	path := checkTestFile(t, 50)
	corruptAt(t, path, 20, []byte{1, 2, 3, 4}) // meta 0's version
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open with one bad meta page: %v", err)
	}
	if m, _ := mustGet(t, s, benchUUID(7, false)); m.Status != "delivered" {
		t.Errorf("message 7 status %q after falling back to meta 1", m.Status)
	}
	s.Close()
}

// The walk stops at its time bound and says so; Open goes on.
func TestCheckTimeBound(t *testing.T) {
	path := checkTestFile(t, 400)
	s, err := Open(path, Options{CheckTimeout: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if rep := s.Checked(); rep.Complete || rep.Pages == 0 {
		t.Errorf("check report %+v with a 1 ns bound: want incomplete after some pages", rep)
	}
}

// A running store holds the file: a second Open fails on the lock before
// checking a file that is being written.
func TestCheckWaitsForLock(t *testing.T) {
	path := checkTestFile(t, 10)
	s := mustOpenPath(t, path, Options{})
	_, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) || !errors.Is(err, bolt.ErrTimeout) {
		t.Errorf("second Open: %v, want ErrLocked", err)
	}
	_ = s
}

// BenchmarkOpenCheck measures Open with the integrity check against Open
// without it (bbolt's own freelist rebuild, which walks the same pages), on
// a file of 20,000 messages (60,000 events), warm page cache. The ratio is
// what the check adds to a start.
//
//	go test -run '^$' -bench BenchmarkOpenCheck -benchtime 20x ./storage
func BenchmarkOpenCheck(b *testing.B) {
	path := filepath.Join(b.TempDir(), "dlr.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)
	const n = 20_000
	pool := make(chan struct{}, 16)
	errs := make(chan error, 16)
	for i := range n {
		for _, st := range []string{"queued", "sent", "delivered"} {
			pool <- struct{}{}
			go func() {
				defer func() { <-pool }()
				if _, err := s.Apply(context.Background(), benchEvent(i, false, st, now)); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}()
		}
	}
	for range cap(pool) {
		pool <- struct{}{}
	}
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	fi, _ := os.Stat(path)
	for _, bc := range []struct {
		name    string
		timeout time.Duration
	}{{"without-check", -1}, {"with-check", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			var pages int64
			for range b.N {
				s, err := Open(path, Options{CheckTimeout: bc.timeout})
				if err != nil {
					b.Fatal(err)
				}
				pages = s.Checked().Pages
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(pages), "pages_checked")
			b.ReportMetric(float64(fi.Size())/(1<<20), "file_MB")
		})
	}
}
