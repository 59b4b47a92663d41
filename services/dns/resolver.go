package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Resolver is a caching forwarder. It answers from its cache while answers
// are fresh, asks the upstream servers otherwise, and when every upstream
// fails it serves a stale answer rather than none (RFC 8767).
type Resolver struct {
	cache *cache
	now   func() time.Time

	mu        sync.RWMutex
	upstreams []string // host:port

	queries, hits, misses, stale, failures atomic.Uint64
	upstreamDown                           atomic.Bool
}

// Stats are the resolver's counters, for status.
type Stats struct {
	Upstreams    []string `json:"upstreams"`
	Queries      uint64   `json:"queries"`
	CacheHits    uint64   `json:"cache_hits"`
	CacheMisses  uint64   `json:"cache_misses"`
	StaleServed  uint64   `json:"stale_served"`
	Failures     uint64   `json:"upstream_failures"`
	Entries      int      `json:"entries"`
	UpstreamDown bool     `json:"upstream_down"` // the last forward found no upstream answering
}

// NewResolver returns a resolver forwarding to upstreams (addresses, with
// or without :port).
func NewResolver(upstreams []string) *Resolver {
	r := &Resolver{cache: newCache(), now: time.Now}
	r.SetUpstreams(upstreams)
	return r
}

// SetUpstreams replaces the upstream servers; the cache stays.
func (r *Resolver) SetUpstreams(ups []string) {
	var list []string
	for _, u := range ups {
		if _, _, err := net.SplitHostPort(u); err != nil {
			u = net.JoinHostPort(u, "53")
		}
		list = append(list, u)
	}
	r.mu.Lock()
	r.upstreams = list
	r.mu.Unlock()
}

// Stats returns the counters.
func (r *Resolver) Stats() Stats {
	r.mu.RLock()
	ups := append([]string(nil), r.upstreams...)
	r.mu.RUnlock()
	return Stats{Upstreams: ups, Queries: r.queries.Load(), CacheHits: r.hits.Load(), CacheMisses: r.misses.Load(),
		StaleServed: r.stale.Load(), Failures: r.failures.Load(), Entries: r.cache.len(), UpstreamDown: r.upstreamDown.Load()}
}

// ServeDNS answers one query.
func (r *Resolver) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	resp := r.Resolve(req, w.LocalAddr().Network() == "tcp")
	w.WriteMsg(resp)
}

// Resolve answers req from the cache or the upstreams.
func (r *Resolver) Resolve(req *dns.Msg, tcp bool) *dns.Msg {
	r.queries.Add(1)
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeNotImplemented)
		return m
	}
	q := req.Question[0]
	now := r.now()
	if m, fresh := r.cache.get(q, now, false); fresh {
		r.hits.Add(1)
		return reply(req, m)
	}
	r.misses.Add(1)
	up, reached, err := r.forward(req, tcp)
	r.upstreamDown.Store(!reached)
	if err == nil {
		r.cache.put(q, up, now)
		return reply(req, up)
	}
	r.failures.Add(1)
	if m, _ := r.cache.get(q, now, true); m != nil {
		r.stale.Add(1)
		return reply(req, m)
	}
	if up != nil { // an upstream's own SERVFAIL or REFUSED, passed on
		return reply(req, up)
	}
	m := new(dns.Msg)
	m.SetRcode(req, dns.RcodeServerFailure)
	return m
}

func reply(req, m *dns.Msg) *dns.Msg {
	out := m.Copy()
	out.Id = req.Id
	out.Response = true
	out.RecursionAvailable = true
	out.Question = req.Question
	// Answer the size the client can take, or set TC so it retries on TCP.
	size := dns.MinMsgSize
	if o := req.IsEdns0(); o != nil {
		size = int(o.UDPSize())
	}
	out.Truncate(size)
	return out
}

var errNoUpstream = errors.New("no upstream DNS server configured")

// forward asks each upstream in turn; a truncated UDP answer is asked
// again over TCP. It reports whether any upstream answered at all, and on
// error the last SERVFAIL or REFUSED answer, if there was one.
func (r *Resolver) forward(req *dns.Msg, tcp bool) (*dns.Msg, bool, error) {
	r.mu.RLock()
	ups := r.upstreams
	r.mu.RUnlock()
	if len(ups) == 0 {
		return nil, false, errNoUpstream
	}
	var reached bool
	var failed *dns.Msg
	q := req.Copy()
	q.SetEdns0(1232, false)
	var errs []error
	for _, u := range ups {
		c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
		if tcp {
			c.Net = "tcp"
		}
		m, _, err := c.Exchange(q, u)
		if err == nil && m.Truncated && c.Net == "udp" {
			c.Net = "tcp"
			m, _, err = c.Exchange(q, u)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
			continue
		}
		reached = true
		if m.Rcode == dns.RcodeServerFailure || m.Rcode == dns.RcodeRefused {
			errs = append(errs, fmt.Errorf("%s: %s", u, dns.RcodeToString[m.Rcode]))
			failed = m
			continue
		}
		return m, true, nil
	}
	return failed, reached, errors.Join(errs...)
}

// Serve answers on addr over UDP and TCP until ctx ends. ready is closed
// once both listen.
func (r *Resolver) Serve(ctx context.Context, addr string, ready chan<- struct{}) error {
	udp, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("dns: listen udp %s: %w", addr, err)
	}
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		udp.Close()
		return fmt.Errorf("dns: listen tcp %s: %w", addr, err)
	}
	us := &dns.Server{PacketConn: udp, Handler: r}
	ts := &dns.Server{Listener: tcp, Handler: r}
	errc := make(chan error, 2)
	go func() { errc <- us.ActivateAndServe() }()
	go func() { errc <- ts.ActivateAndServe() }()
	if ready != nil {
		close(ready)
	}
	select {
	case <-ctx.Done():
		us.Shutdown()
		ts.Shutdown()
		return nil
	case err := <-errc:
		us.Shutdown()
		ts.Shutdown()
		return fmt.Errorf("dns: serve: %w", err)
	}
}
