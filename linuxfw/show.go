package linuxfw

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Show reads the gatehouse table back from the kernel and prints it in
// nft's own syntax, counters and ban expiries included: what is enforced,
// not what was meant to be. The appliance has no nft binary, so this is
// the operator's `nft list table`.
func (NFT) Show() (string, error) {
	c, err := nftables.New()
	if err != nil {
		return "", fmt.Errorf("firewall: nftables: %w", err)
	}
	t, err := c.ListTableOfFamily(TableName, nftables.TableFamilyINet)
	if err != nil {
		return "", fmt.Errorf("firewall: no table inet %s in the kernel: %w", TableName, err)
	}
	sets, err := c.GetSets(t)
	if err != nil {
		return "", fmt.Errorf("firewall: read sets: %w", err)
	}
	var w bytes.Buffer
	fmt.Fprintf(&w, "table inet %s {\n", TableName)
	anon := map[string][]nftables.SetElement{}
	first := true
	for _, s := range sets {
		elems, err := c.GetSetElements(s)
		if err != nil {
			return "", fmt.Errorf("firewall: read set %s: %w", s.Name, err)
		}
		if s.Anonymous {
			anon[s.Name] = elems
			continue
		}
		if !first {
			w.WriteString("\n")
		}
		first = false
		writeSet(&w, s, elems)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return "", fmt.Errorf("firewall: read chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name != TableName {
			continue
		}
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return "", fmt.Errorf("firewall: read chain %s: %w", ch.Name, err)
		}
		if !first {
			w.WriteString("\n")
		}
		first = false
		fmt.Fprintf(&w, "\tchain %s {\n", ch.Name)
		if ch.Hooknum != nil {
			fmt.Fprintf(&w, "\t\ttype %s hook %s priority %s; policy %s;\n", ch.Type, hookName(*ch.Hooknum), priorityName(ch.Priority), policyName(ch.Policy))
		}
		for _, r := range rules {
			fmt.Fprintf(&w, "\t\t%s\n", ruleText(r.Exprs, anon))
		}
		w.WriteString("\t}\n")
	}
	w.WriteString("}\n")
	return w.String(), nil
}

func writeSet(w *bytes.Buffer, s *nftables.Set, elems []nftables.SetElement) {
	fmt.Fprintf(w, "\tset %s {\n\t\ttype %s\n", s.Name, s.KeyType.Name)
	var flags []string
	if s.Constant {
		flags = append(flags, "constant")
	}
	if s.Interval {
		flags = append(flags, "interval")
	}
	if s.HasTimeout {
		flags = append(flags, "timeout")
	}
	if len(flags) > 0 {
		fmt.Fprintf(w, "\t\tflags %s\n", strings.Join(flags, ","))
	}
	if items := setItems(s, elems); len(items) > 0 {
		fmt.Fprintf(w, "\t\telements = { %s }\n", strings.Join(items, ", "))
	}
	w.WriteString("\t}\n")
}

// setItems renders elements as nft does: an interval set's start and end
// elements become a, a-b or a/n; a timed element shows what is left.
func setItems(s *nftables.Set, elems []nftables.SetElement) []string {
	if !s.Interval {
		var out []string
		for _, e := range elems {
			a, _ := netip.AddrFromSlice(e.Key)
			item := a.String()
			if e.Timeout > 0 {
				item += fmt.Sprintf(" timeout %s expires %s", nftDuration(e.Timeout), nftDuration(e.Expires))
			}
			out = append(out, item)
		}
		slices.Sort(out)
		return out
	}
	type bound struct {
		a   netip.Addr
		end bool
	}
	var bs []bound
	for _, e := range elems {
		a, ok := netip.AddrFromSlice(e.Key)
		if !ok {
			continue
		}
		bs = append(bs, bound{a, e.IntervalEnd})
	}
	// Starts and ends come back in the kernel's order; sorted by address,
	// each start is followed by its end (none for a range to the top).
	slices.SortFunc(bs, func(x, y bound) int { return x.a.Compare(y.a) })
	var out []string
	for i := 0; i < len(bs); i++ {
		if bs[i].end {
			continue // the zero-address end the kernel keeps below the first range
		}
		from := bs[i].a
		to := topAddr(from)
		if i+1 < len(bs) && bs[i+1].end {
			to = bs[i+1].a.Prev()
			i++
		}
		out = append(out, rangeText(from, to))
	}
	return out
}

