package dnsclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// DefaultTTL is how long an answer without a TTL (from /etc/hosts) is
// trusted.
const DefaultTTL = 5 * time.Minute

// Lookup resolves host names with their DNS TTL, so that the firewall and
// the relay's allow lists look a name up again when its answer runs out
// rather than on a fixed clock: a peer that moves is let in again within
// its TTL.
type Lookup struct {
	ResolvConf string   // where the servers are listed; /etc/resolv.conf when empty or absent
	Servers    []string // host:port; overrides ResolvConf
	Fallback   interface {
		LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
	} // when DNS has no answer: /etc/hosts and friends (net.DefaultResolver)
}

// New is the appliance's resolver: the DNS servers resolvConf lists
// (/etc/resolv.conf when it is empty or absent), then /etc/hosts and the
// system's way for a name DNS has nothing for.
func New(resolvConf string) Lookup {
	return Lookup{ResolvConf: resolvConf, Fallback: net.DefaultResolver}
}

// LookupNetIP is LookupTTL without the TTL, for those that ask once.
func (d Lookup) LookupNetIP(ctx context.Context, _, host string) ([]netip.Addr, error) {
	addrs, _, err := d.LookupTTL(ctx, host)
	return addrs, err
}

// LookupTTL asks for A and AAAA records; the TTL is the shortest of the
// records (CNAMEs included) the answer rests on.
func (d Lookup) LookupTTL(ctx context.Context, host string) ([]netip.Addr, time.Duration, error) {
	var addrs []netip.Addr
	ttl := time.Duration(-1)
	var errs []error
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, err := d.query(ctx, host, qt)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		chain := CNAMEChain(host, rrs)
		for _, rr := range rrs {
			if !chain[strings.ToLower(rr.Header().Name)] {
				continue // not about the name asked for: never a peer
			}
			var a netip.Addr
			switch rr := rr.(type) {
			case *dns.A:
				a, _ = netip.AddrFromSlice(rr.A.To4())
			case *dns.AAAA:
				a, _ = netip.AddrFromSlice(rr.AAAA)
			case *dns.CNAME:
			default:
				continue
			}
			if t := time.Duration(rr.Header().Ttl) * time.Second; ttl < 0 || t < ttl {
				ttl = t
			}
			if a.IsValid() {
				addrs = append(addrs, a.Unmap())
			}
		}
	}
	if len(addrs) > 0 {
		return addrs, ttl, nil
	}
	if d.Fallback != nil {
		if a, err := d.Fallback.LookupNetIP(ctx, "ip", host); err == nil && len(a) > 0 {
			return a, DefaultTTL, nil
		}
	}
	notFound := true
	for _, err := range errs {
		var de *net.DNSError
		notFound = notFound && errors.As(err, &de) && de.IsNotFound
	}
	if notFound {
		// NXDOMAIN, or a name without addresses: an answer, not a failure
		// to get one (config checks tell the two apart).
		return nil, 0, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return nil, 0, fmt.Errorf("lookup %s: %w", host, errors.Join(errs...))
}

// CNAMEChain is the set of owner names an answer for host may use: host
// and the CNAME targets reached from it (at most 8 deep), lower case.
func CNAMEChain(host string, rrs []dns.RR) map[string]bool {
	name := strings.ToLower(dns.Fqdn(host))
	chain := map[string]bool{name: true}
	for range 8 {
		next := ""
		for _, rr := range rrs {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, name) {
				next = strings.ToLower(c.Target)
			}
		}
		if next == "" || chain[next] {
			break
		}
		chain[next], name = true, next
	}
	return chain
}

// query asks the servers for host's records of type qt: the answer of a
// NOERROR reply, an error for NXDOMAIN and the rest.
func (d Lookup) query(ctx context.Context, host string, qt uint16) ([]dns.RR, error) {
	servers := d.Servers
	if len(servers) == 0 {
		servers = Servers(d.ResolvConf)
	}
	ans, rcode, err := Query(ctx, servers, host, qt, 2*time.Second)
	switch {
	case err != nil:
		return nil, err
	case rcode == dns.RcodeNameError:
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	case rcode != dns.RcodeSuccess:
		return nil, fmt.Errorf("%s: %s", host, dns.RcodeToString[rcode])
	}
	return ans, nil
}
