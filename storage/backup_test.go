package storage

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestSnapshotToTemp: the copy is a complete, verifiable database at its
// start, mode 0600, with no name in the data dir, and the snapshot's read
// transaction has ended by the time it is returned.
func TestSnapshotToTemp(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenPath(t, filepath.Join(dir, "dlr.db"), Options{})
	mustApply(t, s, ev("0e9f7a10-8f8e-11ef-9b1d-0242ac120002", StatusQueued, 1))
	mustApply(t, s, ev("0e9f7a10-8f8e-11ef-9b1d-0242ac120002", StatusDelivered, 3))

	f, size, err := s.SnapshotToTemp()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n := s.OpenReadTxs(); n != 0 {
		t.Errorf("open read transactions after the copy: got %d, want 0", n)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != size {
		t.Errorf("temp file size: got %d, want %d", fi.Size(), size)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("temp file mode: got %o, want 600", mode)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "dlr.db" && e.Name() != "dlr.db.journal" {
			t.Errorf("data dir holds %s besides the database, want nothing named", e.Name())
		}
	}
	out := filepath.Join(t.TempDir(), "copy.db")
	w, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(w, f); err != nil || n != size {
		t.Fatalf("read the copy: %d bytes, %v; want %d", n, err, size)
	}
	w.Close()
	info, err := VerifyBackup(out)
	if err != nil {
		t.Fatalf("verify the copy: %v", err)
	}
	if info.Messages != 1 || info.LastCursor != 2 {
		t.Errorf("copy holds %d messages up to cursor %d, want 1 up to 2", info.Messages, info.LastCursor)
	}
}
