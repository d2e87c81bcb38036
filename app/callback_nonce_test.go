package app

import (
	"plivo-dlr/internal/testsupport"

	"plivo-dlr/app/protocol"

	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"plivo-dlr/storage"
)

// signedHeaders signs a POST callback to cfg's callback URL with the given
// nonces: V2 always, V3 (over form) when v3Nonce is set.
func signedHeaders(tb testing.TB, cfg Config, v2Nonce, v3Nonce string, form url.Values) http.Header {
	tb.Helper()
	h := http.Header{}
	sig, err := protocol.ComputeSignatureV2(string(cfg.Plivo.AuthToken), cfg.CallbackURL(), v2Nonce)
	if err != nil {
		tb.Fatal(err)
	}
	h.Set(protocol.HeaderSignatureV2, sig)
	h.Set(protocol.HeaderSignatureV2Nonce, v2Nonce)
	if v3Nonce != "" {
		sig, err := protocol.ComputeSignatureV3(string(cfg.Plivo.AuthToken), http.MethodPost, cfg.CallbackURL(), v3Nonce, form)
		if err != nil {
			tb.Fatal(err)
		}
		h.Set(protocol.HeaderSignatureV3, sig)
		h.Set(protocol.HeaderSignatureV3Nonce, v3Nonce)
	}
	return h
}

// postWith posts body to the callback path with headers h and returns the
// status code and body.
func postWith(tb testing.TB, d *dashServer, h http.Header, body string) (int, string) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, d.url(d.cfg.Plivo.CallbackPath), strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A callback repeated with its nonce, byte for byte, is a retry (200,
// duplicate), before and after a restart; the same headers with another
// body are a replay (403) and store nothing.
func TestCallbackRetryWithSameNonce(t *testing.T) {
	d := startDashServer(t, nil)
	const uuid = "0e3ab3f2-6f0e-11ef-9c4a-0242ac120002"
	form := callbackForm(uuid, "delivered", "000", 3)
	h := signedHeaders(t, d.cfg, "48291038475610293847", "", form)
	for i := range 2 {
		if code, body := postWith(t, d, h, form.Encode()); code != 200 {
			t.Fatalf("post %d: %d %s, want 200", i+1, code, body)
		}
	}
	if got := testutil.ToFloat64(d.srv.metrics.callbacks.WithLabelValues(resultDuplicate)); got != 1 {
		t.Errorf("callbacks_total{result=duplicate} = %v, want 1", got)
	}
	forged := callbackForm(uuid, "undelivered", "30", 4)
	if code, body := postWith(t, d, h, forged.Encode()); code != 403 || !strings.Contains(body, "nonce already used") {
		t.Errorf("same V2 headers, other body: %d %s, want 403 nonce already used", code, body)
	}
	d.stop(t)
	d.start(t, nil)
	if code, body := postWith(t, d, h, form.Encode()); code != 200 {
		t.Errorf("retry after restart: %d %s, want 200", code, body)
	}
	if code, _ := postWith(t, d, h, forged.Encode()); code != 403 {
		t.Errorf("replay after restart: %d, want 403", code)
	}
	m, evs, err := d.store.GetMessage(uuid)
	if err != nil || m.Status != storage.StatusDelivered || len(evs) != 1 {
		t.Errorf("message = %s with %d events (%v), want delivered with 1", m.Status, len(evs), err)
	}
}

// Issue 9 item 7a: a signed callback refused as malformed uses up its
// nonce, so its V2 headers cannot be sent again with a body that parses.
func TestCallbackMalformedConsumesNonce(t *testing.T) {
	d := startDashServer(t, nil)
	const uuid = "1f4bc403-6f0e-11ef-9c4a-0242ac120002"
	bad := url.Values{"Status": {"delivered"}} // no MessageUUID
	h := signedHeaders(t, d.cfg, "91827364550192837465", "", bad)
	for i := range 2 {
		if code, body := postWith(t, d, h, bad.Encode()); code != 400 {
			t.Fatalf("malformed %d: %d %s, want 400", i+1, code, body)
		}
	}
	good := callbackForm(uuid, "delivered", "000", 3)
	if code, body := postWith(t, d, h, good.Encode()); code != 403 {
		t.Errorf("headers of the malformed request with a valid body: %d %s, want 403", code, body)
	}
	if _, _, err := d.store.GetMessage(uuid); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("GetMessage = %v, want ErrNotFound", err)
	}
	if got := testutil.ToFloat64(d.srv.metrics.callbacks.WithLabelValues(resultReplayed)); got != 1 {
		t.Errorf("callbacks_total{result=replayed} = %v, want 1", got)
	}
}

