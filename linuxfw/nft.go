package linuxfw

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"gatehouse/config"
)

// TableName is the one nftables table Gatehouse owns; no other table is
// ever touched.
const TableName = "gatehouse"

// NFT is the nftables backend (netlink, no nft binary needed).
type NFT struct{}

// Apply replaces the gatehouse table with rs in one netlink batch: the
// kernel swaps old for new atomically, so there is no moment with no
// rules, or half of them.
func (NFT) Apply(rs Ruleset) error {
	if err := checkBanSets(rs); err != nil {
		return err
	}
	c, err := nftables.New(nftables.WithSockOptions(bigBuffers))
	if err != nil {
		return fmt.Errorf("firewall: nftables: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	// Bans live in the table's sets; they must outlive the table's
	// replacement, with the time they have left.
	bans := map[string][]nftables.SetElement{}
	for _, bs := range rs.BanSets {
		for _, name := range bs.nftSets() {
			bans[name] = currentBans(c, t, name)
		}
	}
	// Add (a no-op if it exists), delete, add: one batch that works
	// whether or not the table was there.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	b := &builder{c: c, t: t}
	b.banSets(rs.BanSets, bans)
	b.input(rs)
	b.output(rs)
	b.forward()
	if b.err != nil {
		return b.err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("firewall: apply nftables batch: %w", err)
	}
	return nil
}

// bigBuffers lets a whole ruleset go in one batch: thousands of peer
// addresses make a message larger than the default socket buffer
// (EMSGSIZE). Root may exceed wmem_max with the FORCE options.
func bigBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		const size = 32 << 20
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size); serr != nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, size)
		}
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
	})
	if err != nil {
		return err
	}
	return serr
}

// Remove deletes the gatehouse table, if it is there.
func (NFT) Remove() error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	c.AddTable(t)
	c.DelTable(t)
	return c.Flush()
}

type builder struct {
	c    *nftables.Conn
	t    *nftables.Table
	sets int
	bans map[string]*nftables.Set // by name
	err  error
}

func (b *builder) chain(name string, hook *nftables.ChainHook, policy nftables.ChainPolicy) *nftables.Chain {
	return b.c.AddChain(&nftables.Chain{Name: name, Table: b.t, Type: nftables.ChainTypeFilter,
		Hooknum: hook, Priority: nftables.ChainPriorityFilter, Policy: &policy})
}

func (b *builder) rule(ch *nftables.Chain, exprs ...[]expr.Any) {
	var all []expr.Any
	for _, e := range exprs {
		all = append(all, e...)
	}
	b.c.AddRule(&nftables.Rule{Table: b.t, Chain: ch, Exprs: all})
}

func (b *builder) input(rs Ruleset) {
	ch := b.chain("input", nftables.ChainHookInput, nftables.ChainPolicyDrop)
	b.common(ch, "iifname", rs.Boot)
	for _, bs := range rs.BanSets {
		proto := byte(unix.IPPROTO_TCP)
		if bs.Proto == "udp" {
			proto = unix.IPPROTO_UDP
		}
		for _, p := range bs.Ports {
			for fam, name := range bs.nftSets() {
				b.rule(ch, family(fam), saddr(fam), lookup(b.bans[name]), l4(proto), port(2, p), counter(), drop())
			}
		}
	}
	if rs.DHCPClient {
		b.rule(ch, l4(unix.IPPROTO_UDP), port(0, 67), port(2, 68), accept())
	}
	for _, r := range rs.In {
		b.pathRules(ch, r, 12, 8) // match the source address
	}
	b.rule(ch, limit(5), logPrefix("gatehouse drop in: "))
	b.rule(ch, counter(), drop())
}

func (b *builder) output(rs Ruleset) {
	if !rs.RestrictEgress {
		b.chain("output", nftables.ChainHookOutput, nftables.ChainPolicyAccept)
		return
	}
	ch := b.chain("output", nftables.ChainHookOutput, nftables.ChainPolicyDrop)
	b.common(ch, "oifname", rs.Boot)
	for _, r := range rs.Out {
		b.pathRules(ch, r, 16, 24) // match the destination address
	}
	b.rule(ch, limit(5), logPrefix("gatehouse drop out: "))
	b.rule(ch, counter(), drop())
}

func (b *builder) forward() {
	b.chain("forward", nftables.ChainHookForward, nftables.ChainPolicyDrop)
}

