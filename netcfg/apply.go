package netcfg

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"gatehouse/safeio"
)

// Manager converges the kernel's links, addresses and routes to a State.
// It touches only what it owns: the links it is given, the addresses it
// added (remembered in a file, since the kernel cannot mark them) and the
// routes with protocol Proto.
type Manager struct {
	ownedFile string
	owned     map[string][]string // link name -> prefixes we added
}

// NewManager remembers its addresses in ownedFile (kept under /run, so it
// lives exactly as long as the kernel state it describes).
func NewManager(ownedFile string) *Manager {
	m := &Manager{ownedFile: ownedFile, owned: map[string][]string{}}
	if b, err := os.ReadFile(ownedFile); err == nil {
		json.Unmarshal(b, &m.owned)
	}
	return m
}

// Apply makes the kernel match want and returns the writes it made and
// what it could not do. Applying the same state twice writes nothing.
func (m *Manager) Apply(want State) (Changes, Problems, error) {
	var ch Changes
	probs := Problems{}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, nil, fmt.Errorf("netcfg: list links: %w", err)
	}
	resolved := map[string]netlink.Link{} // link key -> kernel link
	for _, l := range want.Links {
		if l.VLANID != 0 {
			continue
		}
		kl := findLink(links, l)
		if kl == nil {
			probs[l.Key()] = "no such interface"
			continue
		}
		resolved[l.Key()] = kl
	}
	for _, l := range want.Links {
		if l.VLANID == 0 {
			continue
		}
		parent := resolved[l.Parent]
		if parent == nil {
			probs[l.Key()] = "parent " + l.Parent + " missing"
			continue
		}
		kl, err := m.ensureVLAN(links, parent, l, &ch)
		if err != nil {
			probs[l.Key()] = err.Error()
			continue
		}
		resolved[l.Key()] = kl
	}
	ownedBefore := fmt.Sprint(m.owned)
	for _, l := range want.Links {
		kl := resolved[l.Key()]
		if kl == nil {
			continue
		}
		if err := m.applyLink(kl, l, &ch); err != nil {
			probs[l.Key()] = err.Error()
		}
	}
	if err := m.applyRoutes(want.Routes, resolved, &ch, probs); err != nil {
		return ch, probs, err
	}
	if fmt.Sprint(m.owned) != ownedBefore {
		if err := m.saveOwned(); err != nil {
			return ch, probs, err
		}
	}
	return ch, probs, nil
}

// VLANName is the kernel name of VLAN id on parent: parent.id, or vlanID
// where that would exceed the kernel's 15 characters.
func VLANName(parent string, id int) string {
	name := fmt.Sprintf("%s.%d", parent, id)
	if len(name) > 15 {
		name = fmt.Sprintf("vlan%d", id)
	}
	return name
}

// KernelName finds the kernel's name for a configured link, or "" if it is
// not there.
func KernelName(l Link) string {
	links, err := netlink.LinkList()
	if err != nil {
		return ""
	}
	if l.VLANID != 0 {
		parent := Link{Name: l.Parent}
		if mac, err := net.ParseMAC(l.Parent); err == nil {
			parent = Link{MAC: mac}
		}
		p := findLink(links, parent)
		if p == nil {
			return ""
		}
		l = Link{Name: VLANName(p.Attrs().Name, l.VLANID)}
	}
	if kl := findLink(links, l); kl != nil {
		return kl.Attrs().Name
	}
	return ""
}

func findLink(links []netlink.Link, l Link) netlink.Link {
	for _, kl := range links {
		a := kl.Attrs()
		if l.Name != "" && a.Name == l.Name {
			return kl
		}
		if l.MAC != nil && a.HardwareAddr.String() == l.MAC.String() && kl.Type() != "vlan" {
			return kl
		}
	}
	return nil
}

