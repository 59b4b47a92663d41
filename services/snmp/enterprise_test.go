package snmp

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/config"
	"gatehouse/control"
	"gatehouse/snmp"
	"gatehouse/sockrpc"
	"gatehouse/status"
)

// The firewall group, from the firewall service's detail: the drops as
// Counter64 objects 6 to 9, next to the objects 1 to 5 as before.
func TestEnterpriseFirewallDrops(t *testing.T) {
	fw := status.Firewall{Backend: "nftables", Ruleset: "config", In: []string{"a", "b"}, Applies: 3,
		Drops: status.FirewallDrops{In: status.DropCount{Packets: 7, Bytes: 420}, Out: status.DropCount{Packets: 1 << 33, Bytes: 5}}}
	d, err := json.Marshal(fw)
	if err != nil {
		t.Fatal(err)
	}
	st := &control.Status{Mode: "pid1", Services: []status.State{{Name: "firewall", Phase: status.Running, Detail: d}}}
	got := map[string]snmp.Value{}
	for _, e := range enterprise(nil, st, time.Now()) {
		got[e.OID.String()] = e.Value
	}
	fwOID := oidGhFirewall.String()
	for _, w := range []struct {
		sub string
		v   snmp.Value
	}{
		{"1.0", snmp.Integer(1)},
		{"2.0", snmp.String("nftables")},
		{"3.0", snmp.Gauge32(2)},
		{"4.0", snmp.Counter32(3)},
		{"5.0", snmp.String("")},
		{"6.0", snmp.Counter64(7)},
		{"7.0", snmp.Counter64(420)},
		{"8.0", snmp.Counter64(1 << 33)},
		{"9.0", snmp.Counter64(5)},
	} {
		o := fwOID + "." + w.sub
		v, ok := got[o]
		if !ok {
			t.Errorf("%s missing", o)
			continue
		}
		if v.Type != w.v.Type || v.Int != w.v.Int || v.Uint != w.v.Uint || string(v.Bytes) != string(w.v.Bytes) {
			t.Errorf("%s = %+v, want %+v", o, v, w.v)
		}
	}
	// A firewall detail of before the drops (an older service): zeros.
	st.Services[0].Detail = json.RawMessage(`{"backend":"iptables","ruleset":"config"}`)
	for _, e := range enterprise(nil, st, time.Now()) {
		if e.OID.String() == fwOID+".6.0" && (e.Value.Type != snmp.Counter64(0).Type || e.Value.Uint != 0) {
			t.Errorf("drops in without them in the detail: %+v", e.Value)
		}
	}
}

// leaderView is a three-node cluster as its leader b1 sees it: b2's
// config lags, f1 never reported.
func leaderView() *status.Cluster {
	return &status.Cluster{Node: "b1", Role: "backend", RaftState: "Leader", Leader: "b1", Term: 3, From: "b1",
		Config: status.ClusterVersion{Version: 4, Hash: "h4"},
		Nodes: []status.ClusterMember{
			{Name: "b1", Role: "backend", Address: "10.88.0.11:8446", Voter: true, Reachable: true, AgeS: 0.4, AppliedVersion: 4, ClockOffsetMS: 0, Problems: []string{}},
			{Name: "b2", Role: "backend", Address: "10.88.0.12:8446", Voter: true, Reachable: true, AgeS: 1.25, AppliedVersion: 3,
				ClockOffsetMS: -12.6, Problems: []string{"config lags", "clock off"}},
			{Name: "f1", Role: "frontend", Address: "10.88.0.21:8446", AgeS: -1, Problems: []string{"unreachable"}},
		}}
}

type want struct {
	sub string
	v   snmp.Value
}

func checkValues(t *testing.T, entries []snmp.Entry, base snmp.OID, wants []want) {
	t.Helper()
	got := map[string]snmp.Value{}
	for _, e := range entries {
		got[e.OID.String()] = e.Value
	}
	for _, w := range wants {
		o := base.String() + "." + w.sub
		v, ok := got[o]
		if !ok {
			t.Errorf("%s missing", o)
			continue
		}
		if v.Type != w.v.Type || v.Int != w.v.Int || v.Uint != w.v.Uint || string(v.Bytes) != string(w.v.Bytes) {
			t.Errorf("%s = %+v, want %+v", o, v, w.v)
		}
	}
}

