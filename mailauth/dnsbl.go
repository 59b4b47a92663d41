package mailauth

import (
	"gatehouse/config"
	"gatehouse/dnsclient"

	"container/list"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Zone is one DNSBL or DNSWL site (config.DNSBLSite): postscreen's
// dnsbl_sites entry "name[=filter][*weight]". A negative weight makes the
// zone an allow list (a DNSWL).
type Zone = config.DNSBLSite

// Filter is an answer pattern (config.DNSBLFilter).
type Filter = config.DNSBLFilter

// OctetRange is an inclusive range of one octet's values.
type OctetRange = config.OctetRange

// ParseZone reads the config form of a zone (config.ParseDNSBLSite).
func ParseZone(s string) (Zone, error) { return config.ParseDNSBLSite(s) }

// Answers that are not listings. Spamhaus answers 127.255.255.254 to
// queries through public resolvers and 127.255.255.255 to those over its
// free-use limit (and 127.255.255.252 to a malformed query); other lists
// copied the convention. Taking them for listings would refuse all mail.
var dnsblErrorCodes = []netip.Addr{
	netip.AddrFrom4([4]byte{127, 255, 255, 252}),
	netip.AddrFrom4([4]byte{127, 255, 255, 254}),
	netip.AddrFrom4([4]byte{127, 255, 255, 255}),
}

var loopback8 = netip.MustParsePrefix("127.0.0.0/8")

// DNSBL scores clients against DNS block and allow lists, as postscreen
// does: the weights of the zones that list the client add up, and a score
// at or above Threshold blocks. Answers are cached by their TTL. The zero
// value is not usable: call NewDNSBL.
type DNSBL struct {
	zones     []Zone
	threshold int
	r         Resolver

	Timeout     time.Duration    // for the whole check; 5s by default
	NegativeTTL time.Duration    // cache time of "not listed" without an SOA; 5 min by default
	MaxTTL      time.Duration    // longest an answer is cached; 1 h by default
	Reasons     bool             // also ask TXT for the listing's reason text
	Now         func() time.Time // clock for the cache; time.Now by default

	cache *dnsblCache
	stats struct{ queries, cached, listed, errors atomic.Uint64 }
}

// NewDNSBL checks against zones through r; Threshold is postscreen's
// dnsbl_threshold. maxEntries bounds the cache (10,000 when zero).
func NewDNSBL(r Resolver, zones []Zone, threshold, maxEntries int) *DNSBL {
	if maxEntries <= 0 {
		maxEntries = 10000
	}
	return &DNSBL{zones: zones, threshold: threshold, r: r,
		Timeout: 5 * time.Second, NegativeTTL: 5 * time.Minute, MaxTTL: time.Hour, Now: time.Now,
		cache: &dnsblCache{max: maxEntries, m: map[dnsblKey]*list.Element{}, order: list.New()}}
}

// DNSBLResult is what the lists say about one client.
type DNSBLResult struct {
	Score     int
	Threshold int
	Listed    []ZoneHit // the zones (entries) whose filters matched, allow lists too
	Errors    []error   // zones that gave no usable answer: neither listed nor fatal
}

// Blocked reports whether the score reaches the threshold.
func (r DNSBLResult) Blocked() bool { return r.Score >= r.Threshold && r.Threshold > 0 }

// Worst is the listing with the highest weight, the zone a refusal names.
func (r DNSBLResult) Worst() (ZoneHit, bool) {
	var best ZoneHit
	found := false
	for _, h := range r.Listed {
		if h.Zone.Weight > 0 && (!found || h.Zone.Weight > best.Zone.Weight) {
			best, found = h, true
		}
	}
	return best, found
}

// ZoneHit is one zone entry that lists the client.
type ZoneHit struct {
	Zone    Zone
	Answers []netip.Addr // the A records that matched the zone's filters
	Reason  string       // the TXT record, when Reasons is set and the zone has one
}

// DNSBLStats are the counters for status.
type DNSBLStats struct {
	Queries uint64 // A queries sent (cache misses)
	Cached  uint64 // answers from the cache
	Listed  uint64 // checks with at least one positive-weight listing
	Errors  uint64 // zone lookups that failed or gave an error code
}

// Stats returns the counters since NewDNSBL.
func (b *DNSBL) Stats() DNSBLStats {
	return DNSBLStats{Queries: b.stats.queries.Load(), Cached: b.stats.cached.Load(),
		Listed: b.stats.listed.Load(), Errors: b.stats.errors.Load()}
}

// ReverseName is the name under zone that lists ip: the octets of an IPv4
// address reversed, the nibbles of an IPv6 address reversed (RFC 5782 §2.1, §2.4).
func ReverseName(ip netip.Addr, zone string) string {
	ip = ip.Unmap()
	var parts []string
	if ip.Is4() {
		b := ip.As4()
		for i := 3; i >= 0; i-- {
			parts = append(parts, strconv.Itoa(int(b[i])))
		}
	} else {
		const hex = "0123456789abcdef"
		b := ip.As16()
		for i := 15; i >= 0; i-- {
			parts = append(parts, string(hex[b[i]&0xf]), string(hex[b[i]>>4]))
		}
	}
	return strings.Join(parts, ".") + "." + dns.Fqdn(zone)
}

// Check asks every zone about ip at once, under one deadline. A zone that
// fails to answer, or answers with an error code or outside 127.0.0.0/8,
// is in Errors and scores nothing.
func (b *DNSBL) Check(ctx context.Context, ip netip.Addr) DNSBLResult {
	ip = ip.Unmap()
	ctx, cancel := context.WithTimeout(ctx, b.Timeout)
	defer cancel()

	// One query per zone name, however many entries (filters, weights) use it.
	var names []string
	for _, z := range b.zones {
		if !slices.Contains(names, z.Name) {
			names = append(names, z.Name)
		}
	}
	answers := make([]dnsblAnswer, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { answers[i] = b.query(ctx, name, ip) })
	}
	wg.Wait()

	res := DNSBLResult{Threshold: b.threshold}
	for i, name := range names {
		a := answers[i]
		if a.err == nil {
			a.err = answerError(a.addrs)
		}
		if a.err != nil {
			b.stats.errors.Add(1)
			res.Errors = append(res.Errors, fmt.Errorf("dnsbl %s: %w", name, a.err))
			continue
		}
		for _, z := range b.zones {
			if z.Name != name {
				continue
			}
			var hit []netip.Addr
			for _, addr := range a.addrs {
				if zoneAccepts(z, addr) {
					hit = append(hit, addr)
				}
			}
			if len(hit) > 0 {
				res.Score += z.Weight
				res.Listed = append(res.Listed, ZoneHit{Zone: z, Answers: hit, Reason: a.reason})
			}
		}
	}
	if _, ok := res.Worst(); ok {
		b.stats.listed.Add(1)
	}
	return res
}

