package smtpd

import (
	"context"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"gatehouse/status"
)

// clientKey is what the per-client limits count: an IPv4 address, or the
// /64 of an IPv6 address (one site's network: a client that owns a /64
// would otherwise have 2^64 addresses to spread its connections over).
func clientKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// authGuard is what operators otherwise add with fail2ban: failed AUTHs
// are counted per client, and a client with too many within the block
// time is refused AUTH for that time without any password being checked
// (each check is a bcrypt, or a login on the internal IMAP server that
// may lock the real user out). It also bounds how many password checks
// run at once, so guessing on many connections cannot take both cores.
type authGuard struct {
	mu      sync.Mutex
	max     int
	block   time.Duration
	fails   map[netip.Prefix][]time.Time
	blocked map[netip.Prefix]time.Time // until
	refused int64                      // AUTHs refused while blocked
	now     func() time.Time

	slots chan struct{}
}

func newAuthGuard(limit int, block time.Duration) *authGuard {
	return &authGuard{max: limit, block: block, fails: map[netip.Prefix][]time.Time{},
		blocked: map[netip.Prefix]time.Time{}, now: time.Now,
		slots: make(chan struct{}, max(2, runtime.NumCPU()))}
}

func (g *authGuard) set(limit int, block time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.max, g.block = limit, block
}

// Blocked says whether AUTH from a is refused now, and counts the refusal.
func (g *authGuard) Blocked(a netip.Addr) bool {
	k := clientKey(a)
	g.mu.Lock()
	defer g.mu.Unlock()
	until, ok := g.blocked[k]
	if !ok {
		return false
	}
	if !g.now().Before(until) {
		delete(g.blocked, k)
		delete(g.fails, k)
		return false
	}
	g.refused++
	return true
}

// Failed records a failed AUTH from a and says whether a is now blocked.
func (g *authGuard) Failed(a netip.Addr) bool {
	k := clientKey(a)
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	recent := g.fails[k][:0]
	for _, t := range g.fails[k] {
		if now.Sub(t) < g.block {
			recent = append(recent, t)
		}
	}
	recent = append(recent, now)
	g.fails[k] = recent
	if len(recent) >= g.max {
		g.blocked[k] = now.Add(g.block)
		return true
	}
	return false
}

// check runs a password check in one of the few slots, or gives up when
// ctx ends first.
func (g *authGuard) check(ctx context.Context, f func() (bool, error)) (bool, error) {
	select {
	case g.slots <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-g.slots }()
	return f()
}

func (g *authGuard) stats() status.AuthGuard {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	n := 0
	for k, until := range g.blocked {
		if now.Before(until) {
			n++
		} else {
			delete(g.blocked, k)
			delete(g.fails, k)
		}
	}
	// Forget failures too old to count, so the map cannot grow for ever.
	for k, ts := range g.fails {
		if len(ts) > 0 && now.Sub(ts[len(ts)-1]) >= g.block {
			delete(g.fails, k)
		}
	}
	return status.AuthGuard{BlockedClients: n, Refused: g.refused}
}
