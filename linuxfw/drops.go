package linuxfw

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// Drops are what the default drop rules at the end of the inbound and
// outbound chains dropped since the rules went in (both families): the
// traffic no path allowed. Drops of invalid packets and of banned
// sources are not in them. A ruleset's replacement starts them at zero
// again.
type Drops struct {
	InPackets, InBytes   uint64
	OutPackets, OutBytes uint64
}

// DropReader is a backend that reads its drop counters back from the
// kernel.
type DropReader interface {
	Drops() (Drops, error)
}

// Drops reads the counters of the default drop rules (counter drop, with
// no match) of the gatehouse table's input and output chains. With open
// egress the output chain has none: zero.
func (NFT) Drops() (Drops, error) {
	c, err := nftables.New()
	if err != nil {
		return Drops{}, fmt.Errorf("firewall: drops: nftables: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	var d Drops
	for _, ch := range []struct {
		name           string
		packets, bytes *uint64
	}{{"input", &d.InPackets, &d.InBytes}, {"output", &d.OutPackets, &d.OutBytes}} {
		rules, err := c.GetRules(t, &nftables.Chain{Name: ch.name, Table: t})
		if err != nil {
			return Drops{}, fmt.Errorf("firewall: drops: read chain %s: %w", ch.name, err)
		}
		for _, r := range rules {
			if cnt, ok := defaultDrop(r.Exprs); ok {
				*ch.packets += cnt.Packets
				*ch.bytes += cnt.Bytes
			}
		}
	}
	return d, nil
}

// defaultDrop says whether a rule is a chain's default drop, "counter
// drop", and gives its counter.
func defaultDrop(exprs []expr.Any) (*expr.Counter, bool) {
	if len(exprs) != 2 {
		return nil, false
	}
	cnt, ok := exprs[0].(*expr.Counter)
	v, isVerdict := exprs[1].(*expr.Verdict)
	if !ok || !isVerdict || v.Kind != expr.VerdictDrop {
		return nil, false
	}
	return cnt, true
}

// Drops reads the counters of the default drop rules ("-j DROP" with no
// match) of GATEHOUSE-INPUT and GATEHOUSE-OUTPUT in each family the
// kernel has, from iptables-save -c.
func (IPTables) Drops() (Drops, error) {
	var d Drops
	var errs []error
	for _, f := range ipFamilies {
		if !haveFamily(f) {
			continue
		}
		out, err := exec.Command(f.save, "-c", "-t", "filter").Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = bytes.TrimSpace(ee.Stderr)
			}
			errs = append(errs, fmt.Errorf("firewall: drops: %s (%s): %v: %s", f.save, f.name, err, stderr))
			continue
		}
		fd, err := ParseIPTablesDrops(out)
		if err != nil {
			errs = append(errs, fmt.Errorf("firewall: drops: %s (%s): %w", f.save, f.name, err))
			continue
		}
		d.InPackets += fd.InPackets
		d.InBytes += fd.InBytes
		d.OutPackets += fd.OutPackets
		d.OutBytes += fd.OutBytes
	}
	return d, errors.Join(errs...)
}

// ParseIPTablesDrops finds the default drop rules of our chains in
// iptables-save -c output, "[packets:bytes] -A GATEHOUSE-INPUT -j DROP",
// and adds up their counters.
func ParseIPTablesDrops(save []byte) (Drops, error) {
	var d Drops
	s := bufio.NewScanner(bytes.NewReader(save))
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, "[") {
			continue
		}
		counters, rule, ok := strings.Cut(line[1:], "] ")
		if !ok {
			continue
		}
		var packets, octets *uint64
		switch rule {
		case "-A GATEHOUSE-INPUT -j DROP":
			packets, octets = &d.InPackets, &d.InBytes
		case "-A GATEHOUSE-OUTPUT -j DROP":
			packets, octets = &d.OutPackets, &d.OutBytes
		default:
			continue
		}
		ps, bs, ok := strings.Cut(counters, ":")
		p, perr := strconv.ParseUint(ps, 10, 64)
		b, berr := strconv.ParseUint(bs, 10, 64)
		if !ok || perr != nil || berr != nil {
			return Drops{}, fmt.Errorf("counters %q of %q", counters, rule)
		}
		*packets += p
		*octets += b
	}
	if err := s.Err(); err != nil {
		return Drops{}, err
	}
	return d, nil
}
