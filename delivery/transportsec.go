package delivery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/miekg/dns"

	"gatehouse/config"
	"gatehouse/dane"
	"gatehouse/dnsclient"
	"gatehouse/mtasts"
	"gatehouse/tlsrpt"
)

// security is what one session to one server is held to once DANE and
// MTA-STS have had their say (see config/transportsec.go for the order).
type security struct {
	level config.TLSLevel // none, may, encrypt, verify or secure: never dane
	// verify runs after the level's own checks; its failure ends the
	// handshake (DANE, MTA-STS enforce).
	verify func(tls.ConnectionState) error
	// observe is a check whose verdict is only reported (MTA-STS testing).
	observe func(tls.ConnectionState) error
	// policy is what the session counts under in the TLS report; nil:
	// it is not counted.
	policy *tlsrpt.Policy
	// failed is a failure the session counts as whatever its outcome: the
	// policy could not be fetched, or a testing policy does not list the MX.
	failed error
	why    string // "DANE", "MTA-STS enforce", ...: for logs and errors
}

// stsDecision is a domain's MTA-STS policy, fetched once per open.
type stsDecision struct {
	pol *mtasts.Policy
	err error // the policy is advertised but could not be had (reported)
}

// mtaSTS returns the MTA-STS decision for a direct MX delivery to domain,
// or the zero value when MTA-STS does not apply.
func (t *Transport) mtaSTS(ctx context.Context, cfg *config.SMTP, tg target) stsDecision {
	if !tg.mx || t.STS == nil || !cfg.MTASTSApplies(tg.tlsLevel) || tg.matchName == "" || tg.matchName[0] == '[' {
		return stsDecision{}
	}
	pol, err := t.STS.Decide(ctx, tg.matchName)
	return stsDecision{pol: pol, err: err}
}

// errSkipped marks a server the policy rules out before any connection.
var errSkipped = errors.New("skipped")

// secure decides what the session to h is held to. An error means the
// server is not to be tried (the delivery goes on to the next one, or is
// deferred): its TLSA records could not be looked up, or an enforced
// MTA-STS policy does not list it.
func (t *Transport) secure(ctx context.Context, tg target, h hop, sts stsDecision) (security, error) {
	sec := security{level: tg.tlsLevel}
	if tg.tlsLevel == config.TLSDane {
		sec.level = config.TLSMay
		d, err := t.daneDecide(ctx, h)
		if err != nil {
			// RFC 7672 2.2: a TLSA lookup that fails (SERVFAIL: among
			// others, a DNSSEC validation failure) defers the server: it
			// might be an attacker hiding the records.
			return sec, fmt.Errorf("%s[%s]: DANE: %w (server skipped)", h.name, h.addr, err)
		}
		if d.Mandatory {
			sec.level = config.TLSEncrypt
			var recs []string
			for _, r := range append(append([]dane.TLSA(nil), d.Usable...), d.Unusable...) {
				recs = append(recs, r.String())
			}
			sec.policy = &tlsrpt.Policy{Type: tlsrpt.TLSA, String: recs, Domain: tg.matchName, MXHost: []string{h.name}}
			if d.Authenticates() {
				sec.verify, sec.why = d.VerifyConnection(h.name), "DANE"
			} else {
				sec.why = "DANE, no usable TLSA record"
			}
			return sec, nil
		}
	}
	switch {
	case sts.err != nil:
		sec.policy = &tlsrpt.Policy{Type: tlsrpt.STS, Domain: tg.matchName}
		sec.failed = sts.err
	case sts.pol.Reported():
		p := sts.pol
		sec.policy = &tlsrpt.Policy{Type: tlsrpt.STS, String: p.Lines(), Domain: tg.matchName, MXHost: p.MX}
		check := func(cs tls.ConnectionState) error { return mtasts.VerifyCertificate(cs, t.Roots(), h.name) }
		mxErr := p.CheckMX(h.name)
		if p.Enforced() {
			if mxErr != nil {
				t.record(sec.policy, h, nil, mxErr)
				return sec, fmt.Errorf("%s[%s]: MTA-STS enforce: %w (%w)", h.name, h.addr, mxErr, errSkipped)
			}
			if sec.level == config.TLSMay {
				sec.level = config.TLSEncrypt
			}
			sec.verify, sec.why = check, "MTA-STS enforce"
		} else {
			sec.observe, sec.failed, sec.why = check, mxErr, "MTA-STS testing"
		}
	}
	return sec, nil
}

