package mailauth

import (
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

// Zone is one DNSBL or DNSWL site, postscreen's dnsbl_sites entry
// "name[=filter][*weight]": a client whose reversed address is listed
// under Name with an answer that Filters accept adds Weight to its score.
// A negative weight makes the zone an allow list (a DNSWL).
type Zone struct {
	Name    string   // the zone queried, e.g. zen.spamhaus.org
	Filters []Filter // answers that count; none: any 127.0.0.0/8 answer but the error codes
	Weight  int      // added to the score when listed; 1 in the config form when not given
}

// String is the config form, which ParseZone reads back.
func (z Zone) String() string {
	var b strings.Builder
	b.WriteString(z.Name)
	for i, f := range z.Filters {
		if i == 0 {
			b.WriteByte('=')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(f.String())
	}
	if z.Weight != 1 {
		b.WriteString("*" + strconv.Itoa(z.Weight))
	}
	return b.String()
}

// Filter is postscreen's answer pattern d.d.d.d, each octet a number or a
// bracketed list of numbers and ranges: 127.0.0.[2..11] or 127.0.[0..255].[1;3].
type Filter [4][]OctetRange

// OctetRange is an inclusive range of one octet's values.
type OctetRange struct{ Lo, Hi uint8 }

// Match reports whether the IPv4 answer a fits the pattern.
func (f Filter) Match(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	b := a.As4()
	for i, set := range f {
		if !slices.ContainsFunc(set, func(r OctetRange) bool { return r.Lo <= b[i] && b[i] <= r.Hi }) {
			return false
		}
	}
	return true
}

func (f Filter) String() string {
	parts := make([]string, 4)
	for i, set := range f {
		if len(set) == 1 && set[0].Lo == set[0].Hi {
			parts[i] = strconv.Itoa(int(set[0].Lo))
			continue
		}
		var rs []string
		for _, r := range set {
			if r.Lo == r.Hi {
				rs = append(rs, strconv.Itoa(int(r.Lo)))
			} else {
				rs = append(rs, fmt.Sprintf("%d..%d", r.Lo, r.Hi))
			}
		}
		parts[i] = "[" + strings.Join(rs, ";") + "]"
	}
	return strings.Join(parts, ".")
}

// ParseZone reads the config form of a zone: postscreen's
// "zen.spamhaus.org=127.0.0.[2..11]*3", "list.dnswl.org=127.0.[0..255].[1..3]*-5"
// or just "bl.example". Several filters may be given, separated by commas
// (zone=127.0.0.2,127.0.0.[4..7]); the weight defaults to 1.
func ParseZone(s string) (Zone, error) {
	z := Zone{Weight: 1}
	rest := strings.TrimSpace(s)
	if i := strings.LastIndexByte(rest, '*'); i >= 0 {
		w, err := strconv.Atoi(rest[i+1:])
		if err != nil || w < -1000 || w > 1000 {
			return Zone{}, fmt.Errorf("dnsbl zone %q: weight %q is not a number from -1000 to 1000", s, rest[i+1:])
		}
		z.Weight, rest = w, rest[:i]
	}
	name, filters, hasFilter := strings.Cut(rest, "=")
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if !isHostName(name) {
		return Zone{}, fmt.Errorf("dnsbl zone %q: %q is not a domain name", s, name)
	}
	z.Name = name
	if hasFilter {
		for _, fs := range strings.Split(filters, ",") {
			f, err := parseFilter(fs)
			if err != nil {
				return Zone{}, fmt.Errorf("dnsbl zone %q: %w", s, err)
			}
			z.Filters = append(z.Filters, f)
		}
	}
	return z, nil
}

// isHostName accepts a DNS name of letters, digits, '-' and '_' in
// labels of 1 to 63 characters; a zone name is nothing more.
func isHostName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 || strings.TrimLeft(l, "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return false
		}
	}
	return true
}

func parseFilter(s string) (Filter, error) {
	var f Filter
	rest := s
	for i := range 4 {
		var oct string
		if strings.HasPrefix(rest, "[") {
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return f, fmt.Errorf("filter %q: unclosed [", s)
			}
			oct, rest = rest[:end+1], rest[end+1:]
		} else {
			end := strings.IndexByte(rest, '.')
			if end < 0 {
				end = len(rest)
			}
			oct, rest = rest[:end], rest[end:]
		}
		set, err := parseOctet(oct)
		if err != nil {
			return f, fmt.Errorf("filter %q: %w", s, err)
		}
		f[i] = set
		if i < 3 {
			if !strings.HasPrefix(rest, ".") {
				return f, fmt.Errorf("filter %q: want four octets d.d.d.d", s)
			}
			rest = rest[1:]
		}
	}
	if rest != "" {
		return f, fmt.Errorf("filter %q: trailing %q", s, rest)
	}
	return f, nil
}

// parseOctet reads "7", "[2..11]" or "[1;3;5..7]".
func parseOctet(s string) ([]OctetRange, error) {
	if !strings.HasPrefix(s, "[") {
		n, err := parseOctetValue(s)
		return []OctetRange{{n, n}}, err
	}
	body := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	var set []OctetRange
	for _, item := range strings.Split(body, ";") {
		lo, hi, isRange := strings.Cut(item, "..")
		a, err := parseOctetValue(lo)
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = parseOctetValue(hi); err != nil {
				return nil, err
			}
			if b < a {
				return nil, fmt.Errorf("range %s..%s runs backwards", lo, hi)
			}
		}
		set = append(set, OctetRange{a, b})
	}
	return set, nil
}

func parseOctetValue(s string) (uint8, error) {
	if s == "" || len(s) > 3 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("octet %q is not a number from 0 to 255", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > 255 {
		return 0, fmt.Errorf("octet %q is not a number from 0 to 255", s)
	}
	return uint8(n), nil
}

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
		chain := cnameChain(name, rep.Answer)
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
