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
	"os"
	"path/filepath"
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
	// checks bounds the bcrypt comparisons running at once; trustedChecks
	// is a separate lane for IPs the user logged in from recently, so a
	// flood from elsewhere cannot keep the owner out with 503s.
	checks, trustedChecks *checkGate

	// revoked holds the IDs of sessions logged out before expiry, with
	// their expiry, so a copied cookie dies with its logout.
	mu      sync.Mutex
	revoked map[[sessionIDLen]byte]int64
}

// initDashboardAuth loads or creates the dashboard credentials. The
// password hash comes from the config or the store; a first start without
// either gets one from EnsureDashboardPassword.
func (s *Server) initDashboardAuth() error {
	a := &dashboardAuth{
		username:      s.cfg.Dashboard.Username,
		limiter:       newLoginLimiter(s.cfg.Dashboard.Username, s.now),
		checks:        newCheckGate(loginChecks, loginQueue, loginQueueWait),
		trustedChecks: newCheckGate(1, loginQueue, loginQueueWait),
	}
	if h := s.cfg.Dashboard.PasswordHash; h != "" {
		a.passwordHash = []byte(h)
	} else {
		// Without a stored hash no login succeeds until
		// EnsureDashboardPassword generates one, once serving works.
		h, err := s.store.GetMeta(metaPasswordHash)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
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
	a.bind()
	s.auth = a
	return nil
}

// bind ties sessions to the current username and password hash.
func (a *dashboardAuth) bind() {
	b := sha256.Sum256(append([]byte(a.username+"\x00"), a.passwordHash...))
	a.binding = b[:]
}

// PasswordFileName is the file in the data dir holding a generated
// dashboard password.
const PasswordFileName = "dashboard-password"

// EnsureDashboardPassword generates the dashboard password on first start,
// when neither dashboard.password_hash nor a stored hash exists: it writes
// the password to a 0600 file in dataDir, then stores only its hash, and
// returns the file's path ("" when nothing was generated). The password
// never goes to the log, which under systemd is kept in the journal. Call
// it once the listeners are bound and before Serve, so a start that fails
// (port in use) neither generates nor loses a password.
func (s *Server) EnsureDashboardPassword(dataDir string) (string, error) {
	a := s.auth
	if len(a.passwordHash) > 0 {
		return "", nil
	}
	pw := rand.Text() // 26 base32 characters, 130 bits
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("hash generated password: %w", err)
	}
	path := filepath.Join(dataDir, PasswordFileName)
	// The file first: a crash before the hash is stored only means the next
	// start generates (and writes) another password; never a stored hash
	// whose password nobody has.
	if err := writeFileDurably(path, []byte(a.username+"\n"+pw+"\n")); err != nil {
		return "", fmt.Errorf("write generated password: %w", err)
	}
	if err := s.store.PutMeta(metaPasswordHash, h); err != nil {
		return "", fmt.Errorf("store generated password hash: %w", err)
	}
	a.passwordHash = h
	a.bind()
	return path, nil
}

// writeFileDurably writes data to path with mode 0600 through a temporary
// file, fsync and rename, so path is either absent or complete.
func writeFileDurably(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
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

// logName is how a login's username appears in the log: the configured
// one as is, any other as "(unknown)", since people type their password
// into the username field and the log must not keep it.
func (a *dashboardAuth) logName(username string) string {
	if username == a.username {
		return username
	}
	return "(unknown)"
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
// (username, client IP) and per username (login_limit.go), with a bounded
// number of password checks at once, and sets the session cookie.
func (s *Server) handleLogin(c *fiber.Ctx) error {
	username := strings.Clone(c.FormValue("username"))
	password := c.FormValue("password")
	ip := c.IP()
	wait, end := s.auth.limiter.begin(ip, username)
	if wait > 0 {
		if ok, suppressed := s.rejections.allow(s.now()); ok {
			s.log.Warn("login refused: too many failures", "remote_addr", ip, "username", s.auth.logName(username), "suppressed", suppressed)
		}
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(int(wait.Seconds())+1))
		return s.sendLoginPage(c, fiber.StatusTooManyRequests, "Too many failed attempts. Try again later.")
	}
	gate := s.auth.checks
	if s.auth.limiter.trustedFor(ip, username) {
		gate = s.auth.trustedChecks
	}
	if !gate.acquire() {
		end(loginAborted)
		if ok, suppressed := s.rejections.allow(s.now()); ok {
			s.log.Warn("login refused: too many password checks at once", "remote_addr", ip, "suppressed", suppressed)
		}
		c.Set(fiber.HeaderRetryAfter, "1")
		return s.sendLoginPage(c, fiber.StatusServiceUnavailable, "The server is busy. Try again in a moment.")
	}
	ok := s.auth.checkPassword(username, password)
	gate.release()
	if !ok {
		end(loginFailed)
		if ok, suppressed := s.rejections.allow(s.now()); ok {
			s.log.Warn("login failed", "remote_addr", ip, "username", s.auth.logName(username), "suppressed", suppressed)
		}
		// RFC 9110 requires a challenge on every 401. A form login has no
		// registered scheme; "Cookie" is the one draft-broyer-http-cookie-auth
		// describes for exactly this: where the form is, which cookie it sets.
		c.Set(fiber.HeaderWWWAuthenticate, `Cookie realm="plivo-dlr" form-action="/login" cookie-name="`+sessionCookie+`"`)
		return s.sendLoginPage(c, fiber.StatusUnauthorized, "Wrong username or password.")
	}
	end(loginOK)
	exp := s.now().Add(sessionTTL)
	c.Cookie(s.sessionCookie(s.auth.newSession(username, exp), exp))
	s.log.Info("login", "remote_addr", ip, "username", s.auth.logName(username))
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
