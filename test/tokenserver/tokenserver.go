// Package tokenserver is an OAuth2 authorization server for tests: a
// fixture the collector's and relay's OAuth2 code, and the tests' Dovecot,
// talk to instead of a real provider. It keeps its state in memory and
// answers as the RFCs say:
//
//	POST /token       RFC 6749 3.2: client_credentials, refresh_token (with
//	                  rotation) and RFC 8628's device_code grant; clients
//	                  authenticate with client_secret_basic,
//	                  client_secret_post or an RFC 7523 client assertion
//	                  (RS256/ES256, verified with the client's certificate)
//	POST /devicecode  RFC 8628 3.1-3.2: the device authorization request
//	POST /introspect  RFC 7662: what Dovecot's oauth2 passdb asks with
//	                  introspection_mode = post (unauthenticated here)
//
// A test drives it with Go methods (AddClient, Approve, Revoke, ExpireAll,
// ...) and serves it with Serve, inside a network namespace, over TLS
// from the test CA. Access and refresh tokens are random opaque strings.
// The device flow's verification_uri (/device) is only shown, never
// served: the user's answer is the test calling Approve or Deny.
package tokenserver

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Grant kinds, as Grants counts them: the grant_type of a successful token
// request (the device grant by its short name).
const (
	ClientCredentials = "client_credentials"
	RefreshToken      = "refresh_token"
	DeviceCode        = "device_code"
)

const deviceGrantType = "urn:ietf:params:oauth:grant-type:device_code"

// Server is the authorization server. The zero value is not usable: make
// one with New.
type Server struct {
	mu             sync.Mutex
	now            func() time.Time // the unit tests move the clock
	lifetime       time.Duration
	deviceLifetime time.Duration
	interval       time.Duration
	clients        map[string]*client
	access         map[string]*accessToken
	refresh        map[string]*refreshToken
	devices        map[string]*deviceAuth // by device code
	userCodes      map[string]string      // user code -> device code
	grants         map[string]int
	introspections int
}

type client struct {
	id, secret, user string
	cert             any // the public key of the certificate given, or nil
}

type accessToken struct {
	clientID, user, scope string
	expires               time.Time
}

type refreshToken struct{ clientID, user, scope string }

type deviceAuth struct {
	clientID, userCode, scope string
	expires, lastPoll         time.Time
	interval                  time.Duration
	state                     string // "pending", "approved", "denied", "used"
}

// New makes a server with no clients; access tokens live 60 seconds,
// device codes 10 minutes with a polling interval of 1 second.
func New() *Server {
	return &Server{now: time.Now, lifetime: time.Minute, deviceLifetime: 10 * time.Minute, interval: time.Second,
		clients: map[string]*client{}, access: map[string]*accessToken{}, refresh: map[string]*refreshToken{},
		devices: map[string]*deviceAuth{}, userCodes: map[string]string{}, grants: map[string]int{}}
}

// AddClient registers a client. secret is its client secret ("" for none);
// certPEM, if not nil, is the certificate (PEM) whose key signs its client
// assertions. A client with neither is a public client: it names itself
// with client_id alone (the device flow's clients). user is the user its
// client_credentials tokens, and the tokens of a device flow it starts,
// are for.
func (s *Server) AddClient(id, secret string, certPEM []byte, user string) {
	c := &client{id: id, secret: secret, user: user}
	if certPEM != nil {
		k, err := publicKey(certPEM)
		if err != nil {
			panic(fmt.Sprintf("tokenserver: AddClient %s: %v", id, err))
		}
		c.cert = k
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[id] = c
}

// IssueRefreshToken makes a refresh token for client and user, as if the
// user had consented earlier.
func (s *Server) IssueRefreshToken(clientID, user string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newRefresh(clientID, user, "")
}

// Approve is the user entering userCode and consenting; Deny is the user
// refusing. Both report whether the code was known.
func (s *Server) Approve(userCode string) bool { return s.decide(userCode, "approved") }

// Deny: see Approve.
func (s *Server) Deny(userCode string) bool { return s.decide(userCode, "denied") }

func (s *Server) decide(userCode, state string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[s.userCodes[userCode]]
	if d == nil || d.state != "pending" {
		return false
	}
	d.state = state
	return true
}

// Revoke makes a refresh token stop working.
func (s *Server) Revoke(refreshToken string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.refresh, refreshToken)
}

