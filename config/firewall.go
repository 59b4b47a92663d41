package config

import (
	"fmt"
	"strings"
)

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
	}
	// Two paths that allow the same traffic are a mistake waiting to
	// happen: removing one would not close what its author meant to close.
	for i, a := range c.Firewall.Paths {
		for j := 0; j < i; j++ {
			b := c.Firewall.Paths[j]
			if a.Direction != b.Direction || a.Proto != b.Proto || !portsOverlap(a.Ports, b.Ports, a.Proto) ||
				!peersOverlap(a.Peers, b.Peers) {
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

// peersOverlap compares address peers (none written: anyone); host names
// are compared by name only, since what they resolve to changes.
func peersOverlap(a, b PeerSet) bool {
	if a.Len() == 0 && !a.invalid || b.Len() == 0 && !b.invalid {
		return true
	}
	for _, x := range a.peers {
		for _, y := range b.peers {
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
