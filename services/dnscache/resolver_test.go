package dnscache

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// upstream is a fake authoritative server on loopback (unit tests may use
// fakes; the integration test uses dnsmasq).
type upstream struct {
	addr    string
	queries atomic.Int64
	down    atomic.Bool
	srv     *dns.Server
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = pc.LocalAddr().String()
	u.srv = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		if u.down.Load() {
			return // a dead server: no answer at all
		}
		u.queries.Add(1)
		m := new(dns.Msg)
		m.SetReply(req)
		q := req.Question[0]
		switch q.Name {
		case "mail.example.test.":
			rr, _ := dns.NewRR("mail.example.test. 300 IN A 192.0.2.25")
			m.Answer = append(m.Answer, rr)
		case "short.example.test.":
			rr, _ := dns.NewRR("short.example.test. 1 IN A 192.0.2.26")
			m.Answer = append(m.Answer, rr)
		default:
			m.Rcode = dns.RcodeNameError
			soa, _ := dns.NewRR("example.test. 3600 IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 60")
			m.Ns = append(m.Ns, soa)
		}
		w.WriteMsg(m)
	})}
	go u.srv.ActivateAndServe()
	t.Cleanup(func() { u.srv.Shutdown() })
	return u
}

func ask(r *Resolver, name string) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	return r.Resolve(m, false)
}

func TestCacheHonoursTTL(t *testing.T) {
	u := startUpstream(t)
	r := NewResolver([]string{u.addr})
	now := time.Now()
	r.now = func() time.Time { return now }
	if m := ask(r, "mail.example.test."); len(m.Answer) != 1 || m.Answer[0].Header().Ttl != 300 {
		t.Fatalf("first answer %v", m)
	}
	now = now.Add(100 * time.Second)
	m := ask(r, "MAIL.example.test.") // names are case-insensitive
	if u.queries.Load() != 1 {
		t.Errorf("cached answer asked upstream again (%d queries)", u.queries.Load())
	}
	if ttl := m.Answer[0].Header().Ttl; ttl != 200 {
		t.Errorf("TTL after 100s is %d, want 200", ttl)
	}
	now = now.Add(201 * time.Second)
	ask(r, "mail.example.test.")
	if u.queries.Load() != 2 {
		t.Errorf("expired answer served from cache (%d queries)", u.queries.Load())
	}
	st := r.Stats()
	if st.CacheHits != 1 || st.CacheMisses != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestNegativeCachingUsesSOAMinimum(t *testing.T) {
	u := startUpstream(t)
	r := NewResolver([]string{u.addr})
	now := time.Now()
	r.now = func() time.Time { return now }
	if m := ask(r, "nope.example.test."); m.Rcode != dns.RcodeNameError {
		t.Fatalf("rcode %s", dns.RcodeToString[m.Rcode])
	}
	now = now.Add(59 * time.Second)
	ask(r, "nope.example.test.")
	if u.queries.Load() != 1 {
		t.Errorf("NXDOMAIN not cached for the SOA minimum (60s)")
	}
	now = now.Add(2 * time.Second)
	ask(r, "nope.example.test.")
	if u.queries.Load() != 2 {
		t.Errorf("NXDOMAIN cached beyond the SOA minimum")
	}
}

func TestServeStaleWhenUpstreamDown(t *testing.T) {
	u := startUpstream(t)
	r := NewResolver([]string{u.addr})
	now := time.Now()
	r.now = func() time.Time { return now }
	ask(r, "short.example.test.")
	u.down.Store(true)
	now = now.Add(10 * time.Second) // expired
	m := ask(r, "short.example.test.")
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 || m.Answer[0].Header().Ttl != staleTTL {
		t.Fatalf("stale answer %v", m)
	}
	if st := r.Stats(); !st.UpstreamDown || st.StaleServed != 1 {
		t.Errorf("stats %+v", st)
	}
	if m := ask(r, "never-seen.example.test."); m.Rcode != dns.RcodeServerFailure {
		t.Errorf("uncached name with upstream down: %s, want SERVFAIL", dns.RcodeToString[m.Rcode])
	}
	u.down.Store(false)
	ask(r, "short.example.test.")
	if r.Stats().UpstreamDown {
		t.Error("upstream still marked down after it answered")
	}
}

func TestResolvConf(t *testing.T) {
	got := ResolvConf([]string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"}, []string{"example.com"})
	want := "# written by gatehouse; edits are overwritten\nnameserver 192.0.2.1\nnameserver 192.0.2.2\nnameserver 192.0.2.3\nsearch example.com\noptions timeout:2 attempts:2\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func BenchmarkCachedAnswer(b *testing.B) {
	r := NewResolver([]string{"192.0.2.1:53"}) // never asked: the answer is cached
	q := dns.Question{Name: "mail.example.test.", Qtype: dns.TypeA, Qclass: dns.ClassINET}
	m := new(dns.Msg)
	m.SetQuestion(q.Name, q.Qtype)
	rr, _ := dns.NewRR("mail.example.test. 300 IN A 192.0.2.25")
	ans := m.Copy()
	ans.Response, ans.Answer = true, []dns.RR{rr}
	r.cache.put(q, ans, time.Now())
	b.ResetTimer()
	for range b.N {
		r.Resolve(m, false)
	}
}

// The packed fast path answers exactly as the general path would: the
// query's id, flags and letter case, TTLs counted down, EDNS only if asked.
func TestFastAnswer(t *testing.T) {
	u := startUpstream(t)
	r := NewResolver([]string{u.addr})
	now := time.Now()
	r.now = func() time.Time { return now }
	ask(r, "mail.example.test.") // fills the cache
	now = now.Add(10 * time.Second)
	for _, edns := range []bool{false, true} {
		q := new(dns.Msg)
		q.SetQuestion("MaIl.ExAmPlE.tEsT.", dns.TypeA)
		q.Id = 0x1234
		if edns {
			q.SetEdns0(4096, false)
		}
		wire, _ := q.Pack()
		out := r.fastAnswer(q, wire, now)
		if out == nil {
			t.Fatal("no fast answer for a cached name")
		}
		m := new(dns.Msg)
		if err := m.Unpack(out); err != nil {
			t.Fatal(err)
		}
		if m.Id != 0x1234 || !m.Response || !m.RecursionDesired || m.Question[0].Name != "MaIl.ExAmPlE.tEsT." {
			t.Errorf("header/question %v", m)
		}
		if len(m.Answer) != 1 || m.Answer[0].Header().Ttl != 290 {
			t.Errorf("answer %v", m.Answer)
		}
		if (m.IsEdns0() != nil) != edns {
			t.Errorf("EDNS asked %v, OPT in answer %v", edns, m.IsEdns0() != nil)
		}
	}
	q := new(dns.Msg)
	q.SetQuestion("other.example.test.", dns.TypeA)
	wire, _ := q.Pack()
	if r.fastAnswer(q, wire, now) != nil {
		t.Error("fast answer for a name never asked")
	}
}

// Garbage and empty datagrams never silence the resolver.
func TestServeSurvivesBadDatagrams(t *testing.T) {
	u := startUpstream(t)
	r := NewResolver([]string{u.addr})
	addr := "127.0.0.1:15353"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	go r.Serve(ctx, addr, ready)
	<-ready
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write(nil)
	c.Write([]byte{1, 2, 3})
	c.Close()
	m := new(dns.Msg)
	m.SetQuestion("mail.example.test.", dns.TypeA)
	resp, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, addr)
	if err != nil || len(resp.Answer) != 1 {
		t.Fatalf("after bad datagrams: %v %v", resp, err)
	}
}
