//go:build e2e

package test

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gatehouse/control"
	"gatehouse/status"
	"gatehouse/test/netnstest"
)

// clusterWorld is a switch and the cluster's nodes, each in its own
// network namespace:
//
//	switch  10.66.0.1 on the bridge br0; chrony serves time there
//	b1..    10.66.0.11, .12, ...: backends (`gatehouse run`, host mode)
//	f1..    10.66.0.21, .22, ...: frontends
//
// every node joined to the bridge by a veth pair (eth0 in the node).
// Nothing is created in the host's namespace.
type clusterWorld struct {
	*netWorld // dir, the switch namespace (as router), the processes ended with the test
	nodes     []*clusterNode
}

// clusterNode is one appliance of the cluster.
type clusterNode struct {
	name, role string
	ns, addr   string
	dir        string   // its config, state and logs
	extra      []string // `gatehouse run` arguments beyond --config and --state
	cmd        *exec.Cmd
	runs       int // how often it was started: one log per run
}

func (n *clusterNode) state() string { return filepath.Join(n.dir, "state") }

// local is the node's own part of its config (hostname and cluster:);
// the shared part follows it. Short report intervals keep the test short.
func (n *clusterNode) local() string {
	return fmt.Sprintf(`hostname: %s
cluster:
  role: %s
  address: %s
  peers: [10.66.0.0/24]
  report_interval: 1s
  stale_after: 3s
`, n.name, n.role, n.addr)
}

// clusterShared is the replicated config: time from the switch, and a
// relay for example.test to a sink on the node's own loopback, so mail
// through a node never crosses the cluster's network. smtpHost names the
// config version in every Received header the relay writes.
func clusterShared(smtpHost string) string {
	return `ntp:
  servers: [10.66.0.1]
smtp:
  hostname: ` + smtpHost + `
  domains:
    - {name: example.test, next_hop: "[127.0.0.1]:2525", tls: none}
`
}

// sharedHash is what the cluster calls a shared config: the SHA-256 of
// its text.
func sharedHash(shared string) string {
	sum := sha256.Sum256([]byte(shared))
	return hex.EncodeToString(sum[:])
}

func newClusterWorld(t *testing.T) *clusterWorld {
	t.Helper()
	w := &clusterWorld{netWorld: &netWorld{dir: t.TempDir(), router: fmt.Sprintf("ghcs%d", rand.N(1<<30))}}
	// The relay runs as its own user and must reach the state directories.
	if err := os.Chmod(filepath.Dir(w.dir), 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "netns", "add", w.router)
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range w.nodes {
				for i := 1; i <= n.runs; i++ {
					t.Logf("%s's gatehouse log (run %d):\n%s", n.name, i, tail(w.log(fmt.Sprintf("%s.%d.log", n.name, i)), 400))
				}
			}
		}
		for _, p := range w.procs {
			p.Process.Kill()
			p.Wait()
		}
		for _, n := range w.nodes {
			exec.Command("ip", "netns", "del", n.ns).Run()
		}
		exec.Command("ip", "netns", "del", w.router).Run()
	})
	ipIn(t, w.router, "link", "set", "lo", "up")
	ipIn(t, w.router, "link", "add", "br0", "type", "bridge")
	ipIn(t, w.router, "addr", "add", "10.66.0.1/24", "dev", "br0")
	ipIn(t, w.router, "link", "set", "br0", "up")
	// chrony serves time from its local clock, as in netWorld; -x: it
	// never touches the host's clock.
	conf := filepath.Join(w.dir, "chrony.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("local stratum 8\nallow 10.66.0.0/24\nbindaddress 10.66.0.1\ncmdport 0\npidfile %s/chronyd.pid\ndriftfile %s/drift\n", w.dir, w.dir)), 0o644)
	w.start(t, w.router, "chrony.log", "chronyd", "-x", "-d", "-f", conf)
	waitNTP(t, w.router, "10.66.0.1")
	return w
}

