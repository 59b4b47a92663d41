package oauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/config"
)

// endpoint is a fake token endpoint: answer decides each response from the
// request's form; it counts the requests and keeps their forms.
type endpoint struct {
	srv    *httptest.Server
	mu     sync.Mutex
	forms  []map[string]string
	answer func(form map[string]string) (status int, body string)
}

func newEndpoint(t *testing.T, answer func(map[string]string) (int, string)) *endpoint {
	e := &endpoint{answer: answer}
	e.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		form := map[string]string{"path": r.URL.Path}
		for k := range r.PostForm {
			form[k] = r.PostForm.Get(k)
		}
		e.mu.Lock()
		e.forms = append(e.forms, form)
		e.mu.Unlock()
		status, body := e.answer(form)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *endpoint) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.forms)
}

func (e *endpoint) last() map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.forms[len(e.forms)-1]
}

// clock is the sources' injectable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// newSource is a source on the fake endpoint with a fake clock.
func newSource(t *testing.T, e *endpoint, name string, c *config.OAuth2) (*Source, *clock) {
	t.Helper()
	c.TokenURL = e.srv.URL + "/token"
	s := New(name, c, t.TempDir(), os.ReadFile, e.srv.Client())
	clk := &clock{t: time.Now()}
	s.now = clk.Now
	return s, clk
}

func token(t *testing.T, s *Source) string {
	t.Helper()
	tok, err := s.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestClientSecret(t *testing.T) {
	dir := t.TempDir()
	e := newEndpoint(t, func(f map[string]string) (int, string) {
		if f["grant_type"] != "client_credentials" || f["client_id"] != "app" || f["client_secret"] != "s3cret" || f["scope"] != "https://outlook.office365.com/.default x" {
			return 401, `{"error":"invalid_client","error_description":"wrong form"}`
		}
		return 200, `{"access_token":"AT1","token_type":"Bearer","expires_in":3600}`
	})
	s, clk := newSource(t, e, "connector:m365", &config.OAuth2{ClientID: "app",
		ClientSecretFile: writeFile(t, dir, "secret", "  s3cret\n"), Scopes: []string{"https://outlook.office365.com/.default", "x"}})
	if got := token(t, s); got != "AT1" {
		t.Fatalf("token %q, want AT1", got)
	}
	st := s.Status()
	if !st.Fetched.Equal(clk.Now()) || st.Expires.Sub(clk.Now()) != time.Hour || st.LastError != "" {
		t.Errorf("status %+v", st)
	}
}

func TestEndpointErrorNamesNoSecret(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("d", 1000)
	e := newEndpoint(t, func(map[string]string) (int, string) {
		return 401, `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. ` + long + `"}`
	})
	s, _ := newSource(t, e, "connector:m365", &config.OAuth2{ClientID: "app", ClientSecretFile: writeFile(t, dir, "secret", "s3cret")})
	_, err := s.Token(t.Context())
	want := "oauth2: connector:m365: token endpoint 127.0.0.1: invalid_client: AADSTS7000215: Invalid client secret provided. ddd"
	if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error %v, want one starting %q without the secret", err, want)
	}
	if reason := strings.TrimPrefix(err.Error(), "oauth2: connector:m365: token endpoint 127.0.0.1: "); len(reason) > 300 {
		t.Errorf("reason of %d bytes, want at most 300", len(reason))
	}
	if s.Status().LastError != err.Error() {
		t.Errorf("status error %q", s.Status().LastError)
	}
}

