// Package tlscert serves a TLS certificate from files an operator may
// replace while it runs, and makes a self-signed one on first boot when
// none is configured.
package tlscert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"

	"gatehouse/safeio"
)

// Store serves a certificate and picks up a replaced file without a
// restart: the files are checked at most every few seconds.
type Store struct {
	// ReadFile reads the certificate and key files (os.ReadFile when nil):
	// a process that runs as its own user explains a file it may not read.
	ReadFile func(name string) ([]byte, error)

	mu        sync.Mutex
	cert, key string
	mod       time.Time
	checked   time.Time
	current   *tls.Certificate
}

// EnsureSelfSigned writes a self-signed certificate for host to cert/key
// when neither exists (first boot without a configured certificate), and
// says whether it did.
func EnsureSelfSigned(cert, key, host string) (bool, error) {
	if _, err := os.Stat(cert); err == nil {
		return false, nil
	}
	pk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return false, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &pk.PublicKey, pk)
	if err != nil {
		return false, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(pk)
	if err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(cert), 0o700); err != nil {
		return false, err
	}
	if err := safeio.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return false, err
	}
	return true, safeio.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// loadKeyPair is tls.LoadX509KeyPair through ReadFile.
func (cs *Store) loadKeyPair(cert, key string) (tls.Certificate, error) {
	read := cs.ReadFile
	if read == nil {
		read = os.ReadFile
	}
	c, err := read(cert)
	if err != nil {
		return tls.Certificate{}, err
	}
	k, err := read(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(c, k)
}

// SetFiles serves the certificate in cert and its key in key from now on.
func (cs *Store) SetFiles(cert, key string) error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c, err := cs.loadKeyPair(cert, key)
	if err != nil {
		return fmt.Errorf("certificate %s / %s: %w", cert, key, err)
	}
	fi, _ := os.Stat(cert)
	cs.cert, cs.key, cs.current, cs.checked = cert, key, &c, time.Now()
	if fi != nil {
		cs.mod = fi.ModTime()
	}
	return nil
}

// Get returns the current certificate, reloading it when the file changed
// (tls.Config.GetCertificate). A broken new file keeps the old certificate
// in service.
func (cs *Store) Get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.current == nil {
		return nil, errors.New("no certificate")
	}
	if time.Since(cs.checked) > 5*time.Second {
		cs.checked = time.Now()
		if fi, err := os.Stat(cs.cert); err == nil && !fi.ModTime().Equal(cs.mod) {
			if c, err := cs.loadKeyPair(cs.cert, cs.key); err == nil {
				cs.current, cs.mod = &c, fi.ModTime()
			}
		}
	}
	return cs.current, nil
}
