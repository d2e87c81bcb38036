package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"plivo-dlr/internal/testsupport"
	"plivo-dlr/storage"
)

// ingestor sends signed delivered callbacks, each for a new message, from
// many goroutines until stopped, and records which were acknowledged.
type ingestor struct {
	d      *dashServer
	client *http.Client
	stop   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	acked  []string
	failed atomic.Int64
	errs   chan error
}

func startIngestor(t *testing.T, d *dashServer, workers int) *ingestor {
	t.Helper()
	in := &ingestor{
		d:      d,
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}},
		stop:   make(chan struct{}),
		errs:   make(chan error, workers),
	}
	for w := range workers {
		in.wg.Add(1)
		go func() {
			defer in.wg.Done()
			for i := 0; i < 1_000_000; i++ { // bounded; stop normally comes first
				select {
				case <-in.stop:
					return
				default:
				}
				uuid := fmt.Sprintf("b%07x-0000-4000-8000-%012x", w, i)
				req := signedCallback(t, d.cfg, d.addr, callbackForm(uuid, "delivered", "", 3))
				resp, err := in.client.Do(req)
				if err != nil {
					in.errs <- fmt.Errorf("callback %s: %w", uuid, err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					in.failed.Add(1)
					continue
				}
				in.mu.Lock()
				in.acked = append(in.acked, uuid)
				in.mu.Unlock()
			}
		}()
	}
	t.Cleanup(in.halt)
	return in
}

// ackedSoFar returns a copy of the acknowledged message UUIDs.
func (in *ingestor) ackedSoFar() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]string(nil), in.acked...)
}

func (in *ingestor) halt() {
	select {
	case <-in.stop:
	default:
		close(in.stop)
	}
	in.wg.Wait()
	// A connection dialled but never used counts as active for 5 s in
	// fasthttp's graceful shutdown: close them.
	in.client.CloseIdleConnections()
}

// check stops the ingestor and fails the test on any error or non-200.
func (in *ingestor) check(t *testing.T) {
	t.Helper()
	in.halt()
	close(in.errs)
	for err := range in.errs {
		t.Error(err)
	}
	if n := in.failed.Load(); n != 0 {
		t.Errorf("%d callbacks answered non-200 during the backup, want 0", n)
	}
}

// getBody returns the status and body of an authenticated GET.
func getBody(t *testing.T, url string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+dashAPIToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read: %v", url, err)
	}
	return resp.StatusCode, body
}

// TestBackupDuringIngestion takes a backup through the API while 32
// goroutines keep sending signed callbacks, then restores it into a fresh
// data dir and serves it: every callback acknowledged before the backup
// began is there, and the API answers the same for them.
func TestBackupDuringIngestion(t *testing.T) {
	d := startDashServer(t, nil)
	in := startIngestor(t, d, 32)
	testsupport.WaitFor(t, 20*time.Second, "500 acknowledged callbacks", func() bool { return len(in.ackedSoFar()) >= 500 })

	before := in.ackedSoFar()
	out := filepath.Join(t.TempDir(), "backup.db")
	res, err := newAPIClient(t, d.url(""), dashAPIToken).Backup(context.Background(), out)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	// Ingestion went on: more callbacks are acknowledged after the backup.
	testsupport.WaitFor(t, 20*time.Second, "callbacks acknowledged after the backup", func() bool {
		return len(in.ackedSoFar()) > len(before)+100
	})
	in.check(t)
	if _, err := os.Stat(out + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
	if res.Info.Messages < len(before) {
		t.Errorf("backup holds %d messages, want at least the %d acknowledged before it", res.Info.Messages, len(before))
	}
	t.Logf("backup: %d bytes, %d messages (%d acknowledged before it began, %d by the end)",
		res.Bytes, res.Info.Messages, len(before), len(in.ackedSoFar()))

	// Restore: the backup file becomes the data file of a fresh server.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &dashServer{addr: ln.Addr().String(), dbDir: t.TempDir()}
	r.cfg = dashConfig(r.addr)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.dbDir, "dlr.db"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	r.start(t, ln)
	t.Cleanup(func() { r.stop(t) })

	missing := 0
	for _, uuid := range before {
		if _, _, err := r.store.GetMessage(uuid); err != nil {
			missing++
			if missing < 5 {
				t.Errorf("acknowledged %s before the backup, restored store: %v", uuid, err)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d callbacks acknowledged before the backup are missing from it", missing, len(before))
	}
	for i := 0; i < len(before); i += max(1, len(before)/50) {
		path := "/api/messages/" + before[i]
		code1, want := getBody(t, d.url(path))
		code2, got := getBody(t, r.url(path))
		if code1 != http.StatusOK || code2 != http.StatusOK || !bytes.Equal(got, want) {
			t.Errorf("GET %s on the restored server = %d %s, want %d %s", path, code2, got, code1, want)
		}
	}
}

// TestBackupReleasesSnapshot checks the headers of GET /api/backup, that
// callbacks are stored while a backup's read transaction is open, and that
// a client leaving mid-download releases it.
func TestBackupReleasesSnapshot(t *testing.T) {
	d := startDashServer(t, nil)
	// Larger than what loopback socket buffers absorb, so the server is
	// still copying when the client stalls.
	fillMessages(t, d.store, "c", 10_000)
	req, err := http.NewRequest(http.MethodGet, d.url("/api/backup"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+dashAPIToken)
	// A small receive buffer keeps the kernel from taking the whole file.
	dialer := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<10) })
		if err != nil {
			return err
		}
		return serr
	}}
	client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/backup = %d, want 200", resp.StatusCode)
	}
	cd := resp.Header.Get("Content-Disposition")
	if !regexp.MustCompile(`^attachment; filename="plivo-dlr-\d{8}T\d{6}Z\.db"$`).MatchString(cd) {
		t.Errorf("Content-Disposition = %q, want attachment; filename=\"plivo-dlr-YYYYMMDDTHHMMSSZ.db\"", cd)
	}
	if resp.ContentLength < 1<<20 {
		t.Errorf("Content-Length = %d, want the snapshot's size", resp.ContentLength)
	}
	// Read one page and stall: the snapshot was copied to a temporary file
	// first, so no read transaction stays open...
	if _, err := io.ReadFull(resp.Body, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	if n := d.store.OpenReadTxs(); n != 0 {
		t.Errorf("open read transactions during the backup = %d, want 0", n)
	}
	if n := len(tempFilesIn(t, d.dbDir)); n != 1 {
		t.Errorf("temporary backup copies open during the download = %d, want 1", n)
	}
	// ...and ingestion goes on meanwhile.
	for i := range 50 {
		d.sendCallback(t, fmt.Sprintf("d%07d-0000-4000-8000-000000000000", i), "delivered", "", 3)
	}
	// The client goes away: the read transaction ends.
	resp.Body.Close()
	client.CloseIdleConnections()
	testsupport.WaitFor(t, 10*time.Second, "the backup's temporary copy to be closed", func() bool { return len(tempFilesIn(t, d.dbDir)) == 0 })

	if code, _ := getBody(t, d.url("/api/backup")+"?x=1"); code != http.StatusOK {
		t.Errorf("second backup = %d, want 200", code)
	}
	resp, err = http.Get(d.url("/api/backup"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("backup without a token = %d, want 401", resp.StatusCode)
	}
}

// TestBackupViaAPIRefused leaves no file behind when the server refuses.
func TestBackupViaAPIRefused(t *testing.T) {
	d := startDashServer(t, nil)
	out := filepath.Join(t.TempDir(), "backup.db")
	_, err := newAPIClient(t, d.url(""), "wrong-token").Backup(context.Background(), out)
	if err == nil || !regexp.MustCompile(`401: authentication required`).MatchString(err.Error()) {
		t.Errorf("Backup with a wrong token: got %v, want the server's 401 reason", err)
	}
	for _, p := range []string{out, out + ".tmp"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s exists after a refused backup (%v)", p, err)
		}
	}
}