func topAddr(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	var b [16]byte
	for i := range b {
		b[i] = 0xff
	}
	return netip.AddrFrom16(b)
}

// rangeText prints a, a/n when the range is exactly a prefix, else a-b.
func rangeText(from, to netip.Addr) string {
	if from == to {
		return from.String()
	}
	if ps := rangeToPrefixes(from, to); len(ps) == 1 {
		return ps[0].String()
	}
	return from.String() + "-" + to.String()
}

// nftDuration prints 1h2m3s4ms the way nft does: no zero units.
func nftDuration(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	d = d.Truncate(time.Millisecond)
	var b strings.Builder
	for _, u := range []struct {
		d time.Duration
		s string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}} {
		if n := d / u.d; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.s)
			d -= n * u.d
		}
	}
	return b.String()
}

func hookName(h nftables.ChainHook) string {
	switch h {
	case *nftables.ChainHookPrerouting:
		return "prerouting"
	case *nftables.ChainHookInput:
		return "input"
	case *nftables.ChainHookForward:
		return "forward"
	case *nftables.ChainHookOutput:
		return "output"
	case *nftables.ChainHookPostrouting:
		return "postrouting"
	}
	return fmt.Sprint(uint32(h))
}

func priorityName(p *nftables.ChainPriority) string {
	if p == nil || *p == *nftables.ChainPriorityFilter {
		return "filter"
	}
	return fmt.Sprint(int32(*p))
}

func policyName(p *nftables.ChainPolicy) string {
	if p != nil && *p == nftables.ChainPolicyDrop {
		return "drop"
	}
	return "accept"
}

