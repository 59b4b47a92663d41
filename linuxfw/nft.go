package linuxfw

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"gatehouse/config"
)

// TableName is the one nftables table Gatehouse owns; no other table is
// ever touched.
const TableName = "gatehouse"

// NFT is the nftables backend (netlink, no nft binary needed). Its zero
// value replaces the whole table at every Apply. One made by NewNFT
// remembers what it installed and changes only what differs: new peers
// of the same rules as set updates (rules, counters and bans untouched),
// other changes as new rules over the same sets. Copies share what it
// remembers.
type NFT struct {
	last *nftLast
}

// NewNFT is the nftables backend that remembers what it installed.
func NewNFT() NFT { return NFT{last: &nftLast{}} }

type nftLast struct {
	mu  sync.Mutex
	rec *nftRecord // nil: what is in the kernel is not known
	// sock is kept open: closing it would wait for the kernel to free
	// the ruleset the last batch replaced (nlSocket.close).
	sock *nlSocket
}

// nftRecord is what an Apply installed.
type nftRecord struct {
	handle uint64             // the table's kernel handle (tableHandle)
	shape  string             // plan.shape
	peers  map[string]peerSet // by name
	bans   []string           // the ban sets' nftables sets
}

// Apply puts rs in place in one netlink batch: the kernel swaps old for
// new atomically, so there is no moment with no rules, or half of them.
func (n NFT) Apply(rs Ruleset) error {
	_, err := n.Update(rs)
	return err
}

// Update is Apply, saying how rs went in. With nothing remembered, or
// when the kernel's table is not the one this backend installed last,
// the whole table is replaced. Else, when only peers changed, the sets'
// elements are; when more changed, the rules are replaced, and the sets
// kept and changed. Should that fail, the whole table is replaced.
func (n NFT) Update(rs Ruleset) (Applied, error) {
	if err := checkBanSets(rs); err != nil {
		return Applied{}, err
	}
	p := planOf(rs)
	if n.last == nil {
		sock, err := dialNetfilter()
		if err != nil {
			return Applied{}, err
		}
		defer sock.close()
		_, err = replaceTable(sock, rs, p)
		return Applied{Replaced: true}, err
	}
	n.last.mu.Lock()
	defer n.last.mu.Unlock()
	if n.last.sock == nil {
		sock, err := dialNetfilter()
		if err != nil {
			return Applied{}, err
		}
		n.last.sock = sock
	}
	sock := n.last.sock
	rec := n.last.rec
	n.last.rec = nil // not known until this apply is through
	var retried error
	if rec != nil {
		a, err := changeTable(sock, rs, p, rec)
		if err == nil {
			n.last.rec = &nftRecord{handle: rec.handle, shape: p.shape, peers: peerMap(p.sets), bans: banNames(rs)}
			return a, nil
		}
		retried = err
	}
	handle, err := replaceTable(sock, rs, p)
	if err != nil {
		// The socket may be what failed: a new one next time.
		n.last.sock = nil
		sock.closeLater()
		return Applied{}, errors.Join(retried, err)
	}
	if handle != 0 {
		n.last.rec = &nftRecord{handle: handle, shape: p.shape, peers: peerMap(p.sets), bans: banNames(rs)}
	}
	return Applied{Replaced: true, Retried: retried}, nil
}

// buildReplace puts the whole table's replacement into bc's batch: add,
// delete, add the table, then its ban sets (with bans carried over), peer
// sets and rules.
func buildReplace(bc *batchConn, t *nftables.Table, rs Ruleset, p plan, bans map[string][]nftables.SetElement) error {
	bc.AddTable(t)
	bc.DelTable(t)
	bc.AddTable(t)
	b := &builder{c: bc.Conn, t: t, peerSets: map[string]*nftables.Set{}}
	b.banSets(rs.BanSets, bans)
	for _, s := range p.sets {
		b.addPeerSet(s)
	}
	b.rules(rs, p)
	return b.err
}

