package network

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"gatehouse/config"
	"gatehouse/layout"
	"gatehouse/netcfg"
	"gatehouse/status"
)

// fakeManager records what the service asks of the kernel and answers
// what the test set.
type fakeManager struct {
	mu      sync.Mutex
	applied []netcfg.State
	changes netcfg.Changes
	probs   netcfg.Problems
	err     error
}

func (m *fakeManager) Apply(want netcfg.State) (netcfg.Changes, netcfg.Problems, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.applied = append(m.applied, want)
	return m.changes, m.probs, m.err
}

func (m *fakeManager) last(t *testing.T) netcfg.State {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.applied) == 0 {
		t.Fatal("nothing applied")
	}
	return m.applied[len(m.applied)-1]
}

// testConfig has links no test machine has, so that no DHCP client starts
// and the status shows them missing.
func testConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	file := filepath.Join(t.TempDir(), "appliance.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c, _, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const twoLinks = `interfaces:
  - name: ghtest0
    addresses: [192.0.2.10/24]
  - name: ghtest1
    dhcp: true
routes:
  - {to: 198.51.100.0/24, via: 192.0.2.1}
`

func newTestService(t *testing.T) (*netService, *fakeManager) {
	t.Helper()
	m := &fakeManager{}
	s := newService(slog.New(slog.DiscardHandler), t.TempDir(), m)
	s.watching = true // no netlink subscription in a unit test
	return s, m
}

func hasAddr(l netcfg.Link, p string) bool {
	return slices.ContainsFunc(l.Addresses, func(a netcfg.Address) bool { return a.Prefix == netip.MustParsePrefix(p) })
}

// A round converges the kernel on the config, counts the changes, and
// publishes the state, in the status and in layout.NetworkState.
func TestReconcileAppliesAndPublishes(t *testing.T) {
	s, m := newTestService(t)
	m.changes = netcfg.Changes{"ghtest0: add 192.0.2.10/24", "route 198.51.100.0/24"}
	m.probs = netcfg.Problems{"ghtest1": "no such link"}
	next, err := s.Reconcile(context.Background(), testConfig(t, twoLinks))
	if err != nil || next != 30*time.Second {
		t.Fatalf("Reconcile = %v, %v; want a round every 30s", next, err)
	}
	want := m.last(t)
	if len(want.Links) != 2 || !hasAddr(want.Links[0], "192.0.2.10/24") || len(want.Routes) != 1 {
		t.Errorf("applied %+v", want)
	}
	st := s.Status()
	d := st.Detail.(status.Network)
	if !st.Ready || st.Summary != "2 links; "+m.probs.String() {
		t.Errorf("status ready %v, summary %q", st.Ready, st.Summary)
	}
	if d.Changes != 2 || len(d.Links) != 2 || d.Links[0].State != "missing" || d.Routes[0] != want.Routes[0].String() {
		t.Errorf("detail %+v", d)
	}
	file, err := status.ReadNetwork(s.runDir)
	if err != nil || file.Changes != 2 || len(file.Links) != 2 {
		t.Errorf("%s: %+v, %v", layout.NetworkState, file, err)
	}

	// Changes add up; an error of the kernel's is no failure of the round.
	m.err = errors.New("netlink refused")
	if _, err := s.Reconcile(context.Background(), s.cfg); err != nil {
		t.Errorf("a failed apply failed the round: %v", err)
	}
	if d := s.Status().Detail.(status.Network); d.Changes != 4 {
		t.Errorf("changes %d after two rounds, want 4", d.Changes)
	}
}

// A lease asks for a round at once; its address and router go into the
// next one, its servers and domain into the published state; a renewal of
// the same address is counted, and a lease that ends takes them away.
func TestLeaseChangesTheNextRound(t *testing.T) {
	s, m := newTestService(t)
	c := testConfig(t, twoLinks)
	s.Reconcile(context.Background(), c)
	lease := netcfg.Lease{Link: "ghtest1", Address: netip.MustParsePrefix("203.0.113.9/24"), Router: netip.MustParseAddr("203.0.113.1"),
		DNS: []netip.Addr{netip.MustParseAddr("203.0.113.53")}, NTP: []netip.Addr{netip.MustParseAddr("203.0.113.123")},
		Domain: "example.net", Obtained: time.Now(), Expires: time.Now().Add(time.Hour)}
	s.leaseChanged("ghtest1", &lease)
	select {
	case <-s.kick:
	default:
		t.Fatal("a new lease asked for no round")
	}
	s.Reconcile(context.Background(), c)
	want := m.last(t)
	if !hasAddr(want.Links[1], "203.0.113.9/24") {
		t.Errorf("the lease's address not applied: %+v", want.Links[1])
	}
	if !slices.ContainsFunc(want.Routes, func(r netcfg.Route) bool { return r.Gw == lease.Router }) {
		t.Errorf("the lease's router not applied: %+v", want.Routes)
	}
	file, err := status.ReadNetwork(s.runDir)
	if err != nil || !slices.Equal(file.DNS, lease.DNS) || !slices.Equal(file.NTP, lease.NTP) || file.Domain != "example.net" {
		t.Errorf("%s: %+v, %v", layout.NetworkState, file, err)
	}

	renewed := lease
	renewed.Obtained = time.Now()
	s.leaseChanged("ghtest1", &renewed)
	other := lease
	other.Address = netip.MustParsePrefix("203.0.113.10/24")
	s.leaseChanged("ghtest1", &other) // a new address: no renewal
	if s.renewals["ghtest1"] != 1 {
		t.Errorf("renewals %d, want 1", s.renewals["ghtest1"])
	}

	s.leaseChanged("ghtest1", nil)
	s.Reconcile(context.Background(), c)
	if want := m.last(t); hasAddr(want.Links[1], "203.0.113.10/24") || len(want.Routes) != 1 {
		t.Errorf("an ended lease still applied: %+v", want)
	}
	if file, _ := status.ReadNetwork(s.runDir); len(file.DNS) != 0 || file.Domain != "" {
		t.Errorf("an ended lease's servers still published: %+v", file)
	}
}

// A reload's config is what the next round converges on.
func TestReloadConverges(t *testing.T) {
	s, m := newTestService(t)
	s.Reconcile(context.Background(), testConfig(t, twoLinks))
	s.Reconcile(context.Background(), testConfig(t, "interfaces:\n  - name: ghtest0\n    addresses: [192.0.2.20/24]\n"))
	want := m.last(t)
	if len(want.Links) != 1 || !hasAddr(want.Links[0], "192.0.2.20/24") || hasAddr(want.Links[0], "192.0.2.10/24") || len(want.Routes) != 0 {
		t.Errorf("after the reload applied %+v", want)
	}
	if d := s.Status().Detail.(status.Network); len(d.Links) != 1 {
		t.Errorf("after the reload %d links reported, want 1", len(d.Links))
	}
}

// Stopping takes the leases' addresses and routes away, the config's stay.
func TestStopReleases(t *testing.T) {
	s, m := newTestService(t)
	c := testConfig(t, twoLinks)
	s.Reconcile(context.Background(), c)
	s.leaseChanged("ghtest1", &netcfg.Lease{Link: "ghtest1", Address: netip.MustParsePrefix("203.0.113.9/24"),
		Router: netip.MustParseAddr("203.0.113.1"), Expires: time.Now().Add(time.Hour)})
	s.Reconcile(context.Background(), c)
	s.stopDHCP()
	want := m.last(t)
	if hasAddr(want.Links[1], "203.0.113.9/24") || !hasAddr(want.Links[0], "192.0.2.10/24") || len(want.Routes) != 1 {
		t.Errorf("after stopping applied %+v", want)
	}
}
