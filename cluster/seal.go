package cluster

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
)

// The cluster key encrypts what the cluster keeps on disk: every entry of
// the Raft log and every snapshot, and with them the config, its secret
// files and the SMTP users' hashes. A copy of raft.db or of a snapshot
// reveals nothing without the key, which each node keeps apart
// (cluster/cluster.key, mode 0600) and receives only over mutual TLS when
// it joins.

const keySize = 32 // AES-256

// sealer encrypts with AES-256-GCM; a sealed message is the nonce
// followed by the ciphertext.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	if len(key) != keySize {
		return nil, errors.New("the cluster key is not 32 bytes")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead}, nil
}

func (s *sealer) seal(plain []byte) []byte {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return s.aead.Seal(nonce, nonce, plain, nil)
}

func (s *sealer) open(sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("sealed message too short")
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], nil)
	if err != nil {
		return nil, errors.New("cannot decrypt with the cluster key (a different cluster's data?)")
	}
	return plain, nil
}
