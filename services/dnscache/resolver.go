package dnscache

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"gatehouse/status"
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
func (r *Resolver) Stats() status.DNSCache {
	r.mu.RLock()
	ups := append([]string(nil), r.upstreams...)
	r.mu.RUnlock()
	return status.DNSCache{Upstreams: ups, Queries: r.queries.Load(), CacheHits: r.hits.Load(), CacheMisses: r.misses.Load(),
		StaleServed: r.stale.Load(), Failures: r.failures.Load(), Entries: r.cache.len(), UpstreamDown: r.upstreamDown.Load()}
}

// ServeDNS answers one query.
func (r *Resolver) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	resp := r.Resolve(req, w.LocalAddr().Network() == "tcp")
	w.WriteMsg(resp)
}

// Resolve answers req from the cache or the upstreams.
func (r *Resolver) Resolve(req *dns.Msg, tcp bool) *dns.Msg {
	if m := r.fromCache(req); m != nil {
		return m
	}
	return r.resolveMiss(req, tcp)
}

// fromCache answers req if the cache can (or req is not a query it
// serves); nil means ask the upstreams.
func (r *Resolver) fromCache(req *dns.Msg) *dns.Msg {
	r.queries.Add(1)
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeNotImplemented)
		return m
	}
	if m, fresh := r.cache.get(req.Question[0], r.now(), false); fresh {
		r.hits.Add(1)
		return reply(req, m)
	}
	return nil
}

