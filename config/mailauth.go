package config

import (
	"fmt"
	"path/filepath"
	"strings"
)

// DKIMKey signs mail from a sender domain (and, with subdomains, from
// the domains below it) as it leaves: `gatehouse dkim keygen DOMAIN
// SELECTOR` makes the key and prints the DNS record to publish.
type DKIMKey struct {
	Domain     string   `yaml:"domain"`
	Selector   string   `yaml:"selector"`
	KeyFile    string   `yaml:"key_file"` // PEM, RSA (2048 to 4096 bits) or ed25519; mode 0600
	Headers    []string `yaml:"headers"`  // none: RFC 6376's recommended set, From signed twice
	Subdomains bool     `yaml:"subdomains"`
}

func (s *SMTP) checkDKIM(ck *checker) {
	seen := map[string]string{}
	for i, k := range s.DKIMSigning {
		p := fmt.Sprintf("smtp.dkim_signing[%d]", i)
		if !validDomain(k.Domain) {
			ck.errf(p+".domain", "%q is not a domain name", k.Domain)
		}
		if !validSelector(k.Selector) {
			ck.errf(p+".selector", "%q is not a DKIM selector (letters, digits, '-', dot-separated)", k.Selector)
		}
		if !filepath.IsAbs(k.KeyFile) {
			ck.errf(p+".key_file", "give the key's absolute path (gatehouse dkim keygen prints it)")
		}
		id := strings.ToLower(k.Domain + " " + k.Selector)
		if prev, dup := seen[id]; dup {
			ck.errf(p, "domain %s with selector %s is already at %s", k.Domain, k.Selector, prev)
		}
		seen[id] = p
		if len(k.Headers) > 0 {
			from := false
			for _, h := range k.Headers {
				from = from || strings.EqualFold(h, "From")
			}
			if !from {
				ck.errf(p+".headers", "the signed headers must include From (RFC 6376 section 5.4)")
			}
		}
	}
}

func validSelector(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}
