package dnsclient

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testServer is a name server on a random local UDP port that answers from
// a zone the test changes. A name missing from the zone is NXDOMAIN; with
// failing set every query gets SERVFAIL, as from a server that cannot
// reach the zone's.
type testServer struct {
	addr string

	mu      sync.Mutex
	zone    map[string][]dns.RR
	failing bool
	queries int
}

func newTestServer(t *testing.T, zone map[string][]dns.RR) *testServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{addr: pc.LocalAddr().String(), zone: zone}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
			ts.mu.Lock()
			defer ts.mu.Unlock()
			ts.queries++
			m := new(dns.Msg)
			m.SetReply(q)
			rrs, ok := ts.zone[q.Question[0].Name]
			switch {
			case ts.failing:
				m.Rcode = dns.RcodeServerFailure
			case !ok:
				m.Rcode = dns.RcodeNameError
			}
			if !ts.failing {
				for _, rr := range rrs {
					if rr.Header().Rrtype == q.Question[0].Qtype || rr.Header().Rrtype == dns.TypeCNAME {
						m.Answer = append(m.Answer, rr)
					}
				}
			}
			w.WriteMsg(m)
		})}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return ts
}

func (ts *testServer) set(f func()) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	f()
}

func rr(t *testing.T, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type hostsFile map[string][]netip.Addr

func (h hostsFile) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := h[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// The TTL of a name is the shortest record its answer rests on, CNAME
// included; records about other names are never taken.
func TestLookupTTL(t *testing.T) {
	ts := newTestServer(t, map[string][]dns.RR{
		"admin.example.com.": {rr(t, "admin.example.com. 300 IN CNAME host.example.com."),
			rr(t, "host.example.com. 42 IN A 192.0.2.7"), rr(t, "host.example.com. 600 IN AAAA 2001:db8::7")},
		// An answer that smuggles in a record for another name.
		"evil.example.com.": {rr(t, "evil.example.com. 60 IN A 192.0.2.66"), rr(t, "admin.example.com. 60 IN A 203.0.113.66")},
		// A name that exists without addresses.
		"empty.example.com.": nil,
	})
	d := Lookup{Servers: []string{ts.addr}}
	ctx := context.Background()
	addrs, ttl, err := d.LookupTTL(ctx, "admin.example.com")
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	if want := []netip.Addr{netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")}; !slices.Equal(addrs, want) || ttl != 42*time.Second {
		t.Errorf("admin: %v ttl %v, want %v ttl 42s", addrs, ttl, want)
	}
	if addrs, _, _ := d.LookupTTL(ctx, "evil.example.com"); len(addrs) != 1 || addrs[0] != netip.MustParseAddr("192.0.2.66") {
		t.Errorf("evil: %v, want only its own 192.0.2.66", addrs)
	}
	for _, name := range []string{"gone.example.com", "empty.example.com"} {
		if a, _, err := d.LookupTTL(ctx, name); len(a) != 0 || !notFound(err) {
			t.Errorf("%s: %v %v, want not found", name, a, err)
		}
	}
	ts.set(func() { ts.failing = true })
	if _, _, err := d.LookupTTL(ctx, "admin.example.com"); err == nil || notFound(err) {
		t.Errorf("SERVFAIL: %v, want a failure that is not \"not found\"", err)
	}
	ts.set(func() { ts.failing = false })
	// /etc/hosts-style names come from the fallback, with the default TTL.
	d.Fallback = hostsFile{"gone.example.com": {netip.MustParseAddr("192.0.2.9")}}
	if a, ttl, err := d.LookupTTL(ctx, "gone.example.com"); err != nil || len(a) != 1 || ttl != DefaultTTL {
		t.Errorf("fallback: %v %v %v", a, ttl, err)
	}
}

func notFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// Names over a real exchange: the answer is kept for its TTL (no query
// within it), kept past it while the server fails, replaced when the
// server answers again, and dropped when the name stops existing.
func TestNamesAgainstServer(t *testing.T) {
	a1, a2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	ts := newTestServer(t, map[string][]dns.RR{"peer.example.com.": {rr(t, "peer.example.com. 120 IN A 192.0.2.1")}})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := NewNames(Lookup{Servers: []string{ts.addr}})
	n.now = func() time.Time { return now }
	ctx := context.Background()
	names := []string{"peer.example.com", "nx.example.com"}
	queries := func() int {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		return ts.queries
	}

	got, next := n.Resolve(ctx, names)
	if !slices.Equal(got["peer.example.com"], []netip.Addr{a1}) {
		t.Fatalf("first answer %v", got)
	}
	if len(got["nx.example.com"]) != 0 || n.Err("nx.example.com") == nil {
		t.Errorf("NXDOMAIN: %v (%v), want no addresses and the reason", got["nx.example.com"], n.Err("nx.example.com"))
	}
	if want := now.Add(MinTTL); !next.Equal(want) { // the NXDOMAIN's
		t.Errorf("next lookup %v, want %v", next, want)
	}

	// Within the TTL the server is not asked about the name again.
	asked := queries()
	now = now.Add(60 * time.Second)
	n.Resolve(ctx, []string{"peer.example.com"})
	if queries() != asked {
		t.Errorf("%d queries within the TTL", queries()-asked)
	}

	// Past the TTL with the server failing: the last good answer stays.
	now = now.Add(61 * time.Second)
	ts.set(func() { ts.failing = true })
	got, next = n.Resolve(ctx, names)
	if queries() == asked {
		t.Error("not asked again once the TTL ran out")
	}
	if !slices.Equal(got["peer.example.com"], []netip.Addr{a1}) || n.Err("peer.example.com") == nil {
		t.Errorf("server failing: %v (%v), want the last good answer and the failure", got["peer.example.com"], n.Err("peer.example.com"))
	}
	if want := now.Add(RetryAfter); !next.Equal(want) {
		t.Errorf("retry at %v, want %v", next, want)
	}

	// The server answers again, with the peer moved.
	now = now.Add(RetryAfter)
	ts.set(func() {
		ts.failing = false
		ts.zone["peer.example.com."] = []dns.RR{rr(t, "peer.example.com. 120 IN A 192.0.2.2")}
	})
	if got, _ = n.Resolve(ctx, names); !slices.Equal(got["peer.example.com"], []netip.Addr{a2}) || n.Err("peer.example.com") != nil {
		t.Errorf("after the move: %v (%v)", got["peer.example.com"], n.Err("peer.example.com"))
	}

	// The name stops existing: it matches no one, not its old address.
	now = now.Add(121 * time.Second)
	ts.set(func() { delete(ts.zone, "peer.example.com.") })
	if got, _ = n.Resolve(ctx, names); len(got["peer.example.com"]) != 0 {
		t.Errorf("NXDOMAIN kept %v", got["peer.example.com"])
	}
}

// Servers are resolv.conf's name servers, as host:port.
func TestServers(t *testing.T) {
	f := t.TempDir() + "/resolv.conf"
	if err := writeFile(f, "nameserver 192.0.2.53\nnameserver 2001:db8::53\n"); err != nil {
		t.Fatal(err)
	}
	if got, want := Servers(f), []string{"192.0.2.53:53", "[2001:db8::53]:53"}; !slices.Equal(got, want) {
		t.Errorf("Servers = %v, want %v", got, want)
	}
}

func writeFile(name, s string) error { return os.WriteFile(name, []byte(s), 0o644) }
