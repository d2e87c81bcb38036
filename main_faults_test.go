package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"
)

// An attacker holding idle connections until the process runs out of file
// descriptors must not stop it: accept backs off on EMFILE and the server
// serves again once the connections go. Before, Serve returned on the first
// EMFILE and the process exited.
func TestBinarySurvivesFDExhaustion(t *testing.T) {
	p := startBinary(t, writeConfig(t, t.TempDir()))
	defer p.stop(t)

	const limit = 256
	lim := unix.Rlimit{Cur: limit, Max: limit}
	if err := unix.Prlimit(p.cmd.Process.Pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
		t.Fatalf("prlimit: %v", err)
	}
	// More idle connections than the process has descriptors.
	var conns []net.Conn
	for i := 0; i < limit+64; i++ {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err != nil {
			break // the backlog is full: the point is made
		}
		conns = append(conns, c)
	}
	time.Sleep(300 * time.Millisecond) // let accept hit EMFILE
	select {
	case err := <-p.done:
		t.Fatalf("process exited under fd exhaustion: %v\n%s", err, p.stderr.String())
	default:
	}
	for _, c := range conns {
		c.Close()
	}

	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _ := p.send(t, client, signedForm(t, statusFields("0e9f7a10-8f8e-11ef-9b1d-0242ac120002", "queued", 1), randomNonce()))
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 200 within 10 s after the idle connections closed (last %d)\n%s", code, p.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case err := <-p.done:
		t.Fatalf("process exited: %v", err)
	default:
	}
}

// randomNonce is a nonce as Plivo sends them: a random 20-digit string.
func randomNonce() string {
	b := make([]byte, 20)
	for i := range b {
		b[i] = '0' + byte(rand.IntN(10))
	}
	return string(b)
}

// An oversized body is refused from its Content-Length, before it is read:
// the answer comes although the client has sent none of the body.
func TestBinaryRefusesOversizedBodyUpFront(t *testing.T) {
	p := startBinary(t, writeConfig(t, t.TempDir()))
	defer p.stop(t)
	for _, path := range []string{"/plivo/callback", "/login", "/logout", "/api/messages"} {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000\r\n\r\nStatus=", path)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Fatalf("POST %s with a 1 MB Content-Length and no body: no answer (%v); want 413 at once", path, err)
		}
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("POST %s: status %d, want 413", path, resp.StatusCode)
		}
	}
}

// requireRoot skips a fault test that needs mounts unless running as root
// with the tools present (CI runs as root).
func requireRoot(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small filesystem")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
}

