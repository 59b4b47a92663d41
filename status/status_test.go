package status

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDetail(t *testing.T) {
	services := []State{
		{Name: "ntp"},
		{Name: "dns", Detail: json.RawMessage(`{"mode":"builtin","servers":["192.0.2.1"]}`)},
		{Name: "firewall", Detail: json.RawMessage(`{"backend": 7}`)},
	}
	if d, ok, err := Detail[DNS](services, "dns"); !ok || err != nil || d.Mode != "builtin" || d.Servers[0] != "192.0.2.1" {
		t.Errorf("dns: %+v %v %v", d, ok, err)
	}
	if _, ok, err := Detail[NTP](services, "ntp"); ok || err != nil {
		t.Errorf("ntp without detail: %v %v", ok, err)
	}
	if _, ok, err := Detail[NTP](services, "missing"); ok || err != nil {
		t.Errorf("missing service: %v %v", ok, err)
	}
	if _, ok, err := Detail[Firewall](services, "firewall"); !ok || err == nil || !strings.Contains(err.Error(), "firewall detail") {
		t.Errorf("undecodable detail: %v %v", ok, err)
	}
}

func TestFirewallSummary(t *testing.T) {
	for _, tc := range []struct {
		f    Firewall
		want string
	}{
		{Firewall{Backend: "nftables", Ruleset: "config", In: []string{"a", "b"}, Egress: "open"}, "nftables, 2 inbound paths, egress open"},
		{Firewall{Backend: "iptables", Ruleset: "default-deny"}, "iptables, the boot-time default deny: the config's rules are not in everywhere"},
		{Firewall{Backend: "nftables"}, "nftables, neither the default deny nor the config's rules are in everywhere"},
	} {
		if got := tc.f.Summary(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.f, got, tc.want)
		}
	}
}
