package app

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"plivo-dlr/app/sandbox"
	"plivo-dlr/storage"
)

// TestSandboxRepliesShowTheOptOutFlow sends to one number through the
// sandbox: the first delivered message gets a reply, the second a STOP,
// and the third send is refused with 409 without reaching the sandbox.
func TestSandboxRepliesShowTheOptOutFlow(t *testing.T) {
	_, env := startSandboxServer(t, sandbox.Options{FailureShare: 0, Step: 10 * time.Millisecond, Chaos: -1, Seed: 3})
	inbound := func() []storage.Message {
		var list messageList
		code, body := env.api(t, http.MethodGet, "/api/messages?direction=inbound", nil)
		if err := json.Unmarshal(body, &list); code != 200 || err != nil {
			t.Fatalf("list inbound: %d %s", code, body)
		}
		return list.Messages
	}
	waitInbound := func(n int) []storage.Message {
		t.Helper()
		var got []storage.Message
		if !waitForDeadline(10*time.Second, func() bool { got = inbound(); return len(got) >= n }) {
			t.Fatalf("inbound messages: %d, want %d", len(got), n)
		}
		return got
	}
	send := func() (int, string) {
		code, body := env.api(t, http.MethodPost, "/api/messages", map[string]any{"to": "+14155550123", "text": "your table is ready"})
		return code, string(body)
	}
	if code, body := send(); code != http.StatusAccepted {
		t.Fatalf("first send: %d %s", code, body)
	}
	first := waitInbound(1)[0]
	if first.From != "14155550123" || first.To != strings.TrimPrefix(sandbox.SourceNumber, "+") || first.Intent != "" || first.Text == "" {
		t.Errorf("first reply = %+v, want plain text from the recipient to our number", first)
	}
	if code, body := send(); code != http.StatusAccepted {
		t.Fatalf("second send: %d %s", code, body)
	}
	stop := waitInbound(2)[0]
	if stop.Text != "STOP" || stop.Intent != storage.IntentOptOut {
		t.Errorf("second reply = %+v, want STOP with intent optout", stop)
	}
	code, body := send()
	if code != http.StatusConflict || !strings.Contains(body, "+14155550123 opted out (STOP on ") {
		t.Errorf("third send: %d %s, want 409 naming the STOP", code, body)
	}
}

func waitForDeadline(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}