// certificate makes a self-signed certificate for key, and its PEM files.
func certificate(t *testing.T, dir string, key crypto.Signer) (der []byte, certFile, keyFile string) {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gatehouse"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = writeFile(t, dir, "cert.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	keyFile = writeFile(t, dir, "key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})))
	return der, certFile, keyFile
}

// checkAssertion verifies a client assertion as Microsoft's endpoint does,
// with the certificate's public key.
func checkAssertion(jwt string, der []byte, aud string) error {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return fmt.Errorf("%d parts", len(parts))
	}
	dec := func(s string) []byte { b, _ := base64.RawURLEncoding.DecodeString(s); return b }
	var h map[string]string
	if err := json.Unmarshal(dec(parts[0]), &h); err != nil {
		return err
	}
	h1, h256 := sha1.Sum(der), sha256.Sum256(der)
	if h["typ"] != "JWT" || h["x5t"] != base64.RawURLEncoding.EncodeToString(h1[:]) || h["x5t#S256"] != base64.RawURLEncoding.EncodeToString(h256[:]) {
		return fmt.Errorf("header %v", h)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	sig := dec(parts[2])
	switch pub := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		if h["alg"] != "RS256" {
			return fmt.Errorf("alg %s for RSA", h["alg"])
		}
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
			return err
		}
	case *ecdsa.PublicKey:
		if h["alg"] != "ES256" || len(sig) != 64 {
			return fmt.Errorf("alg %s, signature of %d bytes", h["alg"], len(sig))
		}
		if !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			return fmt.Errorf("ES256 signature does not verify")
		}
	}
	var c struct {
		Aud, Iss, Sub, Jti string
		Nbf, Iat, Exp      int64
	}
	if err := json.Unmarshal(dec(parts[1]), &c); err != nil {
		return err
	}
	now := time.Now().Unix()
	if c.Aud != aud || c.Iss != "app" || c.Sub != "app" || c.Jti == "" || c.Nbf > now+5 || c.Iat > now+5 ||
		c.Exp < now+9*60 || c.Exp > now+11*60 {
		return fmt.Errorf("claims %+v", c)
	}
	return nil
}

func TestClientCertificate(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []crypto.Signer{rsaKey, ecKey} {
		t.Run(fmt.Sprintf("%T", key), func(t *testing.T) {
			der, certFile, keyFile := certificate(t, t.TempDir(), key)
			var aud string
			e := newEndpoint(t, func(f map[string]string) (int, string) {
				if f["grant_type"] != "client_credentials" || f["client_id"] != "app" || f["client_secret"] != "" ||
					f["client_assertion_type"] != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
					return 400, `{"error":"invalid_request"}`
				}
				if err := checkAssertion(f["client_assertion"], der, aud); err != nil {
					return 401, fmt.Sprintf(`{"error":"invalid_client","error_description":%q}`, err.Error())
				}
				return 200, `{"access_token":"AT","token_type":"Bearer","expires_in":3599}`
			})
			aud = e.srv.URL + "/token"
			s, _ := newSource(t, e, "connector:m365", &config.OAuth2{ClientID: "app", ClientCertificate: certFile, ClientKey: keyFile})
			token(t, s)
			s.Invalidate(s.token)
			token(t, s)
			if a, b := e.forms[0]["client_assertion"], e.forms[1]["client_assertion"]; a == b {
				t.Error("the same client assertion twice; want a fresh one per fetch")
			}
		})
	}
}

func TestCertificateKeyMismatch(t *testing.T) {
	dir := t.TempDir()
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, certFile, _ := certificate(t, dir, k1)
	pk, _ := x509.MarshalECPrivateKey(k2)
	keyFile := writeFile(t, dir, "other.pem", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: pk})))
	e := newEndpoint(t, func(map[string]string) (int, string) { return 200, `{"access_token":"AT"}` })
	s, _ := newSource(t, e, "connector:m365", &config.OAuth2{ClientID: "app", ClientCertificate: certFile, ClientKey: keyFile})
	if _, err := s.Token(t.Context()); err == nil || !strings.Contains(err.Error(), "client_key does not belong to client_certificate") || e.count() != 0 {
		t.Fatalf("error %v after %d requests", err, e.count())
	}
}

