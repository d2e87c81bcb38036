package app

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// staticFile is one dashboard file, read once at startup.
type staticFile struct {
	body        []byte
	contentType string
	etag        string
}

// staticTypes are the content types we serve; other files are not served,
// so nothing is ever sniffed.
var staticTypes = map[string]string{
	".html":  "text/html; charset=utf-8",
	".js":    "text/javascript; charset=utf-8",
	".css":   "text/css; charset=utf-8",
	".svg":   "image/svg+xml",
	".png":   "image/png",
	".ico":   "image/x-icon",
	".json":  "application/json",
	".woff2": "font/woff2",
}

// loadStatic reads every servable file of the UI into memory with its ETag.
func loadStatic(ui fs.FS) (map[string]staticFile, error) {
	files := map[string]staticFile{}
	if ui == nil {
		return files, nil
	}
	err := fs.WalkDir(ui, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := staticTypes[path.Ext(p)]
		if !ok {
			return nil
		}
		b, err := fs.ReadFile(ui, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		files[p] = staticFile{body: b, contentType: ct, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load dashboard files: %w", err)
	}
	return files, nil
}

// dashboardRoutes registers the login, dashboard and stream routes.
func (s *Server) dashboardRoutes() {
	app := s.fiber
	app.Get("/login", s.handleLoginPage)
	// The login page's stylesheet is the one file served without a session.
	app.Get("/login.css", func(c *fiber.Ctx) error { return s.sendStatic(c, "login.css") })
	app.Post("/login", s.handleLogin)
	app.Post("/logout", s.handleLogout)
	app.Get("/ws", s.requireAuth, s.handleStream)
	app.Get("/", s.requirePage, s.handleIndex)
	app.Get("/assets/*", s.requirePage, s.handleAsset)
}

// handleIndex serves the dashboard page.
func (s *Server) handleIndex(c *fiber.Ctx) error {
	return s.sendStatic(c, "index.html")
}

// handleAsset serves a file under assets/.
func (s *Server) handleAsset(c *fiber.Ctx) error {
	name := path.Clean("assets/" + c.Params("*"))
	if !strings.HasPrefix(name, "assets/") {
		return &httpError{Code: fiber.StatusNotFound, Message: "not found"}
	}
	return s.sendStatic(c, name)
}

// sendStatic answers with a file, or 304 when the browser's copy is
// current. Files are not fingerprinted, so every one is no-cache: the
// browser revalidates with its ETag and usually gets a 304.
func (s *Server) sendStatic(c *fiber.Ctx, name string) error {
	f, ok := s.static[name]
	if !ok {
		return &httpError{Code: fiber.StatusNotFound, Message: "not found"}
	}
	setPageHeaders(c)
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set(fiber.HeaderETag, f.etag)
	if match := c.Get(fiber.HeaderIfNoneMatch); match != "" && strings.Contains(match, f.etag) {
		return c.SendStatus(fiber.StatusNotModified)
	}
	c.Set(fiber.HeaderContentType, f.contentType)
	return c.Send(f.body)
}

// setPageHeaders sets the security headers of every dashboard response:
// everything comes from our own origin (no CDN, no inline script), and no
// other site may frame the page.
func setPageHeaders(c *fiber.Ctx) {
	c.Set(fiber.HeaderContentSecurityPolicy, "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderXFrameOptions, "DENY")
	c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
}
