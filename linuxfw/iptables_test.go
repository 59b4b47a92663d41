package linuxfw

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gatehouse/config"
	"gatehouse/test/golden"
	"gatehouse/test/netnstest"
	"gatehouse/test/testserver"
)

// The iptables-restore input for each family, against golden files: the
// example config's, and the boot-time default deny.
func TestGoldenIPTablesRuleset(t *testing.T) {
	for name, rs := range map[string]Ruleset{"example": exampleRuleset(t), "default-deny": DefaultDeny(exampleBans)} {
		checkIPTablesGolden(t, rs, name)
	}
	if got := RenderIPTables(exampleRuleset(t), 5); got != "" {
		t.Errorf("family 5: %q", got)
	}
}

func checkIPTablesGolden(t *testing.T, rs Ruleset, name string) {
	t.Helper()
	for _, fam := range []int{4, 6} {
		golden.Check(t, fmt.Sprintf("%s.iptables%d", name, fam), RenderIPTables(rs, fam))
	}
}

func TestRangeToPrefixes(t *testing.T) {
	tests := []struct {
		from, to string
		want     []string
	}{
		{"10.0.0.5", "10.0.0.5", []string{"10.0.0.5/32"}},
		{"198.51.100.0", "198.51.100.15", []string{"198.51.100.0/28"}},
		{"192.168.0.1", "192.168.0.50", []string{"192.168.0.1/32", "192.168.0.2/31", "192.168.0.4/30", "192.168.0.8/29",
			"192.168.0.16/28", "192.168.0.32/28", "192.168.0.48/31", "192.168.0.50/32"}},
		{"10.0.0.255", "10.0.1.0", []string{"10.0.0.255/32", "10.0.1.0/32"}},
		{"0.0.0.0", "255.255.255.255", []string{"0.0.0.0/0"}},
		{"0.0.0.0", "127.255.255.255", []string{"0.0.0.0/1"}},
		{"255.255.255.254", "255.255.255.255", []string{"255.255.255.254/31"}},
		{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", []string{"::/0"}},
		{"2001:db8:5::", "2001:db8:5:ffff:ffff:ffff:ffff:ffff", []string{"2001:db8:5::/48"}},
		{"2001:db8::", "2001:db8::1:0", []string{"2001:db8::/112", "2001:db8::1:0/128"}},
		{"2001:db8::1", "2001:db8::3", []string{"2001:db8::1/128", "2001:db8::2/127"}},
		{"fe80::1%eth0", "fe80::1%eth0", []string{"fe80::1/128"}},
		// Not ranges: the wrong way round, or of two families.
		{"10.0.0.2", "10.0.0.1", nil},
		{"10.0.0.1", "::1", nil},
	}
	for _, tt := range tests {
		var got []string
		for _, p := range rangeToPrefixes(netip.MustParseAddr(tt.from), netip.MustParseAddr(tt.to)) {
			got = append(got, p.String())
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("rangeToPrefixes(%s, %s) = %v, want %v", tt.from, tt.to, got, tt.want)
		}
	}
	// Full coverage minus the first address: one prefix per bit.
	if got := rangeToPrefixes(netip.MustParseAddr("::1"), netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")); len(got) != 128 {
		t.Errorf("::1 to the end: %d prefixes, want 128", len(got))
	}
}

// Random ranges: the prefixes follow each other from from to to, and none
// could be doubled (its parent block lies inside the range), which would
// make the list longer than it need be.
func TestRangeToPrefixesCoverExactly(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		a, b := r.Uint32(), r.Uint32()>>r.IntN(32)
		if r.IntN(2) == 0 {
			b = a + r.Uint32N(1000)
			if b < a {
				b = a
			}
		}
		if b < a {
			a, b = b, a
		}
		from, to := addrFrom32(a), addrFrom32(b)
		ps := rangeToPrefixes(from, to)
		next := from
		for i, p := range ps {
			if p.Addr() != next || p.Masked() != p {
				t.Fatalf("%s-%s: prefix %d is %s, want one starting at %s", from, to, i, p, next)
			}
			if p.Bits() > 0 {
				parent := netip.PrefixFrom(p.Addr(), p.Bits()-1).Masked()
				if !parent.Addr().Less(from) && !to.Less(config.LastAddr(parent)) {
					t.Fatalf("%s-%s: %s could be %s", from, to, p, parent)
				}
			}
			next = config.LastAddr(p).Next()
		}
		if config.LastAddr(ps[len(ps)-1]) != to {
			t.Fatalf("%s-%s: ends at %s", from, to, config.LastAddr(ps[len(ps)-1]))
		}
	}
}