// answerError says why a set of A records is not a usable answer: an
// error code, or an address outside 127.0.0.0/8 (a wildcard, a parked
// or expired list domain, a hijacking resolver).
func answerError(addrs []netip.Addr) error {
	for _, a := range addrs {
		if slices.Contains(dnsblErrorCodes, a) {
			return fmt.Errorf("answer %s is the list's error code (public resolver, rate limit or bad query), not a listing", a)
		}
		if !loopback8.Contains(a) {
			return fmt.Errorf("answer %s is outside 127.0.0.0/8: not a DNSBL answer", a)
		}
	}
	return nil
}

func zoneAccepts(z Zone, a netip.Addr) bool {
	if len(z.Filters) == 0 {
		return true // answerError already refused all but 127.0.0.0/8
	}
	return slices.ContainsFunc(z.Filters, func(f Filter) bool { return f.Match(a) })
}

type dnsblAnswer struct {
	addrs  []netip.Addr // nil: not listed
	reason string
	err    error
}

type dnsblKey struct {
	zone string
	ip   netip.Addr
}

// query answers from the cache, or asks and caches the answer (never a
// failure to get one: the next client must not inherit a timeout).
func (b *DNSBL) query(ctx context.Context, zone string, ip netip.Addr) dnsblAnswer {
	key := dnsblKey{zone, ip}
	now := b.Now()
	if a, ok := b.cache.get(key, now); ok {
		b.stats.cached.Add(1)
		return a
	}
	b.stats.queries.Add(1)
	name := ReverseName(ip, zone)
	rep, err := b.r.Query(ctx, name, dns.TypeA)
	if err != nil {
		return dnsblAnswer{err: fmt.Errorf("query %s: %w", name, err)}
	}
	var ttl time.Duration
	var a dnsblAnswer
	switch rep.Rcode {
	case dns.RcodeNameError:
		ttl = b.negativeTTL(rep)
	case dns.RcodeSuccess:
		chain := dnsclient.CNAMEChain(name, rep.Answer)
		ttl = -1
		for _, rr := range rep.Answer {
			ar, ok := rr.(*dns.A)
			if !ok || !chain[strings.ToLower(ar.Hdr.Name)] {
				continue
			}
			if addr, ok := netip.AddrFromSlice(ar.A.To4()); ok {
				a.addrs = append(a.addrs, addr)
			}
			if t := time.Duration(ar.Hdr.Ttl) * time.Second; ttl < 0 || t < ttl {
				ttl = t
			}
		}
		if len(a.addrs) == 0 {
			ttl = b.negativeTTL(rep) // NODATA: not listed
		}
	default:
		return dnsblAnswer{err: fmt.Errorf("query %s: server answered %s", name, dns.RcodeToString[rep.Rcode])}
	}
	if b.Reasons && len(a.addrs) > 0 && answerError(a.addrs) == nil {
		if txts, err := lookupTXT(ctx, b.r, name); err == nil {
			a.reason = strings.Join(txts, " ")
		}
	}
	b.cache.put(key, a, now.Add(min(ttl, b.MaxTTL)))
	return a
}

