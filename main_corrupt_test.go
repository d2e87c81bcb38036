package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// boltPages reads, without bbolt (the running binary holds its lock), the
// current meta page of a bbolt file: page size, high-water mark, and the
// root page of the top-level bucket name.
func boltPages(t *testing.T, path, name string) (ps int64, hwm uint64, root uint64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	ps = int64(le.Uint32(b[16+8:]))
	// The meta page with the higher txid is current.
	meta := b[16:]
	if le.Uint64(b[ps+16+48:]) > le.Uint64(b[16+48:]) {
		meta = b[ps+16:]
	}
	hwm = le.Uint64(meta[40:])
	rootPage := b[int64(le.Uint64(meta[16:]))*ps:]
	if le.Uint16(rootPage[8:]) != 0x02 {
		t.Fatalf("root bucket page is not a leaf (flags %#x): the test expects a small root", le.Uint16(rootPage[8:]))
	}
	for i := 0; i < int(le.Uint16(rootPage[10:])); i++ {
		e := rootPage[16+16*i:]
		pos, ksize := le.Uint32(e[4:]), le.Uint32(e[8:])
		key := e[pos : pos+ksize]
		if string(key) == name {
			root = le.Uint64(e[pos+ksize:])
			if root == 0 {
				t.Fatalf("bucket %s is inline: send more callbacks", name)
			}
			return ps, hwm, root
		}
	}
	t.Fatalf("no bucket %s in the root page", name)
	return 0, 0, 0
}

// storeCallbacks runs the binary on dir, stores n callbacks and stops it.
func storeCallbacks(t *testing.T, dir string, n int) (config string, uuids []string) {
	t.Helper()
	config = writeConfig(t, dir)
	p := startBinary(t, config)
	client := &http.Client{Timeout: 10 * time.Second}
	for range n {
		u := v1UUID(t)
		if code, body := p.send(t, client, signedForm(t, statusFields(u, "delivered", 3), randomNonce())); code != http.StatusOK {
			t.Fatalf("callback: %d %s", code, body)
		}
		uuids = append(uuids, u)
	}
	p.stop(t)
	return config, uuids
}

// A database damaged while the process was down (a page header overwritten,
// the file truncated) is refused at start with one line naming the file,
// what is wrong and how to restore; the exit code is 1, not the 2 of a Go
// panic or SIGBUS. Before, bbolt panicked while rebuilding its freelist
// (a page header) or the process died of SIGBUS (truncation).
func TestBinaryRefusesCorruptDatabase(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, db string)
		want   string
	}{
		{"page header", func(t *testing.T, db string) {
			ps, _, root := boltPages(t, db, "messages")
			f, err := os.OpenFile(db, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte("\xde\xad\xbe\xef\xde\xad\xbe\xef\x00\x00"), int64(root)*ps); err != nil {
				t.Fatal(err)
			}
		}, `bucket "messages": page`},
		{"truncated", func(t *testing.T, db string) {
			ps, hwm, _ := boltPages(t, db, "messages")
			if err := os.Truncate(db, int64(hwm)*ps/2); err != nil {
				t.Fatal(err)
			}
		}, "truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			config, _ := storeCallbacks(t, dir, 150)
			db := filepath.Join(dir, "plivo-dlr.db")
			tc.damage(t, db)
			cmd := exec.Command(buildBinary(t), "serve", "-config", config)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			var err error
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("still running 20 s after start on a damaged database:\n%s", out.String())
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Errorf("exit: %v, want exit code 1", err)
			}
			text := out.String()
			if strings.Contains(text, "panic") || strings.Contains(text, "goroutine ") || strings.Contains(text, "SIGBUS") {
				t.Errorf("a crash instead of a refusal:\n%s", text)
			}
			var lines []string
			for _, l := range strings.Split(text, "\n") {
				if strings.Contains(l, "corrupt") {
					lines = append(lines, l)
				}
			}
			if len(lines) != 1 || !strings.Contains(lines[0], db) || !strings.Contains(lines[0], tc.want) ||
				!strings.Contains(lines[0], "restore the newest backup") {
				t.Errorf("want one line naming %s, saying %q and how to restore; got:\n%s", db, tc.want, text)
			}
			t.Logf("refused: %s", lines)
		})
	}
}

// A page damaged while the process runs is reached by a read: the panic
// bbolt raises is answered 500 and the process goes on serving.
func TestBinaryCorruptPageAtRuntime(t *testing.T) {
	dir := t.TempDir()
	config, uuids := storeCallbacks(t, dir, 150)
	p := startBinary(t, config)
	if code := p.getJSON(t, "/api/messages/"+uuids[0], testAPIToken, nil); code != http.StatusOK {
		t.Fatalf("GET before the damage: %d", code)
	}
	// The process maps the file shared: a write to it is what the next
	// read sees. No callback comes after, so the root page stays put.
	db := filepath.Join(dir, "plivo-dlr.db")
	ps, _, root := boltPages(t, db, "messages")
	f, err := os.OpenFile(db, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0x00, 0x00}, int64(root)*ps+8); err != nil { // page type
		t.Fatal(err)
	}
	f.Close()
	for range 3 {
		if code := p.getJSON(t, "/api/messages/"+uuids[1], testAPIToken, nil); code != http.StatusInternalServerError {
			t.Errorf("GET of a message on the damaged page: %d, want 500", code)
		}
	}
	if code := p.getJSON(t, "/healthz", "", nil); code != http.StatusOK {
		t.Errorf("/healthz after the panics: %d, want 200", code)
	}
	select {
	case err := <-p.done:
		t.Fatalf("process exited after reading a damaged page: %v\n%s", err, p.stderr.String())
	default:
	}
	if !strings.Contains(p.stderr.String(), "handler panic recovered") {
		t.Errorf("the log does not record the recovered panic:\n%s", p.stderr.String())
	}
}
