package app

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"html"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/crypto/bcrypt"

	"plivo-dlr/storage"
)

// Meta keys of the dashboard's credentials.
const (
	metaPasswordHash = "dashboard_password_hash"
	metaSessionKey   = "dashboard_session_key"
	// metaRevokedSessions lists the sessions logged out before they expired:
	// 16-byte ID and 8-byte expiry each.
	metaRevokedSessions = "dashboard_revoked_sessions"
)

// sessionIDLen is the length of a session's random ID.
const sessionIDLen = 16

// Session and login limits.
const (
	sessionCookie = "plivo_dlr_session"
	sessionTTL    = 7 * 24 * time.Hour
	// loginMaxFailures failed logins per IP, or per username, within
	// loginWindow lock further attempts out until the window passes.
	loginMaxFailures = 5
	loginWindow      = 15 * time.Minute
	// loginTrackedKeys bounds the limiter's memory under a spray of IPs.
	loginTrackedKeys = 10_000
)

// dashboardAuth is what the server needs to log users in.
type dashboardAuth struct {
	username     string
	passwordHash []byte
	// sessionKey signs session cookies; kept in the database so sessions
	// survive restarts.
	sessionKey []byte
	// binding ties sessions to the current password: changing it signs
	// everyone out.
	binding []byte
	limiter *loginLimiter

	// revoked holds the IDs of sessions logged out before expiry, with
	// their expiry, so a copied cookie dies with its logout.
	mu      sync.Mutex
	revoked map[[sessionIDLen]byte]int64
}

