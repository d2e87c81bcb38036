package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"plivo-dlr/internal/testsupport"
	"plivo-dlr/storage"
)

// cli runs the real binary with args and env (added to the environment)
// and returns its exit code, stdout and stderr.
func cli(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(buildBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return code, stdout.String(), stderr.String()
}

// rawGet returns the status and body of GET path with the test API token.
func (p *proc) rawGet(t *testing.T, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+testAPIToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestBackupRestoreAndExportCommands drives the backup and export commands
// of the real binary against a running one, then restores the backup the
// way the README says (stop, replace the data file, start) and checks the
// API serves what it served when the backup was taken.
func TestBackupRestoreAndExportCommands(t *testing.T) {
	dataDir := t.TempDir()
	configPath := writeConfig(t, dataDir)
	p := startBinary(t, configPath)
	client := &http.Client{Timeout: 10 * time.Second}
	server := "http://" + p.addr
	var uuids []string
	for i := range 40 {
		uuid := fmt.Sprintf("0c7e%04x-2f61-11ef-a3d5-0242ac120003", i)
		for seq, status := range []string{"queued", "delivered"} {
			if code, body := p.send(t, client, signedForm(t, statusFields(uuid, status, seq+1), fmt.Sprintf("3%019d", 2*i+seq))); code != 200 {
				t.Fatalf("callback: %d %s", code, body)
			}
		}
		uuids = append(uuids, uuid)
	}
	want := map[string]string{}
	for _, u := range uuids {
		code, body := p.rawGet(t, "/api/messages/"+u)
		if code != 200 {
			t.Fatalf("GET %s: %d", u, code)
		}
		want[u] = body
	}

	out := filepath.Join(t.TempDir(), "plivo-dlr-backup.db")
	t.Run("backup", func(t *testing.T) {
		// The token comes from the config's dashboard.api_tokens.
		code, stdout, stderr := cli(t, nil, "backup", "--out", out, "-config", configPath, "--server", server)
		if code != 0 {
			t.Fatalf("backup exit %d: %s", code, stderr)
		}
		if !regexp.MustCompile(`^wrote .*plivo-dlr-backup\.db: \d+ bytes, 40 messages, last event cursor 80, schema \d+\n$`).MatchString(stdout) {
			t.Errorf("backup printed %q, want the file, its size, 40 messages and cursor 80", stdout)
		}
		if _, err := storage.VerifyBackup(out); err != nil {
			t.Errorf("backup does not verify: %v", err)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			name     string
			env      []string
			args     []string
			wantCode int
			wantErr  string
		}{
			{"no out", nil, []string{"backup", "--server", server}, 2, "plivo-dlr: backup: --out is required\n"},
			{"bad format", nil, []string{"export", "--format", "xml", "--server", server}, 2, "plivo-dlr: export: --format must be csv or ndjson (got \"xml\")\n"},
			{"bad token from env", []string{"PLIVO_DLR_API_TOKEN=wrong-token-0123456789"},
				[]string{"backup", "--out", out + ".2", "--server", server}, 1, "plivo-dlr: backup: server answered 401: authentication required (pass an API token from dashboard.api_tokens with --token, --token-file or PLIVO_DLR_API_TOKEN)\n"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code, _, stderr := cli(t, tc.env, tc.args...)
				if code != tc.wantCode || stderr != tc.wantErr {
					t.Errorf("got exit %d, stderr %q; want %d, %q", code, stderr, tc.wantCode, tc.wantErr)
				}
			})
		}
		if _, err := os.Stat(out + ".2"); !os.IsNotExist(err) {
			t.Errorf("a refused backup left %s.2 (%v)", out, err)
		}
	})

	t.Run("export csv to stdout", func(t *testing.T) {
		code, stdout, stderr := cli(t, []string{"PLIVO_DLR_API_TOKEN=" + testAPIToken}, "export", "--format", "csv", "--server", server)
		if code != 0 {
			t.Fatalf("export exit %d: %s", code, stderr)
		}
		rows, err := csv.NewReader(strings.NewReader(stdout)).ReadAll()
		if err != nil {
			t.Fatalf("parse CSV: %v", err)
		}
		if len(rows) != 41 || rows[0][0] != "message_uuid" || rows[1][0] != uuids[0] || rows[1][1] != "delivered" {
			t.Errorf("got %d rows starting %v, %v; want a header and 40 messages, oldest (%s, delivered) first", len(rows), rows[0], rows[min(1, len(rows)-1)], uuids[0])
		}
	})

	t.Run("export ndjson to file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "messages.ndjson")
		code, _, stderr := cli(t, nil, "export", "-config", configPath, "--server", server, "--out", file, "--status", "delivered", "--since", "1h")
		if code != 0 {
			t.Fatalf("export exit %d: %s", code, stderr)
		}
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var got []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var m storage.Message
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			got = append(got, m.MessageUUID)
		}
		if strings.Join(got, ",") != strings.Join(uuids, ",") {
			t.Errorf("exported %v, want %v", got, uuids)
		}
	})

	// After the backup: one more message, which the restore must undo.
	late := "0c7effff-2f61-11ef-a3d5-0242ac120003"
	if code, body := p.send(t, client, signedForm(t, statusFields(late, "sent", 1), "39999999999999999999")); code != 200 {
		t.Fatalf("callback: %d %s", code, body)
	}

	// Restore as the README says: stop, replace data_dir/plivo-dlr.db, start.
	p.stop(t)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "plivo-dlr.db"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	p2 := startBinary(t, configPath)
	for _, u := range uuids {
		if code, body := p2.rawGet(t, "/api/messages/"+u); code != 200 || body != want[u] {
			t.Errorf("restored GET %s = %d %s, want 200 %s", u, code, body, want[u])
		}
	}
	if code, _ := p2.rawGet(t, "/api/messages/"+late); code != http.StatusNotFound {
		t.Errorf("message stored after the backup: restored GET = %d, want 404", code)
	}
}

