// Package mailauth holds the inbound mail authentication checks as pure
// logic, without SMTP session code: DNSBL/DNSWL scoring at connect, SPF
// (RFC 7208), DKIM verification (RFC 6376), DMARC (RFC 7489) and the one
// Authentication-Results header (RFC 8601) that reports them.
//
// Every check asks DNS through Resolver, which the appliance backs with
// package dnsclient (DNSClient) and tests with an in-process server; never
// net.DefaultResolver, whose answers and servers the appliance does not
// control. Every lookup runs under a deadline.
package mailauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"gatehouse/dnsclient"
)

// Resolver asks DNS one question. An error means no server answered; an
// answer with a failing rcode (SERVFAIL, NXDOMAIN) is a Reply.
type Resolver interface {
	Query(ctx context.Context, name string, qtype uint16) (Reply, error)
}

// Reply is a DNS answer: its rcode, answer section and, when the resolver
// gives it, the authority section (the SOA whose minimum bounds how long a
// negative answer may be cached, RFC 2308 §5).
type Reply struct {
	Rcode     int
	Answer    []dns.RR
	Authority []dns.RR
}

// DNSClient is the appliance's resolver, package dnsclient, as a Resolver.
// dnsclient.Query returns no authority section, so negative answers are
// cached for the checks' default time rather than the SOA minimum.
type DNSClient struct {
	ResolvConf string        // where the servers are listed (dnsclient.Servers)
	Servers    []string      // host:port; overrides ResolvConf
	Timeout    time.Duration // per server; 2s when zero
}

// Query implements Resolver.
func (c DNSClient) Query(ctx context.Context, name string, qtype uint16) (Reply, error) {
	servers := c.Servers
	if len(servers) == 0 {
		servers = dnsclient.Servers(c.ResolvConf)
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ans, rcode, err := dnsclient.Query(ctx, servers, name, qtype, timeout)
	if err != nil {
		return Reply{}, err
	}
	return Reply{Rcode: rcode, Answer: ans}, nil
}

// lookup asks r and turns the reply into the error forms the libraries
// expect of a net.Resolver: *net.DNSError, IsNotFound for NXDOMAIN and for
// a name without records of the type (as net.Resolver does), IsTemporary
// for SERVFAIL and other failing rcodes, IsTimeout (and temporary) when no
// server answered. The libraries test these with type assertions, not
// errors.As, so the *net.DNSError is returned unwrapped.
func lookup(ctx context.Context, r Resolver, name string, qtype uint16) ([]dns.RR, error) {
	rep, err := r.Query(ctx, name, qtype)
	if err != nil {
		return nil, &net.DNSError{Err: err.Error(), Name: name, IsTimeout: true, IsTemporary: true}
	}
	switch rep.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	default:
		return nil, &net.DNSError{Err: "server answered " + dns.RcodeToString[rep.Rcode], Name: name, IsTemporary: true}
	}
	chain := dnsclient.CNAMEChain(name, rep.Answer)
	var out []dns.RR
	for _, rr := range rep.Answer {
		if rr.Header().Rrtype == qtype && chain[strings.ToLower(rr.Header().Name)] {
			out = append(out, rr)
		}
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return out, nil
}

// lookupTXT returns one string per TXT record, its character-strings
// joined, as net.Resolver.LookupTXT does (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
func lookupTXT(ctx context.Context, r Resolver, name string) ([]string, error) {
	rrs, err := lookup(ctx, r, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range rrs {
		out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return out, nil
}

// lookupIP asks for A and AAAA at once; an answer to either is an answer.
func lookupIP(ctx context.Context, r Resolver, host string) ([]netip.Addr, error) {
	var (
		wg   sync.WaitGroup
		rrs  [2][]dns.RR
		errs [2]error
	)
	for i, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		wg.Go(func() { rrs[i], errs[i] = lookup(ctx, r, host, qt) })
	}
	wg.Wait()
	var out []netip.Addr
	for _, set := range rrs {
		for _, rr := range set {
			var a netip.Addr
			switch rr := rr.(type) {
			case *dns.A:
				a, _ = netip.AddrFromSlice(rr.A.To4())
			case *dns.AAAA:
				a, _ = netip.AddrFromSlice(rr.AAAA)
			}
			if a.IsValid() {
				out = append(out, a.Unmap())
			}
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	if isNotFound(errs[0]) && isNotFound(errs[1]) {
		return nil, errs[0]
	}
	for _, err := range errs {
		if err != nil && !isNotFound(err) {
			return nil, err
		}
	}
	return nil, errs[0]
}

func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// spfResolver is the interface blitiri.com.ar/go/spf asks DNS through
// (spf.DNSResolver), on top of a Resolver.
type spfResolver struct{ r Resolver }

func (s spfResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return lookupTXT(ctx, s.r, name)
}

func (s spfResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	rrs, err := lookup(ctx, s.r, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	var out []*net.MX
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	return out, nil
}

func (s spfResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	addrs, err := lookupIP(ctx, s.r, host)
	if err != nil {
		return nil, err
	}
	out := make([]net.IPAddr, len(addrs))
	for i, a := range addrs {
		out[i] = net.IPAddr{IP: net.IP(a.AsSlice())}
	}
	return out, nil
}

func (s spfResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	rev, err := dns.ReverseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: fmt.Sprintf("unrecognized address: %v", err), Name: addr}
	}
	rrs, err := lookup(ctx, s.r, rev, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range rrs {
		out = append(out, rr.(*dns.PTR).Ptr)
	}
	return out, nil
}

// txtFunc is the context-less TXT lookup go-msgauth takes, bound to ctx and
// a per-lookup deadline.
func txtFunc(ctx context.Context, r Resolver, timeout time.Duration) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return lookupTXT(ctx, r, name)
	}
}
