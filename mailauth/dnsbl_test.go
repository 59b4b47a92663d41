package mailauth

import (
	"context"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func mustZones(t *testing.T, specs ...string) []Zone {
	t.Helper()
	var zs []Zone
	for _, s := range specs {
		z, err := ParseZone(s)
		if err != nil {
			t.Fatal(err)
		}
		zs = append(zs, z)
	}
	return zs
}

func TestReverseName(t *testing.T) {
	for _, tc := range []struct{ ip, want string }{
		{"192.0.2.1", "1.2.0.192.bl.test."},
		{"::ffff:192.0.2.1", "1.2.0.192.bl.test."},
		{"2001:db8::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test."},
	} {
		if got := ReverseName(netip.MustParseAddr(tc.ip), "bl.test"); got != tc.want {
			t.Errorf("ReverseName(%s) = %s, want %s", tc.ip, got, tc.want)
		}
	}
}

func TestDNSBLCheck(t *testing.T) {
	const client = "1.2.0.192."
	tests := []struct {
		name      string
		records   []string
		servfail  []string
		silent    []string
		zones     []string
		threshold int
		score     int
		listed    []string // zone names of the hits
		errors    int
		blocked   bool
	}{
		{name: "not listed (NXDOMAIN)", zones: []string{"bl.test=127.0.0.[2..11]*3"}, threshold: 3},
		{name: "listed", records: []string{client + "bl.test. 300 IN A 127.0.0.2"},
			zones: []string{"bl.test=127.0.0.[2..11]*3"}, threshold: 3, score: 3, listed: []string{"bl.test"}, blocked: true},
		{name: "answer outside the filter", records: []string{client + "bl.test. 300 IN A 127.0.0.20"},
			zones: []string{"bl.test=127.0.0.[2..11]*3"}, threshold: 3},
		{name: "public resolver code is an error", records: []string{client + "bl.test. 300 IN A 127.255.255.254"},
			zones: []string{"bl.test*3"}, threshold: 3, errors: 1},
		{name: "rate limit code is an error", records: []string{client + "bl.test. 300 IN A 127.255.255.255"},
			zones: []string{"bl.test*3"}, threshold: 3, errors: 1},
		{name: "answer outside 127/8 is an error", records: []string{client + "bl.test. 300 IN A 198.51.100.7"},
			zones: []string{"bl.test*3"}, threshold: 3, errors: 1},
		{name: "SERVFAIL is an error", servfail: []string{client + "bl.test."},
			zones: []string{"bl.test*3"}, threshold: 3, errors: 1},
		{name: "timeout is an error", silent: []string{client + "bl.test."},
			zones: []string{"bl.test*3", "bl2.test"}, records: []string{client + "bl2.test. 300 IN A 127.0.0.2"},
			threshold: 3, score: 1, listed: []string{"bl2.test"}, errors: 1},
		{name: "weights add up", records: []string{client + "bl.test. 300 IN A 127.0.0.2", client + "bl2.test. 300 IN A 127.0.0.4"},
			zones: []string{"bl.test*2", "bl2.test*1"}, threshold: 3, score: 3, listed: []string{"bl.test", "bl2.test"}, blocked: true},
		{name: "allow list offsets", records: []string{client + "bl.test. 300 IN A 127.0.0.2", client + "wl.test. 300 IN A 127.0.10.3"},
			zones: []string{"bl.test*3", "wl.test=127.0.[0..255].[1..3]*-5"}, threshold: 3, score: -2, listed: []string{"bl.test", "wl.test"}},
		{name: "one zone, two filters", records: []string{client + "multi.test. 300 IN A 127.0.0.2", client + "multi.test. 300 IN A 127.0.0.3"},
			zones: []string{"multi.test=127.0.0.2*2", "multi.test=127.0.0.3*1", "multi.test=127.0.0.9*7"}, threshold: 3, score: 3,
			listed: []string{"multi.test", "multi.test"}, blocked: true},
		{name: "one bad answer spoils the set", records: []string{client + "bl.test. 300 IN A 127.0.0.2", client + "bl.test. 300 IN A 127.255.255.254"},
			zones: []string{"bl.test*3"}, threshold: 3, errors: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestDNS(t, tc.records...)
			ts.set(func() {
				for _, n := range tc.servfail {
					ts.servfail[n] = true
				}
				for _, n := range tc.silent {
					ts.silent[n] = true
				}
			})
			b := NewDNSBL(ts.resolver(), mustZones(t, tc.zones...), tc.threshold, 0)
			b.Timeout = time.Second
			start := time.Now()
			res := b.Check(context.Background(), netip.MustParseAddr("192.0.2.1"))
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Check took %v, past its deadline", d)
			}
			var listed []string
			for _, h := range res.Listed {
				listed = append(listed, h.Zone.Name)
			}
			if res.Score != tc.score || !reflect.DeepEqual(listed, tc.listed) || len(res.Errors) != tc.errors || res.Blocked() != tc.blocked {
				t.Errorf("got score %d listed %v errors %v blocked %v; want %d %v %d errors, blocked %v",
					res.Score, listed, res.Errors, res.Blocked(), tc.score, tc.listed, tc.errors, tc.blocked)
			}
			if st := b.Stats(); st.Errors != uint64(tc.errors) {
				t.Errorf("stats errors %d, want %d", st.Errors, tc.errors)
			}
			// A zone name is asked once, however many entries use it.
			for _, z := range b.zones {
				if n := ts.count(client+z.Name, dns.TypeA); n != 1 {
					t.Errorf("%s asked %d times, want 1", z.Name, n)
				}
			}
		})
	}
}

