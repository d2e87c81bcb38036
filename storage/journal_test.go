package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func journalEntries(n int, tag string) []journalEntry {
	var out []journalEntry
	for i := range n {
		e := ev(fmt.Sprintf("%s-%d", tag, i), StatusQueued, 0)
		out = append(out, journalEntry{
			evBytes: encodeEvent(nil, &e, []string{"MessageUUID", "Status"}),
			hash:    uint64(i + 1),
			nonces:  []Nonce{{Value: fmt.Sprintf("%020d", i), ExpiresAt: time.Unix(1_800_000_000, 0), Sum: 7}},
		})
	}
	return out
}

// What Open reads back: the records following the applied sequence, up to
// a torn record, a stale one left behind a restart from offset 0, or a
// journal that does not continue the database.
func TestReadJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dlr.db")
	j, err := openJournal(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	if fi, _ := os.Stat(journalPath(path)); fi.Size() != journalPrealloc || fi.Mode().Perm() != 0o600 {
		t.Errorf("journal file %d bytes mode %o, want %d bytes 0600", fi.Size(), fi.Mode().Perm(), journalPrealloc)
	}
	var offsets []int64
	for seq := uint64(1); seq <= 3; seq++ {
		offsets = append(offsets, j.off)
		rec, err := j.append(seq, journalEntries(int(seq)+1, fmt.Sprint("r", seq)))
		if err != nil {
			t.Fatal(err)
		}
		entries, err := decodeJournalBatch(rec)
		if err != nil || len(entries) != int(seq)+1 || entries[0].nonces[0].Sum != 7 {
			t.Fatalf("record %d read back as %d entries, %v", seq, len(entries), err)
		}
	}
	read := func(applied uint64) (int, uint64, bool) {
		t.Helper()
		recs, _, last, gap, err := readJournal(j.f, applied)
		if err != nil {
			t.Fatal(err)
		}
		return len(recs), last, gap
	}
	if n, last, gap := read(0); n != 3 || last != 3 || gap {
		t.Errorf("read after 0: %d records up to %d (gap %v), want 3 up to 3", n, last, gap)
	}
	// Records continuing the database start at offset 0 (the journal
	// restarts there at each commit): older ones first mean nothing to apply.
	if n, last, gap := read(2); n != 0 || last != 2 || gap {
		t.Errorf("read after 2: %d records up to %d (gap %v), want none", n, last, gap)
	}
	if n, last, gap := read(3); n != 0 || last != 3 || gap {
		t.Errorf("read after 3: %d records up to %d (gap %v), want none", n, last, gap)
	}
	// A torn last record (one byte of it changed) ends the journal.
	if _, err := j.f.WriteAt([]byte{0xff}, offsets[2]+20); err != nil {
		t.Fatal(err)
	}
	if n, last, _ := read(0); n != 2 || last != 2 {
		t.Errorf("read with a torn third record: %d records up to %d, want 2 up to 2", n, last)
	}
	// After a commit the journal starts over at offset 0: the newer, shorter
	// record is read, the older ones behind it are not.
	j.reset()
	if _, err := j.append(4, journalEntries(1, "r4")); err != nil {
		t.Fatal(err)
	}
	if n, last, _ := read(3); n != 1 || last != 4 {
		t.Errorf("read after the restart: %d records up to %d, want 1 up to 4", n, last)
	}
	// A database that is older than the journal (a restored backup).
	if n, _, gap := read(1); n != 0 || !gap {
		t.Errorf("journal beyond the database: %d records, gap %v; want none and a gap", n, gap)
	}
	// Cleared at Close: nothing to read.
	if err := j.clear(); err != nil {
		t.Fatal(err)
	}
	if n, _, gap := read(3); n != 0 || gap {
		t.Errorf("cleared journal: %d records, gap %v", n, gap)
	}
}

