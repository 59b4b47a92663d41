// Package firewall turns the communication-path table into the appliance's
// packet filter: inbound denied unless a path allows it, loopback, replies
// and essential ICMP always allowed, outbound open or restricted to the
// declared paths, drops counted and logged at a bounded rate.
package linuxfw

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"gatehouse/config"
	"gatehouse/dnsclient"
	"gatehouse/paths"
)

// Ruleset is what the backend installs.
type Ruleset struct {
	In, Out          []Rule
	RestrictEgress   bool
	DHCPClient       bool   // accept DHCP replies (udp 67 -> 68)
	Boot             bool   // DefaultDeny's: no ICMP answered, neighbour discovery aside
	SSHPort          uint16 // non-zero: sources in the ban sets are dropped here
	SSHBanFor        time.Duration
	ResolvedAt       time.Time
	ResolveAgain     time.Time // when the first host-name answer runs out; zero without names
	UnresolvedErrors []string
}

// DefaultDeny is what the firewall service installs first, before it builds
// the config's ruleset (which may wait on DNS): nothing comes in but
// loopback, replies, IPv6 neighbour discovery and DHCP offers, which is what
// the network service needs to configure the links; everything may go out,
// so that DHCP, DNS and NTP come up. The config's ruleset replaces it in the
// same table or chains, in one step.
func DefaultDeny() Ruleset { return Ruleset{DHCPClient: true, Boot: true} }

// Rule lets one path's traffic through.
type Rule struct {
	Function string
	Proto    string // tcp | udp | icmp
	Ports    []config.PortRange
	V4, V6   []config.AddrRange // peers; both empty and Any: anyone
	Any      bool
}

// BuildLenient is Build that leaves out peers whose names have no
// addresses (and a path all of whose peers are such): narrower, never
// wider. For a first install, when the strict build failed and nothing is
// in place.
func BuildLenient(ctx context.Context, c *config.Config, table []paths.Path, names *dnsclient.Names) Ruleset {
	rs, addrs := start(ctx, c, table, names)
	var kept []paths.Path
	for _, p := range table {
		peers := p.Peers.Filter(func(peer config.Peer) bool { return peer.Host == "" || len(addrs[peer.Host]) > 0 })
		if p.Peers.Len() > 0 && peers.Len() == 0 {
			continue
		}
		p.Peers = peers
		kept = append(kept, p)
	}
	rs, _ = assemble(rs, kept, addrs, names)
	return rs
}

// Build makes the ruleset for a table, its host names looked up by names
// (the appliance's resolver: each asked again when its answer runs out,
// the last good answer kept while DNS cannot be asked). A host name that
// has no addresses fails the build, naming its path: a rule that silently
// lost its peer would lock out whoever it was for.
func Build(ctx context.Context, c *config.Config, table []paths.Path, names *dnsclient.Names) (Ruleset, error) {
	rs, addrs := start(ctx, c, table, names)
	return assemble(rs, table, addrs, names)
}

// start is a ruleset without rules, and what the table's names resolve to.
func start(ctx context.Context, c *config.Config, table []paths.Path, names *dnsclient.Names) (Ruleset, map[string][]netip.Addr) {
	rs := Ruleset{RestrictEgress: c.Firewall.Egress == "restricted", ResolvedAt: time.Now()}
	if c.SSHEnabled() {
		rs.SSHPort, rs.SSHBanFor = uint16(c.SSH.Port), c.SSH.Ban.For.Duration
	}
	rs.DHCPClient = slices.ContainsFunc(table, func(p paths.Path) bool { return p.Origin == "network" })
	var hosts []string
	for _, p := range table {
		hosts = append(hosts, p.Peers.Names()...)
	}
	if len(hosts) == 0 {
		return rs, nil
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, next := names.Resolve(lctx, hosts)
	rs.ResolveAgain = next
	return rs, addrs
}

func assemble(rs Ruleset, table []paths.Path, addrs map[string][]netip.Addr, names *dnsclient.Names) (Ruleset, error) {
	for _, p := range table {
		rule := Rule{Function: p.Function, Proto: p.Proto, Ports: p.Ports, Any: p.Peers.Len() == 0}
		for _, peer := range p.Peers.Peers() {
			if peer.Host != "" && len(addrs[peer.Host]) == 0 {
				return Ruleset{}, fmt.Errorf("firewall: path %q: host name %s does not resolve: %v", p.Function, peer.Host, names.Err(peer.Host))
			}
		}
		for _, ar := range p.Peers.Ranges(addrs) {
			if ar.From.Is4() {
				rule.V4 = append(rule.V4, ar)
			} else {
				rule.V6 = append(rule.V6, ar)
			}
		}
		if p.Direction == "in" {
			rs.In = append(rs.In, rule)
		} else {
			rs.Out = append(rs.Out, rule)
		}
	}
	return rs, nil
}