func TestDNSBLWorstAndReason(t *testing.T) {
	ts := newTestDNS(t, "1.2.0.192.bl.test. 300 IN A 127.0.0.2", "1.2.0.192.big.test. 300 IN A 127.0.0.2")
	ts.addTXT("1.2.0.192.big.test", "listed: see https://big.test/lookup?ip=192.0.2.1")
	b := NewDNSBL(ts.resolver(), mustZones(t, "bl.test*1", "big.test*4"), 3, 0)
	b.Reasons = true
	res := b.Check(context.Background(), netip.MustParseAddr("192.0.2.1"))
	w, ok := res.Worst()
	if !ok || w.Zone.Name != "big.test" || !strings.Contains(w.Reason, "big.test/lookup") {
		t.Errorf("Worst = %+v, %v", w, ok)
	}
	if st := b.Stats(); st.Listed != 1 || st.Queries != 2 {
		t.Errorf("stats %+v", st)
	}
}

// clock is a settable time source for the cache.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestDNSBLCache(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	const name = "1.2.0.192.bl.test"
	check := func(b *DNSBL) DNSBLResult { return b.Check(context.Background(), ip) }

	t.Run("listed, by the answer's TTL", func(t *testing.T) {
		ts := newTestDNS(t, name+". 60 IN A 127.0.0.2")
		c := &clock{t: time.Unix(1e9, 0)}
		b := NewDNSBL(ts.resolver(), mustZones(t, "bl.test*3"), 3, 0)
		b.Now = c.now
		check(b)
		c.add(59 * time.Second)
		if r := check(b); r.Score != 3 || ts.count(name, dns.TypeA) != 1 {
			t.Errorf("within the TTL: score %d, %d queries", r.Score, ts.count(name, dns.TypeA))
		}
		c.add(time.Second)
		check(b)
		if n := ts.count(name, dns.TypeA); n != 2 {
			t.Errorf("after the TTL: %d queries, want 2", n)
		}
		if st := b.Stats(); st.Cached != 1 || st.Queries != 2 {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("not listed, by the SOA minimum", func(t *testing.T) {
		ts := newTestDNS(t)
		soa, _ := dns.NewRR("bl.test. 3600 IN SOA ns.bl.test. h.bl.test. 1 3600 600 86400 30")
		ts.set(func() { ts.soa = soa })
		c := &clock{t: time.Unix(1e9, 0)}
		b := NewDNSBL(fullResolver{ts.addr}, mustZones(t, "bl.test*3"), 3, 0)
		b.Now = c.now
		check(b)
		c.add(29 * time.Second)
		check(b)
		c.add(time.Second)
		check(b)
		if n := ts.count(name, dns.TypeA); n != 2 {
			t.Errorf("%d queries, want 2 (cached for the SOA minimum, 30s)", n)
		}
	})
	t.Run("not listed, default without an SOA", func(t *testing.T) {
		ts := newTestDNS(t)
		c := &clock{t: time.Unix(1e9, 0)}
		b := NewDNSBL(ts.resolver(), mustZones(t, "bl.test*3"), 3, 0)
		b.Now = c.now
		check(b)
		c.add(4 * time.Minute)
		check(b)
		c.add(time.Minute)
		check(b)
		if n := ts.count(name, dns.TypeA); n != 2 {
			t.Errorf("%d queries, want 2 (cached 5 min)", n)
		}
	})
	t.Run("failures are not cached", func(t *testing.T) {
		ts := newTestDNS(t)
		ts.set(func() { ts.servfail[name+"."] = true })
		b := NewDNSBL(ts.resolver(), mustZones(t, "bl.test*3"), 3, 0)
		check(b)
		check(b)
		if n := ts.count(name, dns.TypeA); n != 2 {
			t.Errorf("%d queries, want 2", n)
		}
	})
	t.Run("error answers are cached and stay errors", func(t *testing.T) {
		ts := newTestDNS(t, name+". 60 IN A 127.255.255.254")
		b := NewDNSBL(ts.resolver(), mustZones(t, "bl.test*3"), 3, 0)
		check(b)
		if r := check(b); len(r.Errors) != 1 || r.Score != 0 || ts.count(name, dns.TypeA) != 1 {
			t.Errorf("second check: %+v, %d queries", r, ts.count(name, dns.TypeA))
		}
	})
	t.Run("bounded, oldest out first", func(t *testing.T) {
		ts := newTestDNS(t)
		b := NewDNSBL(ts.resolver(), mustZones(t, "bl.test*3"), 3, 2)
		for _, s := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
			b.Check(context.Background(), netip.MustParseAddr(s))
		}
		if n := b.CacheLen(); n != 2 {
			t.Errorf("cache holds %d, want 2", n)
		}
		b.Check(context.Background(), netip.MustParseAddr("192.0.2.3"))
		b.Check(context.Background(), netip.MustParseAddr("192.0.2.1"))
		if a, c := ts.count("3.2.0.192.bl.test", dns.TypeA), ts.count(name, dns.TypeA); a != 1 || c != 2 {
			t.Errorf("newest asked %d times (want 1), oldest %d (want 2)", a, c)
		}
	})
}

func TestParseZone(t *testing.T) {
	r := func(lo, hi uint8) []OctetRange { return []OctetRange{{Lo: lo, Hi: hi}} }
	tests := []struct {
		in   string
		want Zone
		err  bool
	}{
		{in: "zen.spamhaus.org=127.0.0.[2..11]*3", want: Zone{Name: "zen.spamhaus.org", Weight: 3,
			Filters: []Filter{{r(127, 127), r(0, 0), r(0, 0), r(2, 11)}}}},
		{in: "bl.example", want: Zone{Name: "bl.example", Weight: 1}},
		{in: "BL.Example.*2", want: Zone{Name: "bl.example", Weight: 2}},
		{in: "list.dnswl.org=127.0.[0..255].[1..3]*-5", want: Zone{Name: "list.dnswl.org", Weight: -5,
			Filters: []Filter{{r(127, 127), r(0, 0), r(0, 255), r(1, 3)}}}},
		{in: "b.test=127.0.0.[1;3;5..7],127.0.1.2", want: Zone{Name: "b.test", Weight: 1, Filters: []Filter{
			{r(127, 127), r(0, 0), r(0, 0), {{Lo: 1, Hi: 1}, {Lo: 3, Hi: 3}, {Lo: 5, Hi: 7}}},
			{r(127, 127), r(0, 0), r(1, 1), r(2, 2)}}}},
		{in: "", err: true},
		{in: "*3", err: true},
		{in: "bl.test*x", err: true},
		{in: "bl.test*99999", err: true},
		{in: "bl.test=127.0.0", err: true},
		{in: "bl.test=127.0.0.256", err: true},
		{in: "bl.test=127.0.0.[11..2]", err: true},
		{in: "bl.test=127.0.0.[2..11", err: true},
		{in: "bl.test=127.0.0.1.5", err: true},
		{in: "bl.test=127.0.0.-1", err: true},
		{in: "bl..test", err: true},
		{in: "bl test", err: true},
	}
	for _, tc := range tests {
		got, err := ParseZone(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("ParseZone(%q) error %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if err == nil && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseZone(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestFilterMatch(t *testing.T) {
	z := mustZones(t, "b.test=127.0.[0..255].[1;3;5..7]")[0]
	for _, tc := range []struct {
		a    string
		want bool
	}{{"127.0.0.1", true}, {"127.0.9.6", true}, {"127.0.0.4", false}, {"127.1.0.1", false}, {"::1", false}} {
		if got := zoneAccepts(z, netip.MustParseAddr(tc.a)); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.a, got, tc.want)
		}
	}
}

// FuzzParseZone: no panic, and what parses prints in a form that parses
// back to the same zone.
func FuzzParseZone(f *testing.F) {
	for _, s := range []string{"zen.spamhaus.org=127.0.0.[2..11]*3", "bl.example", "list.dnswl.org=127.0.[0..255].[1..3]*-5",
		"b.test=127.0.0.[1;3;5..7],127.0.1.2", "x=[", "a.b=1.2.3.[4..]*", "=*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		z, err := ParseZone(s)
		if err != nil {
			return
		}
		z2, err := ParseZone(z.String())
		if err != nil {
			t.Fatalf("%q parsed to %+v, whose form %q does not parse: %v", s, z, z.String(), err)
		}
		if !reflect.DeepEqual(z, z2) {
			t.Fatalf("%q: %+v prints %q which parses to %+v", s, z, z.String(), z2)
		}
	})
}