func TestRefreshRotation(t *testing.T) {
	dir := t.TempDir()
	cfgFile := writeFile(t, dir, "refresh", "RT1\n")
	old := time.Now().Add(-time.Hour)
	os.Chtimes(cfgFile, old, old)
	e := newEndpoint(t, func(f map[string]string) (int, string) {
		if f["grant_type"] != "refresh_token" || f["client_id"] != "app" || f["scope"] != "https://mail.google.com/" || f["client_secret"] != "gs" {
			return 400, `{"error":"invalid_request"}`
		}
		switch f["refresh_token"] {
		case "RT1":
			return 200, `{"access_token":"AT1","expires_in":3600,"refresh_token":"RT2"}`
		case "RT2":
			return 200, `{"access_token":"AT2","expires_in":3600}`
		case "RT3":
			return 200, `{"access_token":"AT3","expires_in":3600,"refresh_token":"RT3"}`
		}
		return 400, `{"error":"invalid_grant"}`
	})
	s, _ := newSource(t, e, "fetch:gmail/x", &config.OAuth2{ClientID: "app", RefreshTokenFile: cfgFile,
		ClientSecretFile: writeFile(t, dir, "secret", "gs"), Scopes: []string{"https://mail.google.com/"}})
	if got := token(t, s); got != "AT1" {
		t.Fatalf("token %q, want AT1", got)
	}
	rot := filepath.Join(s.dir, "fetch_3agmail_2fx.refresh") // "fetch:gmail/x", escaped
	if b, err := os.ReadFile(rot); err != nil || !strings.HasPrefix(string(b), "RT2\n") {
		t.Fatalf("rotated file: %q, %v", b, err)
	}
	if st, _ := os.Stat(rot); st.Mode().Perm() != 0o600 {
		t.Errorf("rotated file mode %v", st.Mode())
	}
	// The operator's file is as it was when RT2 came: RT2 is used.
	s.Invalidate(s.token)
	if got := token(t, s); got != "AT2" || e.last()["refresh_token"] != "RT2" {
		t.Fatalf("token %q with %q, want AT2 with RT2", got, e.last()["refresh_token"])
	}
	// The operator's file rewritten with the same old token (a restore,
	// a config sync) changes nothing: RT1 was rotated away.
	os.Chtimes(cfgFile, time.Now().Add(time.Minute), time.Now().Add(time.Minute))
	s.Invalidate(s.token)
	if got := token(t, s); got != "AT2" || e.last()["refresh_token"] != "RT2" {
		t.Fatalf("after a restore: token %q with %q, want AT2 with RT2", got, e.last()["refresh_token"])
	}
	// A new sign-in writes the operator's file: its content changed, it
	// wins; the same refresh token in the answer is no rotation.
	writeFile(t, dir, "refresh", "RT3")
	future := time.Now().Add(time.Hour)
	os.Chtimes(cfgFile, future, future)
	s.Invalidate(s.token)
	if got := token(t, s); got != "AT3" || e.last()["refresh_token"] != "RT3" {
		t.Fatalf("token %q with %q, want AT3 with RT3", got, e.last()["refresh_token"])
	}
	if b, _ := os.ReadFile(rot); !strings.HasPrefix(string(b), "RT2\n") {
		t.Errorf("rotated file %q rewritten without a rotation", b)
	}
}

func TestInvalidGrant(t *testing.T) {
	dir := t.TempDir()
	e := newEndpoint(t, func(map[string]string) (int, string) {
		return 400, `{"error":"invalid_grant","error_description":"AADSTS70008: The refresh token has expired."}`
	})
	s, _ := newSource(t, e, "fetch:o365", &config.OAuth2{ClientID: "app", RefreshTokenFile: writeFile(t, dir, "refresh", "RT-secret")})
	_, err := s.Token(t.Context())
	want := "oauth2: fetch:o365: token endpoint 127.0.0.1: the refresh token was refused (invalid_grant: AADSTS70008: The refresh token has expired.): sign in again with gatehouse fetch oauth2-login o365"
	if err == nil || err.Error() != want {
		t.Fatalf("error\n%v\nwant\n%s", err, want)
	}
	if e.count() != 1 {
		t.Errorf("%d requests, want 1 (no retry in another auth style)", e.count())
	}
}

