// Package dnsclient is the appliance's one resolver. It asks the
// appliance's DNS servers directly, for what the system resolver does not
// give: MX records, and the TTLs of answers. Names keeps host names
// resolved for the allow lists (firewall, SSH, relay): each asked again when
// its answer runs out, the last good answer kept while no server answers,
// and a name that does not exist matching no one.
package dnsclient

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/miekg/dns"

	"gatehouse/layout"
)

// Servers lists the name servers (host:port) in resolvConf, falling back
// to /etc/resolv.conf (host mode without a dns service, or before it
// wrote its file) and then to the local resolver.
func Servers(resolvConf string) []string {
	cc, err := dns.ClientConfigFromFile(resolvConf)
	if err != nil || resolvConf == "" {
		cc, err = dns.ClientConfigFromFile(layout.SystemResolvConf)
	}
	if err != nil || len(cc.Servers) == 0 {
		return []string{"127.0.0.1:53"}
	}
	var out []string
	for _, s := range cc.Servers {
		out = append(out, net.JoinHostPort(s, cc.Port))
	}
	return out
}

// Query asks each server in turn until one answers (over TCP when the UDP
// answer was truncated) and returns the answer section and the rcode.
func Query(ctx context.Context, servers []string, name string, qtype uint16, timeout time.Duration) ([]dns.RR, int, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	c := &dns.Client{Timeout: timeout}
	var lastErr error
	for _, srv := range servers {
		r, _, err := c.ExchangeContext(ctx, m, srv)
		if err != nil {
			lastErr = err
			continue
		}
		if r.Truncated {
			tc := &dns.Client{Net: "tcp", Timeout: timeout}
			if r2, _, err := tc.ExchangeContext(ctx, m, srv); err == nil {
				r = r2
			}
		}
		return r.Answer, r.Rcode, nil
	}
	return nil, 0, fmt.Errorf("DNS lookup of %s failed: %w", name, lastErr)
}
