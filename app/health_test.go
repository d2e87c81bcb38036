package app

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"plivo-dlr/app/protocol"
)

// getHealth reads GET /api/health with the API token.
func getHealth(t *testing.T, d *dashServer) []Problem {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, d.url("/api/health"), nil)
	req.Header.Set("Authorization", "Bearer "+dashAPIToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/health: %d", resp.StatusCode)
	}
	var body struct {
		Problems []Problem `json:"problems"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if body.Problems == nil {
		t.Fatal(`"problems" is null, want [] or a list`)
	}
	return body.Problems
}

// TestHealthRefusedCallback: a healthy server reports no problem; a callback
// signed over a different URL (http instead of the configured https, say)
// makes callbacks_refused appear with the URL that would have verified.
func TestHealthRefusedCallback(t *testing.T) {
	d := startDashServer(t, nil)
	if p := getHealth(t, d); len(p) != 0 {
		t.Fatalf("problems on a fresh server: %+v", p)
	}
	wrongURL := sendMisSigned(t, d)
	p := getHealth(t, d)
	if len(p) != 1 || p[0].Kind != "callbacks_refused" {
		t.Fatalf("problems after a refused callback: %+v", p)
	}
	if !strings.Contains(p[0].Hint, wrongURL) || !strings.Contains(p[0].Hint, "server.public_url") {
		t.Errorf("hint %q does not name %s and server.public_url", p[0].Hint, wrongURL)
	}
}

// sendMisSigned posts a callback signed over the callback URL with a
// trailing slash, as Plivo would if it had been configured with one (so
// server.public_url is "wrong"), checks it is refused, and returns that URL.
func sendMisSigned(t *testing.T, d *dashServer) string {
	t.Helper()
	wrongURL := d.cfg.CallbackURL() + "/"
	nonce := fmt.Sprint(rand.Uint64())
	sig, err := protocol.ComputeSignatureV2(string(d.cfg.Plivo.AuthToken), wrongURL, nonce)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, d.url(d.cfg.Plivo.CallbackPath), strings.NewReader(callbackForm("0c0c0c0c-1111-4222-8333-444455556666", "queued", "", 1).Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Plivo-Signature-V2", sig)
	req.Header.Set("X-Plivo-Signature-V2-Nonce", nonce)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatalf("wrongly signed callback accepted")
	}
	return wrongURL
}

func TestURLHint(t *testing.T) {
	got := urlHint(protocol.Diagnosis{Finding: protocol.FoundURLMismatch, Scheme: protocol.SchemeV2, URL: "https://a.example/cb",
		Hint: `v2 signature would verify with URL "https://a.example/cb": check server.public_url`})
	if want := "Plivo's signatures match https://a.example/cb; set server.public_url to it"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	other := protocol.Diagnosis{Finding: protocol.FoundParamsDiffer, Scheme: protocol.SchemeV3, Hint: "v2 signature verifies but v3 does not"}
	if got := urlHint(other); got != other.Hint {
		t.Errorf("not a URL mismatch: got %q, want the hint itself", got)
	}
}
