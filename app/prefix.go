package app

import (
	"net/url"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// publicPathPrefix is the path of server.public_url without its trailing
// slash ("/hooks" for https://dlr.example.com:8443/hooks), "" when it has
// none.
//
// plivo-dlr does not serve under such a prefix: a reverse proxy in front
// must strip it. Plivo calls public_url + plivo.callback_path
// (/hooks/plivo/callback) and signs that URL; the proxy forwards
// /plivo/callback, and the signature is checked against public_url + the
// path received, which is again the URL Plivo signed. The dashboard uses
// root-relative paths (/assets, /api, /ws) and is reached without the
// prefix. (Validate refuses a prefix when plivo-dlr terminates TLS itself:
// then nothing can strip it.)
func (s *Server) publicPathPrefix() string {
	u, err := url.Parse(s.publicURL)
	if err != nil {
		return ""
	}
	return strings.TrimRight(u.Path, "/")
}

// prefixRoutes answers a request that still carries the public_url prefix
// (no proxy stripped it) with a 404 saying so, instead of a bare 404 that
// leaves the operator guessing while every callback is lost. Registered
// after every other route, so it only catches what nothing else serves.
func (s *Server) prefixRoutes() {
	prefix := s.publicPathPrefix()
	if prefix == "" {
		return
	}
	msg := "this path starts with server.public_url's prefix " + prefix +
		", which a reverse proxy in front must strip: plivo-dlr serves " + s.cfg.Plivo.CallbackPath + " and the dashboard at /"
	h := func(c *fiber.Ctx) error {
		if ok, suppressed := s.rejections.allow(s.now()); ok {
			s.log.Warn("request with the public_url prefix: no proxy stripped it", "path", clip(c.Path()),
				"prefix", prefix, "remote_addr", c.IP(), "suppressed", suppressed)
		}
		return &httpError{Code: fiber.StatusNotFound, Message: msg}
	}
	s.fiber.All(prefix, h)
	s.fiber.All(prefix+"/*", h)
}
