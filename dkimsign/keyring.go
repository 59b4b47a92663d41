package dkimsign

import (
	"fmt"
	"strings"
)

// Config is one signing key as config names it; the config package maps
// its section onto these.
type Config struct {
	Domain    string   // the signing domain (d=), and the From domain it signs for
	Selector  string   // s=: the key's name in DNS, <selector>._domainkey.<domain>
	KeyFile   string   // the PEM private key, mode 0600 (LoadKey)
	Algorithm string   // rsa or ed25519: checked against the key; "" takes the key's
	Headers   []string // the header fields signed; nil: DefaultHeaders
	// Subdomains: also sign mail whose From domain is below Domain (with
	// d=Domain, which DMARC's relaxed alignment accepts) unless a more
	// specific entry has it.
	Subdomains bool
}

// A Keyring holds the signers of every configured domain and picks those
// for a message's From domain. It is built once (at start and on a
// config reload) and then only read: safe for concurrent use.
type Keyring struct {
	byDomain map[string][]*Signer
	sub      map[string]bool // domains whose entries sign for subdomains
}

// NewKeyring loads every key that configs name. A domain may have
// several entries (an RSA and an Ed25519 key, each with its own
// selector): a message is signed with each. Errors name the entry.
func NewKeyring(configs []Config) (*Keyring, error) {
	k := &Keyring{byDomain: map[string][]*Signer{}, sub: map[string]bool{}}
	for i, c := range configs {
		if err := k.Add(c); err != nil {
			return nil, fmt.Errorf("dkim[%d] (%s): %w", i, c.Domain, err)
		}
	}
	return k, nil
}

// Add loads the key of one entry into k; an entry it refuses (a key that
// does not load, a selector given twice, subdomains that differ between a
// domain's keys) leaves k as it was, so that the relay signs with the
// others.
func (k *Keyring) Add(c Config) error {
	if k.byDomain == nil {
		k.byDomain, k.sub = map[string][]*Signer{}, map[string]bool{}
	}
	key, err := LoadKey(c.KeyFile)
	if err != nil {
		return err
	}
	switch got := Algorithm(key.Public()); c.Algorithm {
	case "", got:
	case RSA, Ed25519:
		return fmt.Errorf("algorithm is %s, but %s holds a %s key", c.Algorithm, c.KeyFile, got)
	default:
		return fmt.Errorf("algorithm %q: want %s or %s", c.Algorithm, RSA, Ed25519)
	}
	s, err := NewSigner(c.Domain, c.Selector, key, c.Headers)
	if err != nil {
		return err
	}
	for _, other := range k.byDomain[s.domain] {
		if other.selector == s.selector {
			return fmt.Errorf("selector %s is configured twice for the domain", s.selector)
		}
	}
	if len(k.byDomain[s.domain]) > 0 && k.sub[s.domain] != c.Subdomains {
		return fmt.Errorf("subdomains must be the same for every key of the domain")
	}
	k.byDomain[s.domain] = append(k.byDomain[s.domain], s)
	k.sub[s.domain] = c.Subdomains
	return nil
}

// For returns the signers for mail whose From address is in domain: the
// entries for domain itself, else those of its nearest parent that signs
// for subdomains; nil when none does (the message goes out unsigned).
func (k *Keyring) For(domain string) []*Signer {
	if k == nil {
		return nil
	}
	domain = normalize(domain)
	if s := k.byDomain[domain]; s != nil {
		return s
	}
	for d := domain; ; {
		_, parent, ok := strings.Cut(d, ".")
		if !ok || parent == "" {
			return nil
		}
		if k.sub[parent] {
			return k.byDomain[parent]
		}
		d = parent
	}
}

// Len is the number of signers (keys) in the keyring.
func (k *Keyring) Len() int {
	if k == nil {
		return 0
	}
	n := 0
	for _, s := range k.byDomain {
		n += len(s)
	}
	return n
}
