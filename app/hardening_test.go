package app

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"plivo-dlr/app/protocol"
	"plivo-dlr/storage"
)

// A validly signed callback whose nonce is over storage's limit is a
// malformed request (400), not a storage failure (503 and an ERROR log).
func TestCallbackLongNonceIs400(t *testing.T) {
	d := startDashServer(t, nil)
	nonce := strings.Repeat("7", storage.MaxNonceLen+1)
	sig, err := protocol.ComputeSignatureV2(string(d.cfg.Plivo.AuthToken), d.cfg.CallbackURL(), nonce)
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"MessageUUID": {"0e9f7a10-8f8e-11ef-9b1d-0242ac120002"}, "Status": {"queued"}}
	req, _ := http.NewRequest(http.MethodPost, d.url(d.cfg.Plivo.CallbackPath), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Plivo-Signature-V2", sig)
	req.Header.Set("X-Plivo-Signature-V2-Nonce", nonce)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400", resp.StatusCode)
	}
}

// A cross-site POST to /logout must not log the browser out.
func TestLogoutRefusesCrossOrigin(t *testing.T) {
	d := startDashServer(t, nil)
	resp := d.login(t, noRedirectClient(t), dashUser, dashPassword)
	resp.Body.Close()
	ck := sessionCookieOf(resp)
	if ck == nil || ck.Value == "" {
		t.Fatalf("login: %d, no cookie", resp.StatusCode)
	}
	logout := func(origin string) int {
		req, _ := http.NewRequest(http.MethodPost, d.url("/logout"), nil)
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: ck.Value})
		req.Header.Set("Origin", origin)
		resp, err := noRedirectClient(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := logout("https://evil.example"); code != http.StatusForbidden {
		t.Errorf("cross-origin logout: %d, want 403", code)
	}
	// The session still works after the refused logout.
	req, _ := http.NewRequest(http.MethodGet, d.url("/api/stats"), nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: ck.Value})
	r, err := noRedirectClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		t.Errorf("session after refused cross-origin logout: %d, want 200", r.StatusCode)
	}
	if code := logout("http://" + d.addr); code != http.StatusSeeOther {
		t.Errorf("same-origin logout: %d, want 303", code)
	}
}
