// Command fwbench measures applying a large firewall (`make
// bench-firewall`): 200 inbound paths with 5,000 peer addresses in all,
// installed by the nftables backend, against iptables-restore loading the
// equivalent rules, in the same run, in a network namespace of its own.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"time"

	"gatehouse/config"
	"gatehouse/linuxfw"
)

func main() {
	paths := flag.Int("paths", 200, "inbound paths")
	peers := flag.Int("peers", 5000, "peer addresses in all")
	rounds := flag.Int("rounds", 7, "applies of each")
	flag.Parse()
	if err := run(*paths, *peers, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "fwbench:", err)
		os.Exit(1)
	}
}

func run(nPaths, nPeers, rounds int) error {
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
	med := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2].Microseconds()) / 1000
	}
	fmt.Printf("firewall_paths=%d\nfirewall_peers=%d\n", nPaths, per*nPaths)
	fmt.Printf("gatehouse_nft_apply_ms=%.1f\n", med(nft))
	fmt.Printf("iptables_restore_ms=%.1f\n", med(iptr))
	fmt.Printf("firewall_apply_ratio=%.2f\n", med(nft)/med(iptr))
	return nil
}