// fillMessages stores n delivered messages named prefix-N directly in the
// store, from many goroutines so commits are shared.
func fillMessages(tb testing.TB, store *storage.Store, prefix string, n int) {
	tb.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 64)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				uuid := fmt.Sprintf("%s-%08d", prefix, i)
				ev := storage.Event{
					MessageUUID: uuid,
					Status:      "delivered",
					Sequence:    3,
					Source:      storage.SourceCallback,
					Payload:     map[string]string{"MessageUUID": uuid, "Status": "delivered", "To": "447700900123", "From": "14155550100"},
					Details:     storage.Details{From: "14155550100", To: "447700900123", Type: "sms", Units: 1, TotalRate: "0.00450"},
				}
				if _, err := store.Apply(context.Background(), ev); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		tb.Fatalf("fill store: %v", err)
	}
}

// tempFilesIn lists this process's open files in dir other than the
// database itself: the backups' unnamed temporary copies.
func tempFilesIn(t *testing.T, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("list open files: %v", err)
	}
	var out []string
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err != nil || !strings.HasPrefix(target, dir+"/") || target == filepath.Join(dir, "dlr.db") || target == filepath.Join(dir, "dlr.db.journal") {
			continue
		}
		out = append(out, target)
	}
	return out
}

// TestBackupSlowReaderDoesNotStallWriter: a client reading a backup at
// 8 KiB every 50 ms holds no read transaction, and callbacks sent meanwhile
// are all stored with 200 (issue 9 H3: the snapshot pinned the file, the
// writer stalled at the mmap boundary and callbacks got 503).
func TestBackupSlowReaderDoesNotStallWriter(t *testing.T) {
	d := startDashServer(t, nil)
	fillMessages(t, d.store, "s", 10_000)
	in := startIngestor(t, d, 8)
	testsupport.WaitFor(t, 20*time.Second, "50 acknowledged callbacks", func() bool { return len(in.ackedSoFar()) >= 50 })

	req, err := http.NewRequest(http.MethodGet, d.url("/api/backup"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+dashAPIToken)
	dialer := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<10) })
		if err != nil {
			return err
		}
		return serr
	}}
	client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseIdleConnections()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/backup = %d, want 200", resp.StatusCode)
	}
	before := len(in.ackedSoFar())
	buf := make([]byte, 8<<10)
	var maxTxs int
	for range 60 { // 3 s of trickling
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			t.Fatalf("slow read: %v", err)
		}
		maxTxs = max(maxTxs, d.store.OpenReadTxs())
		time.Sleep(50 * time.Millisecond)
	}
	during := len(in.ackedSoFar()) - before
	in.check(t)
	// Queries of the ingestor's own callbacks open none; the backup must not
	// hold one while it trickles.
	if maxTxs != 0 {
		t.Errorf("open read transactions while the backup trickled: got up to %d, want 0", maxTxs)
	}
	if during < 50 {
		t.Errorf("callbacks acknowledged during 3 s of slow backup: got %d, want at least 50", during)
	}
	t.Logf("callbacks acknowledged during the slow backup: %d in 3 s", during)
}