// mountFS mounts a filesystem at a fresh directory and unmounts it in
// Cleanup (lazily if still busy). args go to mount before the target.
func mountFS(t *testing.T, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", append(args, dir)...).CombinedOutput(); err != nil {
		t.Fatalf("mount %v: %v\n%s", args, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v %s; detaching lazily", dir, err, out)
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

// readyz returns the status of GET /readyz.
func (p *proc) readyz(t *testing.T) int {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + p.addr + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// v1UUID returns a version-1 UUID, as Plivo's MessageUUIDs are.
func v1UUID(t *testing.T) string {
	t.Helper()
	u, err := uuid.NewUUID()
	if err != nil {
		t.Fatal(err)
	}
	return u.String()
}

// fill writes a file in dir until the filesystem is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for range 4096 { // bounded: the filesystems here are far smaller
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	for range 4096 { // the last partial megabyte
		if _, err := f.Write(buf[:4096]); err != nil {
			break
		}
	}
	return path
}

// checkStored checks through the API that every uuid is stored.
func (p *proc) checkStored(t *testing.T, uuids []string) {
	t.Helper()
	for _, u := range uuids {
		if code := p.getJSON(t, "/api/messages/"+u, testAPIToken, nil); code != http.StatusOK {
			t.Errorf("acknowledged callback %s: GET /api/messages = %d, want 200", u, code)
		}
	}
}

// On a full disk /readyz answers 503 while callbacks are refused, and ready
// again once space is freed; every acknowledged callback is stored (issue 9
// M6: readiness said 200 while every callback got 503).
func TestBinaryReadyzOnFullDisk(t *testing.T) {
	requireRoot(t, "mount", "umount")
	dir := mountFS(t, "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs")
	p := startBinary(t, writeConfig(t, dir))
	client := &http.Client{Timeout: 10 * time.Second}
	var acked []string
	sendNew := func() int {
		u := v1UUID(t)
		code, _ := p.send(t, client, signedForm(t, statusFields(u, "delivered", 3), randomNonce()))
		if code == http.StatusOK {
			acked = append(acked, u)
		}
		return code
	}
	for range 20 {
		if code := sendNew(); code != http.StatusOK {
			t.Fatalf("callback before the disk filled: %d, want 200", code)
		}
	}
	if code := p.readyz(t); code != http.StatusOK {
		t.Fatalf("/readyz with free space: %d, want 200", code)
	}
	filler := fill(t, dir)
	var refused int
	for i := range 400 { // until the database needs a page it cannot get
		switch code := sendNew(); code {
		case http.StatusOK:
		case http.StatusServiceUnavailable:
			refused++
		default:
			t.Fatalf("callback %d on a full disk: %d, want 200 or 503", i, code)
		}
		if refused >= 3 {
			break
		}
	}
	if refused == 0 {
		t.Fatalf("no callback refused on a full disk (%d acknowledged)", len(acked))
	}
	if code := p.readyz(t); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz on a full disk with callbacks refused: %d, want 503", code)
	}
	// A backup's temporary copy would take the last space: refused.
	if code := p.getJSON(t, "/api/backup", testAPIToken, nil); code != http.StatusInsufficientStorage {
		t.Errorf("GET /api/backup on a full disk: %d, want 507", code)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if !waitForDeadline(10*time.Second, func() bool { return sendNew() == http.StatusOK }) {
		t.Fatalf("callbacks still refused 10 s after space was freed")
	}
	if code := p.readyz(t); code != http.StatusOK {
		t.Errorf("/readyz after space was freed and a callback stored: %d, want 200", code)
	}
	p.checkStored(t, acked)
	t.Logf("full disk: %d acknowledged, %d refused with 503", len(acked), refused)
	p.stop(t)
}

// With the data filesystem frozen (fsfreeze) for longer than the apply
// timeout under load, every callback is answered 200 or 503, every 200 is
// stored, and after the thaw each refused callback, retried with its own
// signature and nonce as Plivo does, is accepted: never a false 403.
func TestBinaryFrozenFilesystem(t *testing.T) {
	requireRoot(t, "mount", "umount", "mkfs.ext4", "fsfreeze")
	img := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 128<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	dir := mountFS(t, "-o", "loop", img)
	p := startBinary(t, writeConfig(t, dir))

	type answer struct {
		uuid string
		cb   callback
		code int
		took time.Duration
	}
	var mu sync.Mutex
	var answers []answer
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 30 * time.Second}
			for range 100_000 { // bounded; stop comes first
				select {
				case <-stop:
					return
				default:
				}
				u := v1UUID(t)
				cb := signedForm(t, statusFields(u, "delivered", 3), randomNonce())
				start := time.Now()
				code, _ := p.send(t, client, cb)
				mu.Lock()
				answers = append(answers, answer{u, cb, code, time.Since(start)})
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Second)
	// Thaw before anything else in cleanup, even when the test fails: the
	// binary cannot exit, nor the mount go, while frozen.
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			if out, err := exec.Command("fsfreeze", "-u", dir).CombinedOutput(); err != nil {
				t.Errorf("fsfreeze -u: %v\n%s", err, out)
			}
		}
	}
	t.Cleanup(thaw)
	if out, err := exec.Command("fsfreeze", "-f", dir).CombinedOutput(); err != nil {
		t.Fatalf("fsfreeze -f: %v\n%s", err, out)
	}
	time.Sleep(2 * time.Second)
	readyDuringFreeze := p.readyz(t)
	time.Sleep(6 * time.Second) // past the 6 s apply timeout
	thaw()
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	if readyDuringFreeze != http.StatusServiceUnavailable {
		t.Errorf("/readyz while frozen: %d, want 503", readyDuringFreeze)
	}

	client := &http.Client{Timeout: 30 * time.Second}
	var acked []string
	var refused, retriedOK, held int
	for _, a := range answers {
		if a.code == http.StatusOK && a.took >= 5*time.Second {
			held++ // its batch was being written when the freeze began
		}
		switch a.code {
		case http.StatusOK:
			acked = append(acked, a.uuid)
		case http.StatusServiceUnavailable:
			refused++
			// Plivo retries the same request: same signature, same nonce.
			if code, body := p.send(t, client, a.cb); code != http.StatusOK {
				t.Errorf("retry of refused callback %s after the thaw: %d %s, want 200", a.uuid, code, body)
			} else {
				retriedOK++
				acked = append(acked, a.uuid)
			}
		default:
			t.Errorf("callback %s during the freeze: %d, want 200 or 503", a.uuid, a.code)
		}
	}
	// A callback is refused (503) if the freeze stopped the writer before it
	// took the callback, or answered 200 after the thaw if its batch was
	// being made durable (a taken request is never answered before its
	// outcome is known). Either shows the freeze bit.
	if refused == 0 && held == 0 {
		t.Errorf("no callback refused or held during an 8 s freeze (%d answers): the freeze did not bite", len(answers))
	}
	for range 20 {
		u := v1UUID(t)
		if code, body := p.send(t, client, signedForm(t, statusFields(u, "delivered", 3), randomNonce())); code != http.StatusOK {
			t.Errorf("new callback after the thaw: %d %s, want 200", code, body)
		}
		acked = append(acked, u)
	}
	p.checkStored(t, acked)
	t.Logf("frozen 8 s under load: %d answers, %d refused with 503 and accepted on retry (%d), %d answered 200 after the thaw, %d stored in all", len(answers), refused, retriedOK, held, len(acked))
	p.stop(t)
}
