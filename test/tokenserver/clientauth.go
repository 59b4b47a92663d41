package tokenserver

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// authenticate finds the client of a token or device request: by HTTP
// Basic (client_secret_basic), by client_id and client_secret in the form
// (client_secret_post), by a signed JWT (RFC 7523 2.2), or, for a public
// client, by client_id alone. A request may use only one method (RFC 6749
// 2.3).
func (s *Server) authenticate(r *http.Request) (*client, *oauthError) {
	id, secret, basic := r.BasicAuth()
	form := r.PostForm
	assertion := form.Get("client_assertion")
	methods := 0
	for _, used := range []bool{basic, form.Has("client_secret"), assertion != ""} {
		if used {
			methods++
		}
	}
	if methods > 1 {
		return nil, &oauthError{http.StatusBadRequest, "invalid_request", "more than one client authentication method"}
	}
	switch {
	case basic:
		// RFC 6749 2.3.1: both are form-urlencoded before Basic encoding.
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return nil, invalidClient("the Basic credentials are not form-urlencoded")
		}
		return s.bySecret(id, secret)
	case form.Has("client_secret"):
		return s.bySecret(form.Get("client_id"), form.Get("client_secret"))
	case assertion != "":
		if t := form.Get("client_assertion_type"); t != assertionType {
			return nil, &oauthError{http.StatusBadRequest, "invalid_request", "client_assertion_type must be " + assertionType}
		}
		c, err := s.byAssertion(assertion, endpoint(r, r.URL.Path))
		if err != nil {
			return nil, invalidClient(err.Error())
		}
		if id := form.Get("client_id"); id != "" && id != c.id {
			return nil, invalidClient("client_id and the assertion's iss differ")
		}
		return c, nil
	}
	s.mu.Lock()
	c := s.clients[form.Get("client_id")]
	s.mu.Unlock()
	if c == nil || c.secret != "" || c.cert != nil {
		return nil, invalidClient("no client authentication")
	}
	return c, nil
}

func invalidClient(why string) *oauthError {
	return &oauthError{http.StatusUnauthorized, "invalid_client", why}
}

func (s *Server) bySecret(id, secret string) (*client, *oauthError) {
	s.mu.Lock()
	c := s.clients[id]
	s.mu.Unlock()
	if c == nil || c.secret == "" || subtle.ConstantTimeCompare([]byte(c.secret), []byte(secret)) != 1 {
		return nil, invalidClient("unknown client or wrong secret")
	}
	return c, nil
}

// byAssertion verifies a client assertion: signed with the key of the
// client's certificate (RS256 or ES256), iss = sub = client_id, aud the
// token endpoint's URL, exp in the future.
func (s *Server) byAssertion(jwt, aud string) (*client, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return nil, errors.New("the client assertion is not a JWT")
	}
	var header struct{ Alg string }
	var claims struct {
		Iss, Sub string
		Aud      audience
		Exp      int64
	}
	if err := decodePart(parts[0], &header); err != nil {
		return nil, fmt.Errorf("assertion header: %w", err)
	}
	if err := decodePart(parts[1], &claims); err != nil {
		return nil, fmt.Errorf("assertion claims: %w", err)
	}
	s.mu.Lock()
	c := s.clients[claims.Iss]
	now := s.now()
	s.mu.Unlock()
	switch {
	case c == nil || c.cert == nil:
		return nil, fmt.Errorf("no client %q with a certificate", claims.Iss)
	case claims.Sub != claims.Iss:
		return nil, errors.New("the assertion's sub is not its iss")
	case !claims.Aud.has(aud):
		return nil, fmt.Errorf("the assertion's aud is not %s", aud)
	case claims.Exp == 0 || !now.Before(time.Unix(claims.Exp, 0)):
		return nil, errors.New("the assertion has expired (or has no exp)")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, errors.New("the assertion's signature is not base64url")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	switch k := c.cert.(type) {
	case *rsa.PublicKey:
		if header.Alg != "RS256" || rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) != nil {
			return nil, errors.New("the assertion's RS256 signature does not verify")
		}
	case *ecdsa.PublicKey:
		// JWS (RFC 7518 3.4): r and s, 32 bytes each, not ASN.1.
		if header.Alg != "ES256" || len(sig) != 64 ||
			!ecdsa.Verify(k, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			return nil, errors.New("the assertion's ES256 signature does not verify")
		}
	default:
		return nil, fmt.Errorf("the client's key is a %T", k)
	}
	return c, nil
}

func decodePart(part string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// audience is a JWT's aud: one string or an array of them.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*a = audience{one}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(a))
}

func (a audience) has(s string) bool {
	for _, x := range a {
		if x == s {
			return true
		}
	}
	return false
}

// publicKey reads the first certificate in certPEM.
func publicKey(certPEM []byte) (any, error) {
	for {
		var b *pem.Block
		b, certPEM = pem.Decode(certPEM)
		if b == nil {
			return nil, errors.New("no CERTIFICATE block")
		}
		if b.Type == "CERTIFICATE" {
			cert, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, err
			}
			return cert.PublicKey, nil
		}
	}
}