func (m *Manager) ensureVLAN(links []netlink.Link, parent netlink.Link, l Link, ch *Changes) (netlink.Link, error) {
	name := VLANName(parent.Attrs().Name, l.VLANID)
	for _, kl := range links {
		if kl.Attrs().Name != name {
			continue
		}
		v, ok := kl.(*netlink.Vlan)
		if !ok || v.VlanId != l.VLANID || v.ParentIndex != parent.Attrs().Index {
			return nil, fmt.Errorf("%s exists but is not VLAN %d on %s; left alone", name, l.VLANID, parent.Attrs().Name)
		}
		return kl, nil
	}
	v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: parent.Attrs().Index}, VlanId: l.VLANID}
	if err := netlink.LinkAdd(v); err != nil {
		return nil, fmt.Errorf("create VLAN %s: %w", name, err)
	}
	*ch = append(*ch, "create VLAN "+name)
	kl, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("find new VLAN %s: %w", name, err)
	}
	return kl, nil
}

func (m *Manager) applyLink(kl netlink.Link, l Link, ch *Changes) error {
	a := kl.Attrs()
	name := a.Name
	var errs []error
	if l.MTU != 0 && a.MTU != l.MTU {
		if err := netlink.LinkSetMTU(kl, l.MTU); err != nil {
			errs = append(errs, fmt.Errorf("set mtu %d: %w", l.MTU, err))
		} else {
			*ch = append(*ch, fmt.Sprintf("set %s mtu %d", name, l.MTU))
		}
	}
	if a.Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(kl); err != nil {
			errs = append(errs, fmt.Errorf("set up: %w", err))
		} else {
			*ch = append(*ch, "set "+name+" up")
		}
	}
	if changed, err := setSysctl(fmt.Sprintf("/proc/sys/net/ipv6/conf/%s/accept_ra", name), boolStr(l.AcceptRA)); err != nil {
		if !errors.Is(err, os.ErrNotExist) { // no IPv6 on this link
			errs = append(errs, err)
		}
	} else if changed {
		*ch = append(*ch, fmt.Sprintf("set %s accept_ra %s", name, boolStr(l.AcceptRA)))
	}
	if err := m.applyAddrs(kl, l.Addresses, ch); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func boolStr(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// setSysctl writes value unless it is there already.
func setSysctl(path, value string) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	if strings.TrimSpace(string(b)) == value {
		return false, nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return false, fmt.Errorf("sysctl %s: %w", path, err)
	}
	return true, nil
}

func (m *Manager) applyAddrs(kl netlink.Link, want []Address, ch *Changes) error {
	name := kl.Attrs().Name
	have, err := netlink.AddrList(kl, unix.AF_UNSPEC)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	haveBy := map[netip.Prefix]netlink.Addr{}
	for _, a := range have {
		if p, ok := prefixOf(a.IPNet); ok {
			haveBy[p] = a
		}
	}
	var errs []error
	wanted := map[netip.Prefix]bool{}
	for _, w := range want {
		wanted[w.Prefix] = true
		cur, exists := haveBy[w.Prefix]
		if exists && !lifetimeDiffers(cur, w) {
			m.own(name, w.Prefix) // an address we want counts as ours
			continue
		}
		na := &netlink.Addr{IPNet: netipToIPNet(w.Prefix)}
		if !w.ValidUntil.IsZero() {
			left := int(time.Until(w.ValidUntil).Seconds())
			if left <= 0 {
				continue // expired: must not be added
			}
			na.ValidLft, na.PreferedLft = left, left
		}
		if err := netlink.AddrReplace(kl, na); err != nil {
			errs = append(errs, fmt.Errorf("add %s: %w", w.Prefix, err))
			continue
		}
		m.own(name, w.Prefix)
		verb := "add"
		if exists {
			verb = "refresh"
		}
		*ch = append(*ch, fmt.Sprintf("%s %s on %s", verb, w.Prefix, name))
	}
	// Remove what we added earlier and no longer want; never anything else.
	for _, s := range slices.Clone(m.owned[name]) {
		p, _ := netip.ParsePrefix(s)
		if wanted[p] {
			continue
		}
		if cur, ok := haveBy[p]; ok {
			if err := netlink.AddrDel(kl, &cur); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
				continue
			}
			*ch = append(*ch, fmt.Sprintf("remove %s from %s", p, name))
		}
		m.disown(name, p)
	}
	return errors.Join(errs...)
}

