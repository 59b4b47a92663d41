package dnsclient

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeDNS answers from a table that the test changes; a missing name is
// NXDOMAIN, and down makes every lookup fail for want of a server.
type fakeDNS struct {
	mu    sync.Mutex
	zone  map[string][]netip.Addr
	ttl   time.Duration
	down  bool
	asked map[string]int
}

func (f *fakeDNS) LookupTTL(_ context.Context, host string) ([]netip.Addr, time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked[host]++
	if f.down {
		return nil, 0, errors.New("no server answered")
	}
	a, ok := f.zone[host]
	if !ok {
		return nil, 0, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return a, f.ttl, nil
}

func TestNamesKeepLastGoodAnswerAndFollowTTL(t *testing.T) {
	a1, a2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	dns := &fakeDNS{zone: map[string][]netip.Addr{"mx.example": {a1}}, ttl: 30 * time.Second, asked: map[string]int{}}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := NewNames(dns)
	n.now = func() time.Time { return now }
	ctx := context.Background()
	names := []string{"mx.example", "gone.example"}

	got, next := n.Resolve(ctx, names)
	if !slices.Equal(got["mx.example"], []netip.Addr{a1}) || len(got["gone.example"]) != 0 {
		t.Fatalf("first answer %v", got)
	}
	// The NXDOMAIN is asked again after MinTTL, the answer after its TTL.
	if want := now.Add(MinTTL); !next.Equal(want) {
		t.Errorf("next lookup %v, want %v", next, want)
	}

	// Within the TTL nothing is asked again.
	now = now.Add(5 * time.Second)
	n.Resolve(ctx, names)
	if dns.asked["mx.example"] != 1 {
		t.Errorf("asked %d times within the TTL", dns.asked["mx.example"])
	}

	// DNS down when the TTL runs out: the last good answer stays, and the
	// name is asked again soon.
	now = now.Add(30 * time.Second)
	dns.down = true
	got, next = n.Resolve(ctx, names)
	if !slices.Equal(got["mx.example"], []netip.Addr{a1}) {
		t.Errorf("with DNS down: %v, want the last good answer", got["mx.example"])
	}
	if want := now.Add(RetryAfter); !next.Equal(want) {
		t.Errorf("retry at %v, want %v", next, want)
	}
	if st := n.Status(); len(st) != 2 || st[1].Name != "mx.example" || st[1].Error == "" {
		t.Errorf("status %+v, want the failed lookup shown", st)
	}

	// DNS back, the name moved.
	now = now.Add(RetryAfter)
	dns.down = false
	dns.zone["mx.example"] = []netip.Addr{a2}
	if got, _ = n.Resolve(ctx, names); !slices.Equal(got["mx.example"], []netip.Addr{a2}) {
		t.Errorf("after the move: %v", got["mx.example"])
	}

	// The name stops existing: no addresses, not the old ones.
	now = now.Add(time.Hour)
	delete(dns.zone, "mx.example")
	if got, _ = n.Resolve(ctx, names); len(got["mx.example"]) != 0 {
		t.Errorf("NXDOMAIN kept %v", got["mx.example"])
	}

	// A name no longer asked for is forgotten.
	n.Resolve(ctx, []string{"gone.example"})
	if st := n.Status(); len(st) != 1 {
		t.Errorf("status %+v after the list shrank", st)
	}
}

func TestNamesClampTTL(t *testing.T) {
	dns := &fakeDNS{zone: map[string][]netip.Addr{"a.example": {netip.MustParseAddr("192.0.2.1")}}, asked: map[string]int{}}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := NewNames(dns)
	n.now = func() time.Time { return now }
	for _, tc := range []struct{ ttl, want time.Duration }{{0, MinTTL}, {time.Second, MinTTL}, {5 * time.Minute, 5 * time.Minute}, {48 * time.Hour, MaxTTL}} {
		dns.ttl = tc.ttl
		now = now.Add(49 * time.Hour)
		if _, next := n.Resolve(context.Background(), []string{"a.example"}); next.Sub(now) != tc.want {
			t.Errorf("TTL %v: next lookup after %v, want %v", tc.ttl, next.Sub(now), tc.want)
		}
	}
}
