package linuxfw

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"golang.org/x/sys/unix"

	"gatehouse/config"
)

// IPTables is the backend for kernels without nf_tables or hosts that keep
// their firewall in iptables. It owns three chains in the filter table of
// each family and one jump into each from the built-in chains; every other
// chain and rule is left as it is.
type IPTables struct{}

// Our chains and the built-in chain each is entered from, in the order
// iptables-save lists them.
var ipHooks = []struct{ builtin, chain string }{
	{"FORWARD", "GATEHOUSE-FORWARD"},
	{"INPUT", "GATEHOUSE-INPUT"},
	{"OUTPUT", "GATEHOUSE-OUTPUT"},
}

// What differs between the two families' tables.
type ipFamily struct {
	num           int
	af            int // AF_INET or AF_INET6
	name          string
	proto         iptables.Protocol
	cmd           string // iptables or ip6tables
	restore, save string
	icmp          string // protocol name after -p
	icmpType      string // the type match, without the number
	noLimit       []int  // ICMP types never rate limited
	essential     []int  // ICMP types allowed at a bounded rate
	peers         func(Rule) []config.AddrRange
	fullMask      string // as iptables-save prints a host mask
}

var ipFamilies = []ipFamily{
	{
		num: 4, af: unix.AF_INET, name: "IPv4", proto: iptables.ProtocolIPv4, cmd: "iptables",
		restore: "iptables-restore", save: "iptables-save",
		icmp: "icmp", icmpType: "-m icmp --icmp-type",
		// Echo and the errors path MTU discovery and traceroute need.
		essential: []int{0, 3, 8, 11, 12},
		peers:     func(r Rule) []config.AddrRange { return r.V4 },
		fullMask:  "255.255.255.255",
	},
	{
		num: 6, af: unix.AF_INET6, name: "IPv6", proto: iptables.ProtocolIPv6, cmd: "ip6tables",
		restore: "ip6tables-restore", save: "ip6tables-save",
		icmp: "ipv6-icmp", icmpType: "-m icmp6 --icmpv6-type",
		// Neighbour discovery: without it there is no IPv6 at all.
		noLimit:   []int{133, 134, 135, 136},
		essential: []int{1, 2, 3, 4, 128, 129},
		fullMask:  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		peers:     func(r Rule) []config.AddrRange { return r.V6 },
	},
}

