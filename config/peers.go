package config

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// Peer is one entry of a peer list, parsed: a set of addresses, or a host
// name whose addresses DNS gives when the list is applied.
type Peer struct {
	Ranges []AddrRange // empty for a host name
	Host   string
	text   string // as written
}

// String is the peer as the config writes it.
func (p Peer) String() string { return p.text }

// AddrRange is an inclusive range of addresses of one family.
type AddrRange struct{ From, To netip.Addr }

// Contains says whether a is in the range.
func (r AddrRange) Contains(a netip.Addr) bool {
	a = a.Unmap()
	return r.From.Is4() == a.Is4() && r.From.Compare(a) <= 0 && a.Compare(r.To) <= 0
}

// parsePeer reads an address (192.0.2.7), a prefix (192.0.2.0/24,
// 2001:db8::/32), a range (192.168.0.1-50 or 192.168.0.1-192.168.0.50), or
// a host name.
func parsePeer(s string) (Peer, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return Peer{Ranges: []AddrRange{{a, a}}, text: s}, nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		p = p.Masked()
		return Peer{Ranges: []AddrRange{{p.Addr(), LastAddr(p)}}, text: s}, nil
	}
	if lo, hi, ok := strings.Cut(s, "-"); ok {
		from, err := netip.ParseAddr(lo)
		if err != nil {
			if validHost(s) { // mail-gw-1.example.com
				return Peer{Host: s, text: s}, nil
			}
			return Peer{}, fmt.Errorf("%q: %q is not an address", s, lo)
		}
		to, err := netip.ParseAddr(hi)
		if err != nil && from.Is4() {
			// The short form network administrators write: 192.168.0.1-50.
			n, nerr := strconv.Atoi(hi)
			if nerr != nil || n < 0 || n > 255 {
				return Peer{}, fmt.Errorf("%q: %q is neither an address nor a last octet", s, hi)
			}
			b := from.As4()
			b[3] = byte(n)
			to, err = netip.AddrFrom4(b), nil
		}
		if err != nil || to.Is4() != from.Is4() {
			return Peer{}, fmt.Errorf("%q: the range's ends are not addresses of one family", s)
		}
		if to.Less(from) {
			return Peer{}, fmt.Errorf("%q: the range ends before it starts", s)
		}
		return Peer{Ranges: []AddrRange{{from, to}}, text: s}, nil
	}
	if validHost(s) {
		return Peer{Host: s, text: s}, nil
	}
	return Peer{}, fmt.Errorf("%q is not an address, prefix, range or host name", s)
}

// LastAddr is the highest address in p.
func LastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (r AddrRange) overlaps(o AddrRange) bool {
	return r.From.Is4() == o.From.Is4() && !r.To.Less(o.From) && !o.To.Less(r.From)
}

// PeerSet is a peer list as the config writes it: addresses (192.0.2.7),
// prefixes (192.0.2.0/24), ranges (192.168.0.1-50) and host names. It is
// decoded once, each entry's problem placed at its line and column; what
// an empty set means (anyone for a firewall path, no one for an allow
// list) is for its user to say.
type PeerSet struct {
	peers []Peer
	// invalid: entries were written that are not peers (the file is
	// refused; the set is still not "nothing written").
	invalid bool
}

// PeersOf is the set of hosts that a config names elsewhere (the DNS and
// NTP servers, a mail server): addresses and host names, validated where
// they are configured; anything else is left out.
func PeersOf(hosts ...string) PeerSet {
	var s PeerSet
	for _, h := range hosts {
		if p, err := parsePeer(h); err == nil {
			s.peers = append(s.peers, p)
		}
	}
	return s
}

// JoinPeers is the union of sets, in order.
func JoinPeers(sets ...PeerSet) PeerSet {
	var out PeerSet
	for _, s := range sets {
		out.peers = append(out.peers, s.peers...)
		out.invalid = out.invalid || s.invalid
	}
	return out
}

// Len is the number of entries.
func (s PeerSet) Len() int { return len(s.peers) }

// Peers are the entries, in order.
func (s PeerSet) Peers() []Peer { return append([]Peer(nil), s.peers...) }

// Names are the host names among the entries, each once.
func (s PeerSet) Names() []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range s.peers {
		if p.Host != "" && !seen[p.Host] {
			seen[p.Host] = true
			out = append(out, p.Host)
		}
	}
	return out
}

