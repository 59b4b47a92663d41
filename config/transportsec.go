package config

import (
	"fmt"
	"strings"
	"unicode"
)

// Transport security of outbound delivery beyond the TLS level: DANE
// (the level dane), MTA-STS (mta_sts) and TLS reporting (tls_rpt).
//
// How they combine, per server tried:
//
//   - level dane (smtp.outbound_tls, tls_policy[].level, or a domain's or
//     connector's tls): the server's TLSA records, when the DNS servers
//     vouch for them with the AD bit, decide (TLS mandatory; verified by
//     the records when one is usable). DANE comes first (RFC 8461 2).
//   - Otherwise, for direct MX delivery at levels may, encrypt, verify and
//     dane, and unless mta_sts is false: the recipient domain's MTA-STS
//     policy. enforce holds the session to the listed MX hosts and a
//     certificate verified for the MX name (or defers); testing only
//     reports. Levels none and secure are the operator's word and are
//     left alone.
//   - Otherwise the level itself; dane is then may.
//
// The default level stays may: dane is only as good as the DNS path (a
// validating resolver on the appliance or next to it), which the operator
// must provide and vouch for by choosing it.

// TLSRPT is who the relay's TLS reports (RFC 8460) come from. With it the
// relay counts its sessions under MTA-STS and DANE policies and sends each
// policy domain that publishes a _smtp._tls record a report a day.
type TLSRPT struct {
	Organization string `yaml:"organization"` // organization-name of the reports
	Contact      string `yaml:"contact"`      // contact-info: a mail address or a mailto:/https: URI
}

// MTASTSEnabled says whether direct MX delivery consults MTA-STS policies.
func (s *SMTP) MTASTSEnabled() bool { return s.MTASTS == nil || *s.MTASTS }

// MTASTSApplies says whether MTA-STS may raise the level of a direct MX
// delivery at level l: not at none (the operator wants plain text) nor
// at secure (already stricter on names than a policy).
func (s *SMTP) MTASTSApplies(l TLSLevel) bool {
	return s.MTASTSEnabled() && (l == TLSMay || l == TLSEncrypt || l == TLSVerify || l == TLSDane)
}

func (s *SMTP) transportSecDefaults() {
	if s.MTASTS == nil {
		t := true
		s.MTASTS = &t
	}
}

func (s *SMTP) checkTransportSec(ck *checker) {
	for i, cn := range s.Connectors {
		if cn.Auth != nil && cn.TLS == TLSDane {
			ck.errf(fmt.Sprintf("smtp.connectors[%d].tls", i), "dane falls back to plain text when the smart host has no TLSA records: AUTH needs encrypt, verify or secure")
		}
	}
	r := s.TLSRPT
	if r == nil {
		return
	}
	if o := strings.TrimSpace(r.Organization); o == "" || len(o) > 256 || strings.ContainsFunc(o, unicode.IsControl) {
		ck.errf("smtp.tls_rpt.organization", "%q: give the organization name the reports carry (at most 256 characters)", r.Organization)
	}
	c := r.Contact
	switch {
	case strings.HasPrefix(c, "mailto:"):
		if !validMailbox(strings.TrimPrefix(c, "mailto:")) {
			ck.errf("smtp.tls_rpt.contact", "%q is not a mailto: URI with a mail address", c)
		}
	case strings.HasPrefix(c, "https://"):
		if len(c) <= len("https://") || strings.ContainsAny(c, " \t\r\n") {
			ck.errf("smtp.tls_rpt.contact", "%q is not an https: URI", c)
		}
	case !validMailbox(c):
		ck.errf("smtp.tls_rpt.contact", "%q: give a mail address (or a mailto: or https: URI) where the domains we report to can reach you", c)
	}
}
