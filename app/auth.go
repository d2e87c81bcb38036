package app

import (
	"crypto/subtle"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// requireAuth lets a request through when it carries a configured API token
// (Authorization: Bearer TOKEN) or a dashboard session cookie. Everything
// under /api and /ws goes through it.
func (s *Server) requireAuth(c *fiber.Ctx) error {
	if s.validBearer(c.Get(fiber.HeaderAuthorization)) {
		c.Locals(localsPrincipal, "token")
		return c.Next()
	}
	if s.hasSession(c) {
		// SameSite=Strict already keeps the cookie off cross-site requests;
		// refusing a foreign Origin on writes covers older browsers too.
		if c.Method() != fiber.MethodGet && c.Method() != fiber.MethodHead && !s.sameOrigin(c) {
			return &httpError{Code: fiber.StatusForbidden, Message: "cross-origin request refused"}
		}
		c.Locals(localsPrincipal, "session")
		return c.Next()
	}
	// RFC 9110 requires a challenge on every 401; it also tells a client
	// with no token which scheme to use.
	c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="plivo-dlr"`)
	return &httpError{Code: fiber.StatusUnauthorized, Message: "authentication required"}
}

// localsPrincipal is the Fiber locals key naming who made the request.
const localsPrincipal = "principal"

// validBearer reports whether header is "Bearer T" for a configured token T.
// Every token is compared in constant time, so timing tells nothing.
func (s *Server) validBearer(header string) bool {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return false
	}
	match := 0
	for _, t := range s.apiTokens {
		match |= subtle.ConstantTimeCompare([]byte(token), t)
	}
	return match == 1
}
