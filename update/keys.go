package update

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Names of a signing key pair's files in its directory: base64 (standard
// encoding) of the 64-byte ed25519 private key and of the 32-byte public
// key, each on one line.
const (
	PrivateKeyFile = "bundle.key"
	PublicKeyFile  = "bundle.pub"
)

// GenerateKey makes a bundle signing key pair in dir (created 0700 if
// absent): bundle.key mode 0600, bundle.pub mode 0644. It refuses to
// overwrite either file: a lost private key cannot sign for the binaries
// that trust it.
func GenerateKey(dir string) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bundle keygen: %w", err)
	}
	keyPath, pubPath := filepath.Join(dir, PrivateKeyFile), filepath.Join(dir, PublicKeyFile)
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("bundle keygen: %s exists; not overwriting it", p)
		}
	}
	if err := writeNew(keyPath, base64.StdEncoding.EncodeToString(priv)+"\n", 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(pubPath, base64.StdEncoding.EncodeToString(pub)+"\n", 0o644); err != nil {
		os.Remove(keyPath) // a private key without its public half is no use
		return nil, err
	}
	return pub, nil
}

// writeNew creates path (never replacing one) with content, synced.
func writeNew(path, content string, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("bundle keygen: %w", err)
	}
	_, err = f.WriteString(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("bundle keygen: write %s: %w", path, err)
	}
	return nil
}

// ReadPrivateKey reads a bundle.key file.
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(raw) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%s: not a bundle signing key (base64 of a %d-byte ed25519 private key)", path, ed25519.PrivateKeySize)
	}
	return ed25519.PrivateKey(raw), nil
}

// ParsePublicKey decodes a public key as bundle.pub and the built-in key
// hold it: base64 (standard encoding) of 32 bytes.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, errors.New("not an ed25519 public key (base64 of 32 bytes)")
	}
	return ed25519.PublicKey(raw), nil
}

func encodeKey(k []byte) string { return base64.StdEncoding.EncodeToString(k) }
