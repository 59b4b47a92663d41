// Package dns is the name service: it writes resolv.conf and, when the
// config asks for it, runs the built-in caching resolver on 127.0.0.1:53
// that the relay uses for its MX, A and AAAA lookups.
package dnscache

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Bounds of what the cache keeps.
const (
	maxTTL     = 24 * time.Hour
	maxNegTTL  = time.Hour // RFC 2308 suggests at most a few hours
	staleFor   = 24 * time.Hour
	staleTTL   = 30 // seconds, the TTL of a stale answer (RFC 8767)
	maxEntries = 20000
)

type cacheKey struct {
	name  string
	qtype uint16
	class uint16
}

type entry struct {
	msg     *dns.Msg
	stored  time.Time
	expires time.Time
	// The packed answer as of one second, without and with EDNS: most
	// hits only copy it and patch the id, flags and question.
	wire [2]atomic.Pointer[wireAnswer]
}

type wireAnswer struct {
	second int64
	size   int
	b      []byte
}

// cache holds answers for their TTL and, after that, for serve-stale.
type cache struct {
	mu      sync.Mutex
	entries map[cacheKey]*entry
}

func newCache() *cache { return &cache{entries: map[cacheKey]*entry{}} }

func keyOf(q dns.Question) cacheKey {
	return cacheKey{strings.ToLower(q.Name), q.Qtype, q.Qclass}
}

// fresh returns the entry for q if its answer is still fresh.
func (c *cache) fresh(q dns.Question, now time.Time) *entry {
	c.mu.Lock()
	e := c.entries[keyOf(q)]
	c.mu.Unlock()
	if e == nil || !now.Before(e.expires) {
		return nil
	}
	return e
}

// get returns a copy of the cached answer with TTLs counted down, and
// whether it is still fresh. A stale answer is returned only if allowStale.
func (c *cache) get(q dns.Question, now time.Time, allowStale bool) (*dns.Msg, bool) {
	c.mu.Lock()
	e := c.entries[keyOf(q)]
	c.mu.Unlock()
	if e == nil {
		return nil, false
	}
	fresh := now.Before(e.expires)
	if !fresh && (!allowStale || now.After(e.expires.Add(staleFor))) {
		return nil, false
	}
	m := e.msg.Copy()
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			if h.Rrtype == dns.TypeOPT {
				continue
			}
			switch {
			case !fresh:
				h.Ttl = staleTTL
			case h.Ttl > age:
				h.Ttl -= age
			default:
				h.Ttl = 0
			}
		}
	}
	return m, fresh
}

// put stores an upstream answer for as long as it may be cached: the
// smallest TTL of its records, or for a negative answer the SOA's minimum
// (RFC 2308). Answers that must not be cached are not.
func (c *cache) put(q dns.Question, m *dns.Msg, now time.Time) {
	ttl, ok := cacheTTL(m)
	if !ok {
		return
	}
	stored := m.Copy()
	stored.Id = 0
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxEntries {
		c.evict(now)
	}
	c.entries[keyOf(q)] = &entry{msg: stored, stored: now, expires: now.Add(ttl)}
}

// evict drops stale entries, and if that is not enough, the ones closest
// to expiry.
func (c *cache) evict(now time.Time) {
	for k, e := range c.entries {
		if now.After(e.expires) {
			delete(c.entries, k)
		}
	}
	for len(c.entries) >= maxEntries {
		var oldest cacheKey
		var first *entry
		for k, e := range c.entries {
			if first == nil || e.expires.Before(first.expires) {
				oldest, first = k, e
			}
		}
		delete(c.entries, oldest)
	}
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func cacheTTL(m *dns.Msg) (time.Duration, bool) {
	if m.Truncated {
		return 0, false
	}
	switch m.Rcode {
	case dns.RcodeSuccess:
		if len(m.Answer) == 0 { // NODATA
			return negTTL(m)
		}
		min := uint32(maxTTL / time.Second)
		for _, rr := range m.Answer {
			if t := rr.Header().Ttl; t < min {
				min = t
			}
		}
		if min == 0 {
			return 0, false
		}
		return time.Duration(min) * time.Second, true
	case dns.RcodeNameError:
		return negTTL(m)
	}
	return 0, false // SERVFAIL, REFUSED, ...: never cached
}

func negTTL(m *dns.Msg) (time.Duration, bool) {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			t := min(soa.Hdr.Ttl, soa.Minttl)
			if t == 0 {
				return 0, false
			}
			return min(time.Duration(t)*time.Second, maxNegTTL), true
		}
	}
	return 0, false // no SOA: RFC 2308 says do not cache
}
