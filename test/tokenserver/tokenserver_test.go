package tokenserver

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// world is a server behind httptest, with a clock the test moves.
type world struct {
	s    *Server
	base string
	now  time.Time
}

func newWorld(t *testing.T) *world {
	w := &world{s: New(), now: time.Unix(1_800_000_000, 0)}
	w.s.now = func() time.Time { return w.now }
	hs := httptest.NewServer(w.s)
	t.Cleanup(hs.Close)
	w.base = hs.URL
	return w
}

// post sends a form; basic, if not empty, is "id:secret" for HTTP Basic.
func (w *world) post(t *testing.T, path, basic string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", w.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id, secret, ok := strings.Cut(basic, ":"); ok {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("POST %s: not JSON: %v", path, err)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("POST %s: Cache-Control %q, want no-store", path, resp.Header.Get("Cache-Control"))
	}
	return resp.StatusCode, m
}

func (w *world) active(t *testing.T, token string) map[string]any {
	t.Helper()
	code, m := w.post(t, "/introspect", "", url.Values{"token": {token}})
	if code != 200 {
		t.Fatalf("introspect: %d %v", code, m)
	}
	return m
}

func wantError(t *testing.T, what string, code int, m map[string]any, status int, errCode string) {
	t.Helper()
	if code != status || m["error"] != errCode {
		t.Errorf("%s: %d %v, want %d error %s", what, code, m, status, errCode)
	}
	if _, ok := m["error_description"]; !ok && code >= 400 {
		t.Errorf("%s: no error_description", what)
	}
}

func TestClientCredentials(t *testing.T) {
	w := newWorld(t)
	w.s.AddClient("app", "s3cret/+:", nil, "alice@example.test")
	for _, c := range []struct {
		name, basic string
		form        url.Values
	}{
		{"client_secret_basic", "app:s3cret/+:", url.Values{"grant_type": {"client_credentials"}}},
		{"client_secret_post", "", url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}, "client_secret": {"s3cret/+:"}, "scope": {"mail"}}},
	} {
		code, m := w.post(t, "/token", c.basic, c.form)
		if code != 200 || m["token_type"] != "Bearer" || m["expires_in"] != 60.0 || m["access_token"] == "" {
			t.Fatalf("%s: %d %v", c.name, code, m)
		}
		if _, ok := m["refresh_token"]; ok {
			t.Errorf("%s: a refresh token for client credentials", c.name)
		}
		in := w.active(t, m["access_token"].(string))
		if in["active"] != true || in["username"] != "alice@example.test" || in["exp"] != float64(w.now.Unix()+60) {
			t.Errorf("%s: introspection %v", c.name, in)
		}
	}
	if n := w.s.Grants(ClientCredentials); n != 2 {
		t.Errorf("Grants(client_credentials) = %d, want 2", n)
	}

	code, m := w.post(t, "/token", "app:wrong", url.Values{"grant_type": {"client_credentials"}})
	wantError(t, "wrong secret", code, m, 401, "invalid_client")
	code, m = w.post(t, "/token", "", url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}})
	wantError(t, "no secret", code, m, 401, "invalid_client")
	code, m = w.post(t, "/token", "app:s3cret/+:", url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}, "client_secret": {"s3cret/+:"}})
	wantError(t, "two methods", code, m, 400, "invalid_request")
	code, m = w.post(t, "/token", "app:s3cret/+:", url.Values{"grant_type": {"password"}})
	wantError(t, "password grant", code, m, 400, "unsupported_grant_type")
	if n := w.s.Grants(ClientCredentials); n != 2 {
		t.Errorf("refusals counted: Grants = %d", n)
	}
}

func TestExpiry(t *testing.T) {
	w := newWorld(t)
	w.s.AddClient("app", "pw", nil, "alice")
	get := func() string {
		_, m := w.post(t, "/token", "app:pw", url.Values{"grant_type": {"client_credentials"}})
		return m["access_token"].(string)
	}
	a, b := get(), get()
	w.now = w.now.Add(59 * time.Second)
	if w.active(t, a)["active"] != true {
		t.Fatal("token inactive before its expiry")
	}
	w.now = w.now.Add(time.Second)
	if w.active(t, a)["active"] != false {
		t.Fatal("token active at its expiry")
	}

	w.s.SetLifetime(time.Hour)
	c := get()
	w.s.ExpireAll()
	for _, tok := range []string{b, c} {
		if m := w.active(t, tok); m["active"] != false || len(m) != 1 {
			t.Errorf("after ExpireAll: %v", m)
		}
	}
	if w.active(t, get())["active"] != true {
		t.Error("a token issued after ExpireAll is not active")
	}
	w.s.SetLifetime(0)
	if w.active(t, get())["active"] != false {
		t.Error("SetLifetime(0) issued an active token")
	}
	if w.active(t, "no-such-token")["active"] != false {
		t.Error("an unknown token is active")
	}
}