// ExpireAll ends every access token issued so far: introspection says
// they are not active. Refresh tokens still work.
func (s *Server) ExpireAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	past := s.now().Add(-time.Second)
	for _, a := range s.access {
		a.expires = past
	}
}

// SetLifetime sets how long the access tokens issued from now on live;
// with d <= 0 they are expired when issued (expires_in 0, introspection
// says not active).
func (s *Server) SetLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifetime = d
}

// SetDeviceTiming sets the expires_in and interval of the device codes
// issued from now on.
func (s *Server) SetDeviceTiming(expiresIn, interval time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deviceLifetime, s.interval = expiresIn, interval
}

// Grants is how many token requests of kind (ClientCredentials,
// RefreshToken, DeviceCode) succeeded.
func (s *Server) Grants(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grants[kind]
}

// Introspections is how many introspection requests came in (Dovecot's
// logins each make one).
func (s *Server) Introspections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.introspections
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, &oauthError{http.StatusBadRequest, "invalid_request", "the body is not a form: " + err.Error()})
		return
	}
	switch r.URL.Path {
	case "/token":
		s.token(w, r)
	case "/devicecode":
		s.deviceCode(w, r)
	case "/introspect":
		s.introspect(w, r)
	default:
		http.NotFound(w, r)
	}
}

// oauthError is an RFC 6749 5.2 error response.
type oauthError struct {
	status      int
	code        string
	description string
}

func (e *oauthError) Error() string { return e.code + ": " + e.description }