// lifetimeDiffers says whether a lease address's kernel lifetime is off by
// more than a little from what the lease says (a renewal extends it).
func lifetimeDiffers(cur netlink.Addr, w Address) bool {
	permanent := cur.ValidLft == 0 || cur.ValidLft == int(^uint32(0))
	if w.ValidUntil.IsZero() {
		return !permanent
	}
	if permanent {
		return true
	}
	left := time.Until(w.ValidUntil).Seconds()
	return left-float64(cur.ValidLft) > 3 || float64(cur.ValidLft)-left > 3
}

func (m *Manager) own(link string, p netip.Prefix) {
	if !slices.Contains(m.owned[link], p.String()) {
		m.owned[link] = append(m.owned[link], p.String())
	}
}

func (m *Manager) disown(link string, p netip.Prefix) {
	m.owned[link] = slices.DeleteFunc(m.owned[link], func(s string) bool { return s == p.String() })
	if len(m.owned[link]) == 0 {
		delete(m.owned, link)
	}
}

func (m *Manager) saveOwned() error {
	b, _ := json.Marshal(m.owned)
	if err := os.MkdirAll(filepath.Dir(m.ownedFile), 0o755); err != nil {
		return fmt.Errorf("netcfg: %w", err)
	}
	if err := safeio.WriteFile(m.ownedFile, b, 0o644); err != nil {
		return fmt.Errorf("netcfg: %w", err)
	}
	return nil
}

func (m *Manager) applyRoutes(want []Route, links map[string]netlink.Link, ch *Changes, probs Problems) error {
	have, err := netlink.RouteListFiltered(unix.AF_UNSPEC, &netlink.Route{Protocol: Proto}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("netcfg: list routes: %w", err)
	}
	type key struct {
		dst    netip.Prefix
		gw     netip.Addr
		metric int
	}
	keyOf := func(r netlink.Route) key {
		k := key{metric: r.Priority}
		if r.Dst != nil {
			k.dst, _ = prefixOf(r.Dst)
		} else if r.Family == unix.AF_INET6 {
			k.dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		} else {
			k.dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		}
		k.gw, _ = netip.AddrFromSlice(r.Gw)
		k.gw = k.gw.Unmap()
		return k
	}
	haveBy := map[key]netlink.Route{}
	for _, r := range have {
		haveBy[keyOf(r)] = r
	}
	wanted := map[key]bool{}
	for _, w := range want {
		if w.Dst.Addr().Is6() && w.Metric == 0 {
			w.Metric = 1024 // what the kernel makes of an IPv6 route's metric 0
		}
		k := key{w.Dst, w.Gw, w.Metric}
		wanted[k] = true
		if _, ok := haveBy[k]; ok {
			continue
		}
		nr := &netlink.Route{Dst: netipToIPNet(w.Dst), Gw: w.Gw.AsSlice(), Priority: w.Metric, Protocol: Proto}
		if w.Dev != "" {
			kl := links[w.Dev]
			if kl == nil {
				probs["route "+w.String()] = "interface " + w.Dev + " is not there"
				continue
			}
			nr.LinkIndex = kl.Attrs().Index
		}
		if err := netlink.RouteAdd(nr); err != nil {
			probs["route "+w.String()] = err.Error()
			continue
		}
		*ch = append(*ch, "add route "+w.String())
	}
	for k, r := range haveBy {
		if wanted[k] {
			continue
		}
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			probs["route "+k.dst.String()] = "remove: " + err.Error()
			continue
		}
		*ch = append(*ch, fmt.Sprintf("remove route %s via %s", k.dst, k.gw))
	}
	return nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

func netipToIPNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}
