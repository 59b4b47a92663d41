package dnsclient

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// TTLLookup is a resolver that says how long its answer holds (Lookup, or
// a fake in tests).
type TTLLookup interface {
	LookupTTL(ctx context.Context, host string) ([]netip.Addr, time.Duration, error)
}

// How long an answer is kept: short TTLs would have every allow list
// rebuilt every second, long ones would keep a moved peer out for a day.
const (
	MinTTL     = 10 * time.Second
	MaxTTL     = time.Hour
	RetryAfter = 10 * time.Second // after a lookup that got no answer
)

// Names keeps the addresses of the host names in an allow list. Each name
// is looked up again when its answer runs out. A lookup that gets no answer
// (no server reachable) keeps the last good answer and is retried soon; a
// name DNS says does not exist has no addresses. A name without addresses
// matches no one: allow lists built from Names fail closed.
type Names struct {
	r   TTLLookup
	now func() time.Time

	mu sync.Mutex
	m  map[string]*nameEntry
}

type nameEntry struct {
	addrs   []netip.Addr
	expires time.Time
	err     error // the last lookup's, if it failed
	checked time.Time
}

// NameStatus is one name as status shows it.
type NameStatus struct {
	Name       string       `json:"name"`
	Addrs      []netip.Addr `json:"addresses"`
	NextLookup time.Time    `json:"next_lookup"`
	Error      string       `json:"error,omitempty"`
}

// NewNames returns an empty set that looks names up with r.
func NewNames(r TTLLookup) *Names { return NewNamesAt(r, time.Now) }

// NewNamesAt is NewNames on a clock of the caller's (tests make answers
// run out with it).
func NewNamesAt(r TTLLookup, now func() time.Time) *Names {
	return &Names{r: r, now: now, m: map[string]*nameEntry{}}
}

// Resolve looks up those of names whose answer has run out (all of them
// at first, concurrently, within ctx) and returns every name's addresses
// and when the first answer runs out. Names not asked for are forgotten.
func (n *Names) Resolve(ctx context.Context, names []string) (map[string][]netip.Addr, time.Time) {
	now := n.now()
	n.mu.Lock()
	var due []string
	want := map[string]bool{}
	for _, name := range names {
		if want[name] {
			continue
		}
		want[name] = true
		if e, ok := n.m[name]; !ok || !now.Before(e.expires) {
			due = append(due, name)
		}
	}
	for name := range n.m {
		if !want[name] {
			delete(n.m, name)
		}
	}
	n.mu.Unlock()

	type answer struct {
		addrs []netip.Addr
		ttl   time.Duration
		err   error
	}
	got := make([]answer, len(due))
	var wg sync.WaitGroup
	for i, name := range due {
		wg.Go(func() {
			a, ttl, err := n.r.LookupTTL(ctx, name)
			got[i] = answer{a, ttl, err}
		})
	}
	wg.Wait()

	n.mu.Lock()
	defer n.mu.Unlock()
	for i, name := range due {
		a := got[i]
		e := n.m[name]
		if e == nil {
			e = &nameEntry{}
			n.m[name] = e
		}
		e.checked = now
		var de *net.DNSError
		switch {
		case a.err == nil:
			e.addrs, e.err = slices.Clone(a.addrs), nil
			e.expires = now.Add(min(max(a.ttl, MinTTL), MaxTTL))
		case errors.As(a.err, &de) && de.IsNotFound:
			// An answer: the name has no addresses (any more).
			e.addrs, e.err = nil, a.err
			e.expires = now.Add(MinTTL)
		default:
			// No answer: keep what was last known, ask again soon.
			e.err = a.err
			e.expires = now.Add(RetryAfter)
		}
	}
	out := make(map[string][]netip.Addr, len(want))
	var next time.Time
	for name := range want {
		e := n.m[name]
		out[name] = slices.Clone(e.addrs)
		if next.IsZero() || e.expires.Before(next) {
			next = e.expires
		}
	}
	return out, next
}

// Err is the error of name's last lookup: nil when it was answered.
func (n *Names) Err(name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if e, ok := n.m[name]; ok {
		return e.err
	}
	return nil
}

// Status lists the names with their addresses and next lookup.
func (n *Names) Status() []NameStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]NameStatus, 0, len(n.m))
	for name, e := range n.m {
		st := NameStatus{Name: name, Addrs: slices.Clone(e.addrs), NextLookup: e.expires}
		if e.err != nil {
			st.Error = e.err.Error()
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b NameStatus) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}
