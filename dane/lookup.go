package dane

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Answer is a DNS answer with its DNSSEC status.
type Answer struct {
	RRs   []dns.RR // the answer section
	Rcode int
	// Authenticated: the resolver set the AD bit, having validated the
	// answer (or the denial of existence) with DNSSEC. Only as good as the
	// path to the resolver: a validating resolver on the appliance or
	// one trusted on the local network (RFC 7672 8.1; RFC 6698 4.1).
	Authenticated bool
}

// DefaultTimeout bounds each server's answer when the caller gives none.
const DefaultTimeout = 5 * time.Second

// Query asks servers (host:port) in turn for name and qtype, as
// dnsclient.Query does, but asks for DNSSEC (the AD and DO bits, RFC 6840
// 5.7) and keeps the AD bit of the answer. Truncated answers are asked
// again over TCP. A server that does not answer is skipped; the error is
// that of the last one.
func Query(ctx context.Context, servers []string, name string, qtype uint16, timeout time.Duration) (Answer, error) {
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.AuthenticatedData = true
	m.SetEdns0(1232, true)
	var lastErr error = errors.New("no DNS servers")
	for _, srv := range servers {
		r, err := exchange(ctx, m, srv, "udp", timeout)
		if err == nil && r.Truncated {
			r, err = exchange(ctx, m, srv, "tcp", timeout)
		}
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if r.Id != m.Id || len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, m.Question[0].Name) || r.Question[0].Qtype != qtype {
			lastErr = fmt.Errorf("%s answered another question", srv)
			continue
		}
		return Answer{RRs: r.Answer, Rcode: r.Rcode, Authenticated: r.AuthenticatedData}, nil
	}
	return Answer{}, fmt.Errorf("DNS lookup of %s %s failed: %w", name, dns.TypeToString[qtype], lastErr)
}

func exchange(ctx context.Context, m *dns.Msg, srv, network string, timeout time.Duration) (*dns.Msg, error) {
	c := &dns.Client{Net: network, Timeout: timeout}
	r, _, err := c.ExchangeContext(ctx, m, srv)
	return r, err
}

// LookupTLSA looks up the TLSA records of an SMTP server,
// _<port>._tcp.<host> (RFC 7672 2.2.2; port 25 for MX delivery), and
// says whether the answer was authenticated. No records (NXDOMAIN or no
// data) is not an error; an answer the resolver could not give (SERVFAIL:
// among others, DNSSEC validation failed) is, and per RFC 7672 2.2 the
// delivery to that host is deferred when the host's address records were
// secure. A record whose association data is not hex (miekg/dns makes
// the hex from the wire, so only a broken resolver could) is returned
// without data: unusable, but present, so TLS stays mandatory.
//
// Records are taken from the answer for the name asked or, through CNAMEs
// in the answer, its target.
func LookupTLSA(ctx context.Context, servers []string, host string, port uint16, timeout time.Duration) ([]TLSA, bool, error) {
	name := fmt.Sprintf("_%d._tcp.%s", port, dns.Fqdn(host))
	ans, err := Query(ctx, servers, name, dns.TypeTLSA, timeout)
	if err != nil {
		return nil, false, err
	}
	switch ans.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
	default:
		return nil, ans.Authenticated, fmt.Errorf("TLSA lookup of %s: %s", name, dns.RcodeToString[ans.Rcode])
	}
	owners := map[string]bool{strings.ToLower(name): true}
	for range 8 { // CNAME chains, in whatever order the answer has them
		for _, rr := range ans.RRs {
			if c, ok := rr.(*dns.CNAME); ok && owners[strings.ToLower(c.Hdr.Name)] {
				owners[strings.ToLower(c.Target)] = true
			}
		}
	}
	var recs []TLSA
	for _, rr := range ans.RRs {
		t, ok := rr.(*dns.TLSA)
		if !ok || !owners[strings.ToLower(t.Hdr.Name)] {
			continue
		}
		r, _ := FromRR(t)
		recs = append(recs, r)
	}
	return recs, ans.Authenticated, nil
}
