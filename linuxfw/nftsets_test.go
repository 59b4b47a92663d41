package linuxfw

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"gatehouse/config"
	"gatehouse/test/golden"
)

func addrRange(s string) config.AddrRange {
	from, to, ok := strings.Cut(s, "-")
	if !ok {
		to = from
	}
	return config.AddrRange{From: netip.MustParseAddr(from), To: netip.MustParseAddr(to)}
}

func ranges(ss ...string) []config.AddrRange {
	var out []config.AddrRange
	for _, s := range ss {
		out = append(out, addrRange(s))
	}
	return out
}

func rangesText(rs []config.AddrRange) string {
	var out []string
	for _, r := range rs {
		out = append(out, rangeText(r.From, r.To))
	}
	return strings.Join(out, ", ")
}

// cloneRuleset copies rs deep enough to change its rules' peers.
func cloneRuleset(rs Ruleset) Ruleset {
	rs.In, rs.Out = slices.Clone(rs.In), slices.Clone(rs.Out)
	for _, rules := range [][]Rule{rs.In, rs.Out} {
		for i := range rules {
			rules[i].V4, rules[i].V6 = slices.Clone(rules[i].V4), slices.Clone(rules[i].V6)
			rules[i].Ports = slices.Clone(rules[i].Ports)
		}
	}
	return rs
}

func ruleIndex(t *testing.T, rules []Rule, function string) int {
	t.Helper()
	i := slices.IndexFunc(rules, func(r Rule) bool { return r.Function == function })
	if i < 0 {
		t.Fatalf("no rule %q", function)
	}
	return i
}

// examplePeersChange is the example ruleset with only peers changed: an
// address added next to a range (merged with it), one moved, an IPv6
// prefix moved, an outbound peer moved.
func examplePeersChange(t *testing.T, a Ruleset) Ruleset {
	t.Helper()
	b := cloneRuleset(a)
	adm := &b.In[ruleIndex(t, b.In, "Administration access")]
	adm.V4 = append(ranges("192.168.0.51", "198.51.100.9"), adm.V4[:1]...) // 198.51.100.7 moved, .51 added
	sup := &b.In[ruleIndex(t, b.In, "Support access")]
	sup.V6 = ranges("2001:db8:6::-2001:db8:6:ffff:ffff:ffff:ffff:ffff")
	ntp := &b.Out[ruleIndex(t, b.Out, "Time synchronisation")]
	ntp.V4 = ranges("192.0.2.124")
	return b
}

// exampleRestructured is the example ruleset with its structure changed:
// a path on another port, a path added, a path gone.
func exampleRestructured(t *testing.T, a Ruleset) Ruleset {
	t.Helper()
	c := cloneRuleset(a)
	c.In[ruleIndex(t, c.In, "Support access")].Ports = []config.PortRange{{From: 10050, To: 10050}}
	c.In = append(c.In, Rule{Function: "Backup", Proto: "tcp", Ports: []config.PortRange{{From: 873, To: 873}}, V4: ranges("192.0.2.200")})
	c.Out = slices.DeleteFunc(c.Out, func(r Rule) bool { return r.Function == "Syslog" })
	return c
}

// A set's name follows its rule, never its peers: only peers changed,
// the plan has the same names and shape; rules alike get names of their
// own; another port is another shape.
func TestPlanNamesFollowRulesNotPeers(t *testing.T) {
	a := exampleRuleset(t)
	b := examplePeersChange(t, a)
	pa, pb := planOf(a), planOf(b)
	if pa.shape != pb.shape || !slices.Equal(pa.in, pb.in) || !slices.Equal(pa.out, pb.out) {
		t.Errorf("a change of peers changed the plan's shape or names:\n%v\n%v", pa.in, pb.in)
	}
	names := map[string]bool{}
	for _, s := range pa.sets {
		if names[s.name] || !strings.HasPrefix(s.name, map[bool]string{false: "peers4", true: "peers6"}[s.v6]) || len(s.name) != len("peers412345678") {
			t.Errorf("set name %q: twice, or not peers, the family and eight digits", s.name)
		}
		names[s.name] = true
	}
	c := exampleRestructured(t, a)
	pc := planOf(c)
	if pc.shape == pa.shape {
		t.Error("a path on another port: same shape")
	}
	// The paths that did not change keep their sets' names.
	adm := ruleIndex(t, a.In, "Administration access")
	if pc.in[adm] != pa.in[adm] {
		t.Errorf("an unchanged path's sets renamed: %v, was %v", pc.in[adm], pa.in[adm])
	}
	// Two rules alike (the same function, protocol and port) have a set each.
	twice := Ruleset{In: []Rule{{Function: "x", Proto: "tcp", Ports: []config.PortRange{{From: 1, To: 1}}, V4: ranges("192.0.2.1")},
		{Function: "x", Proto: "tcp", Ports: []config.PortRange{{From: 1, To: 1}}, V4: ranges("192.0.2.2")}}}
	if p := planOf(twice); p.in[0][0] == p.in[1][0] {
		t.Errorf("rules alike share the set %s", p.in[0][0])
	}
	// Ban sets are part of the shape (they have rules of their own).
	d := cloneRuleset(a)
	d.BanSets = []BanSet{{Name: "ssh", Proto: "tcp", Ports: []uint16{2222}}}
	if planOf(d).shape == pa.shape {
		t.Error("a ban set on another port: same shape")
	}
}