// common: replies, invalid packets, loopback and ICMP, in every filtering
// chain; at boot ICMP only for neighbour discovery.
func (b *builder) common(ch *nftables.Chain, ifKey string, boot bool) {
	b.rule(ch, ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), accept())
	b.rule(ch, ctState(expr.CtStateBitINVALID), counter(), drop())
	key := expr.MetaKeyIIFNAME
	if ifKey == "oifname" {
		key = expr.MetaKeyOIFNAME
	}
	b.rule(ch, ifname(key, "lo"), accept())
	// IPv6 neighbour discovery must never be rate limited: without it
	// there is no IPv6 at all.
	nd := b.anonSet(nftables.TypeICMP6Type, []byte{133, 134, 135, 136})
	b.rule(ch, l4(unix.IPPROTO_ICMPV6), icmpType(), lookup(nd), accept())
	if boot {
		return
	}
	// Echo and the errors path MTU discovery and traceroute need, at a
	// rate that cannot be used to flood.
	v4 := b.anonSet(nftables.TypeICMPType, []byte{0, 3, 8, 11, 12})
	b.rule(ch, l4(unix.IPPROTO_ICMP), icmpType(), lookup(v4), limit(20), accept())
	v6 := b.anonSet(nftables.TypeICMP6Type, []byte{1, 2, 3, 4, 128, 129})
	b.rule(ch, l4(unix.IPPROTO_ICMPV6), icmpType(), lookup(v6), limit(20), accept())
}

// pathRules lets one path through: per family with peers, per port range.
// off4 and off6 are where the peer's address sits in the IPv4 and IPv6
// header (source on input, destination on output).
func (b *builder) pathRules(ch *nftables.Chain, r Rule, off4, off6 uint32) {
	var proto byte
	switch r.Proto {
	case "tcp":
		proto = unix.IPPROTO_TCP
	case "udp":
		proto = unix.IPPROTO_UDP
	case "icmp":
		// Both families' echo; the essentials are allowed anyway.
		if r.Any || len(r.V4) > 0 {
			b.rule(ch, b.peers(r.V4, r.Any, 4, off4), l4(unix.IPPROTO_ICMP), counter(), accept())
		}
		if r.Any || len(r.V6) > 0 {
			b.rule(ch, b.peers(r.V6, r.Any, 6, off6), l4(unix.IPPROTO_ICMPV6), counter(), accept())
		}
		return
	}
	families := []struct {
		ranges []config.AddrRange
		fam    int
		off    uint32
	}{{r.V4, 4, off4}, {r.V6, 6, off6}}
	for _, f := range families {
		if !r.Any && len(f.ranges) == 0 {
			continue
		}
		peerMatch := b.peers(f.ranges, r.Any, f.fam, f.off)
		for _, pr := range r.Ports {
			b.rule(ch, peerMatch, l4(proto), portRange(2, pr), counter(), accept())
		}
		if r.Any {
			break // one rule per port for both families
		}
	}
}

// peers matches the address family and, unless any, an interval set of
// the peers' addresses.
func (b *builder) peers(ranges []config.AddrRange, any bool, fam int, off uint32) []expr.Any {
	if any {
		return nil
	}
	nfproto, kt, size := byte(unix.NFPROTO_IPV4), nftables.TypeIPAddr, uint32(4)
	if fam == 6 {
		nfproto, kt, size = unix.NFPROTO_IPV6, nftables.TypeIP6Addr, 16
	}
	b.sets++
	set := &nftables.Set{Table: b.t, Name: fmt.Sprintf("peers%d", b.sets), KeyType: kt, Interval: true, Constant: true}
	var elems []nftables.SetElement
	for _, r := range merge(ranges) {
		elems = append(elems, nftables.SetElement{Key: r.From.AsSlice()})
		if next := r.To.Next(); next.IsValid() {
			elems = append(elems, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
		}
	}
	if err := b.c.AddSet(set, elems); err != nil && b.err == nil {
		b.err = fmt.Errorf("firewall: set %s: %w", set.Name, err)
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
	}
}

// banSets adds two sets per ban set, IPv4 and IPv6, elements with a
// timeout each, holding what was banned before.
func (b *builder) banSets(sets []BanSet, carried map[string][]nftables.SetElement) {
	b.bans = map[string]*nftables.Set{}
	for _, bs := range sets {
		for fam, name := range bs.nftSets() {
			kt := nftables.TypeIPAddr
			if fam == 1 {
				kt = nftables.TypeIP6Addr
			}
			s := &nftables.Set{Table: b.t, Name: name, KeyType: kt, HasTimeout: true}
			if err := b.c.AddSet(s, carried[name]); err != nil && b.err == nil {
				b.err = fmt.Errorf("firewall: set %s: %w", name, err)
			}
			b.bans[name] = s
		}
	}
}

// currentBans reads the elements of the ban set named name with the time
// each has left; none when the table or the set is not there yet.
func currentBans(c *nftables.Conn, t *nftables.Table, name string) []nftables.SetElement {
	s, err := c.GetSetByName(t, name)
	if err != nil {
		return nil
	}
	elems, err := c.GetSetElements(s)
	if err != nil {
		return nil
	}
	var out []nftables.SetElement
	for _, e := range elems {
		if e.Expires > time.Second {
			out = append(out, nftables.SetElement{Key: e.Key, Timeout: e.Expires})
		}
	}
	return out
}

// Ban drops new connections from a to the ports of the ban set named set
// for d, in the kernel, before they reach the service. The element expires
// by itself.
func (NFT) Ban(set string, a netip.Addr, d time.Duration) error {
	// Add (a no-op if it is there, timeout untouched), delete, add: one
	// batch that bans anew for d whether or not the source was banned.
	return banBatch("ban", set, a, d, func(c *nftables.Conn) []func(*nftables.Set, []nftables.SetElement) error {
		return []func(*nftables.Set, []nftables.SetElement) error{c.SetAddElements, c.SetDeleteElements, c.SetAddElements}
	})
}

// banBatch runs ops on a's element (timeout d) of the ban set named set,
// in one netlink batch; what names the operation in errors.
func banBatch(what, set string, a netip.Addr, d time.Duration, ops func(*nftables.Conn) []func(*nftables.Set, []nftables.SetElement) error) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("firewall: %s %s: %w", what, a, err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	a = a.Unmap()
	names := BanSet{Name: set}.nftSets()
	name := names[0]
	if a.Is6() {
		name = names[1]
	}
	s, err := c.GetSetByName(t, name)
	if err != nil {
		return fmt.Errorf("firewall: %s %s: no set %s (is the nftables firewall installed?): %w", what, a, name, err)
	}
	e := []nftables.SetElement{{Key: a.AsSlice(), Timeout: d.Round(time.Millisecond)}}
	for _, op := range ops(c) {
		if err := op(s, e); err != nil {
			return fmt.Errorf("firewall: %s %s: %w", what, a, err)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("firewall: %s %s: %w", what, a, err)
	}
	return nil
}

// Bans lists the sources banned in the ban set named set and the time
// left for each.
func (NFT) Bans(set string) (map[netip.Addr]time.Duration, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, err
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	out := map[netip.Addr]time.Duration{}
	for _, name := range (BanSet{Name: set}).nftSets() {
		for _, e := range currentBans(c, t, name) {
			if a, ok := netip.AddrFromSlice(e.Key); ok {
				out[a] = e.Timeout
			}
		}
	}
	return out, nil
}

func family(fam int) []expr.Any {
	p := byte(unix.NFPROTO_IPV4)
	if fam == 1 {
		p = unix.NFPROTO_IPV6
	}
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
}

// saddr loads the source address of family fam (0 IPv4, 1 IPv6).
func saddr(fam int) []expr.Any {
	if fam == 1 {
		return []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16}}
	}
	return []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}}
}

