package netcfg

import (
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"gatehouse/test/netnstest"
)

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func addrsOf(t *testing.T, name string) []string {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	as, _ := netlink.AddrList(l, unix.AF_UNSPEC)
	var out []string
	for _, a := range as {
		if a.IP.IsLinkLocalUnicast() {
			continue
		}
		p, _ := prefixOf(a.IPNet)
		out = append(out, p.String())
	}
	sort.Strings(out)
	return out
}

func routesOf(t *testing.T, proto netlink.RouteProtocol) []string {
	t.Helper()
	rs, err := netlink.RouteListFiltered(unix.AF_UNSPEC, &netlink.Route{Protocol: proto}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		dst := "default"
		if r.Dst != nil && r.Dst.String() != "0.0.0.0/0" {
			dst = r.Dst.String()
		}
		out = append(out, dst+" via "+r.Gw.String())
	}
	sort.Strings(out)
	return out
}

func TestApplyConvergesAndOwnsOnlyItsOwn(t *testing.T) {
	netnstest.In(t, netnstest.New(t), func() {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "eth1"}); err != nil {
			t.Fatal(err)
		}
		eth0, _ := netlink.LinkByName("eth0")
		eth1, _ := netlink.LinkByName("eth1")
		// Someone else's address and route: never touched.
		netlink.LinkSetUp(eth0)
		netlink.AddrAdd(eth0, &netlink.Addr{IPNet: netipToIPNet(mustPrefix("198.51.100.9/24"))})
		foreign := &netlink.Route{Dst: netipToIPNet(mustPrefix("203.0.113.0/24")), Gw: netip.MustParseAddr("198.51.100.1").AsSlice(), Protocol: unix.RTPROT_STATIC}
		if err := netlink.RouteAdd(foreign); err != nil {
			t.Fatal(err)
		}

		m := NewManager(filepath.Join(t.TempDir(), "owned.json"))
		want := State{
			Links: []Link{
				{Name: "eth0", MTU: 1400, Addresses: []Address{{Prefix: mustPrefix("192.0.2.10/24")}, {Prefix: mustPrefix("2001:db8::10/64")}}},
				{MAC: eth1.Attrs().HardwareAddr, Addresses: []Address{{Prefix: mustPrefix("10.1.0.1/24")}}},
			},
			Routes: []Route{
				{Dst: mustPrefix("10.20.0.0/16"), Gw: netip.MustParseAddr("192.0.2.1")},
				{Dst: mustPrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("192.0.2.1"), Dev: "eth0"},
			},
		}
		ch, probs, err := m.Apply(want)
		if err != nil || len(probs) != 0 {
			t.Fatalf("first apply: %v %v", err, probs)
		}
		t.Logf("first apply: %s", ch)
		eth0, _ = netlink.LinkByName("eth0")
		if eth0.Attrs().MTU != 1400 {
			t.Errorf("eth0 mtu %d", eth0.Attrs().MTU)
		}
		if got := addrsOf(t, "eth0"); !slices.Equal(got, []string{"192.0.2.10/24", "198.51.100.9/24", "2001:db8::10/64"}) {
			t.Errorf("eth0 addresses %v", got)
		}
		if got := addrsOf(t, "eth1"); !slices.Equal(got, []string{"10.1.0.1/24"}) {
			t.Errorf("eth1 (by MAC) addresses %v", got)
		}
		if got := routesOf(t, Proto); !slices.Equal(got, []string{"10.20.0.0/16 via 192.0.2.1", "default via 192.0.2.1"}) {
			t.Errorf("our routes %v", got)
		}

		// The same state again: not a single write.
		if ch, probs, err := m.Apply(want); err != nil || len(ch) != 0 || len(probs) != 0 {
			t.Errorf("second apply of the same state: changes %q, problems %v, err %v", ch, probs, err)
		}

		// A changed state changes only the difference.
		want.Links[0].Addresses = want.Links[0].Addresses[:1]
		want.Routes[0].Dst = mustPrefix("10.30.0.0/16")
		ch, _, err = m.Apply(want)
		if err != nil {
			t.Fatal(err)
		}
		got := slices.Clone(ch)
		sort.Strings(got)
		if w := []string{"add route 10.30.0.0/16 via 192.0.2.1", "remove 2001:db8::10/64 from eth0", "remove route 10.20.0.0/16 via 192.0.2.1"}; !slices.Equal(got, w) {
			t.Errorf("changes %q, want %q", got, w)
		}
		if got := addrsOf(t, "eth0"); !slices.Equal(got, []string{"192.0.2.10/24", "198.51.100.9/24"}) {
			t.Errorf("eth0 addresses after change %v", got)
		}
		if got := routesOf(t, unix.RTPROT_STATIC); !slices.Equal(got, []string{"203.0.113.0/24 via 198.51.100.1"}) {
			t.Errorf("foreign route touched: %v", got)
		}

		// A missing interface is a problem for it alone.
		want.Links = append(want.Links, Link{Name: "eth9", Addresses: []Address{{Prefix: mustPrefix("10.9.0.1/24")}}})
		ch, probs, err = m.Apply(want)
		if err != nil || len(ch) != 0 || probs["eth9"] != "no such interface" {
			t.Errorf("missing interface: changes %q problems %v err %v", ch, probs, err)
		}

		// A fresh manager (a restarted service) knows what it added.
		m2 := NewManager(m.ownedFile)
		want.Links[0].Addresses = nil
		ch, _, _ = m2.Apply(want)
		if !slices.Contains(ch, "remove 192.0.2.10/24 from eth0") {
			t.Errorf("restarted manager did not remove its own address: %q", ch)
		}
		if got := addrsOf(t, "eth0"); !slices.Equal(got, []string{"198.51.100.9/24"}) {
			t.Errorf("eth0 addresses %v", got)
		}
	})
}

func TestLeaseAddressLifetime(t *testing.T) {
	netnstest.In(t, netnstest.New(t), func() {
		netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "peer0"})
		m := NewManager(filepath.Join(t.TempDir(), "owned.json"))
		lease := Address{Prefix: mustPrefix("10.0.0.50/24"), ValidUntil: time.Now().Add(60 * time.Second)}
		st := State{Links: []Link{{Name: "eth0", Addresses: []Address{lease}}}}
		if _, probs, err := m.Apply(st); err != nil || len(probs) != 0 {
			t.Fatal(err, probs)
		}
		l, _ := netlink.LinkByName("eth0")
		as, _ := netlink.AddrList(l, unix.AF_INET)
		if len(as) != 1 || as[0].ValidLft < 55 || as[0].ValidLft > 60 {
			t.Fatalf("lease address %+v, want valid_lft about 60s", as)
		}
		if ch, _, _ := m.Apply(st); len(ch) != 0 {
			t.Errorf("unchanged lease rewritten: %q", ch)
		}
		st.Links[0].Addresses[0].ValidUntil = time.Now().Add(600 * time.Second) // renewed
		if ch, _, _ := m.Apply(st); !slices.Equal(ch, Changes{"refresh 10.0.0.50/24 on eth0"}) {
			t.Errorf("renewal: %q", ch)
		}
		st.Links[0].Addresses = nil // expired or released
		if ch, _, _ := m.Apply(st); !slices.Equal(ch, Changes{"remove 10.0.0.50/24 from eth0"}) {
			t.Errorf("expiry: %q", ch)
		}
	})
}