func (r *Resolver) resolveMiss(req *dns.Msg, tcp bool) *dns.Msg {
	q := req.Question[0]
	now := r.now()
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

// reply makes m, a copy of its own, the answer to req.
func reply(req, out *dns.Msg) *dns.Msg {
	out.Id = req.Id
	out.Response = true
	out.RecursionAvailable = true
	out.RecursionDesired = req.RecursionDesired
	out.CheckingDisabled = req.CheckingDisabled
	out.Question = req.Question
	// EDNS is per hop: answer with an OPT record exactly when asked with one.
	extra := out.Extra[:0:0]
	for _, rr := range out.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	out.Extra = extra
	size := udpSize(req)
	if req.IsEdns0() != nil {
		out.SetEdns0(ednsSize, false)
	}
	// Answer the size the client can take, or set TC so it retries on TCP.
	out.Truncate(size)
	return out
}

// ednsSize is the UDP payload size this resolver offers and asks for (the
// DNS flag day 2020 value).
const ednsSize = 1232

func udpSize(req *dns.Msg) int {
	if o := req.IsEdns0(); o != nil {
		return int(min(o.UDPSize(), ednsSize))
	}
	return dns.MinMsgSize
}

// fastAnswer answers a cache hit from the entry's packed answer: a copy
// with the query's id, RD and CD bits and question (its letter case, RFC
// 8806's 0x20) written in. Nil: take the general path.
func (r *Resolver) fastAnswer(req *dns.Msg, wire []byte, now time.Time) []byte {
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery || len(wire) < 12 {
		return nil
	}
	q := req.Question[0]
	e := r.cache.fresh(q, now)
	if e == nil {
		return nil
	}
	edns, size := 0, udpSize(req)
	if req.IsEdns0() != nil {
		edns = 1
	}
	sec := now.Unix()
	t := e.wire[edns].Load()
	if t == nil || t.second != sec || t.size != size {
		m, fresh := r.cache.get(q, now, false)
		if !fresh {
			return nil
		}
		tmpl := new(dns.Msg)
		tmpl.SetQuestion(q.Name, q.Qtype)
		tmpl.Question[0].Qclass = q.Qclass
		if edns == 1 {
			tmpl.SetEdns0(uint16(size), false)
		}
		b, err := reply(tmpl, m).Pack()
		if err != nil {
			return nil
		}
		t = &wireAnswer{second: sec, size: size, b: b}
		e.wire[edns].Store(t)
	}
	qlen := questionLen(wire)
	if qlen < 0 || 12+qlen > len(t.b) {
		return nil
	}
	out := append([]byte(nil), t.b...)
	copy(out[0:2], wire[0:2])               // id
	out[2] = out[2]&^0x01 | wire[2]&0x01    // RD
	out[3] = out[3]&^0x10 | wire[3]&0x10    // CD
	copy(out[12:12+qlen], wire[12:12+qlen]) // the question as asked
	r.queries.Add(1)
	r.hits.Add(1)
	return out
}

// questionLen is the length of the first question in a query's wire form
// (an uncompressed name, type and class), or -1.
func questionLen(wire []byte) int {
	i := 12
	for i < len(wire) {
		l := int(wire[i])
		if l == 0 {
			if i+5 > len(wire) {
				return -1
			}
			return i + 5 - 12
		}
		if l&0xC0 != 0 {
			return -1 // a pointer in a query's question: not ours to bother with
		}
		i += 1 + l
	}
	return -1
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
	ts := &dns.Server{Listener: tcp, Handler: r}
	errc := make(chan error, 1+udpReaders)
	go func() { errc <- ts.ActivateAndServe() }()
	var closing atomic.Bool
	fds, err := r.serveUDP(udp.(*net.UDPConn), &closing)
	// The readers' dups keep the socket; the Go side goes now. While it
	// is open the socket stays in the runtime's epoll set, and every
	// query woke the thread waiting in epoll_wait for nothing: a second
	// wake-up per query, seen as twice the context switches of a server
	// without it, and in the p99.
	udp.Close()
	if err != nil {
		ts.Shutdown()
		return err
	}
	if ready != nil {
		close(ready)
	}
	select {
	case <-ctx.Done():
		err = nil
	case err = <-errc:
		err = fmt.Errorf("dns: serve: %w", err)
	}
	ts.Shutdown()
	closing.Store(true)
	for _, fd := range fds {
		unix.Shutdown(fd, unix.SHUT_RDWR) // wakes the blocked readers
	}
	return err
}

// udpReaders is how many threads read queries. One: several blocked on
// the same socket wake each other for every packet, which costs more than
// a cached answer; misses are forwarded off the reading thread anyway.
const udpReaders = 1

// serveUDP answers UDP queries on goroutines that block in recvfrom(2)
// themselves: the Go netpoller's hand-off costs more than a cached answer
// takes to make, and the relay's lookups are latency bound. Each reader
// gets its own dup of the socket, in blocking mode. The reader is not
// locked to its thread: yielding (below) would then hand it from thread
// to thread.
func (r *Resolver) serveUDP(conn *net.UDPConn, closing *atomic.Bool) ([]int, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	var fds []int
	var dupErr error
	raw.Control(func(fd uintptr) {
		for range udpReaders {
			nfd, err := unix.Dup(int(fd))
			if err != nil {
				dupErr = err
				return
			}
			fds = append(fds, nfd)
		}
	})
	if dupErr != nil {
		return nil, fmt.Errorf("dns: dup socket: %w", dupErr)
	}
	for _, fd := range fds {
		// O_NONBLOCK is on the shared file description: clear it once for
		// all; the Go side of conn is not read from.
		unix.SetNonblock(fd, false)
		go func() {
			defer unix.Close(fd)
			buf := make([]byte, 65535)
			yielded := time.Now()
			for {
				// Let the scheduler run this goroutine anew at least every
				// millisecond. One it has seen running for 10 ms, blocked
				// reads included, counts as a hog: the runtime's monitor
				// then takes its P and polls every 20 µs for a while,
				// which under a steady stream of queries woke a thread
				// about 4,000 times a second and set the p99 (bench-net).
				if now := time.Now(); now.Sub(yielded) > time.Millisecond {
					yielded = now
					runtime.Gosched()
				}
				n, from, err := unix.Recvfrom(fd, buf, 0)
				if closing.Load() {
					return
				}
				// Anything else, an empty datagram or a transient error
				// included, must not end the reader: that would silence
				// the resolver.
				if err != nil || from == nil {
					continue
				}
				req := new(dns.Msg)
				if req.Unpack(buf[:n]) != nil || req.Response {
					continue
				}
				send := func(m *dns.Msg) {
					if out, err := m.PackBuffer(make([]byte, 0, 512)); err == nil {
						unix.Sendto(fd, out, 0, from)
					}
				}
				if out := r.fastAnswer(req, buf[:n], r.now()); out != nil {
					unix.Sendto(fd, out, 0, from)
					continue
				}
				if m := r.fromCache(req); m != nil {
					send(m)
					continue
				}
				// A miss waits for an upstream: not on this thread.
				go send(r.resolveMiss(req, false))
			}
		}()
	}
	return fds, nil
}
