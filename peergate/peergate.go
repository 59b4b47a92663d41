// Package peergate decides who may talk to an administrative service (the
// SSH shell, the web console and the API): the sources its allow list
// names, as resolved now, and none that failed to log in too often. A ban
// is kept in the service's table and put into the firewall's ban set, so
// that the banned source's packets stop in the kernel.
package peergate

import (
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"gatehouse/config"
	"gatehouse/linuxfw"
)

// Gate is who may connect under one config: the allow list, and no one
// banned. A gate is made for each config and does not change; the bans it
// records are in the service's one ban table.
type Gate struct {
	allowed  config.PeerSet
	resolved map[string][]netip.Addr
	after    int
	banFor   time.Duration
	bans     *BanTable
}

// New compiles allowed into a gate; resolved holds what its host names
// resolve to now (allowed.Names() lists them), and a name missing there
// admits no one. Its failures and bans go into bans.
func New(allowed config.PeerSet, resolved map[string][]netip.Addr, ban config.Ban, bans *BanTable) *Gate {
	return &Gate{allowed: allowed, resolved: resolved, after: ban.After, banFor: ban.For.Duration, bans: bans}
}

// Admit says whether a connection from a may proceed, and if not, why.
func (g *Gate) Admit(a netip.Addr) (bool, string) {
	a = a.Unmap()
	if until, ok := g.bans.BannedUntil(a); ok {
		return false, "banned until " + until.Format(time.RFC3339)
	}
	if g.allowed.Contains(a, g.resolved) {
		return true, ""
	}
	return false, "not on the allowlist"
}

// Allowed says whether a is on the allow list, bans aside.
func (g *Gate) Allowed(a netip.Addr) bool { return g.allowed.Contains(a.Unmap(), g.resolved) }

// Bans lists the sources banned now and the time each has left.
func (g *Gate) Bans() map[netip.Addr]time.Duration { return g.bans.Bans() }

// BanFor is how long a ban lasts.
func (g *Gate) BanFor() time.Duration { return g.banFor }

// Failed records an authentication failure; it reports whether the source
// is banned now.
func (g *Gate) Failed(a netip.Addr) bool { return g.bans.failed(a.Unmap(), g.after, g.banFor) }

// Succeeded forgets a's failures: it logged in.
func (g *Gate) Succeeded(a netip.Addr) { g.bans.succeeded(a) }

// Table is the ban table the gate records into.
func (g *Gate) Table() *BanTable { return g.bans }

// BanTable is a service's one record of authentication failures and
// bans. It outlives reloads: connections accepted under the config before
// one keep recording into it next to those accepted after.
type BanTable struct {
	mu     sync.Mutex
	fails  map[netip.Addr][]time.Time
	banned map[netip.Addr]time.Time
	now    func() time.Time
}

// NewBanTable is an empty table.
func NewBanTable() *BanTable {
	return &BanTable{fails: map[netip.Addr][]time.Time{}, banned: map[netip.Addr]time.Time{}, now: time.Now}
}

// BannedUntil says until when a is banned, if it is now.
func (b *BanTable) BannedUntil(a netip.Addr) (time.Time, bool) {
	a = a.Unmap()
	b.mu.Lock()
	defer b.mu.Unlock()
	until, ok := b.banned[a]
	if !ok {
		return time.Time{}, false
	}
	if b.now().Before(until) {
		return until, true
	}
	delete(b.banned, a)
	return time.Time{}, false
}

// Bans lists the sources banned now and the time each has left.
func (b *BanTable) Bans() map[netip.Addr]time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	out := map[netip.Addr]time.Duration{}
	for a, until := range b.banned {
		if left := until.Sub(now); left > 0 {
			out[a] = left
		}
	}
	return out
}

// Lift ends a's ban and forgets its failures (an operator's decision); it
// reports whether a was banned.
func (b *BanTable) Lift(a netip.Addr) bool {
	a = a.Unmap()
	b.mu.Lock()
	defer b.mu.Unlock()
	_, was := b.banned[a]
	delete(b.banned, a)
	delete(b.fails, a)
	return was
}

func (b *BanTable) succeeded(a netip.Addr) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.fails, a.Unmap())
}

// failed records a failure of a; after failures within banFor of each
// other ban a for banFor. It reports whether a is banned now.
func (b *BanTable) failed(a netip.Addr, after int, banFor time.Duration) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	recent := b.fails[a][:0]
	for _, t := range b.fails[a] {
		if now.Sub(t) < banFor {
			recent = append(recent, t)
		}
	}
	recent = append(recent, now)
	b.fails[a] = recent
	if len(recent) >= after {
		b.banned[a] = now.Add(banFor)
		delete(b.fails, a)
		return true
	}
	return false
}

// Reassert puts the bans of b missing from the kernel's ban set back, for
// the time each has left. The firewall's table is replaced now and then,
// carrying the bans it read just before; one added in between, or a table
// rebuilt after a restart, would lose it.
func Reassert(b *BanTable, set string, log *slog.Logger) {
	inKernel, err := (linuxfw.NFT{}).Bans(set)
	if err != nil {
		return // no nftables firewall: the gate alone enforces
	}
	for a, left := range b.Bans() {
		if _, ok := inKernel[a]; ok || left < time.Second {
			continue
		}
		if err := (linuxfw.NFT{}).Ban(set, a, left); err == nil {
			log.Info("ban put back into the firewall", "set", set, "source", a, "left", left.Round(time.Second))
		}
	}
}

// Failures is how many recent failures of a count toward a ban.
func (b *BanTable) Failures(a netip.Addr) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.fails[a.Unmap()])
}
