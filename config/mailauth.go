package config

import (
	"fmt"
	"path/filepath"
	"slices"
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

// MailChecks are the checks of mail from outside on port 25: DNSBL at
// connect, SPF at MAIL FROM, DKIM and DMARC after DATA, with the results
// in one Authentication-Results header.
type MailChecks struct {
	// AuthServID names this gateway in Authentication-Results; such
	// headers from outside claiming it are removed. Default: the relay's
	// host name.
	AuthServID string `yaml:"authserv_id"`
	// SkipFor are the clients not checked: trusted (trusted_networks),
	// authenticated (AUTH, POP-before-SMTP) and connectors (inbound
	// connectors, such as Microsoft 365's, whose mail fails SPF by
	// design). Default: all three; [] checks everyone.
	SkipFor *[]string   `yaml:"skip_for"`
	DNSBL   *DNSBLCheck `yaml:"dnsbl"`
	SPF     SPFCheck    `yaml:"spf"`
	DKIM    DKIMCheck   `yaml:"dkim"`
	DMARC   DMARCCheck  `yaml:"dmarc"`
}

// DNSBLCheck is postscreen's DNSBL model.
type DNSBLCheck struct {
	Sites     []DNSBLSite `yaml:"sites"`     // postscreen_dnsbl_sites
	Threshold int         `yaml:"threshold"` // postscreen_dnsbl_threshold; default 1
	Action    string      `yaml:"action"`    // reject (default: 554 5.7.1 at connect) | tag
}

// SPFCheck says what an SPF result does.
type SPFCheck struct {
	Action string `yaml:"action"` // tag (default: the result in the headers) | reject (a fail is refused at MAIL) | off
}

// DKIMCheck bounds DKIM verification.
type DKIMCheck struct {
	MaxSignatures int `yaml:"max_signatures"` // default 5; more are not verified
}

// DMARCCheck says what a DMARC failure does, by the domain's policy.
type DMARCCheck struct {
	Reject     string `yaml:"reject"`     // p=reject: reject (default, 550 5.7.1) | quarantine | tag
	Quarantine string `yaml:"quarantine"` // p=quarantine: hold (default: held in the queue) | tag
	Off        bool   `yaml:"off"`
}

// Who SkipFor may name.
var checkSkips = []string{"trusted", "authenticated", "connectors"}

func (s *SMTP) checksDefaults() {
	c := s.Checks
	if c == nil {
		return
	}
	if c.AuthServID == "" {
		c.AuthServID = s.Hostname
	}
	if c.SkipFor == nil {
		all := append([]string(nil), checkSkips...)
		c.SkipFor = &all
	}
	if c.DNSBL != nil {
		if c.DNSBL.Threshold == 0 {
			c.DNSBL.Threshold = 1
		}
		if c.DNSBL.Action == "" {
			c.DNSBL.Action = "reject"
		}
	}
	if c.SPF.Action == "" {
		c.SPF.Action = "tag"
	}
	if c.DKIM.MaxSignatures == 0 {
		c.DKIM.MaxSignatures = 5
	}
	if c.DMARC.Reject == "" {
		c.DMARC.Reject = "reject"
	}
	if c.DMARC.Quarantine == "" {
		c.DMARC.Quarantine = "hold"
	}
}

func (s *SMTP) checkChecks(ck *checker) {
	c := s.Checks
	if c == nil {
		return
	}
	if !validHostname(c.AuthServID) {
		ck.errf("smtp.checks.authserv_id", "%q is not a host name", c.AuthServID)
	}
	for i, k := range *c.SkipFor {
		if !slices.Contains(checkSkips, k) {
			ck.errf(fmt.Sprintf("smtp.checks.skip_for[%d]", i), "%q: give trusted, authenticated or connectors", k)
		}
	}
	oneOf := func(path, v string, allowed ...string) {
		if !slices.Contains(allowed, v) {
			ck.errf(path, "%q: give %s", v, strings.Join(allowed, ", "))
		}
	}
	if b := c.DNSBL; b != nil {
		if len(b.Sites) == 0 {
			ck.errf("smtp.checks.dnsbl.sites", "list the DNSBL sites (like zen.spamhaus.org=127.0.0.[2..11]*3)")
		}
		if b.Threshold < 1 {
			ck.errf("smtp.checks.dnsbl.threshold", "%d: the threshold is a positive score", b.Threshold)
		}
		oneOf("smtp.checks.dnsbl.action", b.Action, "reject", "tag")
	}
	oneOf("smtp.checks.spf.action", c.SPF.Action, "tag", "reject", "off")
	if m := c.DKIM.MaxSignatures; m < 1 || m > 50 {
		ck.errf("smtp.checks.dkim.max_signatures", "%d is out of range (1 to 50)", m)
	}
	oneOf("smtp.checks.dmarc.reject", c.DMARC.Reject, "reject", "quarantine", "tag")
	oneOf("smtp.checks.dmarc.quarantine", c.DMARC.Quarantine, "hold", "tag")
	if !c.DMARC.Off && c.SPF.Action == "off" {
		ck.warnf("smtp.checks.spf.action", "with SPF off, DMARC passes on DKIM alone")
	}
}

// Skips says whether the checks skip clients of a kind (trusted,
// authenticated, connectors).
func (c *MailChecks) Skips(kind string) bool {
	return c.SkipFor != nil && slices.Contains(*c.SkipFor, kind)
}