// negativeTTL is how long "not listed" holds: the SOA's minimum or its
// TTL, whichever is less (RFC 2308 §5), else NegativeTTL.
func (b *DNSBL) negativeTTL(rep Reply) time.Duration {
	for _, rr := range rep.Authority {
		if soa, ok := rr.(*dns.SOA); ok {
			return time.Duration(min(soa.Minttl, soa.Hdr.Ttl)) * time.Second
		}
	}
	return b.NegativeTTL
}

// dnsblCache holds answers until their expiry, at most max of them; when
// full the oldest entry goes first.
type dnsblCache struct {
	mu    sync.Mutex
	max   int
	m     map[dnsblKey]*list.Element
	order *list.List // of *dnsblEntry, oldest first
}

type dnsblEntry struct {
	key     dnsblKey
	answer  dnsblAnswer
	expires time.Time
}

func (c *dnsblCache) get(k dnsblKey, now time.Time) (dnsblAnswer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[k]
	if !ok {
		return dnsblAnswer{}, false
	}
	e := el.Value.(*dnsblEntry)
	if !now.Before(e.expires) {
		c.order.Remove(el)
		delete(c.m, k)
		return dnsblAnswer{}, false
	}
	return e.answer, true
}

func (c *dnsblCache) put(k dnsblKey, a dnsblAnswer, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		c.order.Remove(el)
		delete(c.m, k)
	}
	for c.order.Len() >= c.max {
		oldest := c.order.Front()
		c.order.Remove(oldest)
		delete(c.m, oldest.Value.(*dnsblEntry).key)
	}
	c.m[k] = c.order.PushBack(&dnsblEntry{key: k, answer: a, expires: expires})
}

// CacheLen is the number of cached answers, for status and tests.
func (b *DNSBL) CacheLen() int {
	b.cache.mu.Lock()
	defer b.cache.mu.Unlock()
	return len(b.cache.m)
}
