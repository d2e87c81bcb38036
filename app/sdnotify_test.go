package app

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

func TestSDNotify(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		addr string // where we listen
		env  string // NOTIFY_SOCKET as systemd would set it
	}{
		{"path", filepath.Join(dir, "notify.sock"), filepath.Join(dir, "notify.sock")},
		{"abstract", "\x00plivo-dlr-test-" + filepath.Base(dir), "@plivo-dlr-test-" + filepath.Base(dir)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: tt.addr, Net: "unixgram"})
			if err != nil {
				t.Fatalf("listen: %v", err)
			}
			defer conn.Close()
			env := func(k string) string {
				if k == "NOTIFY_SOCKET" {
					return tt.env
				}
				return ""
			}
			for _, state := range []string{"READY=1", "STOPPING=1"} {
				if err := SDNotify(env, state); err != nil {
					t.Fatalf("SDNotify(%s): %v", state, err)
				}
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 64)
				n, err := conn.Read(buf)
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				if got := string(buf[:n]); got != state {
					t.Errorf("datagram: got %q, want %q", got, state)
				}
			}
		})
	}
	t.Run("not under systemd", func(t *testing.T) {
		if err := SDNotify(func(string) string { return "" }, "READY=1"); err != nil {
			t.Errorf("without NOTIFY_SOCKET: got %v, want nil", err)
		}
	})
	t.Run("socket gone", func(t *testing.T) {
		env := func(string) string { return filepath.Join(dir, "nobody-listens.sock") }
		if err := SDNotify(env, "READY=1"); err == nil {
			t.Error("with a missing socket: got nil error, want one")
		}
	})
}
