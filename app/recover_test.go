package app

import (
	"github.com/gofiber/fiber/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"plivo-dlr/storage"
	"testing"
)

// A handler that panics (as bbolt does on a corrupted page) is answered 500
// and the server goes on serving; before, the panic ended the process.
func TestHandlerPanicIsRecovered(t *testing.T) {
	store, err := storage.Open(filepath.Join(t.TempDir(), "dlr.db"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	srv, err := NewServer(Options{Config: dashConfig("127.0.0.1:1"), Store: store})
	if err != nil {
		t.Fatal(err)
	}
	// The recover middleware registered first applies to routes added later.
	srv.fiber.Get("/test-panic", func(*fiber.Ctx) error { panic("bad page header") })
	resp, err := srv.fiber.Test(httptest.NewRequest(http.MethodGet, "/test-panic", nil))
	if err != nil {
		t.Fatalf("GET /test-panic: %v (want a 500 answer)", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("status %d, want 500", resp.StatusCode)
	}
	resp, err = srv.fiber.Test(httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz after a recovered panic: %v %v", resp, err)
	}
}
