package linuxfw

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"gatehouse/config"
	"gatehouse/paths"
)

// dnsServer answers from zone on a local UDP port.
func dnsServer(t *testing.T, zone map[string][]dns.RR) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		rrs, ok := zone[q.Question[0].Name]
		if !ok {
			m.Rcode = dns.RcodeNameError
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Question[0].Qtype || rr.Header().Rrtype == dns.TypeCNAME {
				m.Answer = append(m.Answer, rr)
			}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

func rr(t *testing.T, s string) dns.RR {
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The TTL of a name is the shortest record its answer rests on, CNAME
// included, and the ruleset is to be rebuilt when the first name runs out.
func TestLookupFollowsTTL(t *testing.T) {
	srv := dnsServer(t, map[string][]dns.RR{
		"admin.example.com.": {rr(t, "admin.example.com. 300 IN CNAME host.example.com."),
			rr(t, "host.example.com. 42 IN A 192.0.2.7"), rr(t, "host.example.com. 600 IN AAAA 2001:db8::7")},
		"backup.example.com.": {rr(t, "backup.example.com. 3600 IN A 192.0.2.8")},
		// An answer that smuggles in a record for another name.
		"evil.example.com.": {rr(t, "evil.example.com. 60 IN A 192.0.2.66"), rr(t, "admin.example.com. 60 IN A 203.0.113.66")},
	})
	d := DNSLookup{Servers: []string{srv}}
	addrs, ttl, err := d.LookupTTL(context.Background(), "admin.example.com")
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	if want := []netip.Addr{netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")}; !slices.Equal(addrs, want) || ttl != 42*time.Second {
		t.Errorf("admin: %v ttl %v, want %v ttl 42s", addrs, ttl, want)
	}
	if addrs, _, _ := d.LookupTTL(context.Background(), "evil.example.com"); len(addrs) != 1 || addrs[0] != netip.MustParseAddr("192.0.2.66") {
		t.Errorf("evil: %v, want only its own 192.0.2.66", addrs)
	}
	if _, _, err := d.LookupTTL(context.Background(), "gone.example.com"); err == nil {
		t.Error("NXDOMAIN resolved")
	}
	// /etc/hosts-style names come from the fallback, with the default TTL.
	d.Fallback = fakeResolver{"gone.example.com": {netip.MustParseAddr("192.0.2.9")}}
	if a, ttl, err := d.LookupTTL(context.Background(), "gone.example.com"); err != nil || len(a) != 1 || ttl != DefaultTTL {
		t.Errorf("fallback: %v %v %v", a, ttl, err)
	}

	c, _, err := config.Parse("f.yaml", []byte("firewall:\n  paths:\n    - {function: Admin, direction: in, proto: tcp, ports: [8443], peers: [admin.example.com]}\n    - {function: Backup, direction: out, proto: tcp, ports: [873], peers: [backup.example.com]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Build(context.Background(), c, paths.Table(c), d)
	if err != nil {
		t.Fatal(err)
	}
	if got := rs.ResolveAgain.Sub(rs.ResolvedAt); got != 42*time.Second {
		t.Errorf("resolve again after %v, want 42s", got)
	}
}