// IPTablesAvailable says whether the programs the backend runs are there.
func IPTablesAvailable() error {
	var missing []string
	for _, f := range ipFamilies {
		for _, prog := range []string{f.restore, f.cmd} {
			if _, err := exec.LookPath(prog); err != nil {
				missing = append(missing, prog)
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("firewall: iptables backend: not in PATH: %s", strings.Join(missing, ", "))
	}
	return nil
}

// Apply installs rs in each family on its own. A family's chains are
// flushed and refilled in one iptables-restore commit (--noflush leaves all
// else alone, and flushes a declared chain that exists), so a running filter
// is swapped, never opened; only then are the jumps into the chains made
// sure of. A family that fails (ip6tables refused, say) is reported and
// leaves the other filtered: never filled chains that nothing jumps to. A
// family the kernel does not have (booted with ipv6.disable=1) is skipped:
// it carries no traffic, and its iptables could only fail. One caller at a
// time (the firewall service): placing the jumps reads the built-in chains
// and then changes them.
func (IPTables) Apply(rs Ruleset) error {
	if err := checkBanSets(rs); err != nil {
		return err
	}
	var errs []error
	for _, f := range ipFamilies {
		if !haveFamily(f) {
			continue
		}
		if err := applyFamily(rs, f); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func applyFamily(rs Ruleset, f ipFamily) error {
	cmd := exec.Command(f.restore, "-w", "--noflush")
	cmd.Stdin = strings.NewReader(RenderIPTables(rs, f.num))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("firewall: %s: %s: %v: %s", f.name, f.restore, err, bytes.TrimSpace(out))
	}
	ipt, err := iptables.New(iptables.IPFamily(f.proto))
	if err != nil {
		return fmt.Errorf("firewall: %s: %w", f.name, err)
	}
	for _, h := range ipHooks {
		if err := jumpFirst(ipt, h.builtin, h.chain); err != nil {
			return fmt.Errorf("firewall: %s: jump from %s to %s: %w", f.name, h.builtin, h.chain, err)
		}
	}
	return nil
}

// haveFamily says whether the kernel speaks f's address family at all: a
// kernel booted with ipv6.disable=1 refuses IPv6 sockets. A variable for
// the tests.
var haveFamily = func(f ipFamily) bool {
	fd, err := unix.Socket(f.af, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return !errors.Is(err, unix.EAFNOSUPPORT)
	}
	unix.Close(fd)
	return true
}

// jumpFirst makes the jump into chain the first rule of builtin: a rule
// above it would decide before the filter does. A jump found lower down
// (something was inserted above it) is replaced by a new one at the top,
// added before the old is deleted so that there is always one.
func jumpFirst(ipt *iptables.IPTables, builtin, chain string) error {
	rules, err := ipt.List("filter", builtin)
	if err != nil {
		return err
	}
	jump := "-A " + builtin + " -j " + chain
	var at []int // rule numbers of our jumps
	n := 0
	for _, r := range rules {
		if !strings.HasPrefix(r, "-A ") { // the policy
			continue
		}
		n++
		if r == jump {
			at = append(at, n)
		}
	}
	stale := at
	if len(at) > 0 && at[0] == 1 {
		stale = at[1:]
	} else {
		if err := ipt.Insert("filter", builtin, 1, "-j", chain); err != nil {
			return err
		}
		for i := range stale {
			stale[i]++
		}
	}
	// Bottom up, so that the numbers above stay right; and only if the
	// rule there is still ours.
	for i := len(stale) - 1; i >= 0; i-- {
		if r, err := ipt.ListById("filter", builtin, stale[i]); err != nil || r != jump {
			continue
		}
		if err := ipt.DeleteById("filter", builtin, stale[i]); err != nil {
			return err
		}
	}
	return nil
}

// Remove deletes the jumps and our chains, in both families, as far as it
// can; whatever failed is reported.
func (IPTables) Remove() error {
	var errs []error
	for _, f := range ipFamilies {
		if !haveFamily(f) {
			continue
		}
		ipt, err := iptables.New(iptables.IPFamily(f.proto))
		if err != nil {
			errs = append(errs, fmt.Errorf("firewall: %s: %w", f.name, err))
			continue
		}
		for _, h := range ipHooks {
			if err := removeChain(ipt, h.builtin, h.chain); err != nil {
				errs = append(errs, fmt.Errorf("firewall: %s: remove %s: %w", f.name, h.chain, err))
			}
		}
	}
	return errors.Join(errs...)
}

// removeChain deletes the jumps from builtin into chain, then chain. With
// no chain there can be no jump to it (and iptables -C would fail).
func removeChain(ipt *iptables.IPTables, builtin, chain string) error {
	if ok, err := ipt.ChainExists("filter", chain); err != nil || !ok {
		return err
	}
	for { // every jump: a duplicate would keep the chain referenced
		ok, err := ipt.Exists("filter", builtin, "-j", chain)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if err := ipt.Delete("filter", builtin, "-j", chain); err != nil {
			return err
		}
	}
	return ipt.ClearAndDeleteChain("filter", chain)
}

// Show lists what is installed in the kernel, with packet and byte
// counters: our chains, their rules and the jumps into them.
func (IPTables) Show() (string, error) {
	var b strings.Builder
	for _, f := range ipFamilies {
		if !haveFamily(f) {
			fmt.Fprintf(&b, "# %s: not in this kernel\n", f.name)
			continue
		}
		out, err := exec.Command(f.save, "-c", "-t", "filter").Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = bytes.TrimSpace(ee.Stderr)
			}
			return "", fmt.Errorf("firewall: %s (%s): %v: %s", f.save, f.name, err, stderr)
		}
		fmt.Fprintf(&b, "# %s\n", f.name)
		for line := range strings.Lines(string(out)) {
			if strings.Contains(line, "GATEHOUSE") {
				b.WriteString(line)
			}
		}
	}
	return b.String(), nil
}

// Ban drops new connections from a to the ports of the ban set named set
// for the ban set's Timeout, which the installed rule checks (d is that
// time, as the banning service has it): an entry in the kernel's recent
// list, renewed by banning again.
func (IPTables) Ban(set string, a netip.Addr, d time.Duration) error {
	return writeRecent(set, a, "+")
}

// Unban removes a from the ban set's recent list.
func (IPTables) Unban(set string, a netip.Addr) error {
	return writeRecent(set, a, "-")
}

// writeRecent adds (+) or removes (-) a in the ban set's xt_recent list.
func writeRecent(set string, a netip.Addr, op string) error {
	a = a.Unmap()
	lists := BanSet{Name: set}.recentLists()
	list := lists[0]
	if a.Is6() {
		list = lists[1]
	}
	// thread-self: /proc/net is the main thread's namespace, and a
	// caller may run in another (the tests do).
	f, err := os.OpenFile(filepath.Join("/proc/thread-self/net/xt_recent", list), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("firewall: ban list %s: %w (is the iptables firewall installed?)", list, err)
	}
	defer f.Close()
	if _, err := f.WriteString(op + a.String() + "\n"); err != nil && !(op == "-" && errors.Is(err, syscall.ENOENT)) {
		return fmt.Errorf("firewall: ban list %s: %s%s: %w", list, op, a, err)
	}
	return nil
}

// RenderIPTables is the iptables-restore input that installs rs for one
// family (4 or 6; any other gives ""). It declares and fills only our
// chains; chains and rules are written as iptables-save prints them, so
// that what is installed can be compared line by line.
func RenderIPTables(rs Ruleset, family int) string {
	for _, f := range ipFamilies {
		if f.num == family {
			return renderFamily(rs, f)
		}
	}
	return ""
}

func renderFamily(rs Ruleset, f ipFamily) string {
	w := &restoreWriter{f: f, boot: rs.Boot}
	w.b.WriteString("*filter\n")
	for _, h := range ipHooks {
		fmt.Fprintf(&w.b, ":%s - [0:0]\n", h.chain)
	}
	w.rule("GATEHOUSE-FORWARD", "-j DROP")

	const in = "GATEHOUSE-INPUT"
	w.common(in, "-i")
	for _, bs := range rs.BanSets {
		// A banning service writes the source into the kernel's recent
		// list (IPTables.Ban); the list outlives refills of the chain, and
		// a source stays dropped for the set's Timeout after its entry.
		secs := max(int((bs.Timeout+time.Second-1)/time.Second), 1)
		list := bs.recentLists()[0]
		if f.num == 6 {
			list = bs.recentLists()[1]
		}
		for _, p := range bs.Ports {
			w.rule(in, fmt.Sprintf("-p %s -m %s --dport %d -m recent --rcheck --seconds %d --name %s --mask %s --rsource -j DROP",
				bs.Proto, bs.Proto, p, secs, list, w.f.fullMask))
		}
	}
	if rs.DHCPClient {
		// In both families, as the nftables backend's inet rule is.
		w.rule(in, "-p udp -m udp --sport 67 --dport 68 -j ACCEPT")
	}
	for _, r := range rs.In {
		w.path(in, "-s", r)
	}
	w.rule(in, `-m limit --limit 5/sec --limit-burst 10 -j LOG --log-prefix "gatehouse drop in: "`)
	w.rule(in, "-j DROP")

	// Open egress leaves the chain empty: the jump returns.
	if rs.RestrictEgress {
		const out = "GATEHOUSE-OUTPUT"
		w.common(out, "-o")
		for _, r := range rs.Out {
			w.path(out, "-d", r)
		}
		w.rule(out, `-m limit --limit 5/sec --limit-burst 10 -j LOG --log-prefix "gatehouse drop out: "`)
		w.rule(out, "-j DROP")
	}
	w.b.WriteString("COMMIT\n")
	return w.b.String()
}

type restoreWriter struct {
	b    strings.Builder
	f    ipFamily
	boot bool // DefaultDeny's rules
}

// rule appends a rule to chain; empty parts of spec are left out.
func (w *restoreWriter) rule(chain string, spec ...string) {
	fmt.Fprintf(&w.b, "-A %s", chain)
	for _, s := range spec {
		if s != "" {
			fmt.Fprintf(&w.b, " %s", s)
		}
	}
	w.b.WriteString("\n")
}

// common: replies, invalid packets, loopback and ICMP, in every filtering
// chain; at boot ICMP only for neighbour discovery. The limit is per ICMP
// type: an iptables rule matches one type, and a shared bucket would take a
// chain of its own.
func (w *restoreWriter) common(chain, ifOpt string) {
	w.rule(chain, "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
	w.rule(chain, "-m conntrack --ctstate INVALID -j DROP")
	w.rule(chain, ifOpt, "lo -j ACCEPT")
	for _, t := range w.f.noLimit {
		w.rule(chain, "-p", w.f.icmp, w.f.icmpType, strconv.Itoa(t), "-j ACCEPT")
	}
	if w.boot {
		return
	}
	for _, t := range w.f.essential {
		w.rule(chain, "-p", w.f.icmp, w.f.icmpType, strconv.Itoa(t), "-m limit --limit 20/sec --limit-burst 40 -j ACCEPT")
	}
}

// path lets one path's traffic of this family through: one rule per port
// range and peer prefix. addrOpt is -s (inbound) or -d (outbound).
func (w *restoreWriter) path(chain, addrOpt string, r Rule) {
	var peers []string // address matches; "" for anyone
	if r.Any {
		peers = []string{""}
	} else {
		for _, ar := range merge(w.f.peers(r)) {
			for _, p := range rangeToPrefixes(ar.From, ar.To) {
				peers = append(peers, addrOpt+" "+p.String())
			}
		}
	}
	switch r.Proto {
	case "icmp":
		for _, p := range peers {
			w.rule(chain, p, "-p", w.f.icmp, "-j ACCEPT")
		}
	case "tcp", "udp":
		for _, pr := range r.Ports {
			port := strconv.Itoa(int(pr.From))
			if pr.To != pr.From {
				port += ":" + strconv.Itoa(int(pr.To))
			}
			for _, p := range peers {
				w.rule(chain, p, "-p", r.Proto, "-m", r.Proto, "--dport", port, "-j ACCEPT")
			}
		}
	}
}

// rangeToPrefixes splits an inclusive address range into the fewest
// prefixes that cover exactly it (iptables matches prefixes, not ranges).
// Both ends must be of one family and from <= to; else it returns nil.
func rangeToPrefixes(from, to netip.Addr) []netip.Prefix {
	from, to = from.WithZone(""), to.WithZone("")
	if !from.IsValid() || !to.IsValid() || from.BitLen() != to.BitLen() || to.Less(from) {
		return nil
	}
	var out []netip.Prefix
	for {
		// The largest block that starts at from and does not pass to; the
		// full-length prefix always qualifies.
		var p netip.Prefix
		for bits := 0; bits <= from.BitLen(); bits++ {
			p = netip.PrefixFrom(from, bits)
			if p.Masked().Addr() == from && !to.Less(config.LastAddr(p)) {
				break
			}
		}
		out = append(out, p)
		last := config.LastAddr(p)
		if last == to {
			return out
		}
		from = last.Next()
	}
}
