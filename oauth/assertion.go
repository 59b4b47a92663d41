package oauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// assertionType is RFC 7523's client_assertion_type.
const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// signer holds a client certificate and its key, read once.
type signer struct {
	key          crypto.Signer
	alg          string // RS256 or ES256
	x5t, x5tS256 string
}

// newSigner reads the PEM certificate (its first CERTIFICATE block) and
// key (PKCS #8, PKCS #1 or SEC 1) and checks that they belong together.
func newSigner(certPEM, keyPEM []byte) (*signer, error) {
	var der []byte
	for rest := certPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			der = b.Bytes
			break
		}
	}
	if der == nil {
		return nil, errors.New("client_certificate: no PEM certificate in it")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("client_certificate: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("client_key: %w", err)
	}
	s := &signer{key: key}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		s.alg = "RS256"
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("client_key: an EC key must be on P-256 (ES256)")
		}
		s.alg = "ES256"
	default:
		return nil, fmt.Errorf("client_key: %T keys cannot sign RS256 or ES256", key)
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, errors.New("client_key does not belong to client_certificate")
	}
	h1 := sha1.Sum(der)
	h256 := sha256.Sum256(der)
	s.x5t = b64(h1[:])
	s.x5tS256 = b64(h256[:])
	return s, nil
}

func parseKey(keyPEM []byte) (crypto.Signer, error) {
	for rest := keyPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no PEM private key in it")
		}
		var k any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%T is not a signing key", k)
		}
		return s, nil
	}
}

// assertion is a fresh client assertion (RFC 7523 2.2; Microsoft's
// certificate credentials): a JWT for the token endpoint aud, issued by and
// about the client, valid 10 minutes.
func (s *signer) assertion(clientID, aud string, now time.Time) (string, error) {
	jti := make([]byte, 16)
	rand.Read(jti)
	header, err := json.Marshal(map[string]string{"alg": s.alg, "typ": "JWT", "x5t": s.x5t, "x5t#S256": s.x5tS256})
	if err != nil {
		return "", err
	}
	claims, err := json.Marshal(struct {
		Aud string `json:"aud"`
		Iss string `json:"iss"`
		Sub string `json:"sub"`
		Jti string `json:"jti"`
		Nbf int64  `json:"nbf"`
		Iat int64  `json:"iat"`
		Exp int64  `json:"exp"`
	}{aud, clientID, clientID, hex.EncodeToString(jti), now.Unix(), now.Unix(), now.Add(10 * time.Minute).Unix()})
	if err != nil {
		return "", err
	}
	input := b64(header) + "." + b64(claims)
	h := sha256.Sum256([]byte(input))
	var sig []byte
	switch k := s.key.(type) {
	case *rsa.PrivateKey:
		sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, h[:])
	case *ecdsa.PrivateKey:
		// JWS (RFC 7518 3.4): r and s, 32 bytes each, not ASN.1.
		var r, ss *big.Int
		r, ss, err = ecdsa.Sign(rand.Reader, k, h[:])
		if err == nil {
			sig = make([]byte, 64)
			r.FillBytes(sig[:32])
			ss.FillBytes(sig[32:])
		}
	}
	if err != nil {
		return "", fmt.Errorf("sign the client assertion: %w", err)
	}
	return input + "." + b64(sig), nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
