// Package dane is DANE for SMTP (RFC 7672): TLSA records looked up with
// the DNSSEC status the validating resolver reports (the AD bit), the
// decision they make (TLS mandatory; authenticated when a record is
// usable), and the check of a TLS session against them. DANE-TA(2) and
// DANE-EE(3) with selectors 0/1 and matching types 0/1/2, as maddy does;
// PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP (RFC 7672 3.1.3).
package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"

	"gatehouse/tlsrpt"
)

// Certificate usages, selectors and matching types (RFC 6698 7.2-7.4).
const (
	PKIXTA = 0
	PKIXEE = 1
	DANETA = 2
	DANEEE = 3

	SelectorCert = 0 // the whole certificate (DER)
	SelectorSPKI = 1 // its SubjectPublicKeyInfo (DER)

	MatchExact  = 0
	MatchSHA256 = 1
	MatchSHA512 = 2
)

// TLSA is one TLSA record.
type TLSA struct {
	Usage, Selector, MatchingType uint8
	Data                          []byte // the certificate association data
}

// FromRR converts a miekg/dns TLSA record, whose data is hex text. On
// an error the record is returned without data, which makes it unusable.
func FromRR(rr *dns.TLSA) (TLSA, error) {
	t := TLSA{Usage: rr.Usage, Selector: rr.Selector, MatchingType: rr.MatchingType}
	data, err := hex.DecodeString(rr.Certificate)
	if err != nil {
		return t, fmt.Errorf("TLSA record %s: association data: %w", rr.Hdr.Name, err)
	}
	t.Data = data
	return t, nil
}

func (t TLSA) String() string {
	return fmt.Sprintf("%d %d %d %x", t.Usage, t.Selector, t.MatchingType, t.Data)
}

// Usable says whether t can authenticate an SMTP server: usage DANE-TA or
// DANE-EE, a known selector and matching type, and data of the digest's
// length (RFC 7672 3.1.3; RFC 7671 5: anything else is unusable, and
// ignored).
func (t TLSA) Usable() bool {
	if t.Usage != DANETA && t.Usage != DANEEE || t.Selector > SelectorSPKI {
		return false
	}
	switch t.MatchingType {
	case MatchExact:
		return len(t.Data) > 0
	case MatchSHA256:
		return len(t.Data) == sha256.Size
	case MatchSHA512:
		return len(t.Data) == sha512.Size
	}
	return false
}

// Matches says whether cert is the certificate (or carries the public key)
// t names, by t's selector and matching type; usage is not considered.
func (t TLSA) Matches(cert *x509.Certificate) bool {
	var sel []byte
	switch t.Selector {
	case SelectorCert:
		sel = cert.Raw
	case SelectorSPKI:
		sel = cert.RawSubjectPublicKeyInfo
	default:
		return false
	}
	switch t.MatchingType {
	case MatchExact:
		return len(sel) > 0 && bytes.Equal(sel, t.Data)
	case MatchSHA256:
		h := sha256.Sum256(sel)
		return bytes.Equal(h[:], t.Data)
	case MatchSHA512:
		h := sha512.Sum512(sel)
		return bytes.Equal(h[:], t.Data)
	}
	return false
}

// Decision is what DANE asks of the delivery to one MX host.
type Decision struct {
	// Mandatory: the host has an authenticated TLSA RRset, so TLS is
	// required, with no fallback to plain text, even when no record is
	// usable (RFC 7672 2.2).
	Mandatory bool
	// Usable are the records that authenticate the server. When empty
	// (and Mandatory), TLS is unauthenticated: encrypt, not verify.
	Usable []TLSA
	// Unusable are the records left out, for the log and the TLS report.
	Unusable []TLSA
}

// Decide makes the decision from a TLSA lookup: DANE applies only to an
// authenticated (DNSSEC-validated) non-empty RRset; an unauthenticated
// one is as good as none (RFC 7672 2.2).
func Decide(recs []TLSA, authenticated bool) Decision {
	if !authenticated || len(recs) == 0 {
		return Decision{}
	}
	d := Decision{Mandatory: true}
	for _, r := range recs {
		if r.Usable() {
			d.Usable = append(d.Usable, r)
		} else {
			d.Unusable = append(d.Unusable, r)
		}
	}
	return d
}

// Authenticates says whether the session must be authenticated by
// Verify (some record is usable).
func (d Decision) Authenticates() bool { return len(d.Usable) > 0 }

