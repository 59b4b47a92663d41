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
		out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "set", "inet", TableName, "peers200").CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte(a.Prev().Prev().String())) {
			t.Errorf("last set: %v\n%s", err, out)
		}
	})
}
