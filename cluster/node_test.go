package cluster

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/config"
	"gatehouse/status"
	"log/slog"
)

// fakeLocal is PID 1 as a node sees it: the running shared config.
type fakeLocal struct {
	mu      sync.Mutex
	shared  []byte
	pending bool
}

func (f *fakeLocal) Install(v *Version, within time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shared, f.pending = v.Doc, within > 0
	return nil
}
func (f *fakeLocal) Confirm() error { f.mu.Lock(); f.pending = false; f.mu.Unlock(); return nil }
func (f *fakeLocal) Shared() ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.shared, nil
}
func (f *fakeLocal) Report() status.ClusterReport { return status.ClusterReport{} }

func freePort(t *testing.T) uint16 {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

type testNode struct {
	*Node
	local *fakeLocal
	opts  Options
}

func newTestNode(t *testing.T, name, role string, skew time.Duration) *testNode {
	t.Helper()
	port := freePort(t)
	l := &fakeLocal{shared: []byte("ssh: {port: 22}\n")}
	if role == config.RoleFrontend || name != "b1" {
		l.shared = []byte("own: " + name + "\n") // until the cluster's config comes
	}
	opts := Options{Dir: t.TempDir(), Name: name, Role: role, Address: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port),
		ListenAddr: fmt.Sprintf("127.0.0.1:%d", port), MaxClockOffset: 5 * time.Second, ReportInterval: 100 * time.Millisecond,
		StaleAfter: time.Second, ClockSkew: skew, Local: l, Log: slog.New(slog.NewTextHandler(t.Output(), nil))}
	n, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return &testNode{Node: n, local: l, opts: opts}
}

func (n *testNode) running() string {
	b, _ := n.local.Shared()
	return string(b)
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("%s: not within 20s", what)
}

func TestClusterReplicatesConfigAndRefusesBadJoins(t *testing.T) {
	b1 := newTestNode(t, "b1", config.RoleBackend, 0)
	if err := b1.Init("test"); err != nil {
		t.Fatal(err)
	}
	var nodes []*testNode
	for _, spec := range []struct{ name, role string }{{"b2", config.RoleBackend}, {"b3", config.RoleBackend}, {"f1", config.RoleFrontend}} {
		n := newTestNode(t, spec.name, spec.role, 0)
		tok, err := b1.Token(time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Join(b1.opts.Address.String(), tok); err != nil {
			t.Fatalf("%s: %v", spec.name, err)
		}
		nodes = append(nodes, n)
		// The token is spent.
		late := newTestNode(t, spec.name+"x", spec.role, 0)
		if err := late.Join(b1.opts.Address.String(), tok); err == nil || !strings.Contains(err.Error(), "token already used") {
			t.Fatalf("reused token: %v", err)
		}
	}
	for _, n := range nodes {
		waitUntil(t, n.opts.Name+" runs the cluster's config", func() bool { return n.running() == "ssh: {port: 22}\n" })
	}
	// A change on a follower backend reaches everyone.
	if _, err := nodes[0].Propose([]byte("ssh: {port: 2200}\n"), nil, "test", 0); err != nil {
		t.Fatal(err)
	}
	for _, n := range append(nodes, b1) {
		waitUntil(t, n.opts.Name+" runs version 2", func() bool { return n.running() == "ssh: {port: 2200}\n" })
	}
	// A frontend may not change the cluster.
	if _, err := nodes[2].Propose([]byte("ssh: {port: 1}\n"), nil, "test", 0); err == nil {
		t.Fatal("a frontend changed the config")
	}
	// Clock and token refusals.
	skewed := newTestNode(t, "skewed", config.RoleBackend, 10*time.Minute)
	tok, _ := b1.Token(time.Minute)
	if err := skewed.Join(b1.opts.Address.String(), tok); err == nil || !strings.Contains(err.Error(), "clock differs") {
		t.Fatalf("skewed clock: %v", err)
	}
	ok := newTestNode(t, "b4", config.RoleFrontend, 0)
	if err := ok.Join(b1.opts.Address.String(), tok); err != nil {
		t.Fatalf("the token a refused join did not spend: %v", err)
	}
	exp, _ := b1.Token(time.Millisecond)
	time.Sleep(10 * time.Millisecond) // wall time for the token to expire
	if err := newTestNode(t, "late", config.RoleFrontend, 0).Join(b1.opts.Address.String(), exp); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token: %v", err)
	}
	st := b1.Status()
	if len(st.Nodes) != 5 {
		t.Fatalf("status: %+v", st)
	}
	waitUntil(t, "every node reports", func() bool {
		st := b1.Status()
		for _, m := range st.Nodes {
			if !m.Reachable || len(m.Problems) > 0 {
				return false
			}
		}
		return true
	})
}
