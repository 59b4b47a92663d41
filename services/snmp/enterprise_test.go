package snmp

import (
	"encoding/json"
	"testing"
	"time"

	"gatehouse/control"
	"gatehouse/snmp"
	"gatehouse/status"
)

// The firewall group, from the firewall service's detail: the drops as
// Counter64 objects 6 to 9, next to the objects 1 to 5 as before.
func TestEnterpriseFirewallDrops(t *testing.T) {
	fw := status.Firewall{Backend: "nftables", Ruleset: "config", In: []string{"a", "b"}, Applies: 3,
		Drops: status.FirewallDrops{In: status.DropCount{Packets: 7, Bytes: 420}, Out: status.DropCount{Packets: 1 << 33, Bytes: 5}}}
	d, err := json.Marshal(fw)
	if err != nil {
		t.Fatal(err)
	}
	st := &control.Status{Mode: "pid1", Services: []status.State{{Name: "firewall", Phase: status.Running, Detail: d}}}
	got := map[string]snmp.Value{}
	for _, e := range enterprise(nil, st, time.Now()) {
		got[e.OID.String()] = e.Value
	}
	fwOID := oidGhFirewall.String()
	for _, w := range []struct {
		sub string
		v   snmp.Value
	}{
		{"1.0", snmp.Integer(1)},
		{"2.0", snmp.String("nftables")},
		{"3.0", snmp.Gauge32(2)},
		{"4.0", snmp.Counter32(3)},
		{"5.0", snmp.String("")},
		{"6.0", snmp.Counter64(7)},
		{"7.0", snmp.Counter64(420)},
		{"8.0", snmp.Counter64(1 << 33)},
		{"9.0", snmp.Counter64(5)},
	} {
		o := fwOID + "." + w.sub
		v, ok := got[o]
		if !ok {
			t.Errorf("%s missing", o)
			continue
		}
		if v.Type != w.v.Type || v.Int != w.v.Int || v.Uint != w.v.Uint || string(v.Bytes) != string(w.v.Bytes) {
			t.Errorf("%s = %+v, want %+v", o, v, w.v)
		}
	}
	// A firewall detail of before the drops (an older service): zeros.
	st.Services[0].Detail = json.RawMessage(`{"backend":"iptables","ruleset":"config"}`)
	for _, e := range enterprise(nil, st, time.Now()) {
		if e.OID.String() == fwOID+".6.0" && (e.Value.Type != snmp.Counter64(0).Type || e.Value.Uint != 0) {
			t.Errorf("drops in without them in the detail: %+v", e.Value)
		}
	}
}