// VerifyConnection is d as a tls.Config.VerifyConnection (with
// InsecureSkipVerify set: DANE replaces the PKIX checks): nil when no
// record is usable, Verify against the usable records otherwise. names
// are the reference identifiers for DANE-TA: the MX host name and, when
// it was reached through a CNAME, the TLSA base domain (RFC 7672 3.2.2).
func (d Decision) VerifyConnection(names ...string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if !d.Authenticates() {
			return nil
		}
		return Verify(cs, d.Usable, names)
	}
}

// Verify checks the server's certificates against usable TLSA records
// (RFC 7672 3.1): a DANE-EE record matching the leaf certificate
// authenticates the server whatever its names and dates (3.1.1); a
// DANE-TA record matching a certificate of the chain the server sent
// (the trust anchor must be in it, 3.1.2) makes that certificate the one
// root the leaf must chain to, and the leaf must then carry one of names.
// The error is a *tlsrpt.Error: validation-failure when no record
// matches, certificate-expired or certificate-host-mismatch for a DANE-TA
// chain that matches but fails those checks.
func Verify(cs tls.ConnectionState, usable []TLSA, names []string) error {
	return verifyAt(cs, usable, names, time.Time{})
}

func verifyAt(cs tls.ConnectionState, usable []TLSA, names []string, now time.Time) error {
	certs := cs.PeerCertificates
	if len(certs) == 0 {
		return &tlsrpt.Error{Result: tlsrpt.ValidationFailure, Err: errors.New("DANE: no server certificate")}
	}
	leaf := certs[0]
	var ta []TLSA
	for _, r := range usable {
		switch {
		case !r.Usable():
		case r.Usage == DANEEE:
			if r.Matches(leaf) {
				return nil
			}
		case r.Usage == DANETA:
			ta = append(ta, r)
		}
	}
	if len(ta) == 0 {
		return &tlsrpt.Error{Result: tlsrpt.ValidationFailure, Err: fmt.Errorf("DANE: no TLSA record matches the certificate of %s", subject(leaf))}
	}
	opts := x509.VerifyOptions{Roots: x509.NewCertPool(), Intermediates: x509.NewCertPool(), CurrentTime: now,
		// DANE names the trust anchor; what the anchor's issuer allows the
		// server to do (extended key usages) is not DANE's question.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	anchors := 0
	for _, c := range certs[1:] {
		matched := false
		for _, r := range ta {
			if r.Matches(c) {
				matched = true
				break
			}
		}
		if matched {
			opts.Roots.AddCert(c)
			anchors++
		} else {
			opts.Intermediates.AddCert(c)
		}
	}
	if anchors == 0 {
		return &tlsrpt.Error{Result: tlsrpt.ValidationFailure, Err: fmt.Errorf("DANE: no DANE-TA record matches a certificate %s sent", subject(leaf))}
	}
	if _, err := leaf.Verify(opts); err != nil {
		var ci x509.CertificateInvalidError
		if errors.As(err, &ci) && ci.Reason == x509.Expired {
			return &tlsrpt.Error{Result: tlsrpt.CertificateExpired, Err: fmt.Errorf("DANE-TA: %w", err)}
		}
		return &tlsrpt.Error{Result: tlsrpt.ValidationFailure, Err: fmt.Errorf("DANE-TA: %w", err)}
	}
	for _, n := range names {
		if nameMatches(leaf, n) {
			return nil
		}
	}
	return &tlsrpt.Error{Result: tlsrpt.CertificateHostMismatch, Err: fmt.Errorf("DANE-TA: the certificate of %s is not for %s", subject(leaf), strings.Join(names, " or "))}
}

// nameMatches checks a reference identifier (RFC 7672 3.2.3): the DNS
// names of the certificate, a wildcard only as the whole left-most label;
// the subject's common name only when it has no DNS name.
func nameMatches(c *x509.Certificate, name string) bool {
	name = strings.TrimSuffix(name, ".")
	if name == "" {
		return false
	}
	if len(c.DNSNames) > 0 {
		return c.VerifyHostname(name) == nil
	}
	return strings.EqualFold(strings.TrimSuffix(c.Subject.CommonName, "."), name)
}

func subject(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return fmt.Sprintf("%q", c.Subject.CommonName)
	}
	return "the server"
}
