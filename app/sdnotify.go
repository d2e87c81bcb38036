package app

import (
	"fmt"
	"net"
)

// SDNotify sends state (e.g. "READY=1", "STOPPING=1") to systemd's
// notification socket named by NOTIFY_SOCKET, as Type=notify units expect.
// Without NOTIFY_SOCKET (not under systemd) it does nothing. The protocol is
// one datagram on a unix socket, so no library is needed; a leading '@'
// names a socket in the abstract namespace.
func SDNotify(getenv func(string) string, state string) error {
	path := getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify %s: %w", state, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %s: %w", state, err)
	}
	return nil
}
