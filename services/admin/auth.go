package admin

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"gatehouse/adminauth"
)

// sessionCookie names the web console's session.
const sessionCookie = "gh_session"

// maxSessions bounds the sessions kept; the one idle longest goes first.
const maxSessions = 256

type session struct {
	id       adminauth.Identity
	csrf     string
	lastSeen time.Time
}

// sessions are the web console's logins, in memory: a restart of the
// service logs everyone out, which is the safe way round.
type sessions struct {
	mu sync.Mutex
	m  map[string]*session
}

func newSessions() *sessions { return &sessions{m: map[string]*session{}} }

func randomString() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (ss *sessions) create(id adminauth.Identity) (key string, s *session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.m) >= maxSessions {
		var oldest string
		for k, v := range ss.m {
			if oldest == "" || v.lastSeen.Before(ss.m[oldest].lastSeen) {
				oldest = k
			}
		}
		delete(ss.m, oldest)
	}
	key = randomString()
	s = &session{id: id, csrf: randomString(), lastSeen: time.Now()}
	ss.m[key] = s
	return key, s
}

// get finds the session of key if it was used within idle, and marks it
// used.
func (ss *sessions) get(key string, idle time.Duration) (*session, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[key]
	if !ok {
		return nil, false
	}
	if time.Since(s.lastSeen) > idle {
		delete(ss.m, key)
		return nil, false
	}
	s.lastSeen = time.Now()
	return s, true
}

func (ss *sessions) drop(key string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, key)
}

// expire forgets the sessions idle longer than idle.
func (ss *sessions) expire(idle time.Duration) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for k, s := range ss.m {
		if time.Since(s.lastSeen) > idle {
			delete(ss.m, k)
		}
	}
}

// caller is who made a request, and how.
type caller struct {
	id      adminauth.Identity
	src     netip.Addr
	session *session // the web console's, when it came with its cookie
}

// authError is a refused authentication: the answer, and whether it
// counts toward a ban (a wrong secret does; none at all does not).
type authError struct {
	status int
	msg    string
	counts bool
}

// identify finds who r comes from: a client certificate the client CA
// signed, a bearer token, or (on the web console's port) a session
// cookie with its CSRF token on every request that changes something.
func (s *server) identify(r *http.Request, web bool) (caller, *authError) {
	c := caller{src: remoteAddr(addrOf(r.RemoteAddr))}
	p := s.current()
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return c, &authError{http.StatusUnauthorized, "Authorization: give Bearer TOKEN", false}
		}
		id, ok := s.store.Token(strings.TrimSpace(tok))
		if !ok {
			return c, &authError{http.StatusUnauthorized, "unknown or revoked token", true}
		}
		c.id = id
		return c, nil
	}
	if !web && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && p.clientCAs != nil {
		c.id = adminauth.Certificate(r.TLS.VerifiedChains[0][0].Subject.CommonName, p.cfg.Admin.ClientRole)
		return c, nil
	}
	if web {
		if ck, err := r.Cookie(sessionCookie); err == nil {
			sess, ok := s.sessions.get(ck.Value, p.cfg.Admin.SessionTimeout.Duration)
			if !ok || !s.store.Valid(sess.id) {
				s.sessions.drop(ck.Value)
				return c, &authError{http.StatusUnauthorized, "session ended; log in again", false}
			}
			if r.Method != http.MethodGet && r.Method != http.MethodHead &&
				subtle.ConstantTimeCompare([]byte(r.Header.Get("X-CSRF-Token")), []byte(sess.csrf)) != 1 {
				return c, &authError{http.StatusForbidden, "missing or wrong X-CSRF-Token", false}
			}
			c.id, c.session = sess.id, sess
			return c, nil
		}
	}
	return c, &authError{http.StatusUnauthorized, "authentication required (Authorization: Bearer TOKEN)", false}
}

// refuse answers an authentication failure, and counts it toward a ban
// of the source when it was a wrong secret.
func (s *server) refuse(w http.ResponseWriter, c caller, ae *authError, api bool) {
	if ae.counts {
		p := s.current()
		g := p.web
		if api {
			g = p.api
		}
		if g.Failed(c.src) {
			s.log.Warn("admin: source banned after repeated failed logins", "source", c.src, "for", g.BanFor())
			if err := s.kernelBan(c.src, g.BanFor()); err != nil {
				s.log.Info("admin: ban enforced by the service only", "source", c.src, "err", err)
			}
		}
	}
	if ae.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse"`)
	}
	writeError(w, ae.status, ae.msg, nil)
}

// login is POST /api/v1/session on the web console: a password for
// admin, or an API token, makes a session.
func (s *server) login(w http.ResponseWriter, r *http.Request) {
	src := remoteAddr(addrOf(r.RemoteAddr))
	// Another site's page may not post a login (to get the admin's own
	// address banned with wrong passwords): JSON only, which a cross-site
	// form or no-cors fetch cannot send without a preflight, and no
	// foreign Origin.
	if ct := r.Header.Get("Content-Type"); ct != "application/json" && !strings.HasPrefix(ct, "application/json;") {
		writeError(w, http.StatusUnsupportedMediaType, "log in with Content-Type: application/json", nil)
		return
	}
	if o := r.Header.Get("Origin"); o != "" && o != "https://"+r.Host {
		writeError(w, http.StatusForbidden, "a login from another site's page", nil)
		return
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		writeError(w, http.StatusForbidden, "a login from another site's page", nil)
		return
	}
	var req struct {
		User     string `json:"user"`
		Password string `json:"password"`
		Token    string `json:"token"`
	}
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	if req.User == "" {
		req.User = "admin"
	}
	var id adminauth.Identity
	var ok bool
	switch {
	case req.Token != "":
		id, ok = s.store.Token(req.Token)
	case req.Password != "":
		id, ok = s.store.Password(req.User, req.Password)
	}
	c := caller{src: src}
	if !ok {
		s.log.Warn("admin: web login failed", "source", src, "user", req.User, "with_token", req.Token != "")
		s.refuse(w, c, &authError{http.StatusUnauthorized, "wrong password or token", true}, false)
		return
	}
	p := s.current()
	if !p.web.Allowed(src) && id.Role == adminauth.RoleAdmin {
		id.Role = adminauth.RoleRead
	}
	key, sess := s.sessions.create(id)
	// A browser-session cookie: the server ends it after
	// admin.session_timeout idle, however long the browser keeps it.
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: key, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode})
	s.log.Info("admin: web login", "source", src, "name", id.Name, "role", id.Role, "via", id.Via)
	writeJSON(w, http.StatusOK, sessionInfo(sess))
}

func sessionInfo(s *session) map[string]string {
	return map[string]string{"name": s.id.Name, "role": s.id.Role, "via": s.id.Via, "csrf": s.csrf}
}

func (s *server) logout(w http.ResponseWriter, r *http.Request, c caller) {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		s.sessions.drop(ck.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	writeJSON(w, http.StatusOK, map[string]bool{"logged_out": true})
}

// decodeJSON reads a bounded JSON body strictly.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errBadJSON(err)
	}
	if dec.More() {
		return errBadJSON(nil)
	}
	return nil
}