func writeError(w http.ResponseWriter, e *oauthError) {
	writeJSON(w, e.status, map[string]any{"error": e.code, "error_description": e.description})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// endpoint is the URL of the request's own endpoint, as a client assertion
// must name it (aud), and the base of the device flow's verification URI.
func endpoint(r *http.Request, path string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + path
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	c, err := s.authenticate(r)
	if err != nil {
		if r.Header.Get("Authorization") != "" {
			w.Header().Set("WWW-Authenticate", `Basic realm="tokenserver"`)
		}
		writeError(w, err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var resp map[string]any
	kind := r.PostForm.Get("grant_type")
	switch kind {
	case ClientCredentials:
		if c.user == "" {
			err = &oauthError{http.StatusBadRequest, "unauthorized_client", "client " + c.id + " has no user for app-only tokens"}
			break
		}
		resp = s.newAccess(c.id, c.user, r.PostForm.Get("scope"))
	case RefreshToken:
		resp, err = s.refreshGrant(c, r.PostForm.Get("refresh_token"), r.PostForm.Get("scope"))
	case deviceGrantType:
		kind = DeviceCode
		resp, err = s.deviceGrant(c, r.PostForm.Get("device_code"))
	case "":
		err = &oauthError{http.StatusBadRequest, "invalid_request", "no grant_type"}
	default:
		err = &oauthError{http.StatusBadRequest, "unsupported_grant_type", "grant_type " + kind + " is not supported"}
	}
	if err != nil {
		writeError(w, err)
		return
	}
	s.grants[kind]++
	writeJSON(w, http.StatusOK, resp)
}

// refreshGrant rotates: the old refresh token stops working, a new one
// comes with the new access token. s.mu is held.
func (s *Server) refreshGrant(c *client, token, scope string) (map[string]any, *oauthError) {
	rt := s.refresh[token]
	if token == "" {
		return nil, &oauthError{http.StatusBadRequest, "invalid_request", "no refresh_token"}
	}
	if rt == nil || rt.clientID != c.id {
		return nil, &oauthError{http.StatusBadRequest, "invalid_grant", "the refresh token is unknown, revoked or already used"}
	}
	delete(s.refresh, token)
	if scope == "" {
		scope = rt.scope
	}
	resp := s.newAccess(c.id, rt.user, scope)
	resp["refresh_token"] = s.newRefresh(c.id, rt.user, scope)
	return resp, nil
}

// deviceGrant answers a device's poll (RFC 8628 3.5). s.mu is held.
func (s *Server) deviceGrant(c *client, code string) (map[string]any, *oauthError) {
	d := s.devices[code]
	if code == "" {
		return nil, &oauthError{http.StatusBadRequest, "invalid_request", "no device_code"}
	}
	if d == nil || d.clientID != c.id || d.state == "used" {
		return nil, &oauthError{http.StatusBadRequest, "invalid_grant", "the device code is unknown or already used"}
	}
	now := s.now()
	if now.After(d.expires) {
		return nil, &oauthError{http.StatusBadRequest, "expired_token", "the device code has expired"}
	}
	switch d.state {
	case "denied":
		return nil, &oauthError{http.StatusBadRequest, "access_denied", "the user refused"}
	case "pending":
		early := !d.lastPoll.IsZero() && now.Sub(d.lastPoll) < d.interval
		d.lastPoll = now
		if early {
			d.interval += 5 * time.Second // RFC 8628 3.5
			return nil, &oauthError{http.StatusBadRequest, "slow_down", fmt.Sprintf("poll at most every %v", d.interval)}
		}
		return nil, &oauthError{http.StatusBadRequest, "authorization_pending", "the user has not answered yet"}
	}
	d.state = "used"
	user := s.clients[c.id].user
	resp := s.newAccess(c.id, user, d.scope)
	resp["refresh_token"] = s.newRefresh(c.id, user, d.scope)
	return resp, nil
}

func (s *Server) deviceCode(w http.ResponseWriter, r *http.Request) {
	c, err := s.authenticate(r)
	if err != nil {
		writeError(w, err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := &deviceAuth{clientID: c.id, scope: r.PostForm.Get("scope"), state: "pending",
		expires: s.now().Add(s.deviceLifetime), interval: s.interval}
	code := random(32)
	d.userCode = userCode()
	s.devices[code] = d
	s.userCodes[d.userCode] = code
	verify := endpoint(r, "/device")
	writeJSON(w, http.StatusOK, map[string]any{
		"device_code": code, "user_code": d.userCode,
		"verification_uri": verify, "verification_uri_complete": verify + "?user_code=" + d.userCode,
		"expires_in": int(s.deviceLifetime.Seconds()), "interval": int((s.interval + time.Second - 1) / time.Second),
	})
}

func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.introspections++
	a := s.access[r.PostForm.Get("token")]
	if a == nil || !s.now().Before(a.expires) {
		writeJSON(w, http.StatusOK, map[string]any{"active": false})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"active": true, "username": a.user, "sub": a.user,
		"client_id": a.clientID, "scope": a.scope, "token_type": "Bearer", "exp": a.expires.Unix()})
}

// newAccess issues an access token; s.mu is held.
func (s *Server) newAccess(clientID, user, scope string) map[string]any {
	tok := random(32)
	s.access[tok] = &accessToken{clientID: clientID, user: user, scope: scope, expires: s.now().Add(s.lifetime)}
	resp := map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": max(0, int(s.lifetime.Seconds()))}
	if scope != "" {
		resp["scope"] = scope
	}
	return resp
}

// newRefresh issues a refresh token; s.mu is held.
func (s *Server) newRefresh(clientID, user, scope string) string {
	tok := random(32)
	s.refresh[tok] = &refreshToken{clientID: clientID, user: user, scope: scope}
	return tok
}

func random(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// userCode is eight letters from RFC 8628 6.1's alphabet, as XXXX-XXXX.
func userCode() string {
	const alphabet = "BCDFGHJKLMNPQRSTVWXZ"
	b := make([]byte, 8)
	rand.Read(b)
	var sb strings.Builder
	for i, c := range b {
		if i == 4 {
			sb.WriteByte('-')
		}
		sb.WriteByte(alphabet[int(c)%len(alphabet)])
	}
	return sb.String()
}
