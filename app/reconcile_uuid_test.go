package app

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"plivo-dlr/internal/testsupport"
	"plivo-dlr/storage"
)

// TestReconcileRefusesNonUUIDs (issue 9): a MessageUUID stored before
// callbacks had to carry UUIDs went into the Plivo API path unescaped, with
// the main account's credentials: "../../../../v1/Account/OTHER/Call/abc"
// reached another API. Now no such lookup leaves the process; a real UUID
// next to it is still looked up, at exactly Message/{uuid}/.
func TestReconcileRefusesNonUUIDs(t *testing.T) {
	fake := newFakePlivo(t)
	fake.get = func(w http.ResponseWriter, uuid string) {
		writeJSON(w, http.StatusOK, map[string]any{"message_uuid": uuid, "message_state": "delivered"})
	}
	clock := testsupport.NewClock(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	cfg := fakePlivoConfig(fake)
	env := startSendServer(t, cfg, Options{Now: clock.Now, Reconcile: fastReconcile})
	good := sendOne(t, env, "+14155550199")
	bad := []string{"../../../../v1/Account/OTHER/Call/abc", "a b", "x%2F..%2Fy", "<b>", "u\x01"}
	for _, uuid := range bad {
		ev := storage.Event{MessageUUID: uuid, Status: storage.StatusQueued, Source: storage.SourceCallback,
			ReceivedAt: clock.Now(), Payload: map[string]string{"MessageUUID": uuid}}
		if _, err := env.store.Apply(context.Background(), ev); err != nil {
			t.Fatalf("store old message %q: %v", uuid, err)
		}
	}
	clock.Add(cfg.Reconcile.After.D() + time.Second)

	if n, err := env.srv.reconcileOnce(context.Background()); err != nil || n != 1 {
		t.Fatalf("scan: looked up %d (err %v), want 1 (the real UUID only)", n, err)
	}
	var gets []string
	for _, r := range fake.requests() {
		if r.Method == http.MethodGet {
			gets = append(gets, r.Path)
		}
	}
	want := "/v1/Account/" + cfg.Plivo.AuthID + "/Message/" + good + "/"
	if len(gets) != 1 || gets[0] != want {
		t.Errorf("lookups at Plivo: got %q, want only %q", gets, want)
	}
	if msg, _, _ := env.store.GetMessage(good); msg.Status != storage.StatusDelivered {
		t.Errorf("real UUID: got status %q, want delivered", msg.Status)
	}
	for _, uuid := range bad {
		if _, events, _ := env.store.GetMessage(uuid); len(events) != 1 {
			t.Errorf("%q: got %d events, want 1 (no reconcile event)", uuid, len(events))
		}
	}

	// The client itself refuses, whoever calls it.
	for _, uuid := range bad {
		if _, err := env.srv.plivo.Get(uuid); !errors.Is(err, errNotMessageUUID) {
			t.Errorf("Get(%q): got %v, want errNotMessageUUID", uuid, err)
		}
	}
	if n := len(fake.requests()); n != 2 {
		t.Errorf("requests at Plivo: got %d, want 2 (one send, one lookup)", n)
	}
}