var protoNames = map[byte]string{unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp", unix.IPPROTO_ICMP: "icmp", unix.IPPROTO_ICMPV6: "icmpv6"}

var icmpTypeNames = map[byte]string{0: "echo-reply", 3: "destination-unreachable", 4: "source-quench", 5: "redirect",
	8: "echo-request", 9: "router-advertisement", 10: "router-solicitation", 11: "time-exceeded", 12: "parameter-problem"}

var icmp6TypeNames = map[byte]string{1: "destination-unreachable", 2: "packet-too-big", 3: "time-exceeded", 4: "parameter-problem",
	128: "echo-request", 129: "echo-reply", 133: "nd-router-solicit", 134: "nd-router-advert", 135: "nd-neighbor-solicit",
	136: "nd-neighbor-advert", 137: "nd-redirect"}

// ruleText renders the expressions this package writes, in nft's words:
// a protocol match followed by a field of that protocol is folded into
// "ip saddr" or "tcp dport" as nft prints it. Anything else is shown raw
// rather than hidden.
func ruleText(exprs []expr.Any, anon map[string][]nftables.SetElement) string {
	var out []string
	var nfproto, l4proto byte // matched, not yet printed
	var fam, proto byte       // matched so far, to name the fields by
	var load any              // what register 1 holds: an expression, or a masked ct state
	flushProtos := func() {
		if nfproto != 0 {
			out = append(out, "meta nfproto "+map[byte]string{unix.NFPROTO_IPV4: "ipv4", unix.NFPROTO_IPV6: "ipv6"}[nfproto])
			nfproto = 0
		}
		if l4proto != 0 {
			out = append(out, "meta l4proto "+protoNames[l4proto])
			l4proto = 0
		}
	}
	field := func(p *expr.Payload) string {
		if p.Base == expr.PayloadBaseNetworkHeader {
			name := "ip"
			if fam == unix.NFPROTO_IPV6 {
				name = "ip6"
			}
			nfproto = 0
			dir := "saddr"
			if p.Offset == 16 || p.Offset == 24 {
				dir = "daddr"
			}
			return name + " " + dir
		}
		name := protoNames[proto]
		if name == "" {
			name = "th"
		}
		l4proto = 0
		switch {
		case (name == "icmp" || name == "icmpv6") && p.Offset == 0:
			return name + " type"
		case p.Offset == 0:
			return name + " sport"
		default:
			return name + " dport"
		}
	}
	for _, e := range exprs {
		switch e := e.(type) {
		case *expr.Meta, *expr.Payload, *expr.Ct, *expr.Bitwise:
			if b, ok := e.(*expr.Bitwise); ok {
				if ct, ok := load.(*expr.Ct); ok && ct.Key == expr.CtKeySTATE {
					load = &ctMask{mask: binary.NativeEndian.Uint32(b.Mask)}
				}
				continue
			}
			if m, ok := e.(*expr.Meta); ok && m.Key != expr.MetaKeyNFPROTO && m.Key != expr.MetaKeyL4PROTO {
				flushProtos()
			}
			load = e
		case *expr.Cmp:
			switch l := load.(type) {
			case *expr.Meta:
				switch l.Key {
				case expr.MetaKeyNFPROTO:
					nfproto, fam = e.Data[0], e.Data[0]
				case expr.MetaKeyL4PROTO:
					l4proto, proto = e.Data[0], e.Data[0]
				case expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME:
					key := "iifname"
					if l.Key == expr.MetaKeyOIFNAME {
						key = "oifname"
					}
					out = append(out, fmt.Sprintf("%s %q", key, string(bytes.TrimRight(e.Data, "\x00"))))
				}
			case *expr.Payload:
				out = append(out, fmt.Sprintf("%s %d", field(l), binary.BigEndian.Uint16(e.Data)))
			case *ctMask:
				out = append(out, "ct state "+ctStates(l.mask))
			default:
				flushProtos()
				out = append(out, fmt.Sprintf("%T", e))
			}
		case *expr.Range:
			if p, ok := load.(*expr.Payload); ok {
				out = append(out, fmt.Sprintf("%s %d-%d", field(p), binary.BigEndian.Uint16(e.FromData), binary.BigEndian.Uint16(e.ToData)))
			}
		case *expr.Lookup:
			p, _ := load.(*expr.Payload)
			if p == nil {
				flushProtos()
				out = append(out, "@"+e.SetName)
				continue
			}
			f := field(p)
			if elems, ok := anon[e.SetName]; ok {
				names := icmpTypeNames
				if proto == unix.IPPROTO_ICMPV6 {
					names = icmp6TypeNames
				}
				keys := make([]byte, 0, len(elems))
				for _, el := range elems {
					keys = append(keys, el.Key[0])
				}
				slices.Sort(keys)
				var items []string
				for _, k := range keys {
					items = append(items, names[k])
				}
				out = append(out, fmt.Sprintf("%s { %s }", f, strings.Join(items, ", ")))
			} else {
				out = append(out, fmt.Sprintf("%s @%s", f, e.SetName))
			}
		default:
			flushProtos()
			out = append(out, verbText(e))
		}
	}
	flushProtos()
	return strings.Join(out, " ")
}

// ctMask is a ct state load already masked by a bitwise.
type ctMask struct{ mask uint32 }

func ctStates(mask uint32) string {
	var s []string
	for _, b := range []struct {
		bit  uint32
		name string
	}{{expr.CtStateBitINVALID, "invalid"}, {expr.CtStateBitESTABLISHED, "established"}, {expr.CtStateBitRELATED, "related"},
		{expr.CtStateBitNEW, "new"}, {expr.CtStateBitUNTRACKED, "untracked"}} {
		if mask&b.bit != 0 {
			s = append(s, b.name)
		}
	}
	return strings.Join(s, ",")
}

func verbText(e expr.Any) string {
	switch e := e.(type) {
	case *expr.Counter:
		return fmt.Sprintf("counter packets %d bytes %d", e.Packets, e.Bytes)
	case *expr.Limit:
		unit := map[expr.LimitTime]string{expr.LimitTimeSecond: "second", expr.LimitTimeMinute: "minute", expr.LimitTimeHour: "hour", expr.LimitTimeDay: "day"}[e.Unit]
		return fmt.Sprintf("limit rate %d/%s burst %d packets", e.Rate, unit, e.Burst)
	case *expr.Log:
		return fmt.Sprintf("log prefix %q", string(e.Data))
	case *expr.Verdict:
		switch e.Kind {
		case expr.VerdictAccept:
			return "accept"
		case expr.VerdictDrop:
			return "drop"
		}
		return fmt.Sprintf("verdict %d", e.Kind)
	}
	return fmt.Sprintf("%T", e)
}