// The cluster group and ghClusterNodeTable, from the cluster status.
func TestEnterpriseCluster(t *testing.T) {
	e := clusterGroup(nil, leaderView())
	checkValues(t, e, oidGhCluster, []want{
		{"1.0", snmp.String("b1")},
		{"2.0", snmp.Integer(1)},
		{"3.0", snmp.String("Leader")},
		{"4.0", snmp.String("b1")},
		{"5.0", snmp.Gauge32(4)},
		{"6.0", snmp.Gauge32(3)},
		{"7.0", snmp.Gauge32(2)},
		{"8.0", snmp.String("")},
	})
	checkValues(t, e, oidGhClusEntry, []want{
		{"2.1", snmp.String("b1")}, {"2.2", snmp.String("b2")}, {"2.3", snmp.String("f1")},
		{"3.1", snmp.Integer(1)}, {"3.3", snmp.Integer(2)},
		{"4.2", snmp.String("10.88.0.12:8446")},
		{"5.1", snmp.Integer(1)}, {"5.3", snmp.Integer(2)},
		{"6.1", snmp.Integer(400)}, {"6.2", snmp.Integer(1250)}, {"6.3", snmp.Integer(-1)},
		{"7.1", snmp.Gauge32(4)}, {"7.2", snmp.Gauge32(3)}, {"7.3", snmp.Gauge32(0)},
		{"8.2", snmp.Integer(-13)},
		{"9.1", snmp.String("")}, {"9.2", snmp.String("config lags, clock off")}, {"9.3", snmp.String("unreachable")},
	})
	if n := len(e); n != 8+3*8 {
		t.Errorf("%d objects, want 8 scalars and 3 rows of 8 columns", n)
	}

	// A frontend: itself, and the note says why.
	fe := leaderView()
	fe.Node, fe.Role, fe.RaftState, fe.From, fe.Nodes = "f1", "frontend", "Follower", "f1", fe.Nodes[2:]
	fe.Nodes[0].AgeS, fe.Nodes[0].Reachable, fe.Nodes[0].Problems = 0.1, true, []string{}
	fe.Note = "a frontend sees only itself; " + strings.Repeat("x", 300)
	e = clusterGroup(nil, fe)
	checkValues(t, e, oidGhCluster, []want{{"1.0", snmp.String("f1")}, {"2.0", snmp.Integer(2)}, {"6.0", snmp.Gauge32(1)}, {"7.0", snmp.Gauge32(0)},
		{"8.0", snmp.String(fe.Note[:255])}})
	checkValues(t, e, oidGhClusEntry, []want{{"2.1", snmp.String("f1")}, {"5.1", snmp.Integer(1)}, {"6.1", snmp.Integer(100)}})

	// Not joined yet: the scalars, no rows, no leader.
	e = clusterGroup(nil, &status.Cluster{Node: "b1", Role: "backend", RaftState: "not joined", Note: "this node is not in a cluster"})
	checkValues(t, e, oidGhCluster, []want{{"3.0", snmp.String("not joined")}, {"4.0", snmp.String("")}, {"5.0", snmp.Gauge32(0)}, {"6.0", snmp.Gauge32(0)}})
	for _, en := range e {
		if en.OID.HasPrefix(oidGhClusEntry) {
			t.Errorf("a row without nodes: %s", en.OID)
		}
	}
}

// The MIB asks the cluster service on a node with a cluster section only,
// and serves what it answers.
func TestMIBAsksClusterService(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "cluster.sock")
	ln, err := sockrpc.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	asked := make(chan string, 10)
	srv := sockrpc.NewServer(func(req status.ClusterRequest) status.ClusterResponse {
		asked <- req.Verb
		return status.ClusterResponse{Status: leaderView()}
	}, slog.New(slog.DiscardHandler))
	srv.UID = uint32(os.Getuid())
	go srv.Serve(ctx, ln)

	e := snmp.NewEngine([]byte{0x80, 0, 0x1f, 0x88, 5, 1, 2, 3, 4}, 1, time.Now(), 1)
	m := newMIB(Options{Cluster: sock}, e)
	has := func() bool {
		for _, en := range m.cur.Load().t.Entries() {
			if en.OID.HasPrefix(oidGhClusEntry) {
				return true
			}
		}
		return false
	}
	m.configure(&config.Config{SNMP: &config.SNMP{}})
	if has() || len(asked) != 0 {
		t.Fatalf("no cluster section, yet the cluster service was asked (%d) or the table is there", len(asked))
	}
	m.configure(&config.Config{SNMP: &config.SNMP{}, Cluster: &config.Cluster{Name: "b1", Role: "backend"}})
	if !has() {
		t.Fatal("a cluster node without ghClusterNodeTable")
	}
	if v := <-asked; v != "status" {
		t.Errorf("asked %q", v)
	}
	// The service gone: the snapshot goes on without the cluster.
	cancel()
	ln.Close()
	os.Remove(sock)
	m.rebuild(time.Now())
	if has() {
		t.Error("the table without an answer")
	}
}
