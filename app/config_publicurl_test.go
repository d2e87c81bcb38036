package app

import (
	"strings"
	"testing"
)

// TestPublicURLWithCallbackPathRefused: public_url ending in the callback
// path (README: "exactly the URL Plivo will call") made every callback a 403;
// validation now refuses it with the value to write instead (issue 11).
func TestPublicURLWithCallbackPathRefused(t *testing.T) {
	for _, tt := range []struct{ url, want string }{
		{"https://dlr.example.com/plivo/callback", `write "https://dlr.example.com"`},
		{"https://dlr.example.com/plivo/callback/", `write "https://dlr.example.com"`},
		{"https://dlr.example.com:8443/hooks/plivo/callback", `write "https://dlr.example.com:8443/hooks"`},
	} {
		cfg := DefaultConfig()
		cfg.Server.PublicURL = tt.url
		err := cfg.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), "server.public_url: ") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("public_url %q: got %v, want a server.public_url error containing %s", tt.url, err, tt.want)
		}
	}
	for _, ok := range []string{"https://dlr.example.com", "https://dlr.example.com/", "https://dlr.example.com/hooks"} {
		cfg := DefaultConfig()
		cfg.Server.PublicURL = ok
		if err := cfg.Validate(); err != nil {
			t.Errorf("public_url %q: %v, want valid", ok, err)
		}
	}
}
