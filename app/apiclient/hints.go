package apiclient

import (
	"errors"
	"fmt"
	"net/http"
	"syscall"
)

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