// addNode makes a node's namespace, plugs it into the switch and writes
// its config (its own part, then shared); it does not start it.
func (w *clusterWorld) addNode(t *testing.T, name, role, addr, shared string, extra ...string) *clusterNode {
	t.Helper()
	n := &clusterNode{name: name, role: role, ns: w.router + "-" + name, addr: addr, dir: filepath.Join(w.dir, name), extra: extra}
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "netns", "add", n.ns)
	w.nodes = append(w.nodes, n)
	ipIn(t, n.ns, "link", "set", "lo", "up")
	run(t, "ip", "link", "add", "v"+name, "netns", w.router, "type", "veth", "peer", "name", "eth0", "netns", n.ns)
	ipIn(t, w.router, "link", "set", "v"+name, "master", "br0")
	ipIn(t, w.router, "link", "set", "v"+name, "up")
	ipIn(t, n.ns, "addr", "add", addr+"/24", "dev", "eth0")
	ipIn(t, n.ns, "link", "set", "eth0", "up")
	if err := os.WriteFile(filepath.Join(n.dir, "gatehouse.yaml"), []byte(n.local()+shared), 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

func (w *clusterWorld) node(name string) *clusterNode {
	for _, n := range w.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// startNode runs `gatehouse run` in the node's namespace, on the config
// and state it had before; waitNodesReady waits for it.
func (w *clusterWorld) startNode(t *testing.T, n *clusterNode) {
	t.Helper()
	n.runs++
	args := append([]string{gatehouseBinary(t), "run", "--config", filepath.Join(n.dir, "gatehouse.yaml"), "--state", n.state(),
		"--service-arg=--ntp-min-poll=2s"}, n.extra...)
	n.cmd = w.netWorld.start(t, n.ns, fmt.Sprintf("%s.%d.log", n.name, n.runs), args...)
}

func (n *clusterNode) status() (*control.Status, error) {
	resp, err := control.Call(filepath.Join(n.state(), "control.sock"), control.Request{Verb: "status"})
	if err != nil {
		return nil, err
	}
	return resp.Status, nil
}

// waitNodesReady waits until each node's supervisor says it is ready.
func waitNodesReady(t *testing.T, nodes ...*clusterNode) {
	t.Helper()
	for _, n := range nodes {
		poll(t, n.name+" ready", 60*time.Second, func() (bool, string) {
			st, err := n.status()
			if err != nil {
				return false, err.Error()
			}
			return st.Ready, fmt.Sprintf("%+v", st)
		})
	}
}

// kill ends the node with SIGKILL (its services die with it: they have
// the supervisor as parent-death signal) and waits until its cluster port
// is closed.
func (w *clusterWorld) kill(t *testing.T, n *clusterNode) {
	t.Helper()
	n.cmd.Process.Kill()
	n.cmd.Wait()
	poll(t, n.name+"'s cluster port closed", 20*time.Second, func() (bool, string) {
		r := netnstest.Reach(t, n.ns, n.addr+":8446")
		return r == "refused", r
	})
}

// restart starts a killed node again on the same state.
func (w *clusterWorld) restart(t *testing.T, n *clusterNode) {
	t.Helper()
	w.startNode(t, n)
	waitNodesReady(t, n)
}

// cli runs `gatehouse ARGS --state S` for the node, in its namespace.
func (n *clusterNode) cli(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.ns, gatehouseBinary(t)}, append(args, "--state", n.state())...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("%s: gatehouse %s: %v", n.name, strings.Join(args, " "), err)
	}
	return o.String(), e.String(), code
}

