// Package linuxfw turns the communication-path table into the appliance's
// packet filter: inbound denied unless a path allows it, loopback, replies
// and essential ICMP always allowed, outbound open or restricted to the
// declared paths, drops counted and logged at a bounded rate.
package linuxfw

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"gatehouse/config"
	"gatehouse/dnsclient"
	"gatehouse/paths"
)

// Ruleset is what the backend installs.
type Ruleset struct {
	In, Out          []Rule
	RestrictEgress   bool
	DHCPClient       bool // accept DHCP replies (udp 67 -> 68)
	Boot             bool // DefaultDeny's: no ICMP answered, neighbour discovery aside
	BanSets          []BanSet
	ResolvedAt       time.Time
	ResolveAgain     time.Time // when the first host-name answer runs out; zero without names
	UnresolvedErrors []string
}

// BanSet drops new connections from the sources banned in it (Ban) to its
// ports: a service that sees abuse bans the source in the kernel, before
// the next attempt reaches it. Bans expire by themselves and outlive the
// ruleset's replacement.
type BanSet struct {
	// Name names the kernel's objects: the nftables sets NAME_ban4 and
	// NAME_ban6, the iptables recent lists GATEHOUSE-NAME-BAN and
	// GATEHOUSE-NAME-BAN6 (upper case). Lower-case letters and digits.
	Name  string
	Proto string // tcp | udp
	// Ports are where banned sources are dropped. None: the set is kept,
	// with the bans in it, but drops nothing (its service is off for now,
	// or nothing comes in anyway).
	Ports []uint16
	// Timeout is how long a ban holds; the iptables rule checks it (a
	// recent list has no expiry of its own), nftables gives each ban its own.
	Timeout time.Duration
}

// nftSets are the nftables sets of b, IPv4 and IPv6.
func (b BanSet) nftSets() [2]string { return [2]string{b.Name + "_ban4", b.Name + "_ban6"} }

// recentLists are the xt_recent lists of b, IPv4 and IPv6.
func (b BanSet) recentLists() [2]string {
	n := "GATEHOUSE-" + strings.ToUpper(b.Name) + "-BAN"
	return [2]string{n, n + "6"}
}

func (b BanSet) check() error {
	if b.Name == "" || strings.Trim(b.Name, "abcdefghijklmnopqrstuvwxyz0123456789") != "" || len(b.Name) > 32 {
		return fmt.Errorf("firewall: ban set %q: a name of lower-case letters and digits", b.Name)
	}
	if len(b.Ports) > 0 && b.Proto != "tcp" && b.Proto != "udp" {
		return fmt.Errorf("firewall: ban set %s: protocol %q: tcp or udp", b.Name, b.Proto)
	}
	return nil
}

func checkBanSets(rs Ruleset) error {
	for _, b := range rs.BanSets {
		if err := b.check(); err != nil {
			return err
		}
	}
	return nil
}

// DefaultDeny is what the firewall service installs first, before it builds
// the config's ruleset (which may wait on DNS): nothing comes in but
// loopback, replies, IPv6 neighbour discovery and DHCP offers, which is what
// the network service needs to configure the links; everything may go out,
// so that DHCP, DNS and NTP come up. The config's ruleset replaces it in the
// same table or chains, in one step. The ban sets are kept with their bans,
// dropping nothing: nothing they would drop comes in.
func DefaultDeny(bans ...BanSet) Ruleset {
	rs := Ruleset{DHCPClient: true, Boot: true}
	for _, b := range bans {
		rs.BanSets = append(rs.BanSets, BanSet{Name: b.Name, Proto: b.Proto, Timeout: b.Timeout})
	}
	return rs
}

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