// replaceTable replaces the gatehouse table with rs: add (a no-op if it
// exists), delete, add, in one batch that works whether or not the table
// was there. It returns the new table's handle, 0 if it cannot tell.
func replaceTable(sock *nlSocket, rs Ruleset, p plan) (uint64, error) {
	bc, err := newBatchConn(sock)
	if err != nil {
		return 0, err
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	// Bans live in the table's sets; they must outlive the table's
	// replacement, with the time they have left.
	bans := map[string][]nftables.SetElement{}
	if len(rs.BanSets) > 0 {
		c, err := nftables.New(nftables.AsLasting())
		if err != nil {
			return 0, fmt.Errorf("firewall: nftables: %w", err)
		}
		for _, bs := range rs.BanSets {
			for _, name := range bs.nftSets() {
				bans[name] = currentBans(c, t, name)
			}
		}
		c.CloseLasting()
	}
	if err := buildReplace(bc, t, rs, p, bans); err != nil {
		return 0, err
	}
	if err := bc.flush(); err != nil {
		return 0, fmt.Errorf("firewall: apply nftables batch: %w", err)
	}
	handle, err := sock.tableHandle(TableName)
	if err != nil {
		return 0, nil // in place, only not to be changed in place next time
	}
	return handle, nil
}

// changeTable changes the table installed as rec into rs, in one batch:
// the peer sets' elements that differ, and, unless rs has rec's shape,
// all rules anew, the sets that are new added and those no longer used
// deleted. Ban sets that stay are not touched, nor their bans.
func changeTable(sock *nlSocket, rs Ruleset, p plan, rec *nftRecord) (Applied, error) {
	bc, err := newBatchConn(sock)
	if err != nil {
		return Applied{}, err
	}
	handle, err := sock.tableHandle(TableName)
	if err != nil {
		return Applied{}, err
	}
	if handle != rec.handle {
		return Applied{}, fmt.Errorf("firewall: table inet %s is not the one installed last (handle %d, was %d)", TableName, handle, rec.handle)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	b := &builder{c: bc.Conn, t: t, peerSets: map[string]*nftables.Set{}}
	a := Applied{Replaced: p.shape != rec.shape}
	create, change, drop := diffSets(rec.peers, p.sets)
	if a.Replaced {
		// Every rule goes; the chains stay (the rules' adds below update
		// their policies), and so do the sets until deleted here.
		bc.FlushTable(t)
		for _, name := range drop {
			bc.DelSet(&nftables.Set{Table: t, Name: name})
		}
		for _, s := range create {
			b.addPeerSet(s)
			a.Added += len(s.ranges)
		}
		b.bans = map[string]*nftables.Set{}
		for _, name := range rec.bans {
			if !slices.Contains(banNames(rs), name) {
				bc.DelSet(&nftables.Set{Table: t, Name: name})
			}
		}
		for _, bs := range rs.BanSets {
			for fam, name := range bs.nftSets() {
				s := &nftables.Set{Table: t, Name: name}
				if !slices.Contains(rec.bans, name) {
					s = b.banSet(name, fam, nil)
				}
				b.bans[name] = s
			}
		}
	} else if len(create)+len(drop) > 0 {
		return Applied{}, fmt.Errorf("firewall: same shape, other sets: %d new, %d gone", len(create), len(drop))
	}
	for _, ch := range change {
		kt := nftables.TypeIPAddr
		if ch.v6 {
			kt = nftables.TypeIP6Addr
		}
		s := &nftables.Set{Table: t, Name: ch.name, KeyType: kt, Interval: true}
		if err := setElements(bc.SetDeleteElements, s, intervalElems(ch.del)); err != nil {
			return Applied{}, err
		}
		if err := setElements(bc.SetAddElements, s, intervalElems(ch.add)); err != nil {
			return Applied{}, err
		}
		b.peerSets[ch.name] = s
		a.Sets++
		a.Added += len(ch.add)
		a.Removed += len(ch.del)
	}
	if a.Replaced {
		b.rules(rs, p)
	}
	if b.err != nil {
		return Applied{}, b.err
	}
	if err := bc.flush(); err != nil {
		return Applied{}, fmt.Errorf("firewall: change nftables table: %w", err)
	}
	return a, nil
}

func peerMap(sets []peerSet) map[string]peerSet {
	m := make(map[string]peerSet, len(sets))
	for _, s := range sets {
		m[s.name] = s
	}
	return m
}

// banNames are the nftables sets of rs's ban sets.
func banNames(rs Ruleset) []string {
	var names []string
	for _, bs := range rs.BanSets {
		sets := bs.nftSets()
		names = append(names, sets[:]...)
	}
	return names
}

// Remove deletes the gatehouse table, if it is there.
func (n NFT) Remove() error {
	if n.last != nil {
		n.last.mu.Lock()
		defer n.last.mu.Unlock()
		n.last.rec = nil
		if n.last.sock != nil { // a backend removed is done with
			n.last.sock.closeLater()
			n.last.sock = nil
		}
	}
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
	c        *nftables.Conn
	t        *nftables.Table
	peerSets map[string]*nftables.Set // by name
	bans     map[string]*nftables.Set // by name
	err      error
}

// rules adds the chains, their policies and rules: all of them.
func (b *builder) rules(rs Ruleset, p plan) {
	b.input(rs, p.in)
	b.output(rs, p.out)
	b.forward()
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

func (b *builder) input(rs Ruleset, sets [][2]string) {
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
	for i, r := range rs.In {
		b.pathRules(ch, r, sets[i], 12, 8) // match the source address
	}
	b.rule(ch, limit(5), logPrefix("gatehouse drop in: "))
	b.rule(ch, counter(), drop())
}

func (b *builder) output(rs Ruleset, sets [][2]string) {
	if !rs.RestrictEgress {
		b.chain("output", nftables.ChainHookOutput, nftables.ChainPolicyAccept)
		return
	}
	ch := b.chain("output", nftables.ChainHookOutput, nftables.ChainPolicyDrop)
	b.common(ch, "oifname", rs.Boot)
	for i, r := range rs.Out {
		b.pathRules(ch, r, sets[i], 16, 24) // match the destination address
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

// pathRules lets one path through: per family with peers (its set in
// sets, IPv4 and IPv6), per port range. off4 and off6 are where the
// peer's address sits in the IPv4 and IPv6 header (source on input,
// destination on output).
func (b *builder) pathRules(ch *nftables.Chain, r Rule, sets [2]string, off4, off6 uint32) {
	var proto byte
	switch r.Proto {
	case "tcp":
		proto = unix.IPPROTO_TCP
	case "udp":
		proto = unix.IPPROTO_UDP
	case "icmp":
		// Both families' echo; the essentials are allowed anyway.
		if r.Any || sets[0] != "" {
			b.rule(ch, b.peers(sets[0], 4, off4), l4(unix.IPPROTO_ICMP), counter(), accept())
		}
		if r.Any || sets[1] != "" {
			b.rule(ch, b.peers(sets[1], 6, off6), l4(unix.IPPROTO_ICMPV6), counter(), accept())
		}
		return
	}
	families := []struct {
		set string
		fam int
		off uint32
	}{{sets[0], 4, off4}, {sets[1], 6, off6}}
	for _, f := range families {
		if !r.Any && f.set == "" {
			continue
		}
		peerMatch := b.peers(f.set, f.fam, f.off)
		for _, pr := range r.Ports {
			b.rule(ch, peerMatch, l4(proto), portRange(2, pr), counter(), accept())
		}
		if r.Any {
			break // one rule per port for both families
		}
	}
}

// peers matches the address family and the peer set named name; nothing
// (anyone) without a name.
func (b *builder) peers(name string, fam int, off uint32) []expr.Any {
	if name == "" {
		return nil
	}
	nfproto, size := byte(unix.NFPROTO_IPV4), uint32(4)
	if fam == 6 {
		nfproto, size = unix.NFPROTO_IPV6, 16
	}
	s := b.peerSets[name]
	if s == nil { // installed before, unchanged
		s = &nftables.Set{Table: b.t, Name: name}
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
	}
}

// addPeerSet adds a peer set with its elements: an interval set, not
// constant, so that its elements can change in place.
func (b *builder) addPeerSet(ps peerSet) {
	kt := nftables.TypeIPAddr
	if ps.v6 {
		kt = nftables.TypeIP6Addr
	}
	s := &nftables.Set{Table: b.t, Name: ps.name, KeyType: kt, Interval: true}
	if err := b.c.AddSet(s, nil); err != nil && b.err == nil {
		b.err = fmt.Errorf("firewall: set %s: %w", s.Name, err)
	}
	if err := setElements(b.c.SetAddElements, s, intervalElems(ps.ranges)); err != nil && b.err == nil {
		b.err = err
	}
	b.peerSets[ps.name] = s
}

// setElements adds or deletes (op) elements of s, a few thousand at a
// time: a message's list of elements is one netlink attribute, at most
// 64 KiB long, and the library does not check.
func setElements(op func(*nftables.Set, []nftables.SetElement) error, s *nftables.Set, elems []nftables.SetElement) error {
	for chunk := range slices.Chunk(elems, 1024) {
		if err := op(s, chunk); err != nil {
			return fmt.Errorf("firewall: set %s: %w", s.Name, err)
		}
	}
	return nil
}

// banSets adds two sets per ban set, IPv4 and IPv6, elements with a
// timeout each, holding what was banned before.
func (b *builder) banSets(sets []BanSet, carried map[string][]nftables.SetElement) {
	b.bans = map[string]*nftables.Set{}
	for _, bs := range sets {
		for fam, name := range bs.nftSets() {
			b.bans[name] = b.banSet(name, fam, carried[name])
		}
	}
}

// banSet adds the ban set named name of family fam (0 IPv4, 1 IPv6).
func (b *builder) banSet(name string, fam int, elems []nftables.SetElement) *nftables.Set {
	kt := nftables.TypeIPAddr
	if fam == 1 {
		kt = nftables.TypeIP6Addr
	}
	s := &nftables.Set{Table: b.t, Name: name, KeyType: kt, HasTimeout: true}
	if err := b.c.AddSet(s, elems); err != nil && b.err == nil {
		b.err = fmt.Errorf("firewall: set %s: %w", name, err)
	}
	return s
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
	// A copy, merged in place: one allocation per set, and never the
	// caller's slice (the backend remembers what it installed).
	rs := slices.Clone(ranges)
	byFrom := func(a, b config.AddrRange) int { return a.From.Compare(b.From) }
	if !slices.IsSortedFunc(rs, byFrom) {
		slices.SortFunc(rs, byFrom)
	}
	n := 0
	for _, r := range rs {
		if n > 0 {
			last := &rs[n-1]
			if next := last.To.Next(); !next.IsValid() || !next.Less(r.From) { // overlaps or touches
				if last.To.Less(r.To) {
					last.To = r.To
				}
				continue
			}
		}
		rs[n] = r
		n++
	}
	return rs[:n:n]
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
