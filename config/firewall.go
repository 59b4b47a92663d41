package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Peer is one entry of a path's peers, parsed: a set of addresses, or a
// host name resolved when the firewall is applied.
type Peer struct {
	Ranges []AddrRange // empty for a host name
	Host   string
}

// AddrRange is an inclusive range of addresses of one family.
type AddrRange struct{ From, To netip.Addr }

// ParsePeer reads an address (192.0.2.7), a prefix (192.0.2.0/24,
// 2001:db8::/32), a range (192.168.0.1-50 or 192.168.0.1-192.168.0.50), or
// a host name.
func ParsePeer(s string) (Peer, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return Peer{Ranges: []AddrRange{{a, a}}}, nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		p = p.Masked()
		return Peer{Ranges: []AddrRange{{p.Addr(), LastAddr(p)}}}, nil
	}
	if lo, hi, ok := strings.Cut(s, "-"); ok {
		from, err := netip.ParseAddr(lo)
		if err != nil {
			if validHost(s) { // mail-gw-1.example.com
				return Peer{Host: s}, nil
			}
			return Peer{}, fmt.Errorf("%q: %q is not an address", s, lo)
		}
		to, err := netip.ParseAddr(hi)
		if err != nil && from.Is4() {
			// The short form network teams write: 192.168.0.1-50.
			n, nerr := strconv.Atoi(hi)
			if nerr != nil || n < 0 || n > 255 {
				return Peer{}, fmt.Errorf("%q: %q is neither an address nor a last octet", s, hi)
			}
			b := from.As4()
			b[3] = byte(n)
			to, err = netip.AddrFrom4(b), nil
		}
		if err != nil || to.Is4() != from.Is4() {
			return Peer{}, fmt.Errorf("%q: the range's ends are not addresses of one family", s)
		}
		if to.Less(from) {
			return Peer{}, fmt.Errorf("%q: the range ends before it starts", s)
		}
		return Peer{Ranges: []AddrRange{{from, to}}}, nil
	}
	if validHost(s) {
		return Peer{Host: s}, nil
	}
	return Peer{}, fmt.Errorf("%q is not an address, prefix, range or host name", s)
}

// LastAddr is the highest address in p.
func LastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (r AddrRange) overlaps(o AddrRange) bool {
	return r.From.Is4() == o.From.Is4() && !r.To.Less(o.From) && !o.To.Less(r.From)
}

func (c *Config) checkFirewall(ck *checker) {
	switch c.Firewall.Backend {
	case "auto", "nftables", "iptables":
	default:
		ck.errf("firewall.backend", "%q is not one of auto, nftables, iptables", c.Firewall.Backend)
	}
	switch c.Firewall.Egress {
	case "open", "restricted":
	default:
		ck.errf("firewall.egress", "%q is not one of open, restricted", c.Firewall.Egress)
	}
	type parsed struct {
		peers []Peer
	}
	all := make([]parsed, len(c.Firewall.Paths))
	for i, p := range c.Firewall.Paths {
		path := fmt.Sprintf("firewall.paths[%d]", i)
		if strings.TrimSpace(p.Function) == "" {
			ck.errf(path+".function", "name the path's function (what it is for)")
		}
		switch p.Direction {
		case "in", "out":
		default:
			ck.errf(path+".direction", "%q is not in or out", p.Direction)
		}
		switch p.Proto {
		case "tcp", "udp":
			if len(p.Ports) == 0 {
				ck.errf(path+".ports", "a %s path needs ports", p.Proto)
			}
		case "icmp":
			if len(p.Ports) > 0 {
				ck.errf(path+".ports", "an icmp path has no ports")
			}
		default:
			ck.errf(path+".proto", "%q is not one of tcp, udp, icmp", p.Proto)
		}
		for j, s := range p.Peers {
			peer, err := ParsePeer(s)
			if err != nil {
				ck.errf(fmt.Sprintf("%s.peers[%d]", path, j), "%v", err)
				continue
			}
			all[i].peers = append(all[i].peers, peer)
		}
	}
	// Two paths that allow the same traffic are a mistake waiting to
	// happen: removing one would not close what its author meant to close.
	for i, a := range c.Firewall.Paths {
		for j := 0; j < i; j++ {
			b := c.Firewall.Paths[j]
			if a.Direction != b.Direction || a.Proto != b.Proto || !portsOverlap(a.Ports, b.Ports, a.Proto) ||
				!peersOverlap(all[i].peers, all[j].peers, len(a.Peers) == 0, len(b.Peers) == 0) {
				continue
			}
			ck.errf(fmt.Sprintf("firewall.paths[%d]", i), "overlaps firewall.paths[%d] (%s): the same %s %s traffic is allowed twice", j, b.Function, a.Direction, a.Proto)
		}
	}
}

func portsOverlap(a, b []PortRange, proto string) bool {
	if proto == "icmp" {
		return true
	}
	for _, x := range a {
		for _, y := range b {
			if x.From <= y.To && y.From <= x.To {
				return true
			}
		}
	}
	return false
}

// peersOverlap compares address peers; host names are compared by name
// only, since what they resolve to changes.
func peersOverlap(a, b []Peer, anyA, anyB bool) bool {
	if anyA || anyB {
		return true
	}
	for _, x := range a {
		for _, y := range b {
			if x.Host != "" && strings.EqualFold(x.Host, y.Host) {
				return true
			}
			for _, r := range x.Ranges {
				for _, q := range y.Ranges {
					if r.overlaps(q) {
						return true
					}
				}
			}
		}
	}
	return false
}
