package certs

import "testing"

func TestRedirectTarget(t *testing.T) {
	tests := []struct {
		name, listen, publicURL string
		domains                 []string
		wantHost, wantPort      string
	}{
		{"default port", ":443", "", []string{"dlr.example.com"}, "dlr.example.com", ""},
		{"listener port", ":8443", "", []string{"dlr.example.com"}, "dlr.example.com", "8443"},
		{"public URL wins", ":8443", "https://Callbacks.example.com", []string{"dlr.example.com"}, "callbacks.example.com", ""},
		{"public URL port", ":443", "https://dlr.example.com:9443/base", nil, "dlr.example.com", "9443"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, port := redirectTarget(tt.domains, tt.listen, tt.publicURL)
			if host != tt.wantHost || port != tt.wantPort {
				t.Errorf("redirectTarget: got %q %q, want %q %q", host, port, tt.wantHost, tt.wantPort)
			}
		})
	}
}
