// Package dkimsign signs outbound mail with DKIM (RFC 6376): the keys per
// sender domain (RSA of 2048 to 4096 bits, RFC 8301; or Ed25519, RFC
// 8463), which header fields a signature covers, and the DNS record an
// operator publishes for a key. The signing itself is go-msgauth's; this
// package decides what is signed, with which key, and refuses keys that
// are weak or that others can read.
package dkimsign

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// Key algorithms, as config names them and as DKIM's k= tag does.
const (
	RSA     = "rsa"
	Ed25519 = "ed25519"
)

// RSA key sizes: RFC 8301 has signers use at least 2048 bits (1024 is
// only what verifiers still accept), and verifiers need not check keys
// above 4096 bits, so a larger key could make mail fail verification.
const (
	MinRSABits = 2048
	MaxRSABits = 4096
)

// maxKeyFile bounds what LoadKey reads: a 4096-bit RSA key in PEM is
// about 3.3 KB; anything far larger is not a key.
const maxKeyFile = 64 << 10

// LoadKey reads a private key from a PEM file (PKCS #8, or PKCS #1 for
// RSA, as opendkim-genkey writes). It refuses a file that anyone but its
// owner may read or write, naming the mode: a DKIM key lets whoever holds
// it send mail as the domain, so it is treated like an SSH private key.
func LoadKey(path string) (crypto.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dkim key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat() // the file opened, not whatever the name points at by now
	if err != nil {
		return nil, fmt.Errorf("dkim key: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("dkim key %s: not a regular file (%v)", path, st.Mode().Type())
	}
	if perm := st.Mode().Perm(); perm&0o037 != 0 || perm&0o040 != 0 && !grantedToUs(st) {
		return nil, fmt.Errorf("dkim key %s: mode %#o lets group or others at the private key; chmod 600 it", path, perm)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("dkim key %s: %w", path, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("dkim key %s: larger than %d bytes: not a key file", path, maxKeyFile)
	}
	key, err := ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("dkim key %s: %w", path, err)
	}
	return key, nil
}

// ParseKey parses the first PEM block of data as a DKIM private key and
// checks it is one DKIM may use (see MinRSABits, MaxRSABits).
func ParseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block (want a PEM private key: PRIVATE KEY or RSA PRIVATE KEY)")
	}
	if _, encrypted := block.Headers["Proc-Type"]; encrypted {
		return nil, errors.New("the key is encrypted: the relay signs unattended, so it needs the key without a passphrase")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("the key is encrypted: the relay signs unattended, so it needs the key without a passphrase")
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key (want PRIVATE KEY or RSA PRIVATE KEY)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", block.Type, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if err := checkRSA(k.N.BitLen()); err != nil {
			return nil, err
		}
		k.Precompute() // once here, not on every signature
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("a %T key: DKIM signs with RSA or Ed25519 only", key)
	}
}

func checkRSA(bits int) error {
	switch {
	case bits < MinRSABits:
		return fmt.Errorf("RSA key of %d bits is too weak: DKIM keys must have at least %d (RFC 8301); generate a new one with `gatehouse dkim keygen`", bits, MinRSABits)
	case bits > MaxRSABits:
		return fmt.Errorf("RSA key of %d bits: verifiers need not check keys above %d bits (RFC 8301), so mail signed with it may fail", bits, MaxRSABits)
	}
	return nil
}

// Algorithm is the DKIM key type (RSA or Ed25519) of key's public half,
// or "" for a type DKIM does not know.
func Algorithm(pub crypto.PublicKey) string {
	switch pub.(type) {
	case *rsa.PublicKey:
		return RSA
	case ed25519.PublicKey:
		return Ed25519
	}
	return ""
}

// grantedToUs says whether a group-readable key is root's, readable by our
// group alone: how PID 1 grants the relay (which runs as its own user and
// group) the files its config names.
func grantedToUs(st os.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && sys.Uid == 0 && int(sys.Gid) == os.Getegid() && os.Getegid() != 0
}