func TestRangeDiff(t *testing.T) {
	for _, tc := range []struct {
		name               string
		old, new, del, add []string
	}{
		{name: "same", old: []string{"192.0.2.1", "192.0.2.9-192.0.2.20"}, new: []string{"192.0.2.1", "192.0.2.9-192.0.2.20"}},
		{name: "added", old: []string{"192.0.2.1"}, new: []string{"192.0.2.1", "192.0.2.3"}, add: []string{"192.0.2.3"}},
		{name: "removed", old: []string{"192.0.2.1", "192.0.2.3"}, new: []string{"192.0.2.3"}, del: []string{"192.0.2.1"}},
		{name: "moved", old: []string{"192.0.2.1", "192.0.2.3"}, new: []string{"192.0.2.3", "198.51.100.1"},
			del: []string{"192.0.2.1"}, add: []string{"198.51.100.1"}},
		// A range that grew is deleted with its old end and added anew.
		{name: "grown", old: []string{"192.0.2.1-192.0.2.5"}, new: []string{"192.0.2.1-192.0.2.6"},
			del: []string{"192.0.2.1-192.0.2.5"}, add: []string{"192.0.2.1-192.0.2.6"}},
		{name: "shrunk at the start", old: []string{"192.0.2.1-192.0.2.5"}, new: []string{"192.0.2.2-192.0.2.5"},
			del: []string{"192.0.2.1-192.0.2.5"}, add: []string{"192.0.2.2-192.0.2.5"}},
		{name: "split", old: []string{"192.0.2.1-192.0.2.5"}, new: []string{"192.0.2.1-192.0.2.2", "192.0.2.4-192.0.2.5"},
			del: []string{"192.0.2.1-192.0.2.5"}, add: []string{"192.0.2.1-192.0.2.2", "192.0.2.4-192.0.2.5"}},
		{name: "all new", old: []string{"2001:db8::1"}, new: []string{"2001:db8::2", "2001:db8::4"},
			del: []string{"2001:db8::1"}, add: []string{"2001:db8::2", "2001:db8::4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			del, add := rangeDiff(merge(ranges(tc.old...)), merge(ranges(tc.new...)))
			if got, want := rangesText(del), rangesText(ranges(tc.del...)); got != want {
				t.Errorf("delete %s, want %s", got, want)
			}
			if got, want := rangesText(add), rangesText(ranges(tc.add...)); got != want {
				t.Errorf("add %s, want %s", got, want)
			}
		})
	}
}

// Merged before the diff: an address next to a range joins it, so the
// range is deleted (start and end as installed) and added grown.
func TestRangeDiffMergesFirst(t *testing.T) {
	old := merge(ranges("192.168.0.1-192.168.0.50", "198.51.100.7"))
	new := merge(ranges("192.168.0.51", "192.168.0.1-192.168.0.50", "198.51.100.7"))
	del, add := rangeDiff(old, new)
	if rangesText(del) != "192.168.0.1-192.168.0.50" || rangesText(add) != "192.168.0.1-192.168.0.51" {
		t.Errorf("delete %s add %s", rangesText(del), rangesText(add))
	}
	elems := intervalElems(del)
	if len(elems) != 2 || netip.AddrFrom4([4]byte(elems[0].Key)) != netip.MustParseAddr("192.168.0.1") || elems[0].IntervalEnd ||
		netip.AddrFrom4([4]byte(elems[1].Key)) != netip.MustParseAddr("192.168.0.51") || !elems[1].IntervalEnd {
		t.Errorf("elements deleted %+v, want the start 192.168.0.1 and the end 192.168.0.51", elems)
	}
	// A range to the top of the space has no end element.
	if top := intervalElems(ranges("255.255.255.0-255.255.255.255")); len(top) != 1 {
		t.Errorf("elements of a range to the top: %+v", top)
	}
}

// Which sets a change of the example's peers touches, and how, against
// a golden file; and what a change of structure creates and drops.
func TestGoldenPeersChange(t *testing.T) {
	a := exampleRuleset(t)
	installed := peerMap(planOf(a).sets)
	rule := map[string]string{} // set name -> its rule, for the reader
	p := planOf(a)
	for d, dir := range [][][2]string{p.in, p.out} {
		rules := [][]Rule{a.In, a.Out}[d]
		for i, sets := range dir {
			for fam, name := range sets {
				if name != "" {
					rule[name] = fmt.Sprintf("%s %s %v IPv%d", []string{"in", "out"}[d], rules[i].Function, rules[i].Ports, 4+2*fam)
				}
			}
		}
	}
	var w strings.Builder
	create, change, drop := diffSets(installed, planOf(examplePeersChange(t, a)).sets)
	if len(create)+len(drop) > 0 {
		t.Errorf("a change of peers creates %d sets and drops %d", len(create), len(drop))
	}
	for _, c := range change {
		fmt.Fprintf(&w, "set %s (%s):\n", c.name, rule[c.name])
		fmt.Fprintf(&w, "\tdelete %s\n\tadd %s\n", rangesText(c.del), rangesText(c.add))
	}
	create, change, drop = diffSets(installed, planOf(exampleRestructured(t, a)).sets)
	w.WriteString("restructured:\n")
	for _, s := range create {
		fmt.Fprintf(&w, "\tcreate %s: %s\n", s.name, rangesText(s.ranges))
	}
	for _, name := range drop {
		fmt.Fprintf(&w, "\tdrop %s (%s)\n", name, rule[name])
	}
	fmt.Fprintf(&w, "\tchange %d\n", len(change))
	golden.Check(t, "example-peers-change.txt", w.String())
}
