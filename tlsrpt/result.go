package tlsrpt

import "errors"

// ResultType is an RFC 8460 section 4.3 result type: why a session to a
// policy domain's MX failed (or would have failed, for a policy in
// testing mode).
type ResultType string

// The result types of RFC 8460 section 4.3.
const (
	// Negotiation failures (4.3.1).
	StartTLSNotSupported    ResultType = "starttls-not-supported"
	CertificateHostMismatch ResultType = "certificate-host-mismatch"
	CertificateExpired      ResultType = "certificate-expired"
	CertificateNotTrusted   ResultType = "certificate-not-trusted"
	ValidationFailure       ResultType = "validation-failure"

	// DANE policy failures (4.3.2.1).
	TLSAInvalid   ResultType = "tlsa-invalid"
	DNSSECInvalid ResultType = "dnssec-invalid"
	DANERequired  ResultType = "dane-required"

	// MTA-STS policy failures (4.3.2.2).
	STSPolicyFetchError ResultType = "sts-policy-fetch-error"
	STSPolicyInvalid    ResultType = "sts-policy-invalid"
	STSWebPKIInvalid    ResultType = "sts-webpki-invalid"
)

// Error is a failure with the result type a TLS report files it under.
// Packages mtasts and dane return their verdicts as *Error, so that the
// delivery records what it got without knowing where it came from.
type Error struct {
	Result ResultType
	Err    error
}

func (e *Error) Error() string { return string(e.Result) + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// ResultOf is the result type err is filed under: its *Error's, or
// validation-failure (the catch-all of RFC 8460 4.3.1) for any other
// error. It is "" for a nil error.
func ResultOf(err error) ResultType {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Result
	}
	return ValidationFailure
}