func addrFrom32(u uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
}

// Apply installs the rules as rendered with the jumps at the top, a second
// Apply swaps the rules and keeps one jump each, and Remove takes it all
// away again; rules and chains of others are untouched throughout. All in
// a namespace of its own, checked from the host too.
func TestIPTablesApplyAndRemove(t *testing.T) {
	if err := IPTablesAvailable(); err != nil {
		t.Skip(err)
	}
	rs := exampleRuleset(t)
	// The same without the first inbound path (port 22 from the admins), and
	// with open egress.
	fewer := rs
	fewer.In = slices.Clone(rs.In[1:])
	fewer.RestrictEgress = false
	if rs.In[0].Ports[0].From != 22 {
		t.Fatalf("the example's first inbound path is not to port 22: %+v", rs.In[0])
	}

	inNetns(t, func(ns string) {
		// Through ip netns exec, so the checks see the namespace whatever
		// thread they run on; Apply relies on exec inheriting the thread's.
		run := func(args ...string) string {
			t.Helper()
			out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %v: %s", args, err, out)
			}
			return string(out)
		}
		save := func(cmd string) string { // without the timestamp comments
			t.Helper()
			return regexp.MustCompile(`(?m)^#.*\n`).ReplaceAllString(run(cmd), "")
		}
		for _, cmd := range []string{"iptables", "ip6tables"} {
			run(cmd, "-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "ACCEPT")
			run(cmd, "-N", "FOREIGN")
			run(cmd, "-A", "FOREIGN", "-p", "udp", "--dport", "9", "-j", "RETURN")
			run(cmd, "-A", "OUTPUT", "-j", "FOREIGN")
		}
		before4, before6 := save("iptables-save"), save("ip6tables-save")

		check := func(rs Ruleset) {
			t.Helper()
			for _, fam := range []struct {
				save string
				num  int
			}{{"iptables-save", 4}, {"ip6tables-save", 6}} {
				got := save(fam.save)
				for _, h := range ipHooks {
					jump := "-A " + h.builtin + " -j " + h.chain + "\n"
					first := regexp.MustCompile(`(?m)^-A ` + h.builtin + ` .*\n`).FindString(got)
					if strings.Count(got, jump) != 1 || first != jump {
						t.Errorf("%s: want the jump to %s once, first in %s:\n%s", fam.save, h.chain, h.builtin, got)
					}
				}
				// What is installed is what was rendered, line for line.
				ours := regexp.MustCompile(`(?m)^(:GATEHOUSE-\S+ - |-A GATEHOUSE-).*\n`)
				want := strings.Join(ours.FindAllString(RenderIPTables(rs, fam.num), -1), "")
				if inst := strings.Join(ours.FindAllString(got, -1), ""); inst != want {
					t.Errorf("%s: installed chains:\n%s\nwant:\n%s", fam.save, inst, want)
				}
				if !strings.Contains(got, "-A INPUT -p tcp -m tcp --dport 9 -j ACCEPT\n") ||
					!strings.Contains(got, "-A FOREIGN -p udp -m udp --dport 9 -j RETURN\n") {
					t.Errorf("%s: foreign rules gone:\n%s", fam.save, got)
				}
			}
		}

		start := time.Now()
		if err := (IPTables{}).Apply(rs); err != nil {
			t.Fatal(err)
		}
		t.Logf("first Apply: %v", time.Since(start))
		check(rs)
		if !strings.Contains(save("iptables-save"), "--dport 22 -j ACCEPT") {
			t.Error("no rule for port 22")
		}

		// The same again changes nothing.
		after4 := save("iptables-save")
		start = time.Now()
		if err := (IPTables{}).Apply(rs); err != nil {
			t.Fatal(err)
		}
		t.Logf("second Apply: %v", time.Since(start))
		if got := save("iptables-save"); got != after4 {
			t.Errorf("second Apply changed the table:\n%s\nwas:\n%s", got, after4)
		}

		// Something inserted above the jump: the jump moves back to the top.
		run("iptables", "-I", "INPUT", "1", "-p", "tcp", "--dport", "10", "-j", "ACCEPT")
		if err := (IPTables{}).Apply(fewer); err != nil {
			t.Fatal(err)
		}
		check(fewer)
		got := save("iptables-save")
		if strings.Contains(got, "--dport 22 -j ACCEPT") {
			t.Errorf("rule for port 22 still there:\n%s", got)
		}
		if strings.Contains(got, "-A GATEHOUSE-OUTPUT") {
			t.Errorf("open egress, yet output rules:\n%s", got)
		}
		if !strings.Contains(got, "-A INPUT -j GATEHOUSE-INPUT\n-A INPUT -p tcp -m tcp --dport 10 -j ACCEPT\n") {
			t.Errorf("inserted rule not kept after the jump:\n%s", got)
		}
		run("iptables", "-D", "INPUT", "-p", "tcp", "--dport", "10", "-j", "ACCEPT")

		shown, err := (IPTables{}).Show()
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`^# IPv4\n(.*GATEHOUSE.*\n)+# IPv6\n(.*GATEHOUSE.*\n)+$`).MatchString(shown) ||
			!strings.Contains(shown, "] -A INPUT -j GATEHOUSE-INPUT\n") || strings.Contains(shown, "FOREIGN") {
			t.Errorf("Show:\n%s", shown)
		}

		// Meanwhile the host has none of it.
		hostDone := make(chan struct{})
		go func() { // not on this goroutine's thread, which is in the namespace
			defer close(hostDone)
			assertHostClean(t)
		}()
		<-hostDone

		if err := (IPTables{}).Remove(); err != nil {
			t.Fatal(err)
		}
		if got := save("iptables-save"); got != before4 {
			t.Errorf("IPv4 after Remove:\n%s\nbefore Apply:\n%s", got, before4)
		}
		if got := save("ip6tables-save"); got != before6 {
			t.Errorf("IPv6 after Remove:\n%s\nbefore Apply:\n%s", got, before6)
		}
		// Removing what is not there is no error.
		if err := (IPTables{}).Remove(); err != nil {
			t.Errorf("second Remove: %v", err)
		}
	})
	assertHostClean(t)
}