func TestRefreshRotation(t *testing.T) {
	w := newWorld(t)
	w.s.AddClient("app", "pw", nil, "")
	w.s.AddClient("other", "pw2", nil, "")
	rt := w.s.IssueRefreshToken("app", "bob@example.test")
	refresh := func(basic, tok string) (int, map[string]any) {
		return w.post(t, "/token", basic, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok}})
	}
	code, m := refresh("other:pw2", rt)
	wantError(t, "another client's refresh token", code, m, 400, "invalid_grant")

	code, m = refresh("app:pw", rt)
	if code != 200 || m["refresh_token"] == nil || m["refresh_token"] == rt {
		t.Fatalf("refresh: %d %v", code, m)
	}
	if in := w.active(t, m["access_token"].(string)); in["username"] != "bob@example.test" {
		t.Errorf("refreshed token: %v", in)
	}
	code, m2 := refresh("app:pw", rt)
	wantError(t, "the rotated-out refresh token", code, m2, 400, "invalid_grant")

	next := m["refresh_token"].(string)
	w.s.Revoke(next)
	code, m = refresh("app:pw", next)
	wantError(t, "a revoked refresh token", code, m, 400, "invalid_grant")
	code, m = refresh("app:pw", "")
	wantError(t, "no refresh token", code, m, 400, "invalid_request")
	if n := w.s.Grants(RefreshToken); n != 1 {
		t.Errorf("Grants(refresh_token) = %d, want 1", n)
	}
}

func TestDeviceFlow(t *testing.T) {
	w := newWorld(t)
	w.s.AddClient("tv", "", nil, "carol@example.test") // public client
	w.s.SetDeviceTiming(10*time.Minute, 5*time.Second)
	start := func() (string, string) {
		code, m := w.post(t, "/devicecode", "", url.Values{"client_id": {"tv"}, "scope": {"mail"}})
		if code != 200 || m["interval"] != 5.0 || m["expires_in"] != 600.0 ||
			m["verification_uri"] != w.base+"/device" ||
			m["verification_uri_complete"] != w.base+"/device?user_code="+m["user_code"].(string) {
			t.Fatalf("devicecode: %d %v", code, m)
		}
		return m["device_code"].(string), m["user_code"].(string)
	}
	poll := func(dc string) (int, map[string]any) {
		return w.post(t, "/token", "", url.Values{"grant_type": {deviceGrantType}, "client_id": {"tv"}, "device_code": {dc}})
	}

	dc, uc := start()
	code, m := poll(dc)
	wantError(t, "first poll", code, m, 400, "authorization_pending")
	w.now = w.now.Add(time.Second)
	code, m = poll(dc)
	wantError(t, "too early", code, m, 400, "slow_down")
	w.now = w.now.Add(9 * time.Second) // the interval is 10 s now
	code, m = poll(dc)
	wantError(t, "too early again", code, m, 400, "slow_down")
	w.now = w.now.Add(15 * time.Second)
	code, m = poll(dc)
	wantError(t, "patient poll", code, m, 400, "authorization_pending")
	if !w.s.Approve(uc) {
		t.Fatal("Approve: unknown code")
	}
	code, m = poll(dc)
	if code != 200 || m["refresh_token"] == nil || m["scope"] != "mail" {
		t.Fatalf("after approval: %d %v", code, m)
	}
	if in := w.active(t, m["access_token"].(string)); in["username"] != "carol@example.test" {
		t.Errorf("device token: %v", in)
	}
	code, m = poll(dc)
	wantError(t, "used device code", code, m, 400, "invalid_grant")
	if w.s.Approve(uc) {
		t.Error("Approve of a used code says it was pending")
	}

	dc, uc = start()
	w.s.Deny(uc)
	code, m = poll(dc)
	wantError(t, "denied", code, m, 400, "access_denied")

	dc, _ = start()
	w.now = w.now.Add(10*time.Minute + time.Second)
	code, m = poll(dc)
	wantError(t, "expired", code, m, 400, "expired_token")

	code, m = w.post(t, "/devicecode", "", url.Values{"client_id": {"nobody"}})
	wantError(t, "unknown client", code, m, 401, "invalid_client")
	if n := w.s.Grants(DeviceCode); n != 1 {
		t.Errorf("Grants(device_code) = %d, want 1", n)
	}
}