// The state a SIGKILL leaves (the database file as committed, the journal
// holding acknowledged batches of the open transaction), copied while the
// writer holds the transaction open: Open applies the journal, and every
// acknowledged event is there with the cursor it was acknowledged with, its
// nonce still refused.
func TestJournalAppliedAtOpen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dlr.db")
	image := filepath.Join(dir, "image.db")
	var batches atomic.Int32
	var copyErr error
	const copyAt = 6
	s, err := Open(path, Options{NoSync: true, holdJournal: true, BeforeCommit: func() {
		if batches.Add(1) == copyAt {
			// The writer is here, between batches: neither file changes.
			copyErr = errors.Join(copyTestFile(path, image), copyTestFile(journalPath(path), journalPath(image)))
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	type ack struct {
		uuid   string
		cursor uint64
	}
	var acked []ack
	for i := range copyAt {
		uuid := numberedUUID(i)
		res := mustApply(t, s, ev(uuid, StatusQueued, 0), Nonce{Value: fmt.Sprintf("%020d", i), ExpiresAt: exp, Sum: 1})
		if i < copyAt-1 {
			acked = append(acked, ack{uuid, res.Cursor})
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if copyErr != nil {
		t.Fatal(copyErr)
	}

	s2, err := Open(image, Options{})
	if err != nil {
		t.Fatalf("open the crash image: %v", err)
	}
	defer s2.Close()
	replayed, gap := s2.JournalReplayed()
	t.Logf("acknowledged %d events before the copy; %d applied from the journal", len(acked), replayed)
	if replayed != len(acked) || gap {
		t.Errorf("journal applied %d events (gap %v): the copy caught no open transaction", replayed, gap)
	}
	var cursors []uint64
	for _, a := range acked {
		_, events := mustGet(t, s2, a.uuid)
		if len(events) != 1 || events[0].Cursor != a.cursor {
			t.Errorf("%s: events %+v, want one at cursor %d", a.uuid, events, a.cursor)
		}
		cursors = append(cursors, a.cursor)
	}
	if last, _ := s2.LastCursor(); last != slices.Max(cursors) {
		t.Errorf("last cursor %d, want %d", last, slices.Max(cursors))
	}
	_, err = s2.Apply(context.Background(), ev("00000000-0000-1000-8000-999999999999", StatusQueued, 0),
		Nonce{Value: fmt.Sprintf("%020d", 0), ExpiresAt: exp, Sum: 2})
	if !errors.Is(err, ErrReplayed) {
		t.Errorf("nonce of a journaled event used again: %v, want ErrReplayed", err)
	}
	// Committed now: a second open has nothing to apply.
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	s3, err := Open(image, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	if n, _ := s3.JournalReplayed(); n != 0 {
		t.Errorf("second open applied %d events again", n)
	}
	if last, _ := s3.LastCursor(); last != slices.Max(cursors) {
		t.Errorf("after a second open: last cursor %d, want %d", last, slices.Max(cursors))
	}
}

func copyTestFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}

// An event whose writes fail inside the open journaled transaction: the
// transaction is rolled back and rebuilt from the journal's records, so the
// events acknowledged before it keep their cursors and nonces; the failing
// request is answered with its error and leaves nothing behind (its retry,
// same nonce, is stored rather than refused as a replay); the requests that
// shared its batch are stored.
func TestApplyFailureRebuildsJournaledTransaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dlr.db")
	const bad = "00000000-0000-1000-8000-00000000dead"
	var failing atomic.Bool
	failing.Store(true)
	var gate atomic.Pointer[chan struct{}]
	entered := make(chan struct{}, 1)
	s, err := Open(path, Options{NoSync: true, holdJournal: true,
		BeforeCommit: func() {
			if g := gate.Swap(nil); g != nil {
				entered <- struct{}{}
				<-*g
			}
		},
		applyFault: func(e *Event) error {
			if e.MessageUUID == bad && failing.Load() {
				return errors.New("injected put failure")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	nonce := func(i int) Nonce { return numberedNonce(i, exp) }
	cursors := map[string]uint64{}
	for i := range 4 { // acknowledged, in the open transaction
		cursors[numberedUUID(i)] = mustApply(t, s, ev(numberedUUID(i), StatusQueued, 0), nonce(i)).Cursor
	}

	// Hold the writer on one batch while the failing event and two others
	// queue, so they make one batch.
	release := make(chan struct{})
	gate.Store(&release)
	type outcome struct {
		uuid string
		res  ApplyResult
		err  error
	}
	results := make(chan outcome, 4)
	apply := func(u string, n Nonce) {
		res, err := s.Apply(context.Background(), ev(u, StatusQueued, 0), n)
		results <- outcome{u, res, err}
	}
	go apply(numberedUUID(4), nonce(4))
	<-entered
	go apply(bad, nonce(99))
	go apply(numberedUUID(5), nonce(5))
	go apply(numberedUUID(6), nonce(6))
	deadline := time.Now().Add(10 * time.Second)
	for len(s.reqs) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests queued, want 3", len(s.reqs))
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	for range 4 {
		o := <-results
		switch {
		case o.uuid == bad:
			if o.err == nil || !strings.Contains(o.err.Error(), "injected put failure") {
				t.Errorf("failing event: %+v, %v; want the injected error", o.res, o.err)
			}
		case o.err != nil:
			t.Errorf("%s: %v (it shared the failing event's batch)", o.uuid, o.err)
		default:
			cursors[o.uuid] = o.res.Cursor
		}
	}
	// The failing event's nonce was not used up: its retry is stored.
	failing.Store(false)
	res, err := s.Apply(context.Background(), ev(bad, StatusQueued, 0), nonce(99))
	if err != nil || res.Retry || res.Duplicate {
		t.Fatalf("retry of the failed event: %+v, %v; want it stored", res, err)
	}
	cursors[bad] = res.Cursor
	// A nonce of a batch rebuilt from the journal is still used.
	if _, err := s.Apply(context.Background(), ev(numberedUUID(7), StatusQueued, 0), Nonce{Value: nonce(0).Value, ExpiresAt: exp, Sum: 1234}); !errors.Is(err, ErrReplayed) {
		t.Errorf("nonce of a rebuilt batch used again: %v, want ErrReplayed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	var got []uint64
	for _, c := range cursors {
		got = append(got, c)
	}
	slices.Sort(got)
	for i, c := range got {
		if c != uint64(i+1) {
			t.Fatalf("cursors %v, want 1..%d without gaps (the failed try took none)", got, len(got))
		}
	}
	s2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for u, c := range cursors {
		if _, events := mustGet(t, s2, u); len(events) != 1 || events[0].Cursor != c {
			t.Errorf("%s after reopening: events %+v, want one at cursor %d", u, events, c)
		}
	}
	if last, _ := s2.LastCursor(); last != uint64(len(cursors)) {
		t.Errorf("last cursor %d, want %d", last, len(cursors))
	}
}

// A journal fdatasync that fails: the batch is answered with the error and
// leaves nothing (its retry, same nonce, is stored); the events journaled
// before it keep their cursors and nonces through the rebuilt transaction;
// the next record overwrites the failed one, so a crash image read after
// that has every acknowledged event and only those.
func TestJournalSyncFailureRefusesBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dlr.db")
	var failing atomic.Bool
	s, err := Open(path, Options{NoSync: true, holdJournal: true, journalFault: func() error {
		if failing.Load() {
			return errors.New("injected EIO")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	nonce := func(i int) Nonce { return numberedNonce(i, exp) }
	cursors := map[string]uint64{}
	for i := range 3 {
		cursors[numberedUUID(i)] = mustApply(t, s, ev(numberedUUID(i), StatusQueued, 0), nonce(i)).Cursor
	}
	failing.Store(true)
	if res, err := s.Apply(context.Background(), ev(numberedUUID(3), StatusQueued, 0), nonce(3)); err == nil || !strings.Contains(err.Error(), "injected EIO") {
		t.Fatalf("apply with a failing journal: %+v, %v; want the fdatasync error", res, err)
	}
	failing.Store(false)
	res, err := s.Apply(context.Background(), ev(numberedUUID(3), StatusQueued, 0), nonce(3))
	if err != nil || res.Retry || res.Duplicate {
		t.Fatalf("retry after the failed fdatasync: %+v, %v; want it stored", res, err)
	}
	cursors[numberedUUID(3)] = res.Cursor
	cursors[numberedUUID(4)] = mustApply(t, s, ev(numberedUUID(4), StatusQueued, 0), nonce(4)).Cursor
	if _, err := s.Apply(context.Background(), ev(numberedUUID(9), StatusQueued, 0), Nonce{Value: nonce(1).Value, ExpiresAt: exp, Sum: 1234}); !errors.Is(err, ErrReplayed) {
		t.Errorf("nonce journaled before the failure used again: %v, want ErrReplayed", err)
	}
	// The crash image: the database as committed and the journal as the
	// open transaction left it (the writer holds it, nothing is writing).
	image := filepath.Join(t.TempDir(), "image.db")
	if err := errors.Join(copyTestFile(path, image), copyTestFile(journalPath(path), journalPath(image))); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, image} {
		s2, err := Open(p, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := s2.JournalReplayed(); p == image && n != len(cursors) {
			t.Errorf("crash image: %d events applied from the journal, want %d", n, len(cursors))
		}
		for u, c := range cursors {
			if _, events := mustGet(t, s2, u); len(events) != 1 || events[0].Cursor != c {
				t.Errorf("%s: %s has events %+v, want one at cursor %d", filepath.Base(p), u, events, c)
			}
		}
		if last, _ := s2.LastCursor(); last != uint64(len(cursors)) {
			t.Errorf("%s: last cursor %d, want %d (the failed batch took none)", filepath.Base(p), last, len(cursors))
		}
		if err := s2.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// numberedUUID and numberedNonce are the i-th message and nonce of the
// journal fault tests; the nonce's request sum is i+1.
func numberedUUID(i int) string { return fmt.Sprintf("00000000-0000-1000-8000-%012d", i) }

func numberedNonce(i int, exp time.Time) Nonce {
	return Nonce{Value: fmt.Sprintf("%020d", i), ExpiresAt: exp, Sum: uint64(i + 1)}
}
