package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// The cluster's own CA: made by `cluster init`, it signs each node's
// certificate when the node joins. Every connection between nodes is
// mutual TLS with these certificates, and a certificate is good only
// while its fingerprint belongs to a member (removal refuses it at once,
// with no revocation list to distribute).

// The lifetimes: a cluster CA outlives the appliances; a node certificate
// is renewed by joining again.
const (
	caLifetime   = 20 * 365 * 24 * time.Hour
	nodeLifetime = 10 * 365 * 24 * time.Hour
)

// newCA makes the cluster's CA certificate and key, PEM.
func newCA() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Gatehouse cluster CA", Organization: []string{"Gatehouse cluster"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), pemBlock("EC PRIVATE KEY", kder), nil
}

// newNodeKey makes a node's key, PEM, and its public key, DER, which the
// join request carries.
func newNodeKey() (keyPEM, pubDER []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("EC PRIVATE KEY", kder), pub, nil
}

// signNode issues a node's certificate: its name as the common name, its
// role as the organisational unit.
func signNode(caCertPEM, caKeyPEM, pubDER []byte, name, role string) ([]byte, error) {
	ca, caKey, err := parseCA(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, err
	}
	pub, err := x509.ParsePKIXPublicKey(pubDER)
	if err != nil {
		return nil, fmt.Errorf("the node's public key: %w", err)
	}
	if _, ok := pub.(*ecdsa.PublicKey); !ok {
		return nil, errors.New("the node's public key is not ECDSA")
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, OrganizationalUnit: []string{role}, Organization: []string{"Gatehouse cluster"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(nodeLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
	if err != nil {
		return nil, err
	}
	return pemBlock("CERTIFICATE", der), nil
}

func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster CA: %w", err)
	}
	b, _ := pem.Decode(keyPEM)
	if b == nil {
		return nil, nil, errors.New("cluster CA key: no PEM block")
	}
	key, err := x509.ParseECPrivateKey(b.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster CA key: %w", err)
	}
	return cert, key, nil
}

func parseCert(certPEM []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("no certificate PEM block")
	}
	return x509.ParseCertificate(b.Bytes)
}

// fingerprint is a certificate's SHA-256, hex: how the cluster names a
// certificate in its membership and in a join token.
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func randomSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// identity is a node's TLS identity: its key and certificate, with the CA
// that signed it.
type identity struct {
	cert   tls.Certificate
	ca     *x509.Certificate
	caPool *x509.CertPool
	name   string
	role   string // from the certificate: what the node joined as
	fp     string // the node certificate's fingerprint
}

func loadIdentity(certPEM, keyPEM, caPEM []byte) (*identity, error) {
	ca, err := parseCert(caPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	cert, err := tls.X509KeyPair(append(append([]byte{}, certPEM...), caPEM...), keyPEM)
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	role := ""
	if len(leaf.Subject.OrganizationalUnit) > 0 {
		role = leaf.Subject.OrganizationalUnit[0]
	}
	return &identity{cert: cert, ca: ca, caPool: pool, name: leaf.Subject.CommonName, role: role, fp: fingerprint(leaf.Raw)}, nil
}

// verifyChain checks that a peer's certificate was signed by the cluster
// CA, for client and server authentication alike; it returns the leaf.
func verifyChain(pool *x509.CertPool, rawCerts [][]byte) (*x509.Certificate, error) {
	if len(rawCerts) == 0 {
		return nil, errors.New("no certificate")
	}
	leaf, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return nil, err
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return nil, fmt.Errorf("not a certificate of this cluster: %w", err)
	}
	return leaf, nil
}