// TestJSONLogsUnderSystemd runs the binary with log.format json and
// JOURNAL_STREAM set, as under systemd: every line is one JSON object
// without a time (journald stamps lines itself).
func TestJSONLogsUnderSystemd(t *testing.T) {
	configPath := writeConfig(t, t.TempDir())
	cfg, err := os.ReadFile(configPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg = bytes.Replace(cfg, []byte(`level = "debug"`), []byte("level = \"debug\"\nformat = \"json\""), 1)
	if err := os.WriteFile(configPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	stderr := &testsupport.LockedBuffer{}
	cmd := exec.Command(buildBinary(t), "serve", "-config", configPath)
	cmd.Env = append(os.Environ(), "JOURNAL_STREAM=8:12345")
	cmd.Stderr, cmd.Stdout = stderr, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	addrJSON := regexp.MustCompile(`"msg":"plivo-dlr started".*"addr":"(127\.0\.0\.1:\d+)"`)
	var addr string
	deadline := time.Now().Add(20 * time.Second)
	for addr == "" && time.Now().Before(deadline) {
		if m := addrJSON.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if addr == "" {
		t.Fatalf("no JSON start line with the address:\n%s", stderr.String())
	}
	p := &proc{cmd: cmd, addr: addr, stderr: stderr, done: done}
	client := &http.Client{Timeout: 10 * time.Second}
	if code, body := p.send(t, client, signedForm(t, statusFields("5b40a428-bfc7-4daf-9d06-726c558bf3b8", "sent", 1), "40000000000000000001")); code != 200 {
		t.Fatalf("callback: %d %s", code, body)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) < 3 {
		t.Fatalf("got %d log lines, want start, retention or debug lines and shutdown:\n%s", len(lines), stderr.String())
	}
	for _, line := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON: %q (%v)", line, err)
			continue
		}
		if _, ok := rec["time"]; ok {
			t.Errorf("log line has a time under systemd: %s", line)
		}
		if rec["level"] == nil || rec["msg"] == nil {
			t.Errorf("log line lacks level or msg: %s", line)
		}
	}
	if !strings.Contains(stderr.String(), `"msg":"shutting down"`) {
		t.Errorf("no shutdown line in:\n%s", stderr.String())
	}
}