// Ranges are the address ranges the set admits, in order: its addresses,
// prefixes and ranges, and in place of each host name what resolved holds
// for it. A name missing there, or without addresses, admits no one.
func (s PeerSet) Ranges(resolved map[string][]netip.Addr) []AddrRange {
	var out []AddrRange
	for _, p := range s.peers {
		out = append(out, p.Ranges...)
		for _, a := range resolved[p.Host] {
			out = append(out, AddrRange{From: a.Unmap(), To: a.Unmap()})
		}
	}
	return out
}

// Contains says whether a is in the set, its host names standing for what
// resolved holds for them (a name missing there matches no one).
func (s PeerSet) Contains(a netip.Addr, resolved map[string][]netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.peers {
		for _, r := range p.Ranges {
			if r.Contains(a) {
				return true
			}
		}
		for _, ra := range resolved[p.Host] {
			if ra.Unmap() == a {
				return true
			}
		}
	}
	return false
}

// Filter is the set of the entries keep accepts.
func (s PeerSet) Filter(keep func(Peer) bool) PeerSet {
	var out PeerSet
	for _, p := range s.peers {
		if keep(p) {
			out.peers = append(out.peers, p)
		}
	}
	return out
}

// Strings are the entries as written.
func (s PeerSet) Strings() []string {
	var out []string
	for _, p := range s.peers {
		out = append(out, p.text)
	}
	return out
}

// String is the entries as written, comma-separated.
func (s PeerSet) String() string { return strings.Join(s.Strings(), ", ") }

// MarshalJSON writes the entries as written (null for none).
func (s PeerSet) MarshalJSON() ([]byte, error) { return json.Marshal(s.Strings()) }

// MarshalYAML writes the entries as written.
func (s PeerSet) MarshalYAML() (any, error) { return s.Strings(), nil }

// UnmarshalYAML decodes a list of peers; an entry that is not one is a
// problem at its own position, and decoding goes on.
func (s *PeerSet) UnmarshalYAML(ctx context.Context, node ast.Node) error {
	*s = PeerSet{}
	seq, ok := node.(*ast.SequenceNode)
	if !ok {
		if _, null := node.(*ast.NullNode); null {
			return nil
		}
		return &posError{tok: node.GetToken(), msg: "expected a list, got " + nodeTypeName(node.Type())}
	}
	for _, v := range seq.Values {
		str, perr := scalar(v)
		if perr != nil {
			return perr
		}
		p, err := parsePeer(str)
		if err != nil {
			s.invalid = true
			if err := invalid(ctx, v.GetToken(), "%v", err); err != nil {
				return err
			}
			continue
		}
		s.peers = append(s.peers, p)
	}
	return nil
}

// Addr is an IP address, such as a gateway.
type Addr struct{ netip.Addr }

// UnmarshalYAML decodes an address; one that is not is a problem at its
// position, and decoding goes on.
func (a *Addr) UnmarshalYAML(ctx context.Context, node ast.Node) error {
	s, perr := scalarOrNull(node)
	if perr != nil {
		return perr
	}
	*a = Addr{}
	if s == "" {
		return nil
	}
	v, err := netip.ParseAddr(s)
	if err != nil {
		return invalid(ctx, node.GetToken(), "%q is not an IP address", s)
	}
	a.Addr = v
	return nil
}

// MarshalYAML writes the address.
func (a Addr) MarshalYAML() (any, error) { return a.String(), nil }

// Destination is where a static route leads: a prefix, or "default"
// (0.0.0.0/0) or "default6" (::/0).
type Destination struct {
	netip.Prefix // masked
	text         string
}

// String is the destination as written.
func (d Destination) String() string { return d.text }

// UnmarshalYAML decodes a destination; one that is not is a problem at
// its position, and decoding goes on.
func (d *Destination) UnmarshalYAML(ctx context.Context, node ast.Node) error {
	s, perr := scalarOrNull(node)
	if perr != nil {
		return perr
	}
	*d = Destination{text: s}
	switch s {
	case "":
		return nil
	case "default":
		d.Prefix = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	case "default6":
		d.Prefix = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	default:
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return invalid(ctx, node.GetToken(), "%q is not a prefix (like 10.0.0.0/8) or \"default\" / \"default6\"", s)
		}
		d.Prefix = p.Masked()
	}
	return nil
}

// MarshalYAML writes the destination as written.
func (d Destination) MarshalYAML() (any, error) { return d.text, nil }
