package linuxfw

import (
	"bytes"
	"context"
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
	"gatehouse/dnsclient"
	"gatehouse/paths"
	"gatehouse/test/golden"
	"gatehouse/test/netnstest"
)

// fakeDNS answers with a TTL of ttl; a name it lacks does not exist.
type fakeDNS struct {
	zone map[string][]netip.Addr
	ttl  time.Duration
}

func (f fakeDNS) LookupTTL(_ context.Context, host string) ([]netip.Addr, time.Duration, error) {
	if a, ok := f.zone[host]; ok {
		return a, f.ttl, nil
	}
	return nil, 0, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func fakeNames(zone map[string][]netip.Addr) *dnsclient.Names {
	return dnsclient.NewNames(fakeDNS{zone: zone, ttl: time.Hour})
}

// inNetns runs f on a thread inside a new, empty network namespace, so
// nothing touches the host's firewall. The thread is thrown away after.
func inNetns(t *testing.T, f func(nsName string)) {
	t.Helper()
	name := fmt.Sprintf("ghfw%d-%d", os.Getpid(), rand.N(1<<30)) // unique across test processes
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", name).Run()
	netnstest.In(t, name, func() { f(name) })
}

// exampleBans is a ban set as the product declares one (the
// example config's port and ban time): the golden files have its names.
var exampleBans = BanSet{Name: "ssh", Proto: "tcp", Ports: []uint16{22}, Timeout: 15 * time.Minute}

func exampleRuleset(t *testing.T) Ruleset {
	t.Helper()
	c, _, err := config.Load("../config/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.Firewall.Egress = "restricted"
	rs, err := Build(context.Background(), c, paths.Table(c),
		fakeNames(map[string][]netip.Addr{"admin.example.com": {netip.MustParseAddr("198.51.100.7")}, "0.pool.ntp.org": {netip.MustParseAddr("192.0.2.123")},
			"1.pool.ntp.org":  {netip.MustParseAddr("2001:db8::123")},
			"cmg.example.com": {netip.MustParseAddr("203.0.113.25")}, "smtp.office365.com": {netip.MustParseAddr("203.0.113.26")},
			"pop.example.net": {netip.MustParseAddr("203.0.113.110")}, "outlook.office365.com": {netip.MustParseAddr("203.0.113.111")},
			"imap.gmail.com": {netip.MustParseAddr("203.0.113.112")}, "login.microsoftonline.com": {netip.MustParseAddr("203.0.113.113")},
			"oauth2.googleapis.com": {netip.MustParseAddr("203.0.113.114")}}))
	if err != nil {
		t.Fatal(err)
	}
	rs.BanSets = []BanSet{exampleBans}
	return rs
}

// The installed table, as nft lists it, against a golden file.
func TestGoldenNftRuleset(t *testing.T) {
	rs := exampleRuleset(t)
	inNetns(t, func(ns string) {
		if err := (NFT{}).Apply(rs); err != nil {
			t.Fatal(err)
		}
		// Twice: the replace works on an existing table too.
		if err := (NFT{}).Apply(rs); err != nil {
			t.Fatal(err)
		}
		checkNftGolden(t, ns, "example.nft")
	})
}

// The boot-time default deny, as nft lists it, against a golden file; the
// config's ruleset then replaces it in the same table, leaving nothing of it.
func TestGoldenNftDefaultDeny(t *testing.T) {
	inNetns(t, func(ns string) {
		if err := (NFT{}).Apply(DefaultDeny(exampleBans)); err != nil {
			t.Fatal(err)
		}
		checkNftGolden(t, ns, "default-deny.nft")
		if golden.Updating() {
			return
		}
		if err := (NFT{}).Apply(exampleRuleset(t)); err != nil {
			t.Fatal(err)
		}
		checkNftGolden(t, ns, "example.nft")
	})
}

// checkNftGolden compares the gatehouse table in ns with a golden file, or
// rewrites the file with -update.
func checkNftGolden(t *testing.T, ns, name string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "inet", TableName).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list: %v: %s", err, out)
	}
	// Counters change with traffic; the golden file has them at zero.
	out = regexp.MustCompile(`counter packets \d+ bytes \d+`).ReplaceAll(out, []byte("counter packets 0 bytes 0"))
	golden.Check(t, name, string(out))
}

