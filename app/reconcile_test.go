package app

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"plivo-dlr/app/sandbox"
	"plivo-dlr/internal/testsupport"
	"plivo-dlr/storage"
)

// fastReconcile keeps tests from waiting on the production pacing.
var fastReconcile = ReconcileOptions{Interval: 5 * time.Millisecond, MinGap: time.Millisecond, BackoffBase: time.Millisecond, BackoffMax: 4 * time.Millisecond}

// sendOne sends one SMS through the API and returns its UUID.
func sendOne(tb testing.TB, env *sendEnv, to string) string {
	tb.Helper()
	code, body := env.api(tb, http.MethodPost, "/api/messages", map[string]any{"to": to, "text": "hi"})
	if code != http.StatusAccepted {
		tb.Fatalf("send: got %d %s, want 202", code, body)
	}
	var resp sendResponse
	if err := json.Unmarshal(body, &resp); err != nil || len(resp.MessageUUIDs) != 1 {
		tb.Fatalf("send answer %s: %v", body, err)
	}
	return resp.MessageUUIDs[0]
}

// TestReconcileFixesLostCallbacks: the sandbox delivers the message but
// posts no callback; after reconcile.after the lookup stores the truth.
func TestReconcileFixesLostCallbacks(t *testing.T) {
	sb, err := sandbox.Start(sandbox.Options{Step: time.Millisecond, NoCallbacks: true, Chaos: -1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	cfg := DefaultConfig()
	configureForSandbox(&cfg, sb)
	clock := testsupport.NewClock(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	env := startSendServer(t, cfg, Options{Now: clock.Now, Reconcile: fastReconcile, Sandbox: true})
	uuid := sendOne(t, env, "+14155550199")

	// Wait until the simulated network has delivered it (no callback comes).
	deadline := time.Now().Add(10 * time.Second)
	for {
		pm, err := env.srv.plivo.Get(uuid)
		if err == nil && pm.MessageState == storage.StatusDelivered {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox never delivered %s (last %+v, %v)", uuid, pm, err)
		}
		time.Sleep(5 * time.Millisecond)
	}

	ctx := context.Background()
	if n, err := env.srv.reconcileOnce(ctx); err != nil || n != 0 {
		t.Fatalf("before reconcile.after: looked up %d (err %v), want 0", n, err)
	}
	clock.Add(cfg.Reconcile.After.D() + time.Second)
	if n, err := env.srv.reconcileOnce(ctx); err != nil || n != 1 {
		t.Fatalf("after reconcile.after: looked up %d (err %v), want 1", n, err)
	}
	msg, events, err := env.store.GetMessage(uuid)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Status != storage.StatusDelivered || msg.SentTime == nil || msg.DeliveryReportTime == nil {
		t.Errorf("message: got status %q sent %v report %v, want delivered with both times", msg.Status, msg.SentTime, msg.DeliveryReportTime)
	}
	if len(events) != 2 || events[0].Source != storage.SourceSend || events[1].Source != storage.SourceReconcile ||
		events[1].Payload[payloadReconcileAttempt] != "1" || events[1].Payload["message_state"] != "delivered" {
		t.Errorf("history: got %+v, want send then reconcile (attempt 1, message_state delivered)", events)
	}
	if got := testutil.ToFloat64(env.srv.metrics.reconciles.WithLabelValues(reconcileResolved)); got != 1 {
		t.Errorf("reconcile_total{resolved}: got %v, want 1", got)
	}
	// Terminal now: later scans leave it alone.
	clock.Add(time.Hour)
	if n, err := env.srv.reconcileOnce(ctx); err != nil || n != 0 {
		t.Errorf("after resolution: looked up %d (err %v), want 0", n, err)
	}
}

// TestReconcileGivesUp: a message Plivo keeps reporting as "sent" is asked
// about once per reconcile.after, three times, then no more; identical
// answers are each stored.
func TestReconcileGivesUp(t *testing.T) {
	fake := newFakePlivo(t)
	var gets sync.Map
	fake.get = func(w http.ResponseWriter, uuid string) {
		n, _ := gets.LoadOrStore(uuid, new(int))
		*(n.(*int))++
		writeJSON(w, http.StatusOK, map[string]any{"api_id": "same", "message_uuid": uuid, "message_state": "sent",
			"error_code": "", "to_number": "14155550199", "from_number": "14155550100", "message_type": "sms"})
	}
	clock := testsupport.NewClock(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	cfg := fakePlivoConfig(fake)
	env := startSendServer(t, cfg, Options{Now: clock.Now, Reconcile: fastReconcile})
	uuid := sendOne(t, env, "+14155550199")
	after := cfg.Reconcile.After.D()
	ctx := context.Background()

	for attempt := 1; attempt <= reconcileMaxAttempts+1; attempt++ {
		clock.Add(after + time.Second)
		n, err := env.srv.reconcileOnce(ctx)
		want := 1
		if attempt > reconcileMaxAttempts {
			want = 0
		}
		if err != nil || n != want {
			t.Fatalf("scan %d: looked up %d (err %v), want %d", attempt, n, err, want)
		}
		// The stored lookup moved LastSeen: an immediate rescan asks nothing.
		if n, err := env.srv.reconcileOnce(ctx); err != nil || n != 0 {
			t.Fatalf("rescan %d at once: looked up %d (err %v), want 0", attempt, n, err)
		}
	}
	_, events, err := env.store.GetMessage(uuid)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1+reconcileMaxAttempts {
		t.Fatalf("events: got %d, want %d (send + one per attempt)", len(events), 1+reconcileMaxAttempts)
	}
	for i, ev := range events[1:] {
		if ev.Source != storage.SourceReconcile || ev.Status != storage.StatusSent || ev.Payload[payloadReconcileAttempt] != strconv.Itoa(i+1) {
			t.Errorf("event %d: got source %q status %q attempt %q, want reconcile sent %d", i+1, ev.Source, ev.Status, ev.Payload[payloadReconcileAttempt], i+1)
		}
	}
	if n, _ := gets.Load(uuid); n == nil || *(n.(*int)) != reconcileMaxAttempts {
		t.Errorf("lookups at Plivo: got %v, want %d", n, reconcileMaxAttempts)
	}
	for result, want := range map[string]float64{reconcilePending: 2, reconcileGaveUp: 1} {
		if got := testutil.ToFloat64(env.srv.metrics.reconciles.WithLabelValues(result)); got != want {
			t.Errorf("reconcile_total{%s}: got %v, want %v", result, got, want)
		}
	}
}

// TestReconcileErrors: a failed lookup stores nothing and is retried; a
// message Plivo does not know is recorded as such and counts as an attempt.
func TestReconcileErrors(t *testing.T) {
	fake := newFakePlivo(t)
	var mu sync.Mutex
	status := http.StatusInternalServerError
	fake.get = func(w http.ResponseWriter, uuid string) {
		mu.Lock()
		code := status
		mu.Unlock()
		writeJSON(w, code, map[string]string{"error": http.StatusText(code)})
	}
	clock := testsupport.NewClock(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	cfg := fakePlivoConfig(fake)
	env := startSendServer(t, cfg, Options{Now: clock.Now, Reconcile: fastReconcile})
	uuid := sendOne(t, env, "+14155550199")
	clock.Add(cfg.Reconcile.After.D() + time.Second)
	ctx := context.Background()

	if n, err := env.srv.reconcileOnce(ctx); err != nil || n != 1 {
		t.Fatalf("scan with Plivo failing: looked up %d (err %v), want 1", n, err)
	}
	if _, events, _ := env.store.GetMessage(uuid); len(events) != 1 {
		t.Errorf("events after a failed lookup: got %d, want 1 (nothing stored)", len(events))
	}
	if got := testutil.ToFloat64(env.srv.metrics.reconciles.WithLabelValues(reconcileError)); got != 1 {
		t.Errorf("reconcile_total{error}: got %v, want 1", got)
	}

	mu.Lock()
	status = http.StatusNotFound
	mu.Unlock()
	if n, err := env.srv.reconcileOnce(ctx); err != nil || n != 1 {
		t.Fatalf("retry: looked up %d (err %v), want 1", n, err)
	}
	msg, events, _ := env.store.GetMessage(uuid)
	if len(events) != 2 || events[1].Payload[payloadReconcileResult] != reconcileNotFound || msg.Status != storage.StatusQueued {
		t.Errorf("after not found: got status %q events %+v, want queued with a not_found reconcile event", msg.Status, events)
	}
}

// TestRunReconcileLoop: the background loop finds and fixes a stuck message
// by itself and stops when its context ends.
func TestRunReconcileLoop(t *testing.T) {
	fake := newFakePlivo(t)
	fake.get = func(w http.ResponseWriter, uuid string) {
		writeJSON(w, http.StatusOK, map[string]any{"message_uuid": uuid, "message_state": "undelivered", "error_code": "30"})
	}
	clock := testsupport.NewClock(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	cfg := fakePlivoConfig(fake)
	env := startSendServer(t, cfg, Options{Now: clock.Now, Reconcile: fastReconcile})
	uuid := sendOne(t, env, "+14155550199")
	clock.Add(cfg.Reconcile.After.D() + time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { env.srv.RunReconcile(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		msg, _, err := env.store.GetMessage(uuid)
		if err == nil && msg.Status == storage.StatusUndelivered && msg.ErrorCode == "30" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("loop never reconciled: got %+v, %v", msg, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunReconcile did not return after cancel")
	}
}

func TestReconcileDisabled(t *testing.T) {
	fake := newFakePlivo(t)
	cfg := fakePlivoConfig(fake)
	cfg.Reconcile.Enabled = false
	env := startSendServer(t, cfg, Options{})
	done := make(chan struct{})
	go func() { env.srv.RunReconcile(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunReconcile kept running with reconcile.enabled = false")
	}
	if noCreds := startSendServer(t, DefaultConfig(), Options{}); noCreds.srv.reconcileEnabled() {
		t.Error("reconcileEnabled without credentials: got true, want false")
	}
}
