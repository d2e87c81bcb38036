package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"plivo-dlr/storage"
)

// TestGetMessagePagesEvents: GET /api/messages/{uuid} pages the history with
// events_limit, events_order and events_cursor, and refuses bad values with
// a 400 naming the key (issue 12).
func TestGetMessagePagesEvents(t *testing.T) {
	env := startMetricsServer(t, "", nil, nil)
	const uuid, n = "2d3f1c4e-f6d1-11ef-9cd2-0242ac120002", 75
	var want []uint64
	for i := range n {
		res, err := env.store.Apply(context.Background(), storage.Event{
			MessageUUID: uuid, Status: storage.StatusSent, Sequence: int64(i + 1), Source: storage.SourceCallback,
			Payload: map[string]string{"MessageUUID": uuid, "Status": "sent", "Sequence": fmt.Sprint(i + 1)},
		})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, res.Cursor)
	}
	page := func(q url.Values) messageDetail {
		t.Helper()
		code, body := get(t, env.url, "/api/messages/"+uuid+"?"+q.Encode(), string(metricsTestAPI))
		var d messageDetail
		if err := json.Unmarshal(body, &d); code != http.StatusOK || err != nil {
			t.Fatalf("GET ?%s: %d %s", q.Encode(), code, body)
		}
		return d
	}
	for _, order := range []string{"asc", "desc"} {
		var got []uint64
		q := url.Values{"events_limit": {"20"}, "events_order": {order}}
		for range 10 {
			d := page(q)
			if d.Message.EventCount != n || len(d.Events) > 20 {
				t.Fatalf("%s page: count %d, %d events; want %d and at most 20", order, d.Message.EventCount, len(d.Events), n)
			}
			for _, e := range d.Events {
				got = append(got, e.Cursor)
			}
			if d.EventsNextCursor == "" {
				break
			}
			q.Set("events_cursor", d.EventsNextCursor)
		}
		w := slices.Clone(want)
		if order == "desc" {
			slices.Reverse(w)
		}
		if !slices.Equal(got, w) {
			t.Errorf("events_order=%s pages = %v, want %v", order, got, w)
		}
	}
	if d := page(url.Values{}); len(d.Events) != n || d.Events[0].Cursor != want[0] || d.EventsNextCursor != "" {
		t.Errorf("default page: %d events from %d, next %q; want all %d oldest first, no next", len(d.Events), d.Events[0].Cursor, d.EventsNextCursor, n)
	}
	for _, q := range []string{"events_limit=0", "events_limit=1001", "events_limit=x", "events_order=up", "events_cursor=bogus"} {
		key, _, _ := strings.Cut(q, "=")
		code, body := get(t, env.url, "/api/messages/"+uuid+"?"+q, string(metricsTestAPI))
		if code != http.StatusBadRequest || !json.Valid(body) || !strings.Contains(string(body), key) {
			t.Errorf("?%s: got %d %s, want 400 naming %s", q, code, body, key)
		}
	}
}
