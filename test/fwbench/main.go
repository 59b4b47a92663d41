// Command fwbench measures applying a large firewall (`make
// bench-firewall`): 200 inbound paths with 5,000 peer addresses in all,
// installed by the nftables backend, against iptables-restore loading the
// equivalent rules, in the same run, in a network namespace of its own.
// Then, on the installed table, what a running firewall service does: a
// change of peers only (10 % of the paths: some addresses moved, some
// added, some removed), applied as set updates; a change of structure (a
// path added, another's port changed), which replaces the rules; and the
// whole table replaced by a backend that remembers nothing (a fresh
// process, or after a failure).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"gatehouse/config"
	"gatehouse/linuxfw"
)

func main() {
	paths := flag.Int("paths", 200, "inbound paths")
	peers := flag.Int("peers", 5000, "peer addresses in all")
	rounds := flag.Int("rounds", 7, "applies of each")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the nftables applies to this file")
	flag.Parse()
	if err := run(*paths, *peers, *rounds, *cpuprofile); err != nil {
		fmt.Fprintln(os.Stderr, "fwbench:", err)
		os.Exit(1)
	}
}

func run(nPaths, nPeers, rounds int, cpuprofile string) error {
	// The whole process runs in the namespace, as the firewall service
	// runs in the appliance's: a thread locked into a namespace would add
	// a thread hand-off to every netlink read and measure that instead.
	if os.Getenv("GH_FWBENCH_NS") == "" {
		name := fmt.Sprintf("ghfwbench%d", os.Getpid())
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			return fmt.Errorf("ip netns add %s: %v: %s", name, err, out)
		}
		defer exec.Command("ip", "netns", "del", name).Run()
		cmd := exec.Command("ip", append([]string{"netns", "exec", name}, os.Args...)...)
		cmd.Env = append(os.Environ(), "GH_FWBENCH_NS="+name)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		return cmd.Run()
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	// The same paths for both: distinct ports, distinct peer addresses.
	var rs linuxfw.Ruleset
	var ipt bytes.Buffer
	ipt.WriteString("*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	ipt.WriteString("-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -m conntrack --ctstate INVALID -j DROP\n-A INPUT -i lo -j ACCEPT\n")
	per := nPeers / nPaths
	addr := netip.MustParseAddr("10.0.0.1")
	for i := range nPaths {
		port := uint16(10000 + i)
		r := linuxfw.Rule{Function: fmt.Sprintf("path %d", i), Proto: "tcp", Ports: []config.PortRange{{From: port, To: port}}}
		for range per {
			r.V4 = append(r.V4, config.AddrRange{From: addr, To: addr})
			fmt.Fprintf(&ipt, "-A INPUT -s %s/32 -p tcp -m tcp --dport %d -j ACCEPT\n", addr, port)
			addr = addr.Next().Next() // not adjacent: no merging
		}
		rs.In = append(rs.In, r)
	}
	ipt.WriteString("COMMIT\n")

	var nft, iptr []time.Duration
	for range rounds {
		t0 := time.Now()
		if err := (linuxfw.NFT{}).Apply(rs); err != nil {
			return err
		}
		nft = append(nft, time.Since(t0))
		(linuxfw.NFT{}).Remove()

		cmd := exec.Command("iptables-restore")
		cmd.Stdin = bytes.NewReader(ipt.Bytes())
		t0 = time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("iptables-restore: %v: %s", err, out)
		}
		iptr = append(iptr, time.Since(t0))
		exec.Command("iptables", "-F").Run()
	}

	// The firewall service's backend, on an installed table.
	fw := linuxfw.NewNFT()
	if err := fw.Apply(rs); err != nil {
		return err
	}
	cur := rs
	fresh := netip.MustParseAddr("10.128.0.1") // addresses moved and added come from here
	var peersChange []time.Duration
	for round := range rounds {
		next, changed := changePeers(cur, round, &fresh)
		t0 := time.Now()
		a, err := fw.Update(next)
		if err != nil {
			return fmt.Errorf("peers change: %w", err)
		}
		peersChange = append(peersChange, time.Since(t0))
		if a.Replaced || a.Sets != changed {
			return fmt.Errorf("peers change: %+v, want %d sets updated in place", a, changed)
		}
		cur = next
	}
	if err := checkPeers(cur); err != nil {
		return fmt.Errorf("after the peers changes: %w", err)
	}

	// A change of structure, and back, alternately.
	var structure []time.Duration
	alt := restructure(cur, &fresh)
	for round := range rounds {
		next := alt
		if round%2 == 1 {
			next = cur
		}
		t0 := time.Now()
		a, err := fw.Update(next)
		if err != nil {
			return fmt.Errorf("structure change: %w", err)
		}
		structure = append(structure, time.Since(t0))
		if !a.Replaced || a.Retried != nil {
			return fmt.Errorf("structure change: %+v, want the rules replaced in place", a)
		}
	}

	// The whole table replaced, onto the installed one, by a backend
	// that remembers nothing.
	var cold []time.Duration
	for round := range rounds {
		next := alt
		if round%2 == 1 {
			next = cur
		}
		t0 := time.Now()
		if err := (linuxfw.NFT{}).Apply(next); err != nil {
			return fmt.Errorf("replace: %w", err)
		}
		cold = append(cold, time.Since(t0))
	}

	fmt.Printf("firewall_paths=%d\nfirewall_peers=%d\n", nPaths, per*nPaths)
	fmt.Printf("gatehouse_nft_apply_ms=%.1f\n", med(nft))
	fmt.Printf("iptables_restore_ms=%.1f\n", med(iptr))
	fmt.Printf("firewall_apply_ratio=%.2f\n", med(nft)/med(iptr))
	spread := func(name string, d []time.Duration) {
		fmt.Printf("%s_ms=%.1f\n%s_min_ms=%.1f\n%s_max_ms=%.1f\n", name, med(d), name, ms(slices.Min(d)), name, ms(slices.Max(d)))
	}
	spread("gatehouse_nft_peers_change", peersChange)
	spread("gatehouse_nft_full_replace", structure)
	spread("gatehouse_nft_cold_replace", cold)
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func med(d []time.Duration) float64 {
	d = slices.Clone(d)
	slices.Sort(d)
	return ms(d[len(d)/2])
}

// changePeers changes the peers of every tenth path (an offset by
// round): of each, 5 addresses move, 3 are added, 2 removed. It returns
// the new ruleset and how many paths changed.
func changePeers(rs linuxfw.Ruleset, round int, fresh *netip.Addr) (linuxfw.Ruleset, int) {
	take := func() config.AddrRange {
		a := *fresh
		*fresh = fresh.Next().Next()
		return config.AddrRange{From: a, To: a}
	}
	rs.In = slices.Clone(rs.In)
	n := 0
	for i := round % 10; i < len(rs.In); i += 10 {
		r := &rs.In[i]
		peers := slices.Clone(r.V4)
		for k := 0; k < 5 && k < len(peers); k++ {
			peers[k] = take() // moved
		}
		peers = peers[:max(len(peers)-2, 0)] // removed
		for range 3 {
			peers = append(peers, take()) // added
		}
		r.V4 = peers
		n++
	}
	return rs, n
}

// restructure is rs with a path added in the middle and the first path
// on another port: a config change that alters the rules.
func restructure(rs linuxfw.Ruleset, fresh *netip.Addr) linuxfw.Ruleset {
	rs.In = slices.Clone(rs.In)
	rs.In[0].Ports = []config.PortRange{{From: 9999, To: 9999}}
	added := linuxfw.Rule{Function: "added", Proto: "tcp", Ports: []config.PortRange{{From: 9998, To: 9998}}}
	for range 25 {
		added.V4 = append(added.V4, config.AddrRange{From: *fresh, To: *fresh})
		*fresh = fresh.Next().Next()
	}
	rs.In = slices.Insert(rs.In, len(rs.In)/2, added)
	return rs
}

// checkPeers reads the input chain back from the kernel and checks that
// the set each path's rule looks up holds exactly the path's peers.
func checkPeers(rs linuxfw.Ruleset) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: linuxfw.TableName}
	rules, err := c.GetRules(t, &nftables.Chain{Name: "input", Table: t})
	if err != nil {
		return err
	}
	sets, err := c.GetSets(t)
	if err != nil {
		return err
	}
	byPort := map[uint16]string{} // the set a port's rule looks up
	for _, r := range rules {
		var set string
		var port []byte
		for _, e := range r.Exprs {
			switch e := e.(type) {
			case *expr.Lookup:
				set = e.SetName
			case *expr.Cmp:
				port = e.Data
			}
		}
		if set != "" && len(port) == 2 {
			byPort[uint16(port[0])<<8|uint16(port[1])] = set
		}
	}
	for _, r := range rs.In {
		name, ok := byPort[r.Ports[0].From]
		i := slices.IndexFunc(sets, func(s *nftables.Set) bool { return s.Name == name })
		if !ok || i < 0 {
			return fmt.Errorf("path %s: no peer set in the kernel", r.Function)
		}
		elems, err := c.GetSetElements(sets[i])
		if err != nil {
			return err
		}
		// Each peer a single address: an interval from it to the next.
		var got, gotEnds, want, wantEnds []netip.Addr
		for _, e := range elems {
			if a, ok := netip.AddrFromSlice(e.Key); !ok {
				continue
			} else if e.IntervalEnd {
				gotEnds = append(gotEnds, a)
			} else {
				got = append(got, a)
			}
		}
		for _, p := range r.V4 {
			want = append(want, p.From)
			wantEnds = append(wantEnds, p.To.Next())
		}
		for _, l := range [][]netip.Addr{got, gotEnds, want, wantEnds} {
			slices.SortFunc(l, netip.Addr.Compare)
		}
		if !slices.Equal(got, want) || !slices.Equal(gotEnds, wantEnds) {
			return fmt.Errorf("path %s: set %s holds %v (ends %v), want %v", r.Function, name, got, gotEnds, want)
		}
	}
	return nil
}