func TestCacheAndMargin(t *testing.T) {
	for _, tc := range []struct {
		name      string
		expiresIn string // "" leaves it out: an hour
		renewAt   time.Duration
	}{
		{"hour", `,"expires_in":3600`, 55 * time.Minute},
		{"ten minutes", `,"expires_in":600`, 450 * time.Second},
		{"none", ``, 55 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			e := newEndpoint(t, func(map[string]string) (int, string) {
				n++
				return 200, fmt.Sprintf(`{"access_token":"AT%d"%s}`, n, tc.expiresIn)
			})
			s, clk := newSource(t, e, "fetch:o365", &config.OAuth2{ClientID: "app", ClientSecretFile: writeFile(t, t.TempDir(), "s", "x")})
			for range 10 {
				token(t, s)
			}
			clk.add(tc.renewAt - time.Second)
			if got := token(t, s); got != "AT1" || e.count() != 1 {
				t.Fatalf("before the margin: %q after %d fetches, want AT1 after 1", got, e.count())
			}
			clk.add(time.Second)
			if got := token(t, s); got != "AT2" || e.count() != 2 {
				t.Fatalf("within the margin: %q after %d fetches, want AT2 after 2", got, e.count())
			}
		})
	}
}

func TestEarlyRenewalFailureKeepsToken(t *testing.T) {
	fail := false
	var mu sync.Mutex
	e := newEndpoint(t, func(map[string]string) (int, string) {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return 503, `{"error":"temporarily_unavailable"}`
		}
		return 200, `{"access_token":"AT","expires_in":3600}`
	})
	s, clk := newSource(t, e, "fetch:o365", &config.OAuth2{ClientID: "app", ClientSecretFile: writeFile(t, t.TempDir(), "s", "x")})
	token(t, s)
	mu.Lock()
	fail = true
	mu.Unlock()
	clk.add(56 * time.Minute)
	if got := token(t, s); got != "AT" || s.Status().LastError == "" {
		t.Fatalf("within the margin, the endpoint failing: %q, status %+v; want the current token and the error", got, s.Status())
	}
	if token(t, s); e.count() != 2 {
		t.Errorf("%d fetches; want no new one until a minute later", e.count())
	}
	clk.add(5 * time.Minute)
	if _, err := s.Token(t.Context()); err == nil || !strings.Contains(err.Error(), "temporarily_unavailable") {
		t.Fatalf("expired: error %v", err)
	}
}

func TestConcurrentShareOneFetch(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	e := newEndpoint(t, func(map[string]string) (int, string) {
		once.Do(func() { close(arrived) })
		<-release
		return 200, `{"access_token":"AT","expires_in":3600}`
	})
	s, _ := newSource(t, e, "fetch:o365", &config.OAuth2{ClientID: "app", ClientSecretFile: writeFile(t, t.TempDir(), "s", "x")})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			tok, err := s.Token(t.Context())
			if err == nil && tok != "AT" {
				err = fmt.Errorf("token %q", tok)
			}
			errs <- err
		})
	}
	<-arrived
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if e.count() != 1 {
		t.Errorf("%d fetches, want 1", e.count())
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	release := make(chan struct{})
	e := newEndpoint(t, func(map[string]string) (int, string) {
		<-release
		return 200, `{"access_token":"AT","expires_in":3600}`
	})
	defer close(release)
	s, _ := newSource(t, e, "fetch:o365", &config.OAuth2{ClientID: "app", ClientSecretFile: writeFile(t, t.TempDir(), "s", "x")})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Token(ctx); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("error %v", err)
	}
}

func TestInvalidate(t *testing.T) {
	n := 0
	e := newEndpoint(t, func(map[string]string) (int, string) {
		n++
		return 200, fmt.Sprintf(`{"access_token":"AT%d","expires_in":3600}`, n)
	})
	s, _ := newSource(t, e, "fetch:o365", &config.OAuth2{ClientID: "app", ClientSecretFile: writeFile(t, t.TempDir(), "s", "x")})
	token(t, s)
	s.Invalidate("a token fetched before")
	if got := token(t, s); got != "AT1" {
		t.Fatalf("after invalidating another token: %q, want AT1 kept", got)
	}
	s.Invalidate("AT1")
	if got := token(t, s); got != "AT2" {
		t.Fatalf("after Invalidate: %q, want AT2", got)
	}
	if got := token(t, s); got != "AT2" || e.count() != 2 {
		t.Fatalf("%q after %d fetches", got, e.count())
	}
}

