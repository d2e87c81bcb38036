package app

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"syscall"
)

// CheckServerURL refuses a --server without scheme or host before a Go URL
// parse error does it less clearly ("127.0.0.1:8080" is a common spelling).
func CheckServerURL(serverURL string) error {
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--server %q: must be a URL like http://127.0.0.1:8080 or https://dlr.example.com", serverURL)
	}
	return nil
}

// connectError wraps a failed request to a running server with what to try.
func connectError(serverURL string, err error) error {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("no plivo-dlr server at %s (start one with `plivo-dlr serve`, or point --server at it): %w", serverURL, err)
	}
	return fmt.Errorf("reach %s: %w", serverURL, err)
}

// statusHint is what to do about an API refusal the CLI can explain.
func statusHint(code int) string {
	switch code {
	case http.StatusUnauthorized:
		return " (pass an API token from dashboard.api_tokens with --token, --token-file or PLIVO_DLR_API_TOKEN)"
	case http.StatusForbidden:
		return " (the token is not accepted for this request)"
	}
	return ""
}
