package mailauth

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testDNS is a name server on a random local UDP port answering from a
// zone the test sets. A name missing from the zone is NXDOMAIN (with an
// SOA in the authority section when soa is set); a name in servfail gets
// SERVFAIL; a name in silent gets no answer at all.
type testDNS struct {
	addr string

	mu       sync.Mutex
	zone     map[string][]dns.RR
	servfail map[string]bool
	silent   map[string]bool
	soa      dns.RR
	queries  map[string]int // by "name type"
}

func newTestDNS(t *testing.T, records ...string) *testDNS {
	t.Helper()
	// UDP and TCP on the same port, for answers too long for UDP (SPF
	// records with many terms, 2048-bit DKIM keys): the client retries
	// there. The UDP port the kernel picks may be taken for TCP by another
	// test: then another pair.
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if try == 50 {
			t.Fatal(err)
		}
	}
	ts := &testDNS{addr: pc.LocalAddr().String(), zone: map[string][]dns.RR{},
		servfail: map[string]bool{}, silent: map[string]bool{}, queries: map[string]int{}}
	ts.add(t, records...)
	for _, srv := range []*dns.Server{{PacketConn: pc}, {Listener: ln}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		srv.Handler = dns.HandlerFunc(ts.serve)
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return ts
}

func (ts *testDNS) serve(w dns.ResponseWriter, q *dns.Msg) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	qn, qt := strings.ToLower(q.Question[0].Name), q.Question[0].Qtype
	ts.queries[qn+" "+dns.TypeToString[qt]]++
	if ts.silent[qn] {
		return
	}
	m := new(dns.Msg)
	m.SetReply(q)
	rrs, ok := ts.zone[qn]
	switch {
	case ts.servfail[qn]:
		m.Rcode = dns.RcodeServerFailure
	case !ok:
		m.Rcode = dns.RcodeNameError
		if ts.soa != nil {
			m.Ns = append(m.Ns, ts.soa)
		}
	default:
		for _, rr := range rrs {
			if rr.Header().Rrtype == qt || rr.Header().Rrtype == dns.TypeCNAME {
				m.Answer = append(m.Answer, rr)
			}
		}
		if len(m.Answer) == 0 && ts.soa != nil {
			m.Ns = append(m.Ns, ts.soa)
		}
	}
	if _, udp := w.LocalAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if opt := q.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

// add puts records in zone-file form into the zone. A TXT record's text
// may be longer than 255 bytes: it is split into character-strings.
func (ts *testDNS) add(t *testing.T, records ...string) {
	t.Helper()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("record %q: %v", s, err)
		}
		n := strings.ToLower(rr.Header().Name)
		ts.zone[n] = append(ts.zone[n], rr)
	}
}

func (ts *testDNS) addTXT(name, text string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	var parts []string
	for len(text) > 255 {
		parts, text = append(parts, text[:255]), text[255:]
	}
	parts = append(parts, text)
	n := strings.ToLower(dns.Fqdn(name))
	ts.zone[n] = append(ts.zone[n], &dns.TXT{Hdr: dns.RR_Header{Name: n, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300}, Txt: parts})
}

// set changes the server's state under its lock.
func (ts *testDNS) set(f func()) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	f()
}

func (ts *testDNS) count(name string, qtype uint16) int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.queries[strings.ToLower(dns.Fqdn(name))+" "+dns.TypeToString[qtype]]
}

// resolver is the production Resolver (dnsclient) pointed at the test server.
func (ts *testDNS) resolver() Resolver {
	return DNSClient{Servers: []string{ts.addr}, Timeout: 300 * time.Millisecond}
}

// fullResolver returns the whole reply, authority section included, as a
// resolver that gives it would: for the SOA-minimum negative caching.
type fullResolver struct{ addr string }

func (f fullResolver) Query(ctx context.Context, name string, qtype uint16) (Reply, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Timeout: 300 * time.Millisecond}
	r, _, err := c.ExchangeContext(ctx, m, f.addr)
	if err != nil {
		return Reply{}, err
	}
	return Reply{Rcode: r.Rcode, Answer: r.Answer, Authority: r.Ns}, nil
}
