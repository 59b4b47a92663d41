package dkimsign

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"gatehouse/safeio"
)

// KeygenRSABits is the size of the RSA keys Keygen makes: RFC 8301's
// minimum, which every verifier handles, and whose record (about 410
// bytes) a resolver gets in one small answer.
const KeygenRSABits = 2048

// maxTXTString is the longest character-string a TXT record holds (RFC
// 1035 §3.3); a longer value is split, and verifiers join the parts (RFC
// 6376 §3.6.2.2).
const maxTXTString = 255

// KeyFile is the name Keygen gives the key of domain and selector.
func KeyFile(domain, selector string) string {
	return normalize(domain) + "." + normalize(selector) + ".key"
}

// Keygen makes a new key of algo (RSA or Ed25519; "" is RSA, which every
// verifier knows) for domain and selector, writes it into dir (made mode
// 0700 if missing) as KeyFile(domain, selector), mode 0600, and returns
// its path and the DNS record to publish (see Record). It never replaces
// an existing key: mail signed with it may still be in transit. Run as
// root in a directory someone else owns (the relay's, on the appliance),
// the key is given to the directory's owner, who signs with it.
func Keygen(domain, selector, algo, dir string) (keyPath, txtRecord string, err error) {
	domain, selector = normalize(domain), normalize(selector)
	if err := checkName(domain); err != nil {
		return "", "", fmt.Errorf("dkim keygen: domain %q: %w", domain, err)
	}
	if err := checkName(selector); err != nil {
		return "", "", fmt.Errorf("dkim keygen: selector %q: %w", selector, err)
	}
	var key crypto.Signer
	switch algo {
	case RSA, "":
		key, err = rsa.GenerateKey(rand.Reader, KeygenRSABits)
	case Ed25519:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		return "", "", fmt.Errorf("dkim keygen: key type %q: want %s or %s", algo, RSA, Ed25519)
	}
	if err != nil {
		return "", "", fmt.Errorf("dkim keygen: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("dkim keygen: %w", err)
	}
	txtRecord, err = Record(domain, selector, key.Public())
	if err != nil {
		return "", "", fmt.Errorf("dkim keygen: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("dkim keygen: %w", err)
	}
	keyPath = filepath.Join(dir, KeyFile(domain, selector))
	// Claim the name first (O_EXCL): of two keygens for one selector only
	// one gets it, and an existing key is never replaced. safeio then
	// replaces the empty claim whole; on a failure the claim goes again.
	claim, err := os.OpenFile(keyPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return "", "", fmt.Errorf("dkim keygen: %s exists: a key is never replaced (mail signed with it may be in transit); choose a new selector, publish its record, then switch", keyPath)
	}
	if err != nil {
		return "", "", fmt.Errorf("dkim keygen: %w", err)
	}
	claim.Close()
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := safeio.WriteFile(keyPath, pemKey, 0o600); err != nil {
		os.Remove(keyPath)
		return "", "", fmt.Errorf("dkim keygen: %w", err)
	}
	if err := giveToDirOwner(keyPath, dir); err != nil {
		return "", "", fmt.Errorf("dkim keygen: %w", err)
	}
	return keyPath, txtRecord, nil
}

// giveToDirOwner chowns path to the owner of dir when root made it in a
// directory that is not root's: root's 0600 file would be no use to the
// service that owns the directory and reads it.
func giveToDirOwner(path, dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || sys.Uid == 0 && sys.Gid == 0 {
		return nil
	}
	return os.Lchown(path, int(sys.Uid), int(sys.Gid))
}

// Record is the DNS TXT record, in zone file syntax, that publishes pub
// for domain and selector (RFC 6376 §3.6.1; RFC 8463 for Ed25519):
//
//	sel._domainkey.example.com. IN TXT "v=DKIM1; k=rsa; p=MIIBIjAN..." "..."
//
// The value is split into strings of at most 255 bytes, as a TXT record
// must be; verifiers join them.
func Record(domain, selector string, pub crypto.PublicKey) (string, error) {
	var k, p string
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", err
		}
		k, p = RSA, base64.StdEncoding.EncodeToString(der)
	case ed25519.PublicKey:
		// RFC 8463 §4: the bare 32-byte key, not a SubjectPublicKeyInfo.
		k, p = Ed25519, base64.StdEncoding.EncodeToString(pub)
	default:
		return "", fmt.Errorf("a %T key: DKIM publishes RSA or Ed25519 keys only", pub)
	}
	value := "v=DKIM1; k=" + k + "; p=" + p
	var b strings.Builder
	b.WriteString(normalize(selector) + "._domainkey." + normalize(domain) + ". IN TXT")
	for len(value) > 0 {
		n := min(len(value), maxTXTString)
		// Nothing in the value needs quoting: base64, letters, "=; ".
		b.WriteString(` "` + value[:n] + `"`)
		value = value[n:]
	}
	return b.String(), nil
}