// daneDecide looks up the TLSA records of h (port of its address).
func (t *Transport) daneDecide(ctx context.Context, h hop) (dane.Decision, error) {
	_, p, _ := net.SplitHostPort(h.addr)
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return dane.Decision{}, fmt.Errorf("port of %s: %w", h.addr, err)
	}
	if net.ParseIP(h.name) != nil {
		return dane.Decision{}, nil // an address has no TLSA records
	}
	recs, ad, err := dane.LookupTLSA(ctx, t.servers(), h.name, uint16(port), 5*time.Second)
	if err != nil {
		// RFC 7672 2.2.2: a failed TLSA lookup defers the server only
		// when its address records are secure; in an unsigned zone DANE
		// does not apply (and some servers there fail TLSA queries).
		ans, aerr := dane.Query(ctx, t.servers(), h.name, dns.TypeA, 5*time.Second)
		if aerr == nil && !ans.Authenticated {
			return dane.Decision{}, nil
		}
		return dane.Decision{}, err
	}
	return dane.Decide(recs, ad), nil
}

func (t *Transport) servers() []string {
	if len(t.dnsServers) > 0 {
		return t.dnsServers
	}
	// The dns service may rewrite its file: read at each lookup.
	return dnsclient.Servers(t.ResolvConf)
}

// record counts a session to h under policy for the TLS report: a
// success when err is nil. local is the connection, for the sending
// address; nil when none was made.
func (t *Transport) record(policy *tlsrpt.Policy, h hop, local net.Addr, err error) {
	if t.Reports == nil || policy == nil || t.Config().TLSRPT == nil {
		return // counted only when the config asks for reports
	}
	if err == nil {
		t.Reports.Success(*policy)
		return
	}
	f := tlsrpt.Failure{Result: tlsrpt.ResultOf(err), ReceivingMXHostname: h.name, FailureReasonCode: err.Error()}
	if host, _, e := net.SplitHostPort(h.addr); e == nil {
		f.ReceivingIP = host
	}
	if a, ok := local.(*net.TCPAddr); ok {
		f.SendingMTAIP = a.IP.String()
	}
	t.Reports.Failure(*policy, f)
}

// tlsFailure is a failed TLS handshake, its cause kept for the report.
type tlsFailure struct {
	h   hop
	why string
	err error
}

func (e *tlsFailure) Error() string {
	if e.why != "" {
		return fmt.Sprintf("%v with %s[%s] (%s): %v", errTLSFailed, e.h.name, e.h.addr, e.why, e.err)
	}
	return fmt.Sprintf("%v with %s[%s]: %v", errTLSFailed, e.h.name, e.h.addr, e.err)
}

func (e *tlsFailure) Is(target error) bool { return target == errTLSFailed }
func (e *tlsFailure) Unwrap() error        { return e.err }

// noStartTLS is a server that does not offer STARTTLS where TLS is
// required.
type noStartTLS struct {
	h     hop
	level config.TLSLevel
	why   string
}

func (e *noStartTLS) Error() string {
	s := fmt.Sprintf("%s[%s] does not offer STARTTLS and the TLS level is %s", e.h.name, e.h.addr, e.level)
	if e.why != "" {
		s += " (" + e.why + ")"
	}
	return s
}

func (e *noStartTLS) Unwrap() error {
	return &tlsrpt.Error{Result: tlsrpt.StartTLSNotSupported, Err: errors.New("STARTTLS not offered")}
}
