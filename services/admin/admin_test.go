package admin

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/adminauth"
	"gatehouse/config"
	"gatehouse/layout"
)

const (
	adminSrc   = "192.0.2.10:40000"   // on admin.allow
	monitorSrc = "198.51.100.5:40000" // a monitoring host only
	strangeSrc = "203.0.113.99:40000" // neither
)

type world struct {
	s      *server
	read   string // tokens
	admin  string
	dir    string
	mu     sync.Mutex
	banned []netip.Addr
}

func newWorld(t testing.TB) *world {
	t.Helper()
	dir := t.TempDir()
	cfg, _, err := config.Parse("f.yaml", []byte("monitoring: {hosts: [198.51.100.5]}\nadmin:\n  allow: [192.0.2.0/24]\n  ban: {after: 3, for: 1h}\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := layout.Host(dir)
	s, err := newServer(context.Background(), cfg, Options{Paths: p, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	w := &world{s: s, dir: p.Admin()}
	s.kernelBan = func(a netip.Addr, d time.Duration) error {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.banned = append(w.banned, a)
		return nil
	}
	if w.read, err = adminauth.CreateToken(w.dir, "nagios", adminauth.RoleRead); err != nil {
		t.Fatal(err)
	}
	if w.admin, err = adminauth.CreateToken(w.dir, "ops", adminauth.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if err := adminauth.SetPassword(w.dir, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	return w
}

// do sends one request to the API's port (or the web console's, web).
func (w *world) do(t *testing.T, web bool, src, method, path, token, body string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.RemoteAddr = src
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	if strings.HasPrefix(body, "{") {
		r.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	if web {
		w.s.webHandler().ServeHTTP(rec, r)
	} else {
		w.s.apiHandler(true).ServeHTTP(rec, r)
	}
	return rec
}

// concrete fills a route's wildcards.
func concrete(path string) string {
	return strings.NewReplacer("{name}", "smtp", "{id}", "ABC123", "{address}", "203.0.113.7").Replace(Prefix + path)
}

// Every route: without a token 401; a read token is refused the admin
// routes (403) and passes the read ones; an admin token passes all. What
// passes gets the route's own answer, never the router's 404 or 405.
func TestEveryRouteByRole(t *testing.T) {
	w := newWorld(t)
	for _, rt := range routeTable() {
		path := concrete(rt.Path)
		if rec := w.do(t, false, adminSrc, rt.Method, path, "", ""); rec.Code != http.StatusUnauthorized {
			t.Errorf("%s %s without a token: %d", rt.Method, path, rec.Code)
		}
		if rt.Method == "POST" && (rt.Path == "/poweroff" || rt.Path == "/reboot") {
			continue // no appliance behind this test: they would only say so
		}
		for _, tc := range []struct {
			token string
			role  string
		}{{w.read, "read"}, {w.admin, "admin"}} {
			rec := w.do(t, false, adminSrc, rt.Method, path, tc.token, "")
			refused := rec.Code == http.StatusForbidden
			if want := rt.Role == "admin" && tc.role == "read"; refused != want {
				t.Errorf("%s %s with a %s token: %d %s", rt.Method, path, tc.role, rec.Code, rec.Body)
			}
			if rec.Code == http.StatusUnauthorized || rec.Code == http.StatusMethodNotAllowed ||
				!strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
				t.Errorf("%s %s with a %s token: %d %q: not the route's answer", rt.Method, path, tc.role, rec.Code, rec.Body)
			}
		}
	}
}

// A monitoring host that is not on admin.allow reads, even with an admin
// token.
func TestMonitoringHostReadsOnly(t *testing.T) {
	w := newWorld(t)
	if rec := w.do(t, false, monitorSrc, "GET", Prefix+"/openapi.json", w.admin, ""); rec.Code != http.StatusOK {
		t.Errorf("read from a monitoring host: %d", rec.Code)
	}
	if rec := w.do(t, false, monitorSrc, "POST", Prefix+"/queue/flush", w.admin, ""); rec.Code != http.StatusForbidden {
		t.Errorf("admin action from a monitoring host: %d", rec.Code)
	}
	// Neither listed: the listener refuses it before TLS.
	if ok, _ := w.s.current().api.Admit(netip.MustParseAddr("203.0.113.99")); ok {
		t.Error("a source on no list is admitted to the API")
	}
	if ok, _ := w.s.current().web.Admit(netip.MustParseAddr("198.51.100.5")); ok {
		t.Error("a monitoring host is admitted to the web console")
	}
}

// A token revoked while its holder works stops at the next request.
func TestTokenRevokedMidSession(t *testing.T) {
	w := newWorld(t)
	if rec := w.do(t, false, adminSrc, "GET", Prefix+"/openapi.json", w.admin, ""); rec.Code != http.StatusOK {
		t.Fatalf("before: %d", rec.Code)
	}
	if err := adminauth.RevokeToken(w.dir, "ops"); err != nil {
		t.Fatal(err)
	}
	if rec := w.do(t, false, adminSrc, "GET", Prefix+"/openapi.json", w.admin, ""); rec.Code != http.StatusUnauthorized {
		t.Errorf("after revoking: %d", rec.Code)
	}
}

// Wrong tokens and passwords ban the source, in the service and in the
// kernel's set; a missing token does not count.
func TestBruteForceBanned(t *testing.T) {
	w := newWorld(t)
	for range 10 {
		w.do(t, false, adminSrc, "GET", Prefix+"/status", "", "")
	}
	if _, banned := w.s.bans.BannedUntil(netip.MustParseAddr("192.0.2.10")); banned {
		t.Fatal("banned for asking without a token")
	}
	for i := range 3 {
		w.do(t, false, adminSrc, "GET", Prefix+"/status", "ghat_wrong"+string(rune('a'+i)), "")
	}
	if _, banned := w.s.bans.BannedUntil(netip.MustParseAddr("192.0.2.10")); !banned {
		t.Error("not banned after 3 wrong tokens")
	}
	if ok, _ := w.s.current().api.Admit(netip.MustParseAddr("192.0.2.10")); ok {
		t.Error("a banned source is admitted")
	}
	// On a connection kept alive from before the ban, too, even with the
	// right token.
	if rec := w.do(t, false, adminSrc, "GET", Prefix+"/openapi.json", w.admin, ""); rec.Code != http.StatusForbidden {
		t.Errorf("banned source with a good token: %d", rec.Code)
	}
	src2 := "192.0.2.11:1"
	for range 3 {
		w.do(t, true, src2, "POST", Prefix+"/session", "", `{"password":"wrong password!"}`)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.banned) != 2 || w.banned[1] != netip.MustParseAddr("192.0.2.11") {
		t.Errorf("kernel bans %v", w.banned)
	}
}

// The web console's session: a password logs in, the cookie is Secure,
// HttpOnly and SameSite=Strict, a change needs the CSRF token, logging
// out ends it, and a changed password ends it too.
func TestWebSession(t *testing.T) {
	w := newWorld(t)
	rec := w.do(t, true, adminSrc, "POST", Prefix+"/session", "", `{"password":"correct horse battery"}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("login: %d %s", rec.Code, rec.Body)
	}
	var info map[string]string
	json.Unmarshal(rec.Body.Bytes(), &info)
	ck := rec.Result().Cookies()
	if len(ck) != 1 || !ck[0].Secure || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode || info["csrf"] == "" || info["role"] != "admin" {
		t.Fatalf("cookie %+v, session %v", ck, info)
	}
	cookie := "gh_session=" + ck[0].Value
	if rec := w.do(t, true, adminSrc, "GET", Prefix+"/session", "", "", "Cookie", cookie); rec.Code != http.StatusOK {
		t.Errorf("GET with the cookie: %d", rec.Code)
	}
	if rec := w.do(t, true, adminSrc, "POST", Prefix+"/queue/flush", "", "", "Cookie", cookie); rec.Code != http.StatusForbidden {
		t.Errorf("POST without CSRF: %d", rec.Code)
	}
	if rec := w.do(t, true, adminSrc, "POST", Prefix+"/config/validate", "", "hostname: gw1\n", "Cookie", cookie, "X-CSRF-Token", info["csrf"]); rec.Code != http.StatusOK {
		t.Errorf("POST with CSRF: %d %s", rec.Code, rec.Body)
	}
	// The API's own port takes no cookies.
	if rec := w.do(t, false, adminSrc, "GET", Prefix+"/session", "", "", "Cookie", cookie); rec.Code != http.StatusUnauthorized {
		t.Errorf("cookie on the API's port: %d", rec.Code)
	}
	if err := adminauth.SetPassword(w.dir, "another good password"); err != nil {
		t.Fatal(err)
	}
	if rec := w.do(t, true, adminSrc, "GET", Prefix+"/session", "", "", "Cookie", cookie); rec.Code != http.StatusUnauthorized {
		t.Errorf("session after the password changed: %d", rec.Code)
	}
	// Every answer carries the policy.
	if got := rec.Header().Get("Content-Security-Policy"); !strings.Contains(got, "script-src 'self'") {
		t.Errorf("CSP %q", got)
	}
}

// A config with problems is answered 400 with each one placed.
func TestConfigProblems(t *testing.T) {
	w := newWorld(t)
	rec := w.do(t, false, adminSrc, "POST", Prefix+"/config/validate", w.read, "hostname: gw1\nssh:\n  port: 70000\n  bogus: 1\n")
	var body ErrorBody
	json.Unmarshal(rec.Body.Bytes(), &body)
	if rec.Code != http.StatusBadRequest || len(body.Problems) == 0 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	for _, p := range body.Problems {
		if p.Line == 0 || p.File != configName || p.Message == "" {
			t.Errorf("problem without a place: %+v", p)
		}
	}
	if rec := w.do(t, false, adminSrc, "PUT", Prefix+"/config", w.admin, "hostname: gw1\n"); rec.Code != http.StatusOK {
		t.Errorf("PUT a valid config: %d %s", rec.Code, rec.Body)
	}
	// The setup page's answers make a config, or say what is wrong.
	rec = w.do(t, false, adminSrc, "POST", Prefix+"/setup", w.admin, `{"hostname":"gw1","dhcp":true,"domains":["example.com"],"internal_server":"10.0.0.5"}`)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `next_hop`) {
		t.Errorf("setup: %d %s", rec.Code, rec.Body)
	}
	if rec := w.do(t, false, adminSrc, "POST", Prefix+"/setup", w.admin, `{"hostname":"-bad-","dhcp":true}`); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `hostname`) {
		t.Errorf("setup with a bad host name: %d %s", rec.Code, rec.Body)
	}
	if rec := w.do(t, true, adminSrc, "POST", Prefix+"/session", "", `{"password": 1}`); rec.Code != http.StatusBadRequest {
		t.Errorf("bad JSON: %d", rec.Code)
	}
	if rec := w.do(t, true, adminSrc, "POST", Prefix+"/session", "", `{"password":"x","extra":true}`); rec.Code != http.StatusBadRequest {
		t.Errorf("unknown field: %d", rec.Code)
	}
}

// The request decoders take any bytes without panicking, and answer
// every one with JSON.
func FuzzRequestDecoders(f *testing.F) {
	f.Add([]byte(`{"password":"correct horse battery"}`))
	f.Add([]byte(`{"token":"ghat_x"}`))
	f.Add([]byte("hostname: gw1\nadmin: {allow: [1.2.3.4]}\n"))
	f.Add([]byte("\x00\xff{{{"))
	w := newWorld(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, r := range []struct{ method, path, token string }{
			{"POST", Prefix + "/session", ""},
			{"POST", Prefix + "/config/validate", w.read},
			{"GET", Prefix + "/services/x/logs?lines=" + string(b), w.read},
		} {
			req := httptest.NewRequest(r.method, "/", strings.NewReader(string(b)))
			req.URL.Path, req.URL.RawQuery, _ = strings.Cut(r.path, "?")
			if req.URL.RawQuery != "" {
				req.URL.RawQuery += url.QueryEscape(string(b))
			}
			req.RemoteAddr = "192.0.2.200:1"
			if r.token != "" {
				req.Header.Set("Authorization", "Bearer "+r.token)
			}
			rec := httptest.NewRecorder()
			w.s.webHandler().ServeHTTP(rec, req)
			if !json.Valid(rec.Body.Bytes()) {
				t.Errorf("%s %s: not JSON: %q", r.method, r.path, rec.Body)
			}
		}
	})
}
