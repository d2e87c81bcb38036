package forward

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"plivo-dlr/internal/testsupport"
	"plivo-dlr/storage"
)

func openStore(t testing.TB) *storage.Store {
	t.Helper()
	st, err := storage.Open(filepath.Join(t.TempDir(), "dlr.db"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func newSecret(t testing.TB) string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// storeMessages stores n messages, each queued, sent and delivered, with
// the events of different messages interleaved, and returns the uuids.
func storeMessages(t testing.TB, st *storage.Store, n int, receivedAt time.Time) []string {
	t.Helper()
	uuids := make([]string, n)
	for i := range uuids {
		uuids[i] = uuid.Must(uuid.NewUUID()).String()
	}
	for seq, status := range []string{"queued", "sent", "delivered"} {
		for _, u := range uuids {
			ev := storage.Event{
				MessageUUID: u,
				Status:      status,
				Sequence:    int64(seq + 1),
				Source:      storage.SourceCallback,
				ReceivedAt:  receivedAt,
				Payload: map[string]string{"MessageUUID": u, "Status": status, "Sequence": strconv.Itoa(seq + 1),
					"To": "14155550100", "From": "14155550199"},
				Details: storage.Details{To: "14155550100", From: "14155550199"},
			}
			if _, err := st.Apply(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	return uuids
}

// receiver is a real HTTP endpoint on loopback that verifies every delivery
// with the Standard Webhooks library and records what it accepted.
type receiver struct {
	t       testing.TB
	wh      *standardwebhooks.Webhook
	srv     *httptest.Server
	failing atomic.Bool
	calls   atomic.Int64
	badSig  atomic.Int64

	mu  sync.Mutex
	got []Payload
	ids map[string]int
}

func newReceiver(t testing.TB, secret string) *receiver {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, wh: wh, ids: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	r.calls.Add(1)
	body, _ := io.ReadAll(req.Body)
	if err := r.wh.Verify(body, req.Header); err != nil {
		r.badSig.Add(1)
		http.Error(w, "bad signature: "+err.Error(), http.StatusUnauthorized)
		return
	}
	if r.failing.Load() {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	var p Payload
	if err := json.Unmarshal(body, &p); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if p.Data.ID != req.Header.Get("webhook-id") {
		http.Error(w, "id mismatch", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.got = append(r.got, p)
	r.ids[p.Data.ID]++
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ids)
}

func (r *receiver) snapshot() []Payload {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Payload(nil), r.got...)
}

// wakers holds, per store, the manager its applied events wake: a store's
// feed has one consumer, and tests start a second manager on one store.
var wakers sync.Map // *storage.Store → *atomic.Pointer[Manager]

// wakeOnApplied makes st's stored events wake m (and no longer an earlier
// manager of st), as the server does for its forwarder.
func wakeOnApplied(t testing.TB, st *storage.Store, m *Manager) {
	t.Helper()
	cur := &atomic.Pointer[Manager]{}
	if v, loaded := wakers.LoadOrStore(st, cur); loaded {
		v.(*atomic.Pointer[Manager]).Store(m)
		return
	}
	cur.Store(m)
	applied, err := st.Applied()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range applied {
			cur.Load().Wake()
		}
	}()
}

func startManager(t testing.TB, st *storage.Store, sinks ...SinkConfig) *Manager {
	t.Helper()
	m, err := New(Options{Store: st, BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond}, sinks)
	if err != nil {
		t.Fatal(err)
	}
	wakeOnApplied(t, st, m)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

func webhookSink(t testing.TB, name, url string, secrets ...string) SinkConfig {
	t.Helper()
	w, err := NewWebhook(WebhookOptions{URL: url, Secrets: secrets, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return SinkConfig{Name: name, Kind: "webhook", Sink: w, Concurrency: 4}
}

// checkOrder asserts every message's events arrived in cursor order (the
// first delivery of each event counts; redeliveries may repeat).
func checkOrder(t testing.TB, got []Payload) {
	t.Helper()
	last := map[string]uint64{}
	seen := map[string]bool{}
	for _, p := range got {
		if seen[p.Data.ID] {
			continue
		}
		seen[p.Data.ID] = true
		u := p.Data.Event.MessageUUID
		if p.Data.Cursor < last[u] {
			t.Fatalf("message %s: event %d delivered after %d", u, p.Data.Cursor, last[u])
		}
		last[u] = p.Data.Cursor
	}
}

func TestEventIDMatchesContract(t *testing.T) {
	ev := storage.Event{MessageUUID: "a1", Status: "delivered", Sequence: 3,
		Payload: map[string]string{"b": "2", "Status": "delivered", "a": "1"}}
	h := sha256.Sum256([]byte("a1\ndelivered\n3\nStatus=delivered\na=1\nb=2\n"))
	if got, want := EventID(&ev), "evt_"+hex.EncodeToString(h[:16]); got != want {
		t.Fatalf("EventID = %s, want %s", got, want)
	}
	ev.Sequence = 0
	h = sha256.Sum256([]byte("a1\ndelivered\n\nStatus=delivered\na=1\nb=2\n"))
	if got, want := EventID(&ev), "evt_"+hex.EncodeToString(h[:16]); got != want {
		t.Fatalf("EventID without sequence = %s, want %s", got, want)
	}
}

func TestWebhookDeliversEverythingSignedInOrder(t *testing.T) {
	st := openStore(t)
	old, cur := newSecret(t), newSecret(t)
	rcv := newReceiver(t, cur) // the receiver knows only the new secret: rotation
	uuids := storeMessages(t, st, 20, time.Time{})
	m := startManager(t, st, webhookSink(t, "app", rcv.srv.URL, old, cur))
	// Events stored while running are woken, not polled.
	more := storeMessages(t, st, 5, time.Time{})
	want := 3 * (len(uuids) + len(more))
	testsupport.WaitFor(t, 10*time.Second, "every event delivered", func() bool { return rcv.distinct() == want })
	// The receiver counts a delivery before the runner reads its answer:
	// wait for the runner to confirm them all (an attempt still in flight
	// at Stop is cancelled and delivered again later, at least once).
	testsupport.WaitFor(t, 10*time.Second, "every delivery confirmed", func() bool {
		sts, err := m.Status()
		return err == nil && len(sts) == 1 && sts[0].DeliveredCursor == uint64(want)
	})
	m.Stop()
	if rcv.badSig.Load() != 0 {
		t.Fatalf("%d deliveries failed signature verification", rcv.badSig.Load())
	}
	got := rcv.snapshot()
	checkOrder(t, got)
	for _, p := range got {
		if p.Type != TypeStatus || p.Data.Message.MessageUUID != p.Data.Event.MessageUUID {
			t.Fatalf("bad payload %+v", p)
		}
		// The message is its state right after this event.
		if p.Data.Message.Status != p.Data.Event.Status || p.Data.Message.EventCount != int(p.Data.Event.Sequence) {
			t.Fatalf("event %d (%s): message status %s count %d", p.Data.Cursor, p.Data.Event.Status, p.Data.Message.Status, p.Data.Message.EventCount)
		}
		ev := p.Data.Event
		if id := EventID(&ev); id != p.Data.ID {
			t.Fatalf("payload id %s, recomputed %s", p.Data.ID, id)
		}
	}
	c, err := st.ForwardCursor("app")
	if err != nil {
		t.Fatal(err)
	}
	last, _ := st.LastCursor()
	if c != last {
		t.Fatalf("saved cursor %d, want %d", c, last)
	}
}

func TestWebhookRetriesUntilReceiverIsBack(t *testing.T) {
	st := openStore(t)
	secret := newSecret(t)
	rcv := newReceiver(t, secret)
	rcv.failing.Store(true)
	storeMessages(t, st, 30, time.Time{})
	m := startManager(t, st, webhookSink(t, "app", rcv.srv.URL, secret))
	defer m.Stop()
	testsupport.WaitFor(t, 5*time.Second, "failed attempts", func() bool { return rcv.calls.Load() >= 10 })
	sts, err := m.Status()
	if err != nil {
		t.Fatal(err)
	}
	if s := sts[0]; !s.Failing || s.Lag != 90 || s.LastError == "" || s.DeliveredCursor != 0 {
		t.Fatalf("status while failing: %+v", s)
	}
	rcv.failing.Store(false)
	testsupport.WaitFor(t, 10*time.Second, "every event delivered after recovery", func() bool { return rcv.distinct() == 90 })
	checkOrder(t, rcv.snapshot())
	testsupport.WaitFor(t, 5*time.Second, "status healthy", func() bool {
		sts, _ := m.Status()
		return !sts[0].Failing && sts[0].Lag == 0 && sts[0].LastSuccess != nil
	})
}

func TestRestartResumesWithSameIDs(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dlr.db")
	st, err := storage.Open(path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	secret := newSecret(t)
	rcv := newReceiver(t, secret)
	storeMessages(t, st, 200, time.Time{})
	m := startManager(t, st, webhookSink(t, "app", rcv.srv.URL, secret))
	testsupport.WaitFor(t, 10*time.Second, "some deliveries", func() bool { return rcv.distinct() >= 50 })
	m.Stop()
	c1, _ := st.ForwardCursor("app")
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	first := rcv.distinct()
	if first == 600 {
		t.Log("everything was delivered before the stop; resume has nothing to do")
	}
	st, err = storage.Open(path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m = startManager(t, st, webhookSink(t, "app", rcv.srv.URL, secret))
	defer m.Stop()
	testsupport.WaitFor(t, 10*time.Second, "every event delivered after restart", func() bool { return rcv.distinct() == 600 })
	if c1 == 0 {
		t.Fatal("no cursor saved before the stop")
	}
	// Redeliveries carry the same id: distinct ids equal the event count.
	if n := len(rcv.snapshot()); n < 600 {
		t.Fatalf("%d deliveries for 600 events", n)
	}
}

func TestMaxAgeDeadLettersThenRetry(t *testing.T) {
	st := openStore(t)
	secret := newSecret(t)
	rcv := newReceiver(t, secret)
	rcv.failing.Store(true)
	storeMessages(t, st, 3, time.Now().Add(-time.Hour))
	sc := webhookSink(t, "app", rcv.srv.URL, secret)
	sc.MaxAge = time.Hour + 300*time.Millisecond
	m := startManager(t, st, sc)
	defer m.Stop()
	testsupport.WaitFor(t, 10*time.Second, "all dead-lettered", func() bool {
		sts, _ := m.Status()
		return sts[0].Dead == 9 && sts[0].Lag == 0
	})
	dead, next, err := m.Dead("app", 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 5 || next == 0 || dead[0].Cursor != 9 || dead[0].ID == "" || dead[0].Type != TypeStatus || dead[0].MessageUUID == "" {
		t.Fatalf("dead page 1: %+v next %d", dead, next)
	}
	rest, next2, err := m.Dead("app", next, 5)
	if err != nil || len(rest) != 4 || next2 != 0 || rest[0].Cursor != 4 {
		t.Fatalf("dead page 2: %+v next %d err %v", rest, next2, err)
	}
	if _, _, err := m.Dead("nope", 0, 5); err == nil {
		t.Fatal("unknown sink listed")
	}
	rcv.failing.Store(false)
	if err := m.Retry(context.Background(), "app"); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 10*time.Second, "dead letters delivered", func() bool { return rcv.distinct() == 9 })
	checkOrder(t, rcv.snapshot())
	testsupport.WaitFor(t, 5*time.Second, "dead letters removed", func() bool {
		sts, _ := m.Status()
		return sts[0].Dead == 0
	})
}

func TestReplayAndFilters(t *testing.T) {
	st := openStore(t)
	secret := newSecret(t)
	rcv := newReceiver(t, secret)
	storeMessages(t, st, 10, time.Time{})
	sc := webhookSink(t, "final", rcv.srv.URL, secret)
	sc.Statuses = []string{"delivered"}
	m := startManager(t, st, sc)
	defer m.Stop()
	testsupport.WaitFor(t, 10*time.Second, "filtered delivery", func() bool {
		sts, _ := m.Status()
		return rcv.distinct() == 10 && sts[0].Lag == 0
	})
	for _, p := range rcv.snapshot() {
		if p.Data.Event.Status != "delivered" {
			t.Fatalf("filter let %s through", p.Data.Event.Status)
		}
	}
	if err := m.Replay(context.Background(), "final", 25); err != nil {
		t.Fatal(err)
	}
	// Cursors 26..30 are the last five deliveries.
	testsupport.WaitFor(t, 10*time.Second, "replayed", func() bool { return len(rcv.snapshot()) == 15 })
}

func TestWebhookDoesNotFollowRedirectsAndLimitsBody(t *testing.T) {
	secret := newSecret(t)
	var hits atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer target.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	w, err := NewWebhook(WebhookOptions{URL: redirect.URL, Secrets: []string{secret}})
	if err != nil {
		t.Fatal(err)
	}
	ev := storage.Event{MessageUUID: "u", Status: "sent"}
	err = w.Deliver(context.Background(), &Delivery{ID: "evt_x", Event: &ev, Body: []byte("{}")})
	if err == nil || hits.Load() != 0 {
		t.Fatalf("redirect followed or counted as delivered: err %v hits %d", err, hits.Load())
	}
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		_, _ = w.Write([]byte(fmt.Sprintf("%0100000d", 0)))
	}))
	defer big.Close()
	w, _ = NewWebhook(WebhookOptions{URL: big.URL, Secrets: []string{secret}})
	err = w.Deliver(context.Background(), &Delivery{ID: "evt_x", Event: &ev, Body: []byte("{}")})
	if err == nil || len(err.Error()) > 300 {
		t.Fatalf("error for a large 500 body: %d bytes", len(fmt.Sprint(err)))
	}
}

func TestWebhookTLSWithCAFile(t *testing.T) {
	secret := newSecret(t)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	ev := storage.Event{MessageUUID: "u", Status: "sent"}
	d := &Delivery{ID: "evt_x", Event: &ev, Body: []byte("{}")}
	w, _ := NewWebhook(WebhookOptions{URL: srv.URL, Secrets: []string{secret}})
	if err := w.Deliver(context.Background(), d); err == nil {
		t.Fatal("an unknown CA was trusted")
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pemOf(srv.Certificate().Raw), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := NewWebhook(WebhookOptions{URL: srv.URL, Secrets: []string{secret}, CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Deliver(context.Background(), d); err != nil {
		t.Fatalf("with ca_file: %v", err)
	}
}

func TestParseSecret(t *testing.T) {
	for _, s := range []string{"", "abc", "whsec_!!", "whsec_" + base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, err := ParseSecret(s); err == nil {
			t.Errorf("ParseSecret(%q) accepted", s)
		}
	}
}

// A message whose events the receiver refuses delays only its own later
// events: every other message is delivered meanwhile.
func TestFailingMessageDelaysOnlyItself(t *testing.T) {
	st := openStore(t)
	secret := newSecret(t)
	uuids := storeMessages(t, st, 10, time.Time{})
	poison := uuids[0]
	wh, _ := standardwebhooks.NewWebhook(secret)
	var mu sync.Mutex
	got := map[string][]string{}
	var poisonAttempts atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if wh.Verify(body, r.Header) != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var p Payload
		_ = json.Unmarshal(body, &p)
		if p.Data.Event.MessageUUID == poison {
			poisonAttempts.Add(1)
			http.Error(w, "cannot process", http.StatusUnprocessableEntity)
			return
		}
		mu.Lock()
		got[p.Data.Event.MessageUUID] = append(got[p.Data.Event.MessageUUID], p.Data.Event.Status)
		mu.Unlock()
	}))
	defer srv.Close()
	m := startManager(t, st, webhookSink(t, "app", srv.URL, secret))
	defer m.Stop()
	testsupport.WaitFor(t, 10*time.Second, "other messages delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 9
	})
	testsupport.WaitFor(t, 10*time.Second, "the poison event retried", func() bool { return poisonAttempts.Load() >= 3 })
	mu.Lock()
	for u, s := range got {
		if strings.Join(s, ",") != "queued,sent,delivered" {
			t.Errorf("%s: %v", u, s)
		}
	}
	mu.Unlock()
	sts, _ := m.Status()
	// The cursor waits at the poison message's first event (cursor 1).
	if sts[0].DeliveredCursor != 0 || sts[0].Lag != 30 {
		t.Fatalf("status: %+v", sts[0])
	}
}

func TestWebhookTimeoutPerAttempt(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	w, err := NewWebhook(WebhookOptions{URL: srv.URL, Secrets: []string{newSecret(t)}, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ev := storage.Event{MessageUUID: "u", Status: "sent"}
	start := time.Now()
	err = w.Deliver(context.Background(), &Delivery{ID: "evt_x", Event: &ev, Body: []byte("{}")})
	if err == nil || !strings.Contains(err.Error(), "no answer within 100ms") || time.Since(start) > 5*time.Second {
		t.Fatalf("slow receiver: err %v after %s", err, time.Since(start))
	}
}
