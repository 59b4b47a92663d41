package netcfg

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"gatehouse/config"
)

// Proto marks the routes Gatehouse installs (rtnetlink's protocol field), so
// that it changes only its own and leaves every other route alone. `ip
// route` shows it as "proto 219".
const Proto = 219

// State is the network as it should be.
type State struct {
	Links  []Link
	Routes []Route
}

// Link is one interface or VLAN as it should be.
type Link struct {
	Name      string           // by name; for a MAC match, filled in when resolved
	MAC       net.HardwareAddr // match by MAC instead of name
	Parent    string           // VLAN: the parent's config name (or MAC)
	VLANID    int              // VLAN: the 802.1Q id
	MTU       int              // 0: leave as it is
	AcceptRA  bool
	DHCP      bool
	Addresses []Address
}

// Key names the link as the config does.
func (l Link) Key() string {
	switch {
	case l.VLANID != 0:
		return fmt.Sprintf("%s.%d", l.Parent, l.VLANID)
	case l.Name != "":
		return l.Name
	}
	return l.MAC.String()
}

// Address is an address to have on a link. A zero ValidUntil means
// permanent; a DHCP address expires with its lease, in the kernel too, so
// it goes away even if nothing is left running to remove it.
type Address struct {
	Prefix     netip.Prefix
	ValidUntil time.Time
}

// Route is a route to have.
type Route struct {
	Dst    netip.Prefix // 0.0.0.0/0 or ::/0 for a default route
	Gw     netip.Addr
	Dev    string // link key; empty: the kernel picks by gateway
	Metric int
}

func (r Route) String() string {
	s := r.Dst.String()
	if r.Dst.Bits() == 0 {
		s = "default"
		if r.Dst.Addr().Is6() {
			s = "default6"
		}
	}
	s += " via " + r.Gw.String()
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	if r.Metric != 0 {
		s += fmt.Sprintf(" metric %d", r.Metric)
	}
	return s
}

// Lease is what a DHCP server granted on one link.
type Lease struct {
	Link     string // link key
	Address  netip.Prefix
	Router   netip.Addr
	DNS      []netip.Addr
	NTP      []netip.Addr
	Domain   string
	Server   netip.Addr
	Obtained time.Time
	Renew    time.Time // T1
	Rebind   time.Time // T2
	Expires  time.Time
}

// DHCPMetric is the metric of routes learned from DHCP: static routes
// (metric 0 unless given) win over them.
const DHCPMetric = 1024

// Desired derives the network's state from the config and the current
// DHCP leases (by link key).
func Desired(c *config.Config, leases map[string]Lease) State {
	var st State
	add := func(l Link) {
		if lease, ok := leases[l.Key()]; ok && l.DHCP {
			l.Addresses = append(l.Addresses, Address{Prefix: lease.Address, ValidUntil: lease.Expires})
			if lease.Router.IsValid() {
				st.Routes = append(st.Routes, Route{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0),
					Gw: lease.Router, Dev: l.Key(), Metric: DHCPMetric})
			}
		}
		st.Links = append(st.Links, l)
	}
	for _, ifc := range c.Interfaces {
		l := Link{Name: ifc.Name, MTU: ifc.MTU, AcceptRA: ifc.AcceptRA, DHCP: ifc.DHCP}
		if ifc.MAC != "" {
			l.MAC, _ = net.ParseMAC(ifc.MAC)
		}
		for _, a := range ifc.Addresses {
			l.Addresses = append(l.Addresses, Address{Prefix: a.Prefix})
		}
		add(l)
		for _, v := range ifc.VLANs {
			vl := Link{Parent: l.Key(), VLANID: v.ID, MTU: v.MTU, DHCP: v.DHCP}
			for _, a := range v.Addresses {
				vl.Addresses = append(vl.Addresses, Address{Prefix: a.Prefix})
			}
			add(vl)
		}
	}
	for _, r := range c.Routes {
		st.Routes = append(st.Routes, Route{Dst: r.To.Prefix, Gw: r.Via.Addr, Dev: r.Dev, Metric: r.Metric})
	}
	return st
}

// Changes are the writes one Apply made, for the log and the tests.
type Changes []string

func (c Changes) String() string {
	if len(c) == 0 {
		return "no changes"
	}
	return strings.Join(c, "; ")
}

// Problems are what Apply could not do (a missing interface, a gateway
// that is not reachable yet), by link key or route; the next Apply retries.
type Problems map[string]string

func (p Problems) String() string {
	var keys []string
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		out = append(out, k+": "+p[k])
	}
	return strings.Join(out, "; ")
}