func (n *clusterNode) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := n.cli(t, args...)
	if code != 0 {
		t.Fatalf("%s: gatehouse %s: exit %d\nstdout: %s\nstderr: %s", n.name, strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// clusterStatus is `gatehouse cluster status --format json` on the node.
func (n *clusterNode) clusterStatus(t *testing.T) (status.Cluster, error) {
	t.Helper()
	var c status.Cluster
	out, errOut, code := n.cli(t, "cluster", "status", "--format", "json")
	if code != 0 {
		return c, fmt.Errorf("%s: cluster status: exit %d: %s", n.name, code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		return c, fmt.Errorf("%s: cluster status: %v: %s", n.name, err, out)
	}
	return c, nil
}

func (n *clusterNode) mustClusterStatus(t *testing.T) status.Cluster {
	t.Helper()
	c, err := n.clusterStatus(t)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// detail is the cluster service's line in the node's `gatehouse status`.
func (n *clusterNode) detail(t *testing.T) (status.ClusterNode, error) {
	t.Helper()
	st, err := n.status()
	if err != nil {
		return status.ClusterNode{}, err
	}
	d, ok := detailOf[status.ClusterNode](t, st, "cluster")
	if !ok {
		return d, fmt.Errorf("%s: no cluster detail in the status", n.name)
	}
	return d, nil
}

func member(c status.Cluster, name string) (status.ClusterMember, bool) {
	for _, m := range c.Nodes {
		if m.Name == name {
			return m, true
		}
	}
	return status.ClusterMember{}, false
}

// poll checks ok every 200 ms until it holds; limit bounds how long the
// protocol may take, it is not a timing assertion. ok says what it saw,
// for the failure.
func poll(t *testing.T, what string, limit time.Duration, ok func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		done, last := ok()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last: %s", what, limit, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// form makes the first node the cluster's first backend and joins the
// others with a token each; it returns the tokens used, by node.
func (w *clusterWorld) form(t *testing.T, nodes ...*clusterNode) map[string]string {
	t.Helper()
	first := nodes[0]
	first.mustCLI(t, "cluster", "init")
	used := map[string]string{}
	for _, n := range nodes[1:] {
		tok := strings.TrimSpace(first.mustCLI(t, "cluster", "token"))
		n.mustCLI(t, "cluster", "join", first.addr, tok)
		used[n.name] = tok
	}
	return used
}

// apply writes the node's own part with shared as a file and runs `config
// apply FILE --confirm-within within` on it.
func (n *clusterNode) apply(t *testing.T, shared, within string) {
	t.Helper()
	f := filepath.Join(n.dir, fmt.Sprintf("apply-%d.yaml", time.Now().UnixNano()))
	if err := os.WriteFile(f, []byte(n.local()+shared), 0o644); err != nil {
		t.Fatal(err)
	}
	n.mustCLI(t, "config", "apply", f, "--confirm-within", within)
}

// waitHash waits until every one of nodes runs the shared config with hash
// want: as each says in its status, and as each one's `cluster status`
// shows (a backend lists every node, a frontend itself).
func waitHash(t *testing.T, nodes []*clusterNode, want string, limit time.Duration) {
	t.Helper()
	var names []string
	for _, n := range nodes {
		names = append(names, n.name)
	}
	what := fmt.Sprintf("config %.12s on %v", want, names)
	poll(t, what+" (status)", limit, func() (bool, string) {
		for _, n := range nodes {
			d, err := n.detail(t)
			if err != nil {
				return false, err.Error()
			}
			if d.Hash != want || d.AppliedHash != want {
				return false, fmt.Sprintf("%s: %+v", n.name, d)
			}
		}
		return true, ""
	})
	poll(t, what+" (cluster status)", limit, func() (bool, string) {
		for _, n := range nodes {
			c, err := n.clusterStatus(t)
			if err != nil {
				return false, err.Error()
			}
			if c.Config.Hash != want {
				return false, fmt.Sprintf("%s: config %+v", n.name, c.Config)
			}
			for _, o := range nodes {
				if n.role == "frontend" && o != n {
					continue
				}
				m, ok := member(c, o.name)
				if !ok && n.role == "frontend" {
					continue
				}
				if !ok || m.AppliedHash != want {
					return false, fmt.Sprintf("%s's view of %s: %+v (listed: %v)", n.name, o.name, m, ok)
				}
			}
		}
		return true, ""
	})
}

// runsConfig checks the node's running config (the copy PID 1 validated,
// which the services read) holds s.
func runsConfig(t *testing.T, n *clusterNode, s string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.state(), "config.yaml"))
	if err != nil || !strings.Contains(string(b), s) {
		t.Errorf("%s's running config lacks %q (%v):\n%s", n.name, s, err, b)
	}
}

// relay sends a message to example.test through the node's own port 25
// from inside its namespace and returns what reached the sink.
func relayThrough(t *testing.T, n *clusterNode, sink, id string) string {
	t.Helper()
	mustSwaks(t, n.ns, "--server", "127.0.0.1:25", "--from", "someone@partner.test", "--to", "alice@example.test",
		"--header", "Message-ID: <"+id+"@test>")
	return waitDump(t, sink, 30*time.Second, "<"+id+"@test>")
}

// byHost is how the relay names itself in its Received header.
func byHost(smtpHost string) string { return "by " + smtpHost + " (Gatehouse)" }

// Three backends and two frontends: a config applied on any backend
// reaches every node; an apply with commit-confirm comes back by itself
// unless confirmed; a partitioned frontend keeps relaying with its last
// config and catches up when healed; the leader killed, another takes
// over, and the old one catches up when back. One world for all: each
// part starts from the cluster the one before left.
func TestClusterFiveNodes(t *testing.T) {
	w := newClusterWorld(t)
	v1 := clusterShared("v1.example.test")
	b1 := w.addNode(t, "b1", "backend", "10.66.0.11", v1)
	b2 := w.addNode(t, "b2", "backend", "10.66.0.12", v1)
	b3 := w.addNode(t, "b3", "backend", "10.66.0.13", v1)
	f1 := w.addNode(t, "f1", "frontend", "10.66.0.21", v1)
	f2 := w.addNode(t, "f2", "frontend", "10.66.0.22", v1)
	all := []*clusterNode{b1, b2, b3, f1, f2}
	for _, n := range all {
		w.startNode(t, n)
	}
	waitNodesReady(t, all...)
	w.form(t, all...)
	waitHash(t, all, sharedHash(v1), 60*time.Second)

	// Every part leaves the cluster on a known config: current, whose
	// relay names itself currentHost.
	current, currentHost := v1, "v1.example.test"
	t.Run("apply on a backend reaches every node", func(t *testing.T) {
		v2 := clusterShared("v2.example.test")
		b2.apply(t, v2, "0s")
		waitHash(t, all, sharedHash(v2), 30*time.Second)
		current, currentHost = v2, "v2.example.test"
		var version uint64
		for _, n := range all {
			runsConfig(t, n, "hostname: v2.example.test")
			d, _ := n.detail(t)
			if version == 0 {
				version = d.AppliedVersion
			}
			if d.AppliedVersion != version || d.Version != version {
				t.Errorf("%s runs version %d of %d, %s runs %d", n.name, d.AppliedVersion, d.Version, all[0].name, version)
			}
		}
		c := b1.mustClusterStatus(t)
		if c.Config.Version != version || c.Leader == "" || len(c.Nodes) != 5 {
			t.Errorf("cluster status on b1: %+v", c)
		}
		for _, m := range c.Nodes {
			if !m.Reachable || len(m.Problems) != 0 || m.Voter != (m.Role == "backend") {
				t.Errorf("b1's view of %s: %+v", m.Name, m)
			}
		}
	})

	t.Run("commit-confirm rolls back unless confirmed", func(t *testing.T) {
		prev := sharedHash(current)
		const within = 5 * time.Second
		vc := clusterShared("unconfirmed.example.test")
		b3.apply(t, vc, within.String())
		want := sharedHash(vc)
		if c := b1.mustClusterStatus(t); c.Pending == nil || c.Config.Hash != want {
			t.Errorf("no pending apply in cluster status: config %+v, pending %+v", c.Config, c.Pending)
		}
		// Every node runs it first...
		seen := map[string]bool{}
		poll(t, "every node runs the unconfirmed config", 30*time.Second, func() (bool, string) {
			for _, n := range all {
				if d, err := n.detail(t); err == nil && d.AppliedHash == want {
					seen[n.name] = true
				}
			}
			return len(seen) == len(all), fmt.Sprintf("seen on %v", seen)
		})
		// ...then, unconfirmed, every node runs the previous one again.
		waitHash(t, all, prev, 30*time.Second)
		if c := b1.mustClusterStatus(t); c.Pending != nil {
			t.Errorf("still pending after the rollback: %+v", c.Pending)
		}

		// Confirmed (on another backend than applied), it stays past its
		// deadline.
		vk := clusterShared("confirmed.example.test")
		applied := time.Now()
		b3.apply(t, vk, within.String())
		b2.mustCLI(t, "config", "confirm")
		waitHash(t, all, sharedHash(vk), 30*time.Second)
		current, currentHost = vk, "confirmed.example.test"
		time.Sleep(time.Until(applied.Add(within + 3*time.Second))) // wall time: past the deadline
		for _, n := range all {
			if d, err := n.detail(t); err != nil || d.AppliedHash != sharedHash(vk) {
				t.Errorf("%s after the deadline of a confirmed apply: %+v %v", n.name, d, err)
			}
		}
		if c := b1.mustClusterStatus(t); c.Pending != nil || c.Config.Hash != sharedHash(vk) {
			t.Errorf("after confirm: config %+v, pending %+v", c.Config, c.Pending)
		}
	})

	t.Run("partitioned frontend relays and catches up", func(t *testing.T) {
		sink := (&mailWorld{netWorld: w.netWorld}).sink(t, f1.ns, "127.0.0.1:2525")
		waitGreeting(t, f1.ns, "127.0.0.1", "25")
		before := current
		oldHost := currentHost
		if d := relayThrough(t, f1, sink, "before-partition"); !strings.Contains(d, byHost(oldHost)) {
			t.Fatalf("relayed before the partition, not %q:\n%s", byHost(oldHost), d)
		}

		// Everything on f1's link dropped, in f1's namespace only.
		rules := filepath.Join(w.dir, "partition.nft")
		os.WriteFile(rules, []byte(`table inet ghpartition {
	chain in { type filter hook input priority -300; policy accept; iifname "eth0" drop; }
	chain out { type filter hook output priority -300; policy accept; oifname "eth0" drop; }
}
`), 0o644)
		run(t, "ip", "netns", "exec", f1.ns, "nft", "-f", rules)
		healed := false
		heal := func() {
			if !healed {
				healed = true
				run(t, "ip", "netns", "exec", f1.ns, "nft", "delete", "table", "inet", "ghpartition")
			}
		}
		defer heal()
		poll(t, "f1 unreachable in b2's cluster status", 30*time.Second, func() (bool, string) {
			c, err := b2.clusterStatus(t)
			if err != nil {
				return false, err.Error()
			}
			m, _ := member(c, "f1")
			return !m.Reachable && slices.Contains(m.Problems, "unreachable"), fmt.Sprintf("%+v", m)
		})

		// A new config while f1 cannot hear of it.
		newHost := "partitioned.example.test"
		vp := clusterShared(newHost)
		b1.apply(t, vp, "0s")
		others := []*clusterNode{b1, b2, b3, f2}
		waitHash(t, others, sharedHash(vp), 30*time.Second)
		if d, err := f1.detail(t); err != nil || d.AppliedHash != sharedHash(before) {
			t.Errorf("partitioned f1 runs %+v (%v), want its last config %.12s", d, err, sharedHash(before))
		}
		if d := relayThrough(t, f1, sink, "during-partition"); !strings.Contains(d, byHost(oldHost)) {
			t.Errorf("relayed during the partition, not with its last config (%q):\n%s", byHost(oldHost), d)
		}

		heal()
		waitHash(t, all, sharedHash(vp), 60*time.Second)
		current, currentHost = vp, newHost
		poll(t, "f1 reachable again in b2's cluster status", 30*time.Second, func() (bool, string) {
			c, err := b2.clusterStatus(t)
			if err != nil {
				return false, err.Error()
			}
			m, _ := member(c, "f1")
			return m.Reachable && len(m.Problems) == 0, fmt.Sprintf("%+v", m)
		})
		// The relay converges to the new config shortly after the node
		// runs it: a new message each time until one shows the new name.
		i := 0
		poll(t, "f1 relays with the new config", 30*time.Second, func() (bool, string) {
			i++
			d := relayThrough(t, f1, sink, fmt.Sprintf("after-partition-%d", i))
			return strings.Contains(d, byHost(newHost)), d
		})
	})

	t.Run("leader killed: another leads, the old one catches up", func(t *testing.T) {
		c := b1.mustClusterStatus(t)
		old := w.node(c.Leader)
		if old == nil || old.role != "backend" {
			t.Fatalf("leader %q in %+v", c.Leader, c)
		}
		w.kill(t, old)
		var rest, backends []*clusterNode
		for _, n := range all {
			if n != old {
				rest = append(rest, n)
				if n.role == "backend" {
					backends = append(backends, n)
				}
			}
		}
		newLeader := ""
		poll(t, "a new leader", 30*time.Second, func() (bool, string) {
			c, err := backends[0].clusterStatus(t)
			if err != nil {
				return false, err.Error()
			}
			newLeader = c.Leader
			return c.Leader != "" && c.Leader != old.name && c.RaftState != "", fmt.Sprintf("%+v", c)
		})
		// Applied on the backend that does not lead: it goes through the
		// new leader.
		on := backends[0]
		if on.name == newLeader {
			on = backends[1]
		}
		v4 := clusterShared("failover.example.test")
		on.apply(t, v4, "0s")
		waitHash(t, rest, sharedHash(v4), 30*time.Second)
		current, currentHost = v4, "failover.example.test"
		poll(t, old.name+" unreachable in "+on.name+"'s cluster status", 30*time.Second, func() (bool, string) {
			c, err := on.clusterStatus(t)
			if err != nil {
				return false, err.Error()
			}
			m, _ := member(c, old.name)
			return !m.Reachable && slices.Contains(m.Problems, "unreachable"), fmt.Sprintf("%+v", m)
		})

		w.restart(t, old)
		waitHash(t, all, sharedHash(v4), 60*time.Second)
		runsConfig(t, old, "hostname: failover.example.test")
	})
}

// One backend and one frontend, and a third node that tries to join: the
// joins the cluster must refuse, a stranger's certificate on the cluster
// port; then the backend is lost for good: the frontend goes on relaying,
// and once recovered takes configs itself.
func TestClusterRefusalsAndRecovery(t *testing.T) {
	w := newClusterWorld(t)
	v1 := clusterShared("v1.example.test")
	b1 := w.addNode(t, "b1", "backend", "10.66.0.11", v1)
	f1 := w.addNode(t, "f1", "frontend", "10.66.0.21", v1)
	x := w.addNode(t, "x1", "frontend", "10.66.0.31", v1)
	for _, n := range []*clusterNode{b1, f1, x} {
		w.startNode(t, n)
	}
	waitNodesReady(t, b1, f1, x)
	used := w.form(t, b1, f1)
	waitHash(t, []*clusterNode{b1, f1}, sharedHash(v1), 60*time.Second)

	t.Run("refused joins", func(t *testing.T) {
		join := func(tok string) (string, int) {
			_, errOut, code := x.cli(t, "cluster", "join", b1.addr, tok)
			t.Logf("join refused: exit %d: %s", code, strings.TrimSpace(errOut))
			return errOut, code
		}
		if errOut, code := join(used["f1"]); code == 0 || !strings.Contains(errOut, "token already used") {
			t.Errorf("join with a used token: exit %d: %s", code, errOut)
		}
		tok := strings.TrimSpace(b1.mustCLI(t, "cluster", "token", "--ttl", "1s"))
		time.Sleep(2 * time.Second) // wall time: past the token's life
		if errOut, code := join(tok); code == 0 || !strings.Contains(errOut, "token expired") {
			t.Errorf("join with an expired token: exit %d: %s", code, errOut)
		}
		if d, err := x.detail(t); err != nil || d.Joined {
			t.Errorf("x1 after refused joins: %+v %v", d, err)
		}

		// Its clock 10 minutes ahead (as the cluster service shows it).
		w.kill(t, x)
		x.extra = []string{"--service-arg=--cluster-clock-skew=10m"}
		w.restart(t, x)
		tok = strings.TrimSpace(b1.mustCLI(t, "cluster", "token"))
		if errOut, code := join(tok); code == 0 || !strings.Contains(errOut, "clock") {
			t.Errorf("join with the clock 10m off: exit %d: %s", code, errOut)
		}
		c := b1.mustClusterStatus(t)
		if _, ok := member(c, "x1"); ok || len(c.Nodes) != 2 {
			t.Errorf("refused node listed: %+v", c.Nodes)
		}
		w.kill(t, x)
	})

	t.Run("stranger's certificate refused on the cluster port", func(t *testing.T) {
		otherCA := filepath.Join(w.dir, "other-ca")
		os.MkdirAll(otherCA, 0o755)
		_, _, _, issue := writeCA(t, otherCA)
		f := issue("f1") // a member's name, another CA
		cert, err := tls.LoadX509KeyPair(f, f)
		if err != nil {
			t.Fatal(err)
		}
		// A call on the cluster port: a byte saying so, a JSON request,
		// a JSON answer. Without a certificate the port answers it (a
		// node joining has none) and says a member's is required: the
		// probe speaks the protocol.
		probe := func(certs []tls.Certificate) (string, error) {
			var out []byte
			var err error
			netnstest.In(t, w.router, func() {
				var c net.Conn
				if c, err = net.DialTimeout("tcp", b1.addr+":8446", 5*time.Second); err != nil {
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				tc := tls.Client(c, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, Certificates: certs})
				if err = tc.Handshake(); err != nil {
					return
				}
				if _, err = tc.Write([]byte("C{\"op\":\"status\"}\n")); err != nil {
					return
				}
				out, err = io.ReadAll(tc)
			})
			return string(out), err
		}
		if out, err := probe(nil); !strings.Contains(out, "certificate") {
			t.Fatalf("probe without a certificate: %q, %v", out, err)
		}
		out, err := probe([]tls.Certificate{cert})
		if err == nil || out != "" {
			t.Errorf("a certificate from another CA was served: %q, %v", out, err)
		}
		t.Logf("with another CA's certificate: %v", err)
		poll(t, "b1 logs the refused connection", 10*time.Second, func() (bool, string) {
			return strings.Contains(w.log("b1.1.log"), "cluster connection refused"), ""
		})
	})

	t.Run("backend lost: the frontend relays, recovers and takes configs", func(t *testing.T) {
		sink := (&mailWorld{netWorld: w.netWorld}).sink(t, f1.ns, "127.0.0.1:2525")
		waitGreeting(t, f1.ns, "127.0.0.1", "25")
		relayThrough(t, f1, sink, "before-loss")
		w.kill(t, b1)
		if d := relayThrough(t, f1, sink, "after-loss"); !strings.Contains(d, byHost("v1.example.test")) {
			t.Errorf("relayed without its backend, not with its config:\n%s", d)
		}
		// A frontend takes no config (before the recovery at least).
		f := filepath.Join(f1.dir, "refused.yaml")
		os.WriteFile(f, []byte(f1.local()+clusterShared("refused.example.test")), 0o644)
		if out, errOut, code := f1.cli(t, "config", "apply", f, "--confirm-within", "0s"); code == 0 || !strings.Contains(out+errOut, "frontend") {
			t.Errorf("config apply on a frontend: exit %d: %s%s", code, out, errOut)
		}

		f1.mustCLI(t, "cluster", "recover")
		vr := clusterShared("recovered.example.test")
		f1.apply(t, vr, "0s")
		waitHash(t, []*clusterNode{f1}, sharedHash(vr), 30*time.Second)
		c := f1.mustClusterStatus(t)
		if c.Leader != "f1" || c.Config.Hash != sharedHash(vr) {
			t.Errorf("f1's cluster status after the recovery: %+v", c)
		}
		i := 0
		poll(t, "f1 relays with the config it took", 30*time.Second, func() (bool, string) {
			i++
			d := relayThrough(t, f1, sink, fmt.Sprintf("recovered-%d", i))
			return strings.Contains(d, byHost("recovered.example.test")), d
		})
	})
}
