package linuxfw

import (
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"

	"github.com/google/nftables"

	"gatehouse/config"
)

// peerSet is an nftables interval set of one rule's peers in one family.
type peerSet struct {
	name   string
	v6     bool
	ranges []config.AddrRange // merged: sorted, disjoint, not adjacent
}

// plan is how a ruleset goes into the nftables table: its peer sets,
// named, which set each rule matches, and its shape, everything that is
// not a peer address (two rulesets of the same shape have the same rules
// and sets, and differ only in the sets' elements).
type plan struct {
	sets    []peerSet
	in, out [][2]string // per rule of In and Out: its IPv4 and IPv6 set, "" for none
	shape   string
}

// planOf names the peer sets of rs. A set's name comes from its rule's
// identity (direction, family, function, protocol, ports), never from its
// peers: when only peers change, every set keeps its name and only its
// elements change; when a path is added, the others keep theirs. The name
// is "peers" and digits, as the sets have always been named.
func planOf(rs Ruleset) plan {
	p := plan{in: make([][2]string, len(rs.In)), out: make([][2]string, len(rs.Out))}
	used := map[string]bool{}
	var shape, id []byte
	for _, dir := range []struct {
		name  string
		rules []Rule
		sets  [][2]string
	}{{"in", rs.In, p.in}, {"out", rs.Out, p.out}} {
		shape = append(shape, dir.name...)
		for i, r := range dir.rules {
			id = appendIdentity(id[:0], dir.name, r)
			for fam, ranges := range [2][]config.AddrRange{r.V4, r.V6} {
				if r.Any || len(ranges) == 0 {
					continue
				}
				name := peerSetName(used, id, fam)
				dir.sets[i][fam] = name
				p.sets = append(p.sets, peerSet{name: name, v6: fam == 1, ranges: merge(ranges)})
			}
			shape = append(shape, id...)
			shape = strconv.AppendBool(shape, r.Any)
			shape = append(shape, dir.sets[i][0]...)
			shape = append(shape, ',')
			shape = append(shape, dir.sets[i][1]...)
			shape = append(shape, '\n')
		}
	}
	shape = fmt.Appendf(shape, "%v %v %v", rs.RestrictEgress, rs.DHCPClient, rs.Boot)
	for _, b := range rs.BanSets {
		shape = fmt.Appendf(shape, " %q %q %v %v", b.Name, b.Proto, b.Ports, b.Timeout)
	}
	p.shape = string(shape)
	return p
}

// appendIdentity appends what tells a rule from the others in its
// direction: function, protocol and ports.
func appendIdentity(b []byte, dir string, r Rule) []byte {
	b = append(b, dir...)
	b = strconv.AppendQuote(b, r.Function)
	b = strconv.AppendQuote(b, r.Proto)
	for _, pr := range r.Ports {
		b = strconv.AppendUint(b, uint64(pr.From), 10)
		b = append(b, '-')
		b = strconv.AppendUint(b, uint64(pr.To), 10)
		b = append(b, ',')
	}
	return b
}

// peerSetName is "peers", 4 or 6, and eight digits of a hash of the
// rule's identity; the next free number should two rules hash alike (or
// be alike: then the order of the two decides).
func peerSetName(used map[string]bool, identity []byte, fam int) string {
	h := fnv.New32a()
	h.Write(identity)
	h.Write([]byte{byte(fam)})
	n := h.Sum32() % 1e8
	for {
		name := fmt.Sprintf("peers%d%08d", 4+2*fam, n)
		if !used[name] {
			used[name] = true
			return name
		}
		n = (n + 1) % 1e8
	}
}

// setChange is what turns an installed peer set into the wanted one.
type setChange struct {
	name     string
	v6       bool
	del, add []config.AddrRange
}

// diffSets compares the peer sets installed (by name) with those wanted:
// the sets to create, the changes to sets that stay, and the names of
// the sets no longer wanted, each in a stable order.
func diffSets(installed map[string]peerSet, want []peerSet) (create []peerSet, change []setChange, drop []string) {
	wanted := map[string]bool{}
	for _, s := range want {
		wanted[s.name] = true
		old, ok := installed[s.name] // the name says the family
		if !ok {
			create = append(create, s)
			continue
		}
		if del, add := rangeDiff(old.ranges, s.ranges); len(del)+len(add) > 0 {
			change = append(change, setChange{name: s.name, v6: s.v6, del: del, add: add})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(installed)) {
		if !wanted[name] {
			drop = append(drop, name)
		}
	}
	return create, change, drop
}

// rangeDiff is what turns an interval set holding old into one holding
// new (both merged): the ranges to delete, as they are installed, and
// those to add. A range that grew or shrank is deleted whole and added
// anew: an interval's start and end elements go together.
func rangeDiff(old, new []config.AddrRange) (del, add []config.AddrRange) {
	i, j := 0, 0
	for i < len(old) || j < len(new) {
		switch {
		case j == len(new):
			del = append(del, old[i])
			i++
		case i == len(old):
			add = append(add, new[j])
			j++
		case old[i] == new[j]:
			i++
			j++
		case old[i].From.Less(new[j].From) || (old[i].From == new[j].From && old[i].To.Less(new[j].To)):
			del = append(del, old[i])
			i++
		default:
			add = append(add, new[j])
			j++
		}
	}
	return del, add
}

// intervalElems are the elements of an interval set holding ranges
// (merged): a start element at each range's first address, an end
// element at the address after its last (none at the top of the space).
func intervalElems(ranges []config.AddrRange) []nftables.SetElement {
	elems := make([]nftables.SetElement, 0, 2*len(ranges))
	for _, r := range ranges {
		elems = append(elems, nftables.SetElement{Key: r.From.AsSlice()})
		if next := r.To.Next(); next.IsValid() {
			elems = append(elems, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
		}
	}
	return elems
}