func assertHostClean(t *testing.T) {
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		out, err := exec.Command(cmd).CombinedOutput()
		if err != nil {
			t.Errorf("host %s: %v: %s", cmd, err, out)
		}
		if bytes.Contains(out, []byte("GATEHOUSE")) {
			t.Errorf("host %s shows our chains:\n%s", cmd, out)
		}
	}
}

// On a host with nothing of ours (nor any iptables table), Remove has
// nothing to do and Show nothing to show.
func TestIPTablesRemoveNothing(t *testing.T) {
	if err := IPTablesAvailable(); err != nil {
		t.Skip(err)
	}
	inNetns(t, func(string) {
		if err := (IPTables{}).Remove(); err != nil {
			t.Error(err)
		}
		if got, err := (IPTables{}).Show(); err != nil || got != "# IPv4\n# IPv6\n" {
			t.Errorf("Show = %q, %v", got, err)
		}
	})
}

// A ban goes into the kernel's recent list, which the rule checks,
// and outlives the chain's refill; Ban finds the iptables firewall when
// there is no nftables table.
func TestIPTablesBan(t *testing.T) {
	rs := exampleRuleset(t)
	inNetns(t, func(string) {
		if err := (IPTables{}).Apply(rs); err != nil {
			t.Fatal(err)
		}
		if err := Ban(exampleBans.Name, netip.MustParseAddr("203.0.113.9"), time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := Ban(exampleBans.Name, netip.MustParseAddr("2001:db8::9"), time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := (IPTables{}).Apply(rs); err != nil {
			t.Fatal(err)
		}
		lists := exampleBans.recentLists()
		for list, want := range map[string]string{lists[0]: "src=203.0.113.9 ", lists[1]: "src=2001:0db8:0000:0000:0000:0000:0000:0009 "} {
			b, err := os.ReadFile("/proc/thread-self/net/xt_recent/" + list)
			if err != nil || !strings.Contains(string(b), want) {
				t.Errorf("%s after a re-apply: %v\n%s", list, err, b)
			}
		}
		// Lifted, and lifting again (nothing there) is no error.
		for range 2 {
			if err := Unban(exampleBans.Name, netip.MustParseAddr("203.0.113.9")); err != nil {
				t.Fatal(err)
			}
		}
		if b, _ := os.ReadFile("/proc/thread-self/net/xt_recent/" + lists[0]); strings.Contains(string(b), "203.0.113.9") {
			t.Errorf("still listed after Unban:\n%s", b)
		}
	})
}

// Each family is applied and hooked on its own: when the kernel refuses
// one family's rules, the other is filtered all the same (its INPUT jumps
// to GATEHOUSE-INPUT, and a port no path opens is dropped), and the error
// names the family that failed. Once the refusal ends, both go in.
func TestIPTablesFamilyFailsAlone(t *testing.T) {
	if err := IPTablesAvailable(); err != nil {
		t.Skip(err)
	}
	rs := exampleRuleset(t)
	for _, c := range []struct {
		broken, failed, working string // nft family, then iptables' names for them
		save, addr              string // the working family's save program, and a listener of it
	}{
		{"ip6", "IPv6", "IPv4", "iptables-save", "10.9.0.1:2222"},
		{"ip", "IPv4", "IPv6", "ip6tables-save", "[fd00:9::1]:2222"},
	} {
		t.Run(c.failed+" refused", func(t *testing.T) {
			inNetns(t, func(ns string) {
				run := func(args ...string) string {
					t.Helper()
					out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
					if err != nil {
						t.Fatalf("%v: %v: %s", args, err, out)
					}
					return string(out)
				}
				// A peer on a veth, to knock from outside.
				peer := ns + "p"
				run("ip", "netns", "add", peer)
				defer exec.Command("ip", "netns", "del", peer).Run()
				run("ip", "-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", peer)
				run("ip", "-n", ns, "addr", "add", "10.9.0.1/24", "dev", "v0")
				run("ip", "-n", ns, "addr", "add", "fd00:9::1/64", "dev", "v0", "nodad")
				run("ip", "-n", peer, "addr", "add", "10.9.0.2/24", "dev", "v1")
				run("ip", "-n", peer, "addr", "add", "fd00:9::2/64", "dev", "v1", "nodad")
				for _, n := range []string{ns, peer} {
					run("ip", "-n", n, "link", "set", "lo", "up")
				}
				run("ip", "-n", ns, "link", "set", "v0", "up")
				run("ip", "-n", peer, "link", "set", "v1", "up")
				l, err := net.Listen("tcp", c.addr) // on this thread: in ns
				if err != nil {
					t.Fatal(err)
				}
				testserver.Serve(t, l, func(net.Conn) {})
				// The link may take a moment to carry.
				for deadline := time.Now().Add(10 * time.Second); netnstest.Reach(t, peer, c.addr) != "open"; {
					if time.Now().After(deadline) {
						t.Fatalf("before any firewall, %s does not answer", c.addr)
					}
				}

				release := netnstest.OwnTable(t, ns, c.broken+" filter")
				err = (IPTables{}).Apply(rs)
				if err == nil || !strings.Contains(err.Error(), c.failed+":") || strings.Contains(err.Error(), c.working+":") {
					t.Errorf("Apply with %s refused: err = %v, want an error of %s alone", c.failed, err, c.failed)
				}
				got := run("ip", "netns", "exec", ns, c.save)
				if !regexp.MustCompile(`(?m)^-A INPUT -j GATEHOUSE-INPUT\n`).MatchString(got) ||
					!strings.Contains(got, "-A GATEHOUSE-INPUT -j DROP\n") {
					t.Errorf("%s not hooked and filled while %s was refused:\n%s", c.working, c.failed, got)
				}
				if got := netnstest.Reach(t, peer, c.addr); got != "blocked" {
					t.Errorf("%s: %s with %s refused, want blocked", c.addr, got, c.failed)
				}

				release()
				if err := (IPTables{}).Apply(rs); err != nil {
					t.Errorf("Apply once %s is free: %v", c.failed, err)
				}
				for _, save := range []string{"iptables-save", "ip6tables-save"} {
					if got := run("ip", "netns", "exec", ns, save); !strings.Contains(got, "-A INPUT -j GATEHOUSE-INPUT\n") {
						t.Errorf("%s after the retry:\n%s", save, got)
					}
				}
			})
		})
	}
}

// A family the kernel does not have is left alone, without an error: a
// kernel booted with ipv6.disable=1 has no IPv6 to filter.
func TestIPTablesSkipsFamilyNotInKernel(t *testing.T) {
	if err := IPTablesAvailable(); err != nil {
		t.Skip(err)
	}
	have := haveFamily
	haveFamily = func(f ipFamily) bool { return f.num == 4 }
	defer func() { haveFamily = have }()
	rs := exampleRuleset(t)
	inNetns(t, func(ns string) {
		netnstest.OwnTable(t, ns, "ip6 filter") // would refuse, were it asked
		if err := (IPTables{}).Apply(rs); err != nil {
			t.Errorf("Apply: %v", err)
		}
		out, err := exec.Command("ip", "netns", "exec", ns, "iptables-save").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "-A INPUT -j GATEHOUSE-INPUT\n") {
			t.Errorf("iptables-save: %v\n%s", err, out)
		}
		if got, err := (IPTables{}).Show(); err != nil || !strings.HasSuffix(got, "# IPv6: not in this kernel\n") {
			t.Errorf("Show = %q, %v", got, err)
		}
		if err := (IPTables{}).Remove(); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})
}