func TestOtherTablesUntouched(t *testing.T) {
	inNetns(t, func(ns string) {
		nft := func(args ...string) string {
			out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("nft %v: %v: %s", args, err, out)
			}
			return string(out)
		}
		nft("add", "table", "inet", "other")
		nft("add", "chain", "inet", "other", "c", "{ type filter hook input priority 10; policy accept; }")
		nft("add", "rule", "inet", "other", "c", "tcp", "dport", "9", "accept")
		if err := (NFT{}).Apply(exampleRuleset(t)); err != nil {
			t.Fatal(err)
		}
		if err := (NFT{}).Remove(); err != nil {
			t.Fatal(err)
		}
		if out := nft("list", "ruleset"); !regexp.MustCompile(`table inet other[\s\S]*tcp dport 9 accept`).MatchString(out) || regexp.MustCompile(`gatehouse`).MatchString(out) {
			t.Errorf("ruleset after apply and remove:\n%s", out)
		}
	})
}

func TestUnresolvableHostFailsTheBuild(t *testing.T) {
	c, _, err := config.Parse("f.yaml", []byte("firewall:\n  paths:\n    - {function: Admin, direction: in, proto: tcp, ports: [22], peers: [gone.example.com]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Build(context.Background(), c, paths.Table(c), fakeNames(nil))
	if err == nil || !regexp.MustCompile(`path "Admin": host name gone.example.com does not resolve: lookup gone.example.com: no such host`).MatchString(err.Error()) {
		t.Errorf("err = %v", err)
	}
}

// The ruleset is to be rebuilt when the first name's answer runs out (its
// TTL, within the resolver's floor and ceiling), and a lenient build
// leaves out what does not resolve, never widening a path to anyone.
func TestBuildFollowsTTLAndLenientNarrows(t *testing.T) {
	c, _, err := config.Parse("f.yaml", []byte(`firewall:
  paths:
    - {function: Admin, direction: in, proto: tcp, ports: [8443], peers: [admin.example.com, gone.example.com]}
    - {function: Backup, direction: out, proto: tcp, ports: [873], peers: [gone.example.com]}
`))
	if err != nil {
		t.Fatal(err)
	}
	names := dnsclient.NewNames(fakeDNS{zone: map[string][]netip.Addr{"admin.example.com": {netip.MustParseAddr("192.0.2.7")}}, ttl: 42 * time.Second})
	if _, err := Build(context.Background(), c, paths.Table(c), names); err == nil {
		t.Fatal("built with a name that does not resolve")
	}
	rs := BuildLenient(context.Background(), c, paths.Table(c), names)
	if len(rs.In) != 1 || len(rs.In[0].V4) != 1 || rs.In[0].V4[0].From != netip.MustParseAddr("192.0.2.7") || rs.In[0].Any ||
		slices.ContainsFunc(rs.Out, func(r Rule) bool { return r.Function == "Backup" }) {
		t.Errorf("lenient ruleset in %+v out %+v, want Admin from 192.0.2.7 only", rs.In, rs.Out)
	}
	c.Firewall.Paths = c.Firewall.Paths[:1]
	c.Firewall.Paths[0].Peers = config.PeersOf("admin.example.com")
	names = dnsclient.NewNames(fakeDNS{zone: map[string][]netip.Addr{"admin.example.com": {netip.MustParseAddr("192.0.2.7")}}, ttl: 42 * time.Second})
	rs, err = Build(context.Background(), c, paths.Table(c), names)
	if err != nil {
		t.Fatal(err)
	}
	if got := rs.ResolveAgain.Sub(rs.ResolvedAt); got < 42*time.Second || got >= 43*time.Second {
		t.Errorf("resolve again after %v, want 42s", got)
	}
}

func TestMergeRanges(t *testing.T) {
	r := func(a, b string) config.AddrRange {
		return config.AddrRange{From: netip.MustParseAddr(a), To: netip.MustParseAddr(b)}
	}
	got := merge([]config.AddrRange{r("198.51.100.0", "198.51.100.15"), r("10.0.0.5", "10.0.0.5"), r("198.51.100.7", "198.51.100.7"),
		r("10.0.0.6", "10.0.0.9"), r("10.0.0.20", "10.0.0.30")})
	want := []config.AddrRange{r("10.0.0.5", "10.0.0.9"), r("10.0.0.20", "10.0.0.30"), r("198.51.100.0", "198.51.100.15")}
	if len(got) != len(want) {
		t.Fatalf("merge: %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("merge[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

// Thousands of peers go in one batch (once, this failed with EMSGSIZE).
func TestLargeRulesetInOneBatch(t *testing.T) {
	var rs Ruleset
	a := netip.MustParseAddr("10.0.0.1")
	for i := range 200 {
		r := Rule{Function: "p", Proto: "tcp", Ports: []config.PortRange{{From: uint16(10000 + i), To: uint16(10000 + i)}}}
		for range 25 {
			r.V4 = append(r.V4, config.AddrRange{From: a, To: a})
			a = a.Next().Next()
		}
		rs.In = append(rs.In, r)
	}
	inNetns(t, func(ns string) {
		if err := (NFT{}).Apply(rs); err != nil {
			t.Fatal(err)
		}
		sets := planOf(rs).sets
		out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "set", "inet", TableName, sets[len(sets)-1].name).CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte(a.Prev().Prev().String())) {
			t.Errorf("last set: %v\n%s", err, out)
		}
	})
}

// listTable is the gatehouse table as nft lists it, made comparable: the
// counters at zero, the bans' times gone, the sets in name order (a
// set added in place comes last, in a new table in rule order).
func listTable(t *testing.T, ns string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "inet", TableName).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list: %v: %s", err, out)
	}
	out = regexp.MustCompile(`counter packets \d+ bytes \d+`).ReplaceAll(out, []byte("counter packets 0 bytes 0"))
	out = regexp.MustCompile(` (timeout|expires) [\dhms]+`).ReplaceAll(out, nil) // a ban carried over has the time it had left
	body, ok := strings.CutPrefix(string(out), "table inet "+TableName+" {\n")
	if !ok {
		t.Fatalf("nft list:\n%s", out)
	}
	blocks := strings.Split(body, "\n\n")
	i := slices.IndexFunc(blocks, func(b string) bool { return strings.HasPrefix(b, "\tchain ") })
	if i < 0 {
		i = len(blocks)
	}
	slices.Sort(blocks[:i])
	return strings.Join(blocks, "\n\n")
}

func kernelTableHandle(t *testing.T) uint64 {
	t.Helper()
	s, err := dialNetfilter()
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	h, err := s.tableHandle(TableName)
	if err != nil || h == 0 {
		t.Fatalf("table handle %d: %v", h, err)
	}
	return h
}

// freshTable is the gatehouse table a backend that remembers nothing
// makes of rs in a namespace of its own, with a ban of banned (if valid)
// in the ssh set: what a change in place must come to.
func freshTable(t *testing.T, rs Ruleset, banned netip.Addr) string {
	t.Helper()
	var out string
	inNetns(t, func(ns string) {
		if err := (NFT{}).Apply(rs); err != nil {
			t.Fatal(err)
		}
		if !banned.IsValid() {
			out = listTable(t, ns)
			return
		}
		if err := (NFT{}).Ban(exampleBans.Name, banned, time.Hour); err != nil {
			t.Fatal(err)
		}
		out = listTable(t, ns)
	})
	return out
}

// A change of peers goes in as set updates: the same table (its handle),
// a ban made in between still there, the kernel's sets exactly what a
// new table would hold. A change of structure replaces the rules, in the
// same table too. A backend that remembers nothing replaces the table.
func TestNftChangesInPlace(t *testing.T) {
	a := exampleRuleset(t)
	b := examplePeersChange(t, a)
	c := exampleRestructured(t, a)
	banned := netip.MustParseAddr("203.0.113.9")
	wantB, wantC := freshTable(t, b, banned), freshTable(t, c, banned)
	inNetns(t, func(ns string) {
		fw := NewNFT()
		if a, err := fw.Update(a); err != nil || !a.Replaced {
			t.Fatalf("first apply: %+v, %v", a, err)
		}
		handle := kernelTableHandle(t)
		if err := fw.Ban(exampleBans.Name, banned, time.Hour); err != nil {
			t.Fatal(err)
		}
		applied, err := fw.Update(b)
		if err != nil {
			t.Fatal(err)
		}
		if applied.Replaced || applied.Retried != nil || applied.Sets != 3 || applied.Added != 4 || applied.Removed != 4 {
			t.Errorf("a change of peers: %+v, want 3 sets updated in place, 4 ranges added, 4 removed", applied)
		}
		if h := kernelTableHandle(t); h != handle {
			t.Errorf("table handle %d after a change of peers, was %d: replaced", h, handle)
		}
		if got := listTable(t, ns); got != wantB {
			t.Errorf("after a change of peers the kernel has\n%s\nwant\n%s", got, wantB)
		}
		// The same again: nothing to do.
		if applied, err := fw.Update(b); err != nil || applied.Replaced || applied.Sets != 0 {
			t.Errorf("the same again: %+v, %v", applied, err)
		}

		applied, err = fw.Update(c)
		if err != nil {
			t.Fatal(err)
		}
		if !applied.Replaced || applied.Retried != nil {
			t.Errorf("a change of structure: %+v, want the rules replaced in place", applied)
		}
		if h := kernelTableHandle(t); h != handle {
			t.Errorf("table handle %d after a change of structure, was %d", h, handle)
		}
		if got := listTable(t, ns); got != wantC {
			t.Errorf("after a change of structure the kernel has\n%s\nwant\n%s", got, wantC)
		}

		// A new process: the whole table anew, the ban carried over.
		if applied, err := NewNFT().Update(b); err != nil || !applied.Replaced || applied.Retried != nil {
			t.Errorf("a backend that remembers nothing: %+v, %v", applied, err)
		}
		if h := kernelTableHandle(t); h == handle {
			t.Errorf("table handle %d unchanged: not replaced", h)
		}
		if got := listTable(t, ns); got != wantB {
			t.Errorf("after a replacement the kernel has\n%s\nwant\n%s", got, wantB)
		}
	})
}

// When the table is not what the backend installed last (replaced by
// someone else, or a set changed by hand), the change is not made in
// place: the whole table is replaced, and the reason given.
func TestNftChangeInPlaceFallsBack(t *testing.T) {
	a := exampleRuleset(t)
	b := examplePeersChange(t, a)
	wantB := freshTable(t, b, netip.MustParseAddr("203.0.113.9"))
	inNetns(t, func(ns string) {
		fw := NewNFT()
		if err := fw.Apply(a); err != nil {
			t.Fatal(err)
		}
		if err := (NFT{}).Apply(a); err != nil { // another process
			t.Fatal(err)
		}
		if err := fw.Ban(exampleBans.Name, netip.MustParseAddr("203.0.113.9"), time.Hour); err != nil {
			t.Fatal(err)
		}
		applied, err := fw.Update(b)
		if err != nil || !applied.Replaced || applied.Retried == nil || !strings.Contains(applied.Retried.Error(), "not the one installed last") {
			t.Errorf("onto a table replaced by someone else: %+v, %v", applied, err)
		}
		if got := listTable(t, ns); got != wantB {
			t.Errorf("the kernel has\n%s\nwant\n%s", got, wantB)
		}

		// An element the change would delete, deleted by hand: the
		// batch fails as a whole, and the table is replaced.
		if err := fw.Apply(a); err != nil {
			t.Fatal(err)
		}
		set := planOf(a).in[ruleIndex(t, a.In, "Administration access")][0]
		if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "delete", "element", "inet", TableName, set, "{ 198.51.100.7 }").CombinedOutput(); err != nil {
			t.Fatalf("nft delete element: %v: %s", err, out)
		}
		applied, err = fw.Update(b)
		if err != nil || !applied.Replaced || applied.Retried == nil || !strings.Contains(applied.Retried.Error(), "(delete set elements): no such file or directory") {
			t.Errorf("with an element gone: %+v, %v", applied, err)
		}
		if got := listTable(t, ns); got != wantB {
			t.Errorf("the kernel has\n%s\nwant\n%s", got, wantB)
		}
	})
}

// What the firewall service does at start: the default deny, then the
// config's ruleset, a change of structure, in place (the output chain's
// policy too).
func TestNftDefaultDenyThenConfigInPlace(t *testing.T) {
	rs := exampleRuleset(t)
	want := freshTable(t, rs, netip.Addr{})
	inNetns(t, func(ns string) {
		fw := NewNFT()
		if err := fw.Apply(DefaultDeny(exampleBans)); err != nil {
			t.Fatal(err)
		}
		if a, err := fw.Update(rs); err != nil || !a.Replaced || a.Retried != nil {
			t.Fatalf("config after the default deny: %+v, %v", a, err)
		}
		if got := listTable(t, ns); got != want {
			t.Errorf("the kernel has\n%s\nwant\n%s", got, want)
		}
	})
}

// A path with thousands of peers: its set's elements go in several
// messages (one message's list is at most 64 KiB), new and changed.
func TestLargePeerSet(t *testing.T) {
	r := Rule{Function: "many", Proto: "tcp", Ports: []config.PortRange{{From: 1000, To: 1000}}}
	a := netip.MustParseAddr("10.0.0.1")
	for range 4000 {
		r.V4 = append(r.V4, config.AddrRange{From: a, To: a})
		a = a.Next().Next()
	}
	rs := Ruleset{In: []Rule{r}}
	changed := cloneRuleset(rs)
	changed.In[0].V4 = changed.In[0].V4[2000:]
	for range 3000 {
		changed.In[0].V4 = append(changed.In[0].V4, config.AddrRange{From: a, To: a})
		a = a.Next().Next()
	}
	want := freshTable(t, changed, netip.Addr{})
	inNetns(t, func(ns string) {
		fw := NewNFT()
		if err := fw.Apply(rs); err != nil {
			t.Fatal(err)
		}
		applied, err := fw.Update(changed)
		if err != nil || applied.Replaced || applied.Added != 3000 || applied.Removed != 2000 {
			t.Fatalf("a change of 5,000 peers: %+v, %v", applied, err)
		}
		if got := listTable(t, ns); got != want {
			t.Errorf("the kernel has\n%.2000s\nwant\n%.2000s", got, want)
		}
	})
}
