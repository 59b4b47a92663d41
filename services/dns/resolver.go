package dns

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
	ts := &dns.Server{Listener: tcp, Handler: r}
	errc := make(chan error, 1+udpReaders)
	go func() { errc <- ts.ActivateAndServe() }()
	fds, err := r.serveUDP(udp.(*net.UDPConn), errc)
	if err != nil {
		udp.Close()
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
	for _, fd := range fds {
		unix.Shutdown(fd, unix.SHUT_RDWR) // wakes the blocked readers
	}
	udp.Close()
	return err
}

// udpReaders is how many threads read queries. One: several blocked on
// the same socket wake each other for every packet, which costs more than
// a cached answer; misses are forwarded off the reading thread anyway.
const udpReaders = 1

// serveUDP answers UDP queries on threads that block in recvfrom(2)
// themselves: the Go netpoller's hand-off costs more than a cached answer
// takes to make, and the relay's lookups are latency bound. Each reader
// gets its own dup of the socket, in blocking mode.
func (r *Resolver) serveUDP(conn *net.UDPConn, errc chan<- error) ([]int, error) {
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
			runtime.LockOSThread() // never unlocked: the thread ends with the reader
			defer unix.Close(fd)
			buf := make([]byte, 65535)
			for {
				n, from, err := unix.Recvfrom(fd, buf, 0)
				if err == unix.EINTR {
					continue
				}
				if err != nil || n == 0 {
					return // shut down
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