// keyCert makes a key and a self-signed certificate (PEM) for it.
func keyCert(t *testing.T, key crypto.Signer) []byte {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// sign makes a compact JWS of claims with key (RS256 or ES256).
func sign(t *testing.T, key crypto.Signer, claims map[string]any) string {
	alg := "RS256"
	if _, ok := key.(*ecdsa.PrivateKey); ok {
		alg = "ES256"
	}
	h, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT"})
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	digest := sha256.Sum256([]byte(input))
	var sig []byte
	switch k := key.(type) {
	case *rsa.PrivateKey:
		sig, _ = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, digest[:])
	case *ecdsa.PrivateKey:
		r, s, _ := ecdsa.Sign(rand.Reader, k, digest[:])
		sig = append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestClientAssertion(t *testing.T) {
	w := newWorld(t)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	w.s.AddClient("rsa-app", "", keyCert(t, rsaKey), "r@example.test")
	w.s.AddClient("ec-app", "", keyCert(t, ecKey), "e@example.test")
	w.s.AddClient("secret-app", "pw", nil, "s@example.test")
	aud := w.base + "/token"
	exp := w.now.Add(5 * time.Minute).Unix()
	claims := func(id string, change func(map[string]any)) map[string]any {
		c := map[string]any{"iss": id, "sub": id, "aud": aud, "exp": exp, "jti": "x"}
		if change != nil {
			change(c)
		}
		return c
	}
	for _, c := range []struct {
		name   string
		key    crypto.Signer
		claims map[string]any
		ok     bool
	}{
		{"RS256", rsaKey, claims("rsa-app", nil), true},
		{"ES256", ecKey, claims("ec-app", nil), true},
		{"aud as an array", ecKey, claims("ec-app", func(c map[string]any) { c["aud"] = []string{"x", aud} }), true},
		{"wrong key", otherKey, claims("ec-app", nil), false},
		{"RSA key, ES256 client", rsaKey, claims("ec-app", nil), false},
		{"wrong aud", ecKey, claims("ec-app", func(c map[string]any) { c["aud"] = w.base + "/introspect" }), false},
		{"expired", ecKey, claims("ec-app", func(c map[string]any) { c["exp"] = w.now.Unix() }), false},
		{"no exp", ecKey, claims("ec-app", func(c map[string]any) { delete(c, "exp") }), false},
		{"sub is not iss", ecKey, claims("ec-app", func(c map[string]any) { c["sub"] = "rsa-app" }), false},
		{"client without certificate", ecKey, claims("secret-app", nil), false},
		{"unknown client", ecKey, claims("nobody", nil), false},
	} {
		code, m := w.post(t, "/token", "", url.Values{"grant_type": {"client_credentials"},
			"client_assertion_type": {assertionType}, "client_assertion": {sign(t, c.key, c.claims)}})
		if c.ok {
			if code != 200 {
				t.Errorf("%s: %d %v", c.name, code, m)
			} else if in := w.active(t, m["access_token"].(string)); in["client_id"] != c.claims["iss"] {
				t.Errorf("%s: introspection %v", c.name, in)
			}
			continue
		}
		wantError(t, c.name, code, m, 401, "invalid_client")
	}
	code, m := w.post(t, "/token", "", url.Values{"grant_type": {"client_credentials"},
		"client_assertion_type": {"bearer"}, "client_assertion": {sign(t, ecKey, claims("ec-app", nil))}})
	wantError(t, "wrong assertion type", code, m, 400, "invalid_request")
	code, m = w.post(t, "/token", "", url.Values{"grant_type": {"client_credentials"}, "client_id": {"rsa-app"},
		"client_assertion_type": {assertionType}, "client_assertion": {sign(t, ecKey, claims("ec-app", nil))}})
	wantError(t, "client_id is not iss", code, m, 401, "invalid_client")
}
