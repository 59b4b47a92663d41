package peergate

import (
	"net/netip"
	"testing"
	"time"

	"gatehouse/config"
)

func TestGateAllowlistAndBans(t *testing.T) {
	c, _, err := config.Parse("f.yaml", []byte("monitoring: {hosts: [192.0.2.99]}\nssh:\n  allow: [198.51.100.7, 192.168.0.1-50, \"2001:db8::/64\"]\n  ban: {after: 2, for: 1m}\n"))
	if err != nil {
		t.Fatal(err)
	}
	g := New(c.SSHPeers(), nil, c.SSH.Ban, NewBanTable())
	now := time.Now()
	g.bans.now = func() time.Time { return now }
	for addr, want := range map[string]bool{
		"198.51.100.7": true, "192.168.0.50": true, "192.168.0.51": false, "192.0.2.99": true,
		"2001:db8::1": true, "2001:db8:1::1": false, "203.0.113.1": false, "::ffff:198.51.100.7": true,
	} {
		if ok, why := g.Admit(netip.MustParseAddr(addr)); ok != want {
			t.Errorf("%s: admitted %v (%s), want %v", addr, ok, why, want)
		}
	}
	a := netip.MustParseAddr("198.51.100.7")
	if g.Failed(a) {
		t.Error("banned after one failure")
	}
	if !g.Failed(a) {
		t.Error("not banned after two failures")
	}
	if ok, why := g.Admit(a); ok || why == "" {
		t.Error("a banned source was admitted")
	}
	now = now.Add(61 * time.Second)
	if ok, _ := g.Admit(a); !ok {
		t.Error("the ban did not lapse")
	}
}

func TestLift(t *testing.T) {
	b := NewBanTable()
	a := netip.MustParseAddr("192.0.2.1")
	b.failed(a, 1, time.Hour)
	if _, ok := b.BannedUntil(a); !ok {
		t.Fatal("not banned")
	}
	if !b.Lift(netip.MustParseAddr("::ffff:192.0.2.1")) {
		t.Error("Lift of a banned source said it was not banned")
	}
	if _, ok := b.BannedUntil(a); ok || b.Failures(a) != 0 {
		t.Error("still banned after Lift")
	}
}
