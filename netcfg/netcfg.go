// Package netcfg configures and describes the appliance's network through
// netlink: loopback at boot, the state printed for the console, the
// reconciler for interfaces, VLANs, addresses and routes, and the DHCPv4
// client.
package netcfg

import (
	"fmt"
	"io"
	"net"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LoopbackUp sets lo up. The kernel gives it 127.0.0.1 and ::1 once it is up.
func LoopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("netcfg: find lo: %w", err)
	}
	if lo.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("netcfg: set lo up: %w", err)
	}
	return nil
}

// Describe writes the links with their addresses, then the routes, in the
// spirit of `ip -brief addr` and `ip route`.
func Describe(w io.Writer) error {
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("netcfg: list links: %w", err)
	}
	sort.Slice(links, func(i, j int) bool { return links[i].Attrs().Index < links[j].Attrs().Index })
	names := map[int]string{}
	fmt.Fprintln(w, "interfaces:")
	for _, l := range links {
		a := l.Attrs()
		names[a.Index] = a.Name
		addrs, err := netlink.AddrList(l, unix.AF_UNSPEC)
		if err != nil {
			return fmt.Errorf("netcfg: list addresses of %s: %w", a.Name, err)
		}
		var list []string
		for _, ad := range addrs {
			list = append(list, ad.IPNet.String())
		}
		fmt.Fprintf(w, "  %-12s %-8s mtu %-5d %-17s %s\n", a.Name, strings.ToUpper(a.OperState.String()), a.MTU, a.HardwareAddr, strings.Join(list, " "))
	}
	routes, err := netlink.RouteListFiltered(unix.AF_UNSPEC, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("netcfg: list routes: %w", err)
	}
	fmt.Fprintln(w, "routes:")
	if len(routes) == 0 {
		fmt.Fprintln(w, "  (none)")
	}
	for _, r := range routes {
		dst := "default"
		if ones, _ := r.Dst.Mask.Size(); r.Dst != nil && ones > 0 {
			dst = r.Dst.String()
		}
		line := "  " + dst
		if r.Gw != nil {
			line += " via " + r.Gw.String()
		}
		if n, ok := names[r.LinkIndex]; ok {
			line += " dev " + n
		}
		if r.Src != nil {
			line += " src " + r.Src.String()
		}
		fmt.Fprintln(w, line)
	}
	return nil
}
