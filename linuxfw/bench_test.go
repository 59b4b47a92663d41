package linuxfw

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/nftables"

	"gatehouse/config"
)

func benchRuleset() Ruleset {
	var rs Ruleset
	a := netip.MustParseAddr("10.0.0.1")
	for i := range 200 {
		r := Rule{Function: fmt.Sprintf("path %d", i), Proto: "tcp", Ports: []config.PortRange{{From: uint16(10000 + i), To: uint16(10000 + i)}}}
		for range 25 {
			r.V4 = append(r.V4, config.AddrRange{From: a, To: a})
			a = a.Next().Next()
		}
		rs.In = append(rs.In, r)
	}
	return rs
}

func BenchmarkPlan(b *testing.B) {
	rs := benchRuleset()
	b.ReportAllocs()
	for b.Loop() {
		planOf(rs)
	}
}

// BenchmarkBuildReplace is the Go side of a whole replacement: the
// library's messages for the table, sets, elements and rules, not sent.
func BenchmarkBuildReplace(b *testing.B) {
	rs := benchRuleset()
	b.ReportAllocs()
	for b.Loop() {
		p := planOf(rs)
		bc, err := newBatchConn(nil)
		if err != nil {
			b.Fatal(err)
		}
		t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
		if err := buildReplace(bc, t, rs, p, nil); err != nil {
			b.Fatal(err)
		}
	}
}
