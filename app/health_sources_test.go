package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"plivo-dlr/internal/testsupport"
	"plivo-dlr/storage"
)

// TestHealthReconcileFailing: while Plivo's message lookups fail, the
// dashboard's problems name it; one good lookup clears it.
func TestHealthReconcileFailing(t *testing.T) {
	fake := newFakePlivo(t)
	failing := true
	fake.get = func(w http.ResponseWriter, uuid string) {
		if failing {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "Authentication failed"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"message_uuid": uuid, "message_state": "delivered"})
	}
	clock := testsupport.NewClock(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	cfg := fakePlivoConfig(fake)
	env := startSendServer(t, cfg, Options{Now: clock.Now, Reconcile: fastReconcile})
	for i := range reconcileFailingAfter {
		uuid := fmt.Sprintf("5b8f0a3e-8f8e-11ef-9b1d-0242ac12%04d", i)
		ev := storage.Event{MessageUUID: uuid, Status: storage.StatusQueued, Source: storage.SourceCallback,
			ReceivedAt: clock.Now(), Payload: map[string]string{"MessageUUID": uuid}}
		if _, err := env.store.Apply(context.Background(), ev); err != nil {
			t.Fatalf("store %s: %v", uuid, err)
		}
	}
	clock.Add(cfg.Reconcile.After.D() + time.Second)
	kinds := func() map[string]Problem {
		t.Helper()
		code, body := env.api(t, http.MethodGet, "/api/health", nil)
		if code != http.StatusOK {
			t.Fatalf("GET /api/health: %d %s", code, body)
		}
		var h struct{ Problems []Problem }
		if err := json.Unmarshal(body, &h); err != nil {
			t.Fatal(err)
		}
		out := map[string]Problem{}
		for _, p := range h.Problems {
			out[p.Kind] = p
		}
		return out
	}
	if _, ok := kinds()["reconcile_failing"]; ok {
		t.Fatal("reconcile_failing before any lookup")
	}
	if n, err := env.srv.reconcileOnce(context.Background()); err != nil || n != reconcileFailingAfter {
		t.Fatalf("scan: looked up %d (err %v), want %d", n, err, reconcileFailingAfter)
	}
	p, ok := kinds()["reconcile_failing"]
	if !ok || !strings.Contains(p.Detail, "3 lookups in a row") || !strings.Contains(p.Hint, "plivo.auth_token") {
		t.Fatalf("after %d failed lookups: %+v (present %v), want reconcile_failing naming them", reconcileFailingAfter, p, ok)
	}
	failing = false
	if _, err := env.srv.reconcileOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p, ok := kinds()["reconcile_failing"]; ok {
		t.Errorf("after a good lookup: still %+v", p)
	}
}
