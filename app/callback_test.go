package app

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestCallbackStorageFailure closes the real store under a running server: a
// valid callback must get 503 (so Plivo retries), never a 200, and /readyz
// must report the store unwritable.
func TestCallbackStorageFailure(t *testing.T) {
	d := startDashServer(t, nil)
	d.sendCallback(t, "5b40a428-bfc7-4daf-9d06-726c558bf3b8", "queued", "", 1)

	if err := d.store.Close(); err != nil {
		t.Fatalf("close store: %v", err)
	}
	resp, err := http.DefaultClient.Do(signedCallback(t, d.cfg, d.addr, callbackForm("5b40a428-bfc7-4daf-9d06-726c558bf3b8", "delivered", "", 3)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	if resp.StatusCode != http.StatusServiceUnavailable || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error, "retry") {
		t.Errorf("callback with the store closed: got %d %s, want 503 with a JSON reason", resp.StatusCode, body)
	}
	if got := testutil.ToFloat64(d.srv.metrics.callbacks.WithLabelValues(resultError)); got != 1 {
		t.Errorf("callbacks_total{result=error}: got %v, want 1", got)
	}
	resp, err = http.Get(d.url("/readyz"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz with the store closed: got %d, want 503", resp.StatusCode)
	}
	resp, err = http.Get(d.url("/healthz"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: got %d, want 200 (the process is alive)", resp.StatusCode)
	}
}
