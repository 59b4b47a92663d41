package cluster

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"gatehouse/config"

	"github.com/hashicorp/raft"
)

// cluster3 is three backends and a frontend, all running version 1.
func cluster3(t *testing.T) []*testNode {
	t.Helper()
	b1 := newTestNode(t, "b1", config.RoleBackend, 0)
	if err := b1.Init("test"); err != nil {
		t.Fatal(err)
	}
	nodes := []*testNode{b1}
	for _, s := range []struct{ name, role string }{{"b2", config.RoleBackend}, {"b3", config.RoleBackend}, {"f1", config.RoleFrontend}} {
		n := newTestNode(t, s.name, s.role, 0)
		tok, err := b1.Token(time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Join(b1.opts.Address.String(), tok); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	return nodes
}

func leaderOf(t *testing.T, nodes []*testNode) *testNode {
	t.Helper()
	var l *testNode
	waitUntil(t, "a leader", func() bool {
		for _, n := range nodes {
			if r, err := n.r(); err == nil && r.State() == raft.Leader {
				l = n
				return true
			}
		}
		return false
	})
	return l
}

func allRun(t *testing.T, nodes []*testNode, doc string) {
	t.Helper()
	for _, n := range nodes {
		waitUntil(t, n.opts.Name+" runs "+doc, func() bool { return n.running() == doc })
	}
}

func without(nodes []*testNode, x *testNode) []*testNode {
	var out []*testNode
	for _, n := range nodes {
		if n != x {
			out = append(out, n)
		}
	}
	return out
}

func TestClusterLeaderLossAndCatchUp(t *testing.T) {
	nodes := cluster3(t)
	allRun(t, nodes, "ssh: {port: 22}\n")
	old := leaderOf(t, nodes)
	old.Close()
	rest := without(nodes, old)
	l := leaderOf(t, rest)
	if l.opts.Role != config.RoleBackend {
		t.Fatalf("%s (a %s) leads", l.opts.Name, l.opts.Role)
	}
	if _, err := rest[0].Propose([]byte("ssh: {port: 2201}\n"), nil, "test", 0); err != nil && rest[0].opts.Role == config.RoleBackend {
		t.Fatal(err)
	}
	if _, err := l.Propose([]byte("ssh: {port: 2202}\n"), nil, "test", 0); err != nil {
		t.Fatal(err)
	}
	allRun(t, rest, "ssh: {port: 2202}\n")
	// The old leader comes back and catches up.
	back, err := Open(old.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	allRun(t, []*testNode{old}, "ssh: {port: 2202}\n")
}

func TestClusterRollsBackAnUnconfirmedApplyEverywhere(t *testing.T) {
	nodes := cluster3(t)
	allRun(t, nodes, "ssh: {port: 22}\n")
	if _, err := nodes[1].Propose([]byte("ssh: {port: 2222}\n"), nil, "test", 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		n.local.mu.Lock()
		pending := n.local.pending
		n.local.mu.Unlock()
		if n.running() == "ssh: {port: 2222}\n" && !pending {
			t.Fatalf("%s runs the unconfirmed config without its own rollback timer", n.opts.Name)
		}
	}
	// Another apply waits for the confirmation.
	if _, err := nodes[0].Propose([]byte("ssh: {port: 1}\n"), nil, "test", 0); err == nil || !strings.Contains(err.Error(), "waiting for confirmation") {
		t.Fatalf("second apply while one is pending: %v", err)
	}
	allRun(t, nodes, "ssh: {port: 22}\n") // rolled back
	st := nodes[0].Status()
	if st.Pending != nil || st.Config.Version != 3 || !strings.Contains(st.Config.Author, "rollback of version 2") {
		t.Fatalf("after the rollback: %+v", st)
	}
	// Confirmed in time, it stays.
	if _, err := nodes[2].Propose([]byte("ssh: {port: 2223}\n"), nil, "test", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := nodes[1].Confirm(); err != nil {
		t.Fatal(err)
	}
	allRun(t, nodes, "ssh: {port: 2223}\n")
	for _, n := range nodes {
		waitUntil(t, n.opts.Name+" confirmed", func() bool {
			n.local.mu.Lock()
			defer n.local.mu.Unlock()
			return !n.local.pending
		})
	}
}

func TestClusterRefusesStrangersAndRemovedNodes(t *testing.T) {
	nodes := cluster3(t)
	b1, f1 := nodes[0], nodes[3]
	// A certificate of another cluster.
	other := newTestNode(t, "x1", config.RoleBackend, 0)
	if err := other.Init("test"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.call(b1.opts.Address.String(), &Request{Op: "status"}, nil); err == nil {
		t.Fatal("a node of another cluster was answered")
	}
	// No certificate at all: only a join.
	conn, err := tls.Dial("tcp", b1.opts.Address.String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte{connRaft})
	buf := make([]byte, 1)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(buf); err == nil {
		t.Fatal("raft spoken to a peer without a certificate")
	}
	conn.Close()
	// A token for another cluster's CA is refused before anything is sent.
	tok, _ := other.Token(time.Minute)
	if err := newTestNode(t, "y", config.RoleFrontend, 0).Join(b1.opts.Address.String(), tok); err == nil || !strings.Contains(err.Error(), "does not match the token's CA") {
		t.Fatalf("join with another cluster's token: %v", err)
	}
	// A removed node's certificate is refused.
	if err := b1.RemoveNode("f1"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "b2 knows f1 is removed", func() bool {
		st, _ := nodes[1].fsm.view()
		_, ok := st.Members["f1"]
		return !ok
	})
	if _, err := f1.call(nodes[1].opts.Address.String(), &Request{Op: "status"}, nil); err == nil {
		t.Fatal("a removed node was answered")
	}
}

func TestClusterRecoverOnTheFrontendOfAPair(t *testing.T) {
	b1 := newTestNode(t, "b1", config.RoleBackend, 0)
	if err := b1.Init("test"); err != nil {
		t.Fatal(err)
	}
	f1 := newTestNode(t, "f1", config.RoleFrontend, 0)
	tok, _ := b1.Token(time.Minute)
	if err := f1.Join(b1.opts.Address.String(), tok); err != nil {
		t.Fatal(err)
	}
	allRun(t, []*testNode{f1}, "ssh: {port: 22}\n")
	b1.Close() // for good
	// The frontend keeps its config, and cannot change it.
	if _, err := f1.Propose([]byte("ssh: {port: 3}\n"), nil, "test", 0); err == nil {
		t.Fatal("a frontend changed the config without a leader")
	}
	if f1.running() != "ssh: {port: 22}\n" {
		t.Fatal("the frontend lost its config")
	}
	if err := f1.Recover(); err != nil {
		t.Fatal(err)
	}
	if _, err := f1.Propose([]byte("ssh: {port: 2224}\n"), nil, "test", 0); err != nil {
		t.Fatal(err)
	}
	allRun(t, []*testNode{f1}, "ssh: {port: 2224}\n")
}
