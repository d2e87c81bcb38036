package storage

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	write := func(s string) func(io.Writer) error {
		return func(w io.Writer) error { _, err := io.WriteString(w, s); return err }
	}
	for _, tc := range []struct {
		name    string
		write   func(io.Writer) error
		verify  func(string) error
		wantErr error
		want    string
	}{
		{name: "write fails", write: func(io.Writer) error { return boom }, wantErr: boom, want: "old"},
		{name: "verify fails", write: write("bad"), verify: func(string) error { return boom }, wantErr: boom, want: "old"},
		{name: "replaced", write: write("new"), verify: func(tmp string) error {
			if b, err := os.ReadFile(tmp); err != nil || string(b) != "new" {
				return errors.New("verify did not see the complete temporary file")
			}
			return nil
		}, want: "new"},
	} {
		err := WriteFileAtomic(path, tc.write, tc.verify)
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.wantErr)
		}
		if b, _ := os.ReadFile(path); string(b) != tc.want {
			t.Errorf("%s: file holds %q, want %q", tc.name, b, tc.want)
		}
		if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
			t.Errorf("%s: temporary file left behind (%v)", tc.name, err)
		}
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, %v; want 0600", fi.Mode(), err)
	}
}