// initDashboardAuth loads or creates the dashboard credentials. Without a
// configured password hash it generates a password on first start, stores
// only its hash, and logs the password once.
func (s *Server) initDashboardAuth() error {
	a := &dashboardAuth{username: s.cfg.Dashboard.Username, limiter: newLoginLimiter(s.now)}
	if h := s.cfg.Dashboard.PasswordHash; h != "" {
		a.passwordHash = []byte(h)
	} else {
		h, err := s.store.GetMeta(metaPasswordHash)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			pw := rand.Text() // 26 base32 characters, 130 bits
			if h, err = bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost); err != nil {
				return fmt.Errorf("hash generated password: %w", err)
			}
			if err := s.store.PutMeta(metaPasswordHash, h); err != nil {
				return fmt.Errorf("store generated password hash: %w", err)
			}
			// Shown once, by design: only the hash is kept. The operator can
			// set dashboard.password_hash instead (plivo-dlr hash-password).
			s.log.Warn("generated dashboard password; it is not shown again, set dashboard.password_hash to choose your own",
				"username", a.username, "password", pw)
		case err != nil:
			return fmt.Errorf("load dashboard password hash: %w", err)
		}
		a.passwordHash = h
	}
	key, err := s.store.GetMeta(metaSessionKey)
	if errors.Is(err, storage.ErrNotFound) {
		key = make([]byte, 32)
		rand.Read(key)
		if err := s.store.PutMeta(metaSessionKey, key); err != nil {
			return fmt.Errorf("store session key: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("load session key: %w", err)
	}
	a.sessionKey = key
	a.revoked = map[[sessionIDLen]byte]int64{}
	switch list, err := s.store.GetMeta(metaRevokedSessions); {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		return fmt.Errorf("load revoked sessions: %w", err)
	default:
		for ; len(list) >= sessionIDLen+8; list = list[sessionIDLen+8:] {
			a.revoked[[sessionIDLen]byte(list[:sessionIDLen])] = int64(binary.BigEndian.Uint64(list[sessionIDLen:]))
		}
	}
	b := sha256.Sum256(append([]byte(a.username+"\x00"), a.passwordHash...))
	a.binding = b[:]
	s.auth = a
	return nil
}

// newSession returns a signed cookie value for username valid until exp:
// base64url(exp || random ID || username) "." base64url(HMAC).
func (a *dashboardAuth) newSession(username string, exp time.Time) string {
	payload := binary.BigEndian.AppendUint64(nil, uint64(exp.Unix()))
	var id [sessionIDLen]byte
	rand.Read(id[:])
	payload = append(payload, id[:]...)
	payload = append(payload, username...)
	return base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(a.sign(payload))
}

func (a *dashboardAuth) sign(payload []byte) []byte {
	m := hmac.New(sha256.New, a.sessionKey)
	m.Write(a.binding)
	m.Write(payload)
	return m.Sum(nil)
}

// validSession reports whether the cookie value is a session we signed for
// the configured user that has not expired or been logged out.
func (a *dashboardAuth) validSession(v string, now time.Time) bool {
	id, exp, ok := a.parseSession(v)
	if !ok || now.Unix() >= exp {
		return false
	}
	a.mu.Lock()
	_, revoked := a.revoked[id]
	a.mu.Unlock()
	return !revoked
}

// parseSession checks a cookie value's signature and user and returns its
// ID and expiry (unix seconds).
func (a *dashboardAuth) parseSession(v string) (id [sessionIDLen]byte, exp int64, ok bool) {
	p64, s64, found := strings.Cut(v, ".")
	if !found {
		return id, 0, false
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(p64)
	sig, err2 := base64.RawURLEncoding.DecodeString(s64)
	if err1 != nil || err2 != nil || len(payload) < 8+sessionIDLen || !hmac.Equal(sig, a.sign(payload)) {
		return id, 0, false
	}
	if string(payload[8+sessionIDLen:]) != a.username {
		return id, 0, false
	}
	return [sessionIDLen]byte(payload[8 : 8+sessionIDLen]), int64(binary.BigEndian.Uint64(payload)), true
}

// revoke records a logged-out session until it would have expired, and
// returns the list to persist (expired entries dropped).
func (a *dashboardAuth) revoke(id [sessionIDLen]byte, exp int64, now time.Time) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.revoked[id] = exp
	list := make([]byte, 0, len(a.revoked)*(sessionIDLen+8))
	for rid, rexp := range a.revoked {
		if rexp <= now.Unix() {
			delete(a.revoked, rid)
			continue
		}
		list = append(list, rid[:]...)
		list = binary.BigEndian.AppendUint64(list, uint64(rexp))
	}
	return list
}

// checkPassword compares in constant time; bcrypt runs for a wrong username
// too, so timing does not reveal which part was wrong.
func (a *dashboardAuth) checkPassword(username, password string) bool {
	userOK := subtle.ConstantTimeCompare([]byte(username), []byte(a.username)) == 1
	pwOK := bcrypt.CompareHashAndPassword(a.passwordHash, []byte(password)) == nil
	return userOK && pwOK
}

// hasSession reports whether the request carries a valid session cookie.
func (s *Server) hasSession(c *fiber.Ctx) bool {
	v := c.Cookies(sessionCookie)
	return v != "" && s.auth != nil && s.auth.validSession(v, s.now())
}

// requirePage guards the dashboard's HTML and assets: without a session
// the browser is sent to the login page.
func (s *Server) requirePage(c *fiber.Ctx) error {
	if s.hasSession(c) {
		return c.Next()
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Redirect("/login", fiber.StatusSeeOther)
}

// handleLoginPage serves the login form.
func (s *Server) handleLoginPage(c *fiber.Ctx) error {
	if s.hasSession(c) {
		return c.Redirect("/", fiber.StatusSeeOther)
	}
	return s.sendLoginPage(c, fiber.StatusOK, "")
}

// handleLogin checks the form's username and password, rate-limited per
// client IP and per username, and sets the session cookie.
func (s *Server) handleLogin(c *fiber.Ctx) error {
	username := strings.Clone(c.FormValue("username"))
	password := c.FormValue("password")
	ip := c.IP()
	if wait := s.auth.limiter.blocked(ip, username); wait > 0 {
		if ok, suppressed := s.rejections.allow(s.now()); ok {
			s.log.Warn("login refused: too many failures", "remote_addr", ip, "username", clip(username), "suppressed", suppressed)
		}
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(int(wait.Seconds())+1))
		return s.sendLoginPage(c, fiber.StatusTooManyRequests, "Too many failed attempts. Try again later.")
	}
	if !s.auth.checkPassword(username, password) {
		s.auth.limiter.fail(ip, username)
		if ok, suppressed := s.rejections.allow(s.now()); ok {
			s.log.Warn("login failed", "remote_addr", ip, "username", clip(username), "suppressed", suppressed)
		}
		return s.sendLoginPage(c, fiber.StatusUnauthorized, "Wrong username or password.")
	}
	s.auth.limiter.succeed(ip, username)
	exp := s.now().Add(sessionTTL)
	c.Cookie(s.sessionCookie(s.auth.newSession(username, exp), exp))
	s.log.Info("login", "remote_addr", ip, "username", clip(username))
	return c.Redirect("/", fiber.StatusSeeOther)
}

// handleLogout ends the session on the server too (a copy of the cookie
// stops working) and clears the cookie.
func (s *Server) handleLogout(c *fiber.Ctx) error {
	// SameSite=Strict keeps the cookie off cross-site requests in current
	// browsers; the Origin check also refuses a cross-site form post that
	// would log the user out.
	if !s.sameOrigin(c) {
		return &httpError{Code: fiber.StatusForbidden, Message: "cross-origin logout refused"}
	}
	if id, exp, ok := s.auth.parseSession(c.Cookies(sessionCookie)); ok {
		// Computing the revocation list and persisting it happen under one
		// lock: two concurrent logouts persisting in the reverse order of
		// their computation would drop a revocation, and a restart would
		// then revive that session.
		s.logoutMu.Lock()
		err := s.store.PutMeta(metaRevokedSessions, s.auth.revoke(id, exp, s.now()))
		s.logoutMu.Unlock()
		if err != nil {
			// The session is revoked in memory; only a restart would revive it.
			s.log.Warn("persist session logout", "err", err)
		}
	}
	c.Cookie(s.sessionCookie("", time.Unix(1, 0)))
	return c.Redirect("/login", fiber.StatusSeeOther)
}

// sessionCookie builds the cookie: HttpOnly (no script reads it),
// SameSite=Strict (no cross-site request carries it, which is our CSRF
// defence), Secure when we serve HTTPS.
func (s *Server) sessionCookie(value string, exp time.Time) *fiber.Cookie {
	ck := &fiber.Cookie{
		Name:     sessionCookie,
		Value:    value,
		Path:     "/",
		Expires:  exp,
		HTTPOnly: true,
		SameSite: fiber.CookieSameSiteStrictMode,
		Secure:   s.cfg.TLSEnabled(),
	}
	if value == "" {
		ck.MaxAge = -1
	}
	return ck
}

// loginFallback is the login form used when no UI files are embedded.
const loginFallback = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>plivo-dlr login</title></head>
<body><form method="post" action="/login"><!--error--><input name="username" autocomplete="username">
<input name="password" type="password" autocomplete="current-password"><button type="submit">Log in</button></form></body></html>`

// sendLoginPage renders login.html with an optional error message.
func (s *Server) sendLoginPage(c *fiber.Ctx, status int, msg string) error {
	page := []byte(loginFallback)
	if s.ui != nil {
		if b, err := fs.ReadFile(s.ui, "login.html"); err == nil {
			page = b
		}
	}
	if msg != "" {
		page = bytes.Replace(page, []byte("<!--error-->"), []byte(`<p class="error" role="alert">`+html.EscapeString(msg)+`</p>`), 1)
	}
	setPageHeaders(c)
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Status(status).Send(page)
}

// loginLimiter counts recent failed logins per IP and per username, in
// memory: a restart forgets them, which is acceptable for a lockout that
// only slows guessing down.
type loginLimiter struct {
	now func() time.Time
	mu  sync.Mutex
	// failures maps "ip:"+IP or "user:"+name to the times of recent failures.
	failures map[string][]time.Time
}

func newLoginLimiter(now func() time.Time) *loginLimiter {
	return &loginLimiter{now: now, failures: map[string][]time.Time{}}
}

// blocked returns how long the IP or username must still wait, 0 if not blocked.
func (l *loginLimiter) blocked(ip, username string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var wait time.Duration
	for _, k := range []string{"ip:" + ip, "user:" + username} {
		ts := l.recent(k, now)
		if len(ts) >= loginMaxFailures {
			wait = max(wait, ts[len(ts)-loginMaxFailures].Add(loginWindow).Sub(now))
		}
	}
	return wait
}

// recent drops expired failures of key and returns the rest. Caller holds mu.
func (l *loginLimiter) recent(key string, now time.Time) []time.Time {
	ts := l.failures[key]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= loginWindow {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(l.failures, key)
		return nil
	}
	l.failures[key] = ts
	return ts
}

func (l *loginLimiter) fail(ip, username string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.failures) >= loginTrackedKeys {
		for k := range l.failures {
			l.recent(k, now)
		}
	}
	for _, k := range []string{"ip:" + ip, "user:" + username} {
		if _, ok := l.failures[k]; !ok && len(l.failures) >= loginTrackedKeys {
			continue // full of live entries: keep counting the ones we have
		}
		ts := append(l.recent(k, now), now)
		if len(ts) > loginMaxFailures {
			ts = ts[len(ts)-loginMaxFailures:]
		}
		l.failures[k] = ts
	}
}

func (l *loginLimiter) succeed(ip, username string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.failures, "ip:"+ip)
	delete(l.failures, "user:"+username)
}