// merge sorts ranges and joins overlapping and adjacent ones: an interval
// set refuses overlapping elements (EEXIST), and an administrator's
// address inside the monitoring prefix is an ordinary config.
func merge(ranges []config.AddrRange) []config.AddrRange {
	rs := slices.Clone(ranges)
	slices.SortFunc(rs, func(a, b config.AddrRange) int { return a.From.Compare(b.From) })
	var out []config.AddrRange
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if next := last.To.Next(); !next.IsValid() || !next.Less(r.From) { // overlaps or touches
				if last.To.Less(r.To) {
					last.To = r.To
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

func (b *builder) anonSet(kt nftables.SetDatatype, keys []byte) *nftables.Set {
	s := &nftables.Set{Table: b.t, Anonymous: true, Constant: true, KeyType: kt}
	var elems []nftables.SetElement
	for _, k := range keys {
		elems = append(elems, nftables.SetElement{Key: []byte{k}})
	}
	if err := b.c.AddSet(s, elems); err != nil && b.err == nil {
		b.err = fmt.Errorf("firewall: anonymous set: %w", err)
	}
	return s
}

func ctState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

func ifname(key expr.MetaKey, name string) []expr.Any {
	b := make([]byte, 16)
	copy(b, name)
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b}}
}

func l4(proto byte) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}}}
}

func icmpType() []expr.Any {
	return []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1}}
}

func lookup(s *nftables.Set) []expr.Any {
	return []expr.Any{&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID}}
}

// port matches one port at offset 0 (source) or 2 (destination) of the
// transport header.
func port(off uint32, p uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(p)},
	}
}

func portRange(off uint32, r config.PortRange) []expr.Any {
	if r.From == r.To {
		return port(off, r.From)
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2},
		&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: be16(r.From), ToData: be16(r.To)},
	}
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func limit(perSecond uint64) []expr.Any {
	return []expr.Any{&expr.Limit{Type: expr.LimitTypePkts, Rate: perSecond, Unit: expr.LimitTimeSecond, Burst: uint32(perSecond) * 2}}
}

func logPrefix(p string) []expr.Any {
	return []expr.Any{&expr.Log{Key: 1 << unix.NFTA_LOG_PREFIX, Data: []byte(p)}}
}

func counter() []expr.Any { return []expr.Any{&expr.Counter{}} }
func accept() []expr.Any  { return []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}} }
func drop() []expr.Any    { return []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}} }

// Unban lifts a's ban in the ban set named set.
func (NFT) Unban(set string, a netip.Addr) error {
	// Add then delete in one batch: deleting an element that is not
	// there would fail the batch.
	return banBatch("unban", set, a, time.Second, func(c *nftables.Conn) []func(*nftables.Set, []nftables.SetElement) error {
		return []func(*nftables.Set, []nftables.SetElement) error{c.SetAddElements, c.SetDeleteElements}
	})
}
