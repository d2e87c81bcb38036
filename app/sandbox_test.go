package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	plivo "github.com/plivo/plivo-go/v7"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"plivo-dlr/app/apiclient"
	"plivo-dlr/app/sandbox"
	"plivo-dlr/storage"
)

// startSandboxServer runs a sandbox and a real server configured for it.
func startSandboxServer(tb testing.TB, opts sandbox.Options) (*sandbox.Sandbox, *sendEnv) {
	tb.Helper()
	sb, err := sandbox.Start(opts)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := DefaultConfig()
	configureForSandbox(&cfg, sb)
	env := startSendServer(tb, cfg, Options{Sandbox: true})
	// Cleanups run last-in first-out: the sandbox stops posting before the
	// server shuts down.
	tb.Cleanup(func() {
		if err := sb.Close(); err != nil {
			tb.Errorf("close sandbox: %v", err)
		}
	})
	return sb, env
}

// streamFrameJSON is a /ws frame as a client reads it.
type streamFrameJSON struct {
	Type    string          `json:"type"`
	Cursor  uint64          `json:"cursor"`
	Message storage.Message `json:"message"`
}

// TestSandboxEndToEnd sends 100 messages through the API to the sandbox and
// watches all of them reach a terminal state, in the store and on a
// WebSocket client, with exactly the configured failure share.
func TestSandboxEndToEnd(t *testing.T) {
	const total, failureShare = 100, 0.2
	_, env := startSandboxServer(t, sandbox.Options{FailureShare: failureShare, Step: 10 * time.Millisecond, Chaos: 0.2, Seed: 7})

	code, body := env.api(t, http.MethodGet, "/api/config", nil)
	var sc sendConfig
	if err := json.Unmarshal(body, &sc); code != 200 || err != nil || !sc.SendingEnabled || !sc.Sandbox || sc.SourceNumber != sandbox.SourceNumber {
		t.Fatalf("GET /api/config: got %d %s, want sending enabled in sandbox from %s", code, body, sandbox.SourceNumber)
	}

	wsURL := "ws" + strings.TrimPrefix(env.url, "http") + "/ws?since=0"
	conn, resp, err := websocket.DefaultDialer.Dial(wsURL, http.Header{"Authorization": {"Bearer " + sendTestToken}})
	if err != nil {
		t.Fatalf("dial %s: %v (response %v)", wsURL, err, resp)
	}
	defer conn.Close()

	// The stream reader records each message's status from the frame with
	// the highest cursor and counts frames that do not follow the previous
	// one's cursor: the store publishes in commit order, so there must be none.
	var (
		mu        sync.Mutex
		wsStatus  = map[string]string{}
		wsCursor  = map[string]uint64{}
		wsBackInt int
	)
	readErr := make(chan error, 1)
	go func() {
		var last uint64
		for {
			_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, data, err := conn.ReadMessage()
			if err != nil {
				readErr <- err
				return
			}
			var f streamFrameJSON
			if err := json.Unmarshal(data, &f); err != nil {
				readErr <- fmt.Errorf("frame %s: %w", data, err)
				return
			}
			if f.Type != "status_update" {
				continue
			}
			mu.Lock()
			if f.Cursor != last+1 {
				wsBackInt++
			}
			last = max(last, f.Cursor)
			if uuid := f.Message.MessageUUID; f.Cursor > wsCursor[uuid] {
				wsStatus[uuid], wsCursor[uuid] = f.Message.Status, f.Cursor
			}
			mu.Unlock()
		}
	}()

	uuids := make([]string, total)
	var wg sync.WaitGroup
	errs := make(chan error, total)
	work := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				got, err := newAPIClient(t, env.url, sendTestToken).Send(t.Context(),
					apiclient.SendRequest{To: []string{fmt.Sprintf("+1415555%04d", i)}, Text: fmt.Sprintf("message %d", i)})
				if err != nil || len(got.MessageUUIDs) != 1 {
					errs <- fmt.Errorf("send %d: got %+v, %v", i, got, err)
					continue
				}
				uuids[i] = got.MessageUUIDs[0]
			}
		}()
	}
	for i := range total {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Every message ends terminal in the store...
	deadline := time.Now().Add(30 * time.Second)
	failed := 0
	for _, uuid := range uuids {
		for {
			msg, _, err := env.store.GetMessage(uuid)
			if err == nil && storage.IsTerminal(msg.Status) {
				if msg.Status != storage.StatusDelivered {
					failed++
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("message %s: got %q (%v), want a terminal status", uuid, msg.Status, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if want := int(failureShare * total); failed != want {
		t.Errorf("failed or undelivered: got %d of %d, want %d", failed, total, want)
	}

	// ...and on the WebSocket.
	for {
		mu.Lock()
		done, wsFailed := 0, 0
		for _, uuid := range uuids {
			if s := wsStatus[uuid]; storage.IsTerminal(s) {
				done++
				if s != storage.StatusDelivered {
					wsFailed++
				}
			}
		}
		mu.Unlock()
		if done == total {
			if wsFailed != failed {
				t.Errorf("failures on the WebSocket: got %d, want %d as in the store", wsFailed, failed)
			}
			break
		}
		select {
		case err := <-readErr:
			t.Fatalf("stream: %v (after %d of %d terminal)", err, done, total)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("WebSocket saw %d of %d messages terminal, want all", done, total)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// History: the send record and the callbacks in cursor order, whatever
	// order the network delivered them in (the "queued" callback may even
	// beat the send's own record, as with real Plivo); the state is right
	// either way, and failures carry Plivo's code.
	outOfOrder := 0
	for _, uuid := range uuids {
		code, body := env.api(t, http.MethodGet, "/api/messages/"+uuid, nil)
		var d messageDetail
		if err := json.Unmarshal(body, &d); code != 200 || err != nil {
			t.Fatalf("GET message %s: got %d %s", uuid, code, body)
		}
		sends := 0
		for _, ev := range d.Events {
			if ev.Source == storage.SourceSend {
				sends++
			}
		}
		if len(d.Events) < 3 || sends != 1 {
			t.Errorf("%s history: got %d events with %d send records, want one send record and at least two callbacks", uuid, len(d.Events), sends)
			continue
		}
		for i := 1; i < len(d.Events); i++ {
			if d.Events[i].Cursor <= d.Events[i-1].Cursor {
				t.Errorf("%s history: cursors %d then %d, want ascending", uuid, d.Events[i-1].Cursor, d.Events[i].Cursor)
			}
			if d.Events[i].Sequence != 0 && d.Events[i].Sequence < d.Events[i-1].Sequence {
				outOfOrder++
			}
		}
		if d.Message.Status != storage.StatusDelivered && d.Message.ErrorCode == "" {
			t.Errorf("%s: got status %q without an error code, want Plivo's code", uuid, d.Message.Status)
		}
		if d.Message.Text == "" || d.Message.From != strings.TrimPrefix(sandbox.SourceNumber, "+") {
			t.Errorf("%s: got text %q from %q, want the sent text from the sandbox number", uuid, d.Message.Text, d.Message.From)
		}
	}
	mu.Lock()
	t.Logf("%d callbacks arrived out of Plivo's sequence", outOfOrder)
	if wsBackInt != 0 {
		t.Errorf("%d stream frames did not follow the previous frame's cursor, want 0 (frames in cursor order, no gaps)", wsBackInt)
	}
	mu.Unlock()
	for _, result := range []string{resultInvalidSignature, resultReplayed, resultMalformed, resultError} {
		if got := testutil.ToFloat64(env.srv.metrics.callbacks.WithLabelValues(result)); got != 0 {
			t.Errorf("callbacks_total{%s}: got %v, want 0", result, got)
		}
	}
	if got := testutil.ToFloat64(env.srv.metrics.callbacks.WithLabelValues(resultStored)); got < 2*total {
		t.Errorf("callbacks_total{stored}: got %v, want at least %d", got, 2*total)
	}
}

// TestSandboxAPI checks the fake API's contract with the real plivo-go
// client: credentials, validation errors, create and get.
func TestSandboxAPI(t *testing.T) {
	sb, err := sandbox.Start(sandbox.Options{Step: time.Millisecond, NoCallbacks: true, Chaos: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	good, err := newPlivoClient(sb.AuthID(), sb.AuthToken(), sb.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := newPlivoClient(sb.AuthID(), "wrong", sb.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		client     *plivoClient
		params     plivo.MessageCreateParams
		wantStatus int // 0: accepted
		wantUUIDs  int
	}{
		{"two recipients", good, plivo.MessageCreateParams{Src: "14155550100", Dst: "14155550101<14155550102", Text: "x", Type: "sms"}, 0, 2},
		{"mms", good, plivo.MessageCreateParams{Src: "14155550100", Dst: "14155550101", Type: "mms", MediaUrls: []string{"https://e.com/a.png"}}, 0, 1},
		{"wrong token", bad, plivo.MessageCreateParams{Src: "14155550100", Dst: "14155550101", Text: "x"}, 401, 0},
		{"no dst", good, plivo.MessageCreateParams{Src: "14155550100", Text: "x"}, 400, 0},
		{"sms without text", good, plivo.MessageCreateParams{Src: "14155550100", Dst: "14155550101"}, 400, 0},
		{"mms without media", good, plivo.MessageCreateParams{Src: "14155550100", Dst: "14155550101", Type: "mms"}, 400, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, uuids, err := tt.client.Send(tt.params)
			var pe *plivoError
			switch {
			case tt.wantStatus == 0 && (err != nil || len(uuids) != tt.wantUUIDs):
				t.Fatalf("got %v, %v, want %d uuids", uuids, err, tt.wantUUIDs)
			case tt.wantStatus != 0 && (!errors.As(err, &pe) || pe.Status != tt.wantStatus):
				t.Fatalf("got %v, want Plivo error %d", err, tt.wantStatus)
			}
			for _, uuid := range uuids {
				m, err := good.Get(uuid)
				if err != nil || m.MessageUUID != uuid || m.MessageType != tt.params.Type || m.MessageState == "" {
					t.Errorf("get %s: got %+v, %v, want the message with its type and a state", uuid, m, err)
				}
			}
		})
	}
	var pe *plivoError
	if _, err := good.Get("00000000-0000-4000-8000-000000000000"); !errors.As(err, &pe) || pe.Status != 404 {
		t.Errorf("get unknown: got %v, want Plivo 404", err)
	}
}
