package apiclient

import (
	"strings"
	"testing"
)

// TestNewServerURL: a --server without scheme is refused with an example.
func TestNewServerURL(t *testing.T) {
	if _, err := New("127.0.0.1:8080", ""); err == nil || !strings.Contains(err.Error(), "http://127.0.0.1:8080") {
		t.Errorf("--server without scheme: got %v, want an example URL", err)
	}
	if _, err := New("http://127.0.0.1:8080", ""); err != nil {
		t.Errorf("http://127.0.0.1:8080: %v", err)
	}
}
