package mtasts

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"gatehouse/tlsrpt"
)

// Enforced says whether a failure to meet p defers the delivery (mode
// enforce). With a nil policy, testing or none it does not: the failure of
// a testing policy is only reported.
func (p *Policy) Enforced() bool { return p != nil && p.Mode == Enforce }

// Reported says whether sessions under p go into the TLS report as
// policy type sts (modes enforce and testing).
func (p *Policy) Reported() bool { return p != nil && (p.Mode == Enforce || p.Mode == Testing) }

// CheckMX says whether the delivery may use mxHost under p before it
// connects: nil for a nil policy, mode none, or an MX the policy lists;
// otherwise a *tlsrpt.Error (validation-failure). Under enforce the MX is
// skipped (and the delivery deferred when none is left); under testing
// the failure is recorded and the delivery goes on.
func (p *Policy) CheckMX(mxHost string) error {
	if p == nil || p.Mode == None || p.Match(mxHost) {
		return nil
	}
	return &tlsrpt.Error{Result: tlsrpt.ValidationFailure,
		Err: fmt.Errorf("MX %s is not among the MTA-STS policy's %v", mxHost, p.MX)}
}

// VerifyCertificate checks the MX's TLS session as RFC 8461 4.2 asks: a
// chain to roots (the system's plus the configured CAs, as for delivery),
// valid now, and a certificate for mxHost (RFC 6125 wildcards: the left-most
// label only). The error is a *tlsrpt.Error: certificate-expired,
// certificate-not-trusted or certificate-host-mismatch. It fits
// tls.Config.VerifyConnection (with InsecureSkipVerify set, so that a
// testing policy can record the failure and go on).
func VerifyCertificate(cs tls.ConnectionState, roots *x509.CertPool, mxHost string) error {
	return verifyAt(cs, roots, mxHost, time.Time{})
}

func verifyAt(cs tls.ConnectionState, roots *x509.CertPool, mxHost string, now time.Time) error {
	if len(cs.PeerCertificates) == 0 {
		return &tlsrpt.Error{Result: tlsrpt.CertificateNotTrusted, Err: errors.New("no server certificate")}
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now})
	if err != nil {
		var ci x509.CertificateInvalidError
		if errors.As(err, &ci) && ci.Reason == x509.Expired {
			return &tlsrpt.Error{Result: tlsrpt.CertificateExpired, Err: fmt.Errorf("certificate of %s: %w", mxHost, err)}
		}
		return &tlsrpt.Error{Result: tlsrpt.CertificateNotTrusted, Err: fmt.Errorf("certificate of %s: %w", mxHost, err)}
	}
	if err := leaf.VerifyHostname(trimDot(mxHost)); err != nil {
		return &tlsrpt.Error{Result: tlsrpt.CertificateHostMismatch, Err: err}
	}
	return nil
}

func trimDot(s string) string {
	if len(s) > 0 && s[len(s)-1] == '.' {
		return s[:len(s)-1]
	}
	return s
}