func TestBodyOver1MiB(t *testing.T) {
	e := newEndpoint(t, func(map[string]string) (int, string) {
		return 200, `{"access_token":"AT","expires_in":3600,"pad":"` + strings.Repeat("x", 1<<20) + `"}`
	})
	s, _ := newSource(t, e, "fetch:o365", &config.OAuth2{ClientID: "app", ClientSecretFile: writeFile(t, t.TempDir(), "s", "x")})
	if _, err := s.Token(t.Context()); err == nil || !strings.Contains(err.Error(), "over 1 MiB") {
		t.Fatalf("error %v", err)
	}
}

func TestNewClient(t *testing.T) {
	e := newEndpoint(t, func(map[string]string) (int, string) { return 200, `{"access_token":"AT"}` })
	dir := t.TempDir()
	ca := writeFile(t, dir, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.srv.Certificate().Raw})))
	c := &config.OAuth2{ClientID: "app", ClientSecretFile: writeFile(t, dir, "s", "x"), TokenURL: e.srv.URL + "/token", CAFile: ca}
	if got := token(t, New("fetch:o365", c, dir, os.ReadFile, nil)); got != "AT" {
		t.Fatalf("token %q", got)
	}
	// Without the CA the test server is not trusted.
	c.CAFile = ""
	if _, err := New("fetch:o365", c, dir, os.ReadFile, nil).Token(t.Context()); err == nil {
		t.Fatal("an unknown CA trusted")
	}
	// A redirect to another host is not followed.
	other := httptest.NewTLSServer(http.RedirectHandler(e.srv.URL+"/token", http.StatusTemporaryRedirect))
	defer other.Close()
	client, err := NewClient(&config.OAuth2{CAFile: ca}, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	client.Transport.(limitBody).next.(*http.Transport).TLSClientConfig.RootCAs.AddCert(other.Certificate())
	if _, err := client.Get(other.URL); err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Fatalf("redirect to another host: %v", err)
	}
}

func TestRefreshWithCertificate(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, certFile, keyFile := certificate(t, dir, key)
	var aud string
	e := newEndpoint(t, func(f map[string]string) (int, string) {
		if f["grant_type"] != "refresh_token" || f["refresh_token"] != "RT" {
			return 400, `{"error":"invalid_request"}`
		}
		if err := checkAssertion(f["client_assertion"], der, aud); err != nil {
			return 401, `{"error":"invalid_client"}`
		}
		return 200, `{"access_token":"AT","expires_in":3600}`
	})
	aud = e.srv.URL + "/token"
	s, _ := newSource(t, e, "fetch:o365", &config.OAuth2{ClientID: "app", ClientCertificate: certFile, ClientKey: keyFile,
		RefreshTokenFile: writeFile(t, dir, "refresh", "RT")})
	if got := token(t, s); got != "AT" {
		t.Fatalf("token %q", got)
	}
}

func TestRotationUnsaved(t *testing.T) {
	dir := t.TempDir()
	e := newEndpoint(t, func(f map[string]string) (int, string) {
		switch f["refresh_token"] {
		case "RT1":
			return 200, `{"access_token":"AT1","expires_in":3600,"refresh_token":"RT2"}`
		case "RT2":
			return 200, `{"access_token":"AT2","expires_in":3600}`
		}
		return 400, `{"error":"invalid_grant"}`
	})
	cfgFile := writeFile(t, dir, "refresh", "RT1")
	old := time.Now().Add(-time.Hour)
	os.Chtimes(cfgFile, old, old)
	s, _ := newSource(t, e, "fetch:o365", &config.OAuth2{ClientID: "app", RefreshTokenFile: cfgFile})
	s.dir = filepath.Join(dir, "missing") // WriteToken fails
	if got := token(t, s); got != "AT1" || !strings.Contains(s.Status().LastError, "could not be saved") {
		t.Fatalf("token %q, status %+v", got, s.Status())
	}
	s.Invalidate(s.token)
	if got := token(t, s); got != "AT2" || s.Status().LastError != "" {
		t.Fatalf("with the rotated token kept in memory: %q, status %+v", got, s.Status())
	}
}