// Issue 9 item 7b: plivo.require_v3 refuses V2-only callbacks; V3-signed
// ones are stored.
func TestCallbackRequireV3(t *testing.T) {
	d := startDashServer(t, func(c *Config) { c.Plivo.RequireV3 = true })
	const uuid = "2a5cd514-6f0e-11ef-9c4a-0242ac120002"
	form := callbackForm(uuid, "queued", "", 1)
	if code, body := postWith(t, d, signedHeaders(t, d.cfg, "11111111112222222222", "", form), form.Encode()); code != 403 || !strings.Contains(body, "require_v3") {
		t.Errorf("V2-only with require_v3: %d %s, want 403 naming require_v3", code, body)
	}
	if _, _, err := d.store.GetMessage(uuid); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("after V2-only: GetMessage = %v, want ErrNotFound", err)
	}
	if code, body := postWith(t, d, signedHeaders(t, d.cfg, "33333333334444444444", "55555555556666666666", form), form.Encode()); code != 200 {
		t.Errorf("V3-signed with require_v3: %d %s, want 200", code, body)
	}
	// Without require_v3 a V2-only callback is accepted.
	d2 := startDashServer(t, nil)
	if code, body := postWith(t, d2, signedHeaders(t, d2.cfg, "77777777778888888888", "", form), form.Encode()); code != 200 {
		t.Errorf("V2-only without require_v3: %d %s, want 200", code, body)
	}
}

// Issue 9 item 7b: once a V3-signed callback came, a V2-only one is
// accepted but logged, since that is what a replay of captured V2 headers
// after nonce_ttl looks like.
func TestCallbackV2OnlyAfterV3Warns(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dashServer{addr: ln.Addr().String(), dbDir: t.TempDir()}
	d.cfg = dashConfig(d.addr)
	if d.store, err = storage.Open(filepath.Join(d.dbDir, "dlr.db"), storage.Options{}); err != nil {
		t.Fatal(err)
	}
	logs := &testsupport.LockedBuffer{}
	if d.srv, err = NewServer(Options{Config: d.cfg, Store: d.store, Logger: slog.New(slog.NewJSONHandler(logs, nil))}); err != nil {
		t.Fatal(err)
	}
	d.serveStop = testsupport.Serve(t, d.srv, ln, d.url("/healthz"))
	t.Cleanup(func() { d.stop(t) })
	const warning = "only a V2 signature although V3"
	form := callbackForm("3b6de625-6f0e-11ef-9c4a-0242ac120002", "queued", "", 1)
	if code, body := postWith(t, d, signedHeaders(t, d.cfg, "12121212121212121212", "", form), form.Encode()); code != 200 {
		t.Fatalf("V2-only: %d %s", code, body)
	}
	if strings.Contains(logs.String(), warning) {
		t.Errorf("warning before any V3 callback: %s", logs.String())
	}
	form = callbackForm("3b6de625-6f0e-11ef-9c4a-0242ac120002", "sent", "", 2)
	if code, body := postWith(t, d, signedHeaders(t, d.cfg, "23232323232323232323", "34343434343434343434", form), form.Encode()); code != 200 {
		t.Fatalf("V3: %d %s", code, body)
	}
	form = callbackForm("3b6de625-6f0e-11ef-9c4a-0242ac120002", "delivered", "000", 3)
	if code, body := postWith(t, d, signedHeaders(t, d.cfg, "45454545454545454545", "", form), form.Encode()); code != 200 {
		t.Fatalf("V2-only after V3: %d %s, want 200 (accepted without require_v3)", code, body)
	}
	if !strings.Contains(logs.String(), warning) {
		t.Errorf("no warning for a V2-only callback after V3 ones; log: %s", logs.String())
	}
}

// TestRequestSumSeparatesFields: the sum is the same for the same request
// and changes with any one field, also when bytes move from one field to
// its neighbour.
func TestRequestSumSeparatesFields(t *testing.T) {
	base := protocol.SignedRequest{Method: "POST", URL: "https://dlr.example.com/plivo/callback",
		Headers: protocol.SignatureHeaders{V2: "sig2", V2Nonce: "12345678901234567890", V3: "sig3", V3Nonce: "09876543210987654321"}}
	body := []byte("MessageUUID=x&Status=delivered")
	sum := requestSum(body, base)
	if again := requestSum(append([]byte(nil), body...), base); again != sum {
		t.Fatalf("same request, sums %x and %x", sum, again)
	}
	moved := base
	moved.URL += "M"
	variants := map[string]uint64{
		"url":              requestSum(body, func() protocol.SignedRequest { r := base; r.URL += "/"; return r }()),
		"body":             requestSum([]byte("MessageUUID=x&Status=undelivered"), base),
		"byte url->body":   requestSum(body[1:], moved),
		"v2 nonce":         requestSum(body, func() protocol.SignedRequest { r := base; r.Headers.V2Nonce = "12345678901234567891"; return r }()),
		"v3 signature":     requestSum(body, func() protocol.SignedRequest { r := base; r.Headers.V3 = "sig4"; return r }()),
		"byte v2 -> ma-v2": requestSum(body, func() protocol.SignedRequest { r := base; r.Headers.V2, r.Headers.MaV2 = "sig", "2"; return r }()),
		"method":           requestSum(body, func() protocol.SignedRequest { r := base; r.Method = "GET"; return r }()),
	}
	for name, v := range variants {
		if v == sum {
			t.Errorf("%s changed, sum stayed %x", name, sum)
		}
	}
}
