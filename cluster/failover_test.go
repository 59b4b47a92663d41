package cluster

import (
	"bytes"
	"crypto/tls"
	"io/fs"
	"net"
	"os"
	"path/filepath"
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

func TestClusterRemoveTheLeader(t *testing.T) {
	nodes := cluster3(t)
	l := leaderOf(t, nodes)
	if err := l.RemoveNode(l.opts.Name); err != nil {
		t.Fatal(err)
	}
	rest := without(nodes, l)
	nl := leaderOf(t, rest)
	st := nl.Status()
	for _, m := range st.Nodes {
		if m.Name == l.opts.Name {
			t.Fatalf("%s still a member: %+v", l.opts.Name, st)
		}
	}
	if _, err := nl.Propose([]byte("ssh: {port: 2300}\n"), nil, "test", 0); err != nil {
		t.Fatal(err)
	}
	allRun(t, rest, "ssh: {port: 2300}\n")
}

// What the cluster keeps on disk is sealed with the cluster key: neither
// the Raft log nor a snapshot shows the config or its secret files.
func TestClusterStateOnDiskIsSealed(t *testing.T) {
	b1 := newTestNode(t, "b1", config.RoleBackend, 0)
	if err := b1.Init("test"); err != nil {
		t.Fatal(err)
	}
	const marker = "Zx9-secret-marker"
	if _, err := b1.Propose([]byte("smtp: {users: [{name: "+marker+"}]}\n"), map[string][]byte{"/data/pw": []byte(marker + "-file")}, "test", 0); err != nil {
		t.Fatal(err)
	}
	r, _ := b1.r()
	if err := r.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	found := 0
	filepath.WalkDir(b1.opts.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Base(p) == fileKeyring {
			return err
		}
		b, _ := os.ReadFile(p)
		found++
		if bytes.Contains(b, []byte(marker)) {
			t.Errorf("%s holds the config in clear", p)
		}
		return nil
	})
	if found < 3 {
		t.Fatalf("only %d files looked at", found)
	}
}

// A leader whose member has gone stops at once, not after the dial
// timeout of its replication to that member.
func TestClusterLeaderStopsPromptlyWithAMemberGone(t *testing.T) {
	b1 := newTestNode(t, "b1", config.RoleBackend, 0)
	if err := b1.Init("test"); err != nil {
		t.Fatal(err)
	}
	// A member that takes connections and never answers: a dial to it
	// hangs in the handshake until its timeout.
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	dialled := make(chan struct{}, 1)
	go func() {
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			select {
			case dialled <- struct{}{}:
			default:
			}
		}
	}()
	f1 := newTestNode(t, "f1", config.RoleFrontend, 0)
	tok, _ := b1.Token(time.Minute)
	if err := f1.Join(b1.opts.Address.String(), tok); err != nil {
		t.Fatal(err)
	}
	f1.Close()
	r, _ := b1.r()
	r.RemoveServer("f1", 0, 0)
	r.AddNonvoter("f1", raft.ServerAddress(mute.Addr().String()), 0, 0)
	<-dialled // a replicator is in the handshake
	start := time.Now()
	b1.Close()
	// The handshake's own timeout is 10s: well under it means the stop
	// cut the dial short.
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the leader took %v to stop", d)
	}
}
