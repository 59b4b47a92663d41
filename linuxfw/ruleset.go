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

// Resolver looks host names up; the firewall re-resolves them on each build.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// BuildLenient is Build that leaves out peers whose names do not resolve
// (and a path all of whose peers are such): narrower, never wider. For a
// first install, when the strict build failed and nothing is in place.
func BuildLenient(ctx context.Context, c *config.Config, table []paths.Path, r Resolver) Ruleset {
	var kept []paths.Path
	for _, p := range table {
		var peers []string
		for _, s := range p.Peers {
			peer, err := config.ParsePeer(s)
			if err != nil {
				continue
			}
			if peer.Host != "" {
				lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err = r.LookupNetIP(lctx, "ip", peer.Host)
				cancel()
				if err != nil {
					continue
				}
			}
			peers = append(peers, s)
		}
		if len(p.Peers) > 0 && len(peers) == 0 {
			continue
		}
		p.Peers = peers
		kept = append(kept, p)
	}
	rs, err := Build(ctx, c, kept, r)
	if err != nil { // a name stopped resolving in between: the safest table
		rs, _ = Build(ctx, c, nil, r)
	}
	return rs
}

func lookupTTL(ctx context.Context, r Resolver, host string) ([]netip.Addr, time.Duration, error) {
	if tr, ok := r.(TTLResolver); ok {
		return tr.LookupTTL(ctx, host)
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	return addrs, DefaultTTL, err
}

// Build makes the ruleset for a table. A host name that does not resolve
// fails the build, naming its path: a rule that silently lost its peer
// would lock out whoever it was for.
func Build(ctx context.Context, c *config.Config, table []paths.Path, r Resolver) (Ruleset, error) {
	rs := Ruleset{RestrictEgress: c.Firewall.Egress == "restricted", ResolvedAt: time.Now()}
	rs.DHCPClient = slices.ContainsFunc(table, func(p paths.Path) bool { return p.Origin == "network" })
	for _, p := range table {
		rule := Rule{Function: p.Function, Proto: p.Proto, Ports: p.Ports, Any: len(p.Peers) == 0}
		for _, s := range p.Peers {
			peer, err := config.ParsePeer(s)
			if err != nil {
				return Ruleset{}, fmt.Errorf("firewall: path %q: %w", p.Function, err)
			}
			if peer.Host != "" {
				lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				addrs, ttl, err := lookupTTL(lctx, r, peer.Host)
				cancel()
				if err != nil || len(addrs) == 0 {
					return Ruleset{}, fmt.Errorf("firewall: path %q: host name %s does not resolve: %v", p.Function, peer.Host, err)
				}
				// Looked up again when the answer runs out; not more often
				// than every 10 s, and at least hourly.
				ttl = min(max(ttl, 10*time.Second), time.Hour)
				if again := rs.ResolvedAt.Add(ttl); rs.ResolveAgain.IsZero() || again.Before(rs.ResolveAgain) {
					rs.ResolveAgain = again
				}
				for _, a := range addrs {
					peer.Ranges = append(peer.Ranges, config.AddrRange{From: a.Unmap(), To: a.Unmap()})
				}
			}
			for _, ar := range peer.Ranges {
				if ar.From.Is4() {
					rule.V4 = append(rule.V4, ar)
				} else {
					rule.V6 = append(rule.V6, ar)
				}
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
