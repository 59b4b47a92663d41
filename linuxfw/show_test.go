package linuxfw

import (
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"gatehouse/config"
)

// What Show reads back from the kernel must be what nft itself lists,
// rule for rule and element for element.
func TestShowMatchesNft(t *testing.T) {
	rs := exampleRuleset(t)
	rs.In = append(rs.In, Rule{Function: "ping from monitoring", Proto: "icmp",
		V4: []config.AddrRange{{From: netip.MustParseAddr("192.0.2.0"), To: netip.MustParseAddr("192.0.2.255")}}})
	inNetns(t, func(ns string) {
		if err := (NFT{}).Apply(rs); err != nil {
			t.Fatal(err)
		}
		if err := (NFT{}).Ban(exampleBans.Name, netip.MustParseAddr("203.0.113.9"), time.Hour); err != nil {
			t.Fatal(err)
		}
		got, err := NFT{}.Show()
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "inet", TableName).CombinedOutput()
		if err != nil {
			t.Fatalf("nft list: %v: %s", err, out)
		}
		// nft wraps long element lists; expiry moves on between the two reads.
		norm := func(s string) string {
			s = regexp.MustCompile(`,\n\s+`).ReplaceAllString(s, ", ")
			return regexp.MustCompile(`expires \S+ }`).ReplaceAllString(s, "expires X }")
		}
		if norm(got) != norm(string(out)) {
			t.Errorf("Show differs from nft list table:\n--- Show\n%s\n--- nft\n%s", got, out)
		}
		for _, want := range []string{"ip saddr @" + exampleBans.nftSets()[0] + " tcp dport 22 counter", "203.0.113.9 timeout 1h expires", "ip saddr @peers"} {
			if !strings.Contains(got, want) {
				t.Errorf("Show lacks %q", want)
			}
		}
	})
}

// A ban is in the kernel, survives the table's replacement with the time
// it had left, can be renewed, and runs out by itself.
func TestBansOutliveReplace(t *testing.T) {
	rs := exampleRuleset(t)
	inNetns(t, func(string) {
		if err := (NFT{}).Apply(rs); err != nil {
			t.Fatal(err)
		}
		v4, v6, short := netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("2001:db8::9"), netip.MustParseAddr("203.0.113.10")
		for _, b := range []struct {
			a netip.Addr
			d time.Duration
		}{{v4, time.Hour}, {v6, time.Hour}, {v4, 2 * time.Hour}, {short, 1500 * time.Millisecond}} {
			if err := (NFT{}).Ban(exampleBans.Name, b.a, b.d); err != nil {
				t.Fatalf("ban %s: %v", b.a, err)
			}
		}
		rs.In = rs.In[1:] // a different table
		if err := (NFT{}).Apply(rs); err != nil {
			t.Fatal(err)
		}
		bans, err := NFT{}.Bans(exampleBans.Name)
		if err != nil {
			t.Fatal(err)
		}
		if left := bans[v4]; left < 110*time.Minute || left > 2*time.Hour {
			t.Errorf("v4 ban left %v, want about 2h (renewed)", left)
		}
		if left := bans[v6]; left < 50*time.Minute || left > time.Hour {
			t.Errorf("v6 ban left %v, want about 1h", left)
		}
		if _, ok := bans[short]; !ok {
			t.Errorf("short ban lost in the replace: %v", bans)
		}
		time.Sleep(2 * time.Second)
		if bans, _ := (NFT{}).Bans(exampleBans.Name); len(bans) != 2 {
			t.Errorf("after the short ban ran out: %v", bans)
		}
		// Lifted, and lifting again (nothing there) is no error.
		for range 2 {
			if err := Unban(exampleBans.Name, v6); err != nil {
				t.Fatal(err)
			}
		}
		if bans, _ := (NFT{}).Bans(exampleBans.Name); len(bans) != 1 {
			t.Errorf("after lifting the v6 ban: %v", bans)
		}
	})
}

// auto picks nftables where the kernel has it (this one does); a named
// backend is what it names.
func TestSelectBackend(t *testing.T) {
	inNetns(t, func(string) {
		for pref, want := range map[string]string{"auto": "nftables", "": "nftables", "nftables": "nftables", "iptables": "iptables"} {
			b, err := Select(pref)
			if err != nil || b.Name() != want {
				t.Errorf("Select(%q) = %v, %v; want %s", pref, b, err, want)
			}
		}
		if _, err := Select("ipfw"); err == nil {
			t.Error("Select(ipfw) succeeded")
		}
	})
}
