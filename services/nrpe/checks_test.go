package nrpe

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/config"
	"gatehouse/control"
	"gatehouse/paths"
	"gatehouse/queue"
	"gatehouse/sockrpc"
	"gatehouse/status"
)

func TestParseQuery(t *testing.T) {
	for _, tt := range []struct {
		in    string
		allow bool
		want  string // command and args joined by " ", or "error: ..." substring
	}{
		{"check_load", false, "check_load"},
		{"check_load!1!2", true, "check_load 1 2"},
		{"check_load!1!2", false, "error: arguments are not allowed"},
		{"check_load!1!!2", true, "error: argument 2 is empty"},
		{"check_load!$(reboot)", true, "error: command substitution"},
		{"", true, "error: empty"},
		{"check_load!" + strings.Repeat("1!", 17), true, "error: "},
	} {
		q, err := ParseQuery(tt.in, tt.allow)
		got := strings.Join(append([]string{q.Command}, q.Args...), " ")
		if err != nil {
			got = "error: " + err.Error()
		}
		if !strings.HasPrefix(tt.want, "error: ") && got != tt.want || strings.HasPrefix(tt.want, "error: ") && !strings.Contains(got, strings.TrimPrefix(tt.want, "error: ")) {
			t.Errorf("ParseQuery(%q, %v) = %q, want %q", tt.in, tt.allow, got, tt.want)
		}
	}
	// Every one of the nrpe daemon's forbidden metacharacters.
	for _, c := range nastyMetachars {
		if _, err := ParseQuery("check_load!1"+string(c), true); err == nil {
			t.Errorf("%q accepted", c)
		}
	}
}

func TestRanges(t *testing.T) {
	for _, tt := range []struct {
		r      string
		alerts []float64
		quiet  []float64
	}{
		{"10", []float64{-1, 10.5}, []float64{0, 10}},
		{"10:", []float64{9.9}, []float64{10, 1e9}},
		{"~:10", []float64{11}, []float64{-1e9, 10}},
		{"10:20", []float64{9, 21}, []float64{10, 20}},
		{"@10:20", []float64{10, 15, 20}, []float64{9, 21}},
		{"~:", nil, []float64{-1e9, 0, 1e9}},
	} {
		r, err := config.ParseRange(tt.r)
		if err != nil {
			t.Fatalf("%s: %v", tt.r, err)
		}
		for _, v := range tt.alerts {
			if !r.Alerts(v) {
				t.Errorf("%s: %v does not alert", tt.r, v)
			}
		}
		for _, v := range tt.quiet {
			if r.Alerts(v) {
				t.Errorf("%s: %v alerts", tt.r, v)
			}
		}
	}
	for _, bad := range []string{"", "@", "x", "1:x", ":5", "5:1", "NaN", "Inf"} {
		if _, err := config.ParseRange(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	// The table's defaults all parse.
	for _, c := range config.NRPEChecks {
		for _, m := range c.Metrics {
			for _, s := range []string{m.Warning, m.Critical} {
				if _, err := config.ParseRange(s); s != "" && err != nil {
					t.Errorf("%s %s: %v", c.Name, m.Name, err)
				}
			}
		}
	}
}

func detail(t *testing.T, v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fakeSources(t *testing.T) Sources {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	st := control.Status{Mode: "host", Data: control.Data{Path: "/data"}, Services: []status.State{
		{Name: "network", Phase: status.Running},
		{Name: "smtp", Phase: status.Running, Restarts: 2, Detail: detail(t, status.Relay{
			Queue: queue.Stats{Depth: 120, Deferred: 3},
			Fetch: []status.FetchAccount{{Name: "helpdesk", LastError: "login refused", Failures: 4}, {Name: "sales"}}})},
		{Name: "ntp", Phase: status.Running, Detail: detail(t, status.NTP{Synced: true, Server: "10.0.0.1", Offset: -700 * time.Millisecond})},
		{Name: "firewall", Phase: status.Running, Detail: detail(t, status.Firewall{Backend: "nftables", Ruleset: "config", In: []string{"a", "b"},
			Drops: status.FirewallDrops{In: status.DropCount{Packets: 12, Bytes: 720}, Out: status.DropCount{Packets: 3, Bytes: 180}}})},
		{Name: "nrpe", Phase: status.BackingOff, Restarts: 1},
	}}
	return Sources{
		Status:      func() control.Status { return st },
		LoadAvg:     func() ([3]float64, error) { return [3]float64{9, 1, 0.5}, nil },
		Memory:      func() (uint64, uint64, error) { return 1000 << 20, 80 << 20, nil },
		DiskFree:    func(string) (uint64, uint64, error) { return 100 << 30, 50 << 30, nil },
		QueueOldest: func() (time.Time, error) { return now.Add(-2 * time.Hour), nil },
		Paths: func(context.Context, *config.Config) []paths.Result {
			return []paths.Result{{Outcome: paths.OK}, {Outcome: paths.Blocked, Target: "192.0.2.1:25", Path: paths.Path{Function: "Mail delivery"}}, {Outcome: paths.Skipped}}
		},
		Cluster: func(context.Context) (*status.Cluster, error) { return leaderView(), nil },
		Now:     func() time.Time { return now },
	}
}

// leaderView is a three-node cluster as its leader b1 sees it: all well.
func leaderView() *status.Cluster {
	return &status.Cluster{Node: "b1", Role: "backend", RaftState: "Leader", Leader: "b1", Term: 3, From: "b1",
		Config: status.ClusterVersion{Version: 4, Hash: "h4"},
		Nodes: []status.ClusterMember{
			{Name: "b1", Role: "backend", Voter: true, Reachable: true, AgeS: 0.4, AppliedVersion: 4, AppliedHash: "h4", Problems: []string{}},
			{Name: "b2", Role: "backend", Voter: true, Reachable: true, AgeS: 1.06, AppliedVersion: 4, AppliedHash: "h4", Problems: []string{}},
			{Name: "f1", Role: "frontend", Reachable: true, AgeS: 0.9, AppliedVersion: 4, AppliedHash: "h4", Problems: []string{}},
		}}
}

func TestChecks(t *testing.T) {
	cfg := &config.Config{NRPE: &config.NRPE{AllowArguments: true, Checks: map[string]map[string]config.NRPEThreshold{}}}
	r, _ := config.ParseRange("50")
	cfg.NRPE.Checks["check_queue"] = map[string]config.NRPEThreshold{"depth": {Warning: &r}}
	k := &Checker{Src: fakeSources(t), Version: "1.2"}
	for _, tt := range []struct {
		query string
		state int
		text  string
	}{
		{"_NRPE_CHECK", OK, "NRPE v1.2"},
		{"check_nope", Unknown, "NRPE: Command 'check_nope' not defined"},
		{"check_load", Warning, "WARNING - load average: 9.00, 1.00, 0.50 | load1=9.000;8;16;0 load5=1.000;6;12;0 load15=0.500;4;8;0"},
		{"check_load!~:!~:", OK, "OK - load average: 9.00, 1.00, 0.50 | load1=9.000;~:;~:;0 load5=1.000;6;12;0 load15=0.500;4;8;0"},
		{"check_load!1!2!3", Critical, "CRITICAL - "},
		{"check_load!x", Unknown, "UNKNOWN - argument 1 (load1 warning): \"x\" is not a threshold range"},
		{"check_load!1!2!3!4!5!6!7", Unknown, "UNKNOWN - check_load takes at most 6 arguments"},
		{"check_mem", Warning, "WARNING - memory 8.0% available (80 MiB of 1000 MiB) | available=8%;10:;5:;0"},
		{"check_disk", OK, "OK - /data 50.0% free (51200 MiB of 102400 MiB) | free=50%;20:;10:;0"},
		{"check_disk!60:!55:", Critical, "CRITICAL - /data 50.0% free"},
		// The config's warning (50) replaces the default (100).
		{"check_queue", Warning, "WARNING - queue 120 messages, 3 deferred, 0 held, oldest 2h0m0s | depth=120;50;500;0 deferred=3;50;200;0 oldest=7200s;3600;14400;0"},
		{"check_queue!~:!~:!~:!~:!~:!7000", Critical, "CRITICAL - queue 120"},
		{"check_services", Critical, "CRITICAL - 4 services running; not running: nrpe backoff, 3 restarts | down=1;;0;0 restarts=3;;;0"},
		{"check_service_smtp", OK, "OK - service smtp running, 2 restarts | down=0;;0;0 restarts=2;;;0"},
		{"check_service_nope", Unknown, "UNKNOWN - no service nope runs"},
		{"check_ntp", Warning, "WARNING - offset -700ms from 10.0.0.1, stratum 0 | offset=-0.700s;0.5;1;"},
		{"check_ntp!0.1!0.6", Critical, "CRITICAL - offset -700ms"},
		{"check_collector", Critical, "CRITICAL - 2 fetch accounts, 1 failing: helpdesk failing (4 in a row) | failing=1;;0;0"},
		{"check_firewall", OK, "OK - nftables, 2 inbound paths, egress  | rules_in=2;;;0 drops_in=12;;;0 drops_out=3;;;0"},
		{"check_firewall!~:!~:!10", Warning, "WARNING - nftables, 2 inbound paths, egress  | rules_in=2;~:;~:;0 drops_in=12;10;;0 drops_out=3;;;0"},
		{"check_firewall!~:!~:!~:!~:!~:!2", Critical, "CRITICAL - nftables"},
		{"check_firewall!3:", Warning, "WARNING - nftables"},
		{"check_paths", Critical, "CRITICAL - 2 outbound paths tested, 1 failed: Mail delivery 192.0.2.1:25 blocked | failed=1;;0;0"},
		// This config has no cluster section.
		{"check_cluster", Unknown, "UNKNOWN - not a cluster node (the config has no cluster section)"},
	} {
		q, err := ParseQuery(tt.query, true)
		if err != nil {
			t.Fatalf("%s: %v", tt.query, err)
		}
		res := k.Run(context.Background(), cfg, q)
		if res.State != tt.state || !strings.HasPrefix(res.Text, tt.text) {
			t.Errorf("%s: %d %q\nwant %d %q", tt.query, res.State, res.Text, tt.state, tt.text)
		}
	}
	// Without the control socket, nothing that needs it claims OK.
	k.Src.Status = func() control.Status { return control.Status{Mode: "unreachable", Emergency: "control socket: gone"} }
	if res := k.Run(context.Background(), cfg, Query{Command: "check_services"}); res.State != Unknown {
		t.Errorf("unreachable: %+v", res)
	}
	k.Src = fakeSources(t)
	k.Src.QueueOldest = func() (time.Time, error) { return time.Time{}, errors.New("no socket") }
	if res := k.Run(context.Background(), cfg, Query{Command: "check_queue"}); res.State != Unknown {
		t.Errorf("no queue listing: %+v", res)
	}
}

func TestClusterCheck(t *testing.T) {
	cfg := &config.Config{Cluster: &config.Cluster{Name: "b1", Role: "backend"},
		NRPE: &config.NRPE{AllowArguments: true, Checks: map[string]map[string]config.NRPEThreshold{}}}
	const perfOK = " | nodes=3;;;0 unreachable=0;;0;0 problems=0;0;;0 lag=0;;;0"
	for _, tt := range []struct {
		name  string
		query string
		view  func(c *status.Cluster)
		err   error
		state int
		text  string // the whole output, or its start when it ends in "..."
	}{
		{"all well", "check_cluster", nil, nil, OK,
			"OK - 3 nodes, 0 with problems, leader b1, config v4: b1 0.4s, b2 1.1s, f1 0.9s" + perfOK},
		{"config lags: a warning", "check_cluster", func(c *status.Cluster) {
			c.Config.Version = 6
			c.Nodes[1].AppliedVersion, c.Nodes[1].Problems = 3, []string{"config lags"}
			c.Nodes[2].AppliedVersion, c.Nodes[2].Problems = 5, []string{"config lags", "clock off"}
			c.Nodes[0].AppliedVersion = 6
		}, nil, Warning,
			"WARNING - 3 nodes, 2 with problems, leader b1, config v6: b1 0.4s, b2 1.1s (config lags), f1 0.9s (config lags, clock off)" +
				" | nodes=3;;;0 unreachable=0;;0;0 problems=2;0;;0 lag=3;;;0"},
		{"clock off: a warning", "check_cluster", func(c *status.Cluster) { c.Nodes[1].Problems = []string{"clock off"} }, nil, Warning,
			"WARNING - 3 nodes, 1 with problems, leader b1, config v4: b1 0.4s, b2 1.1s (clock off), f1 0.9s | nodes=3;;;0 unreachable=0;;0;0 problems=1;0;;0 lag=0;;;0"},
		// A node never heard from has no version to lag by; one heard
		// from long ago has its last one.
		{"unreachable: critical", "check_cluster", func(c *status.Cluster) {
			c.Nodes[2] = status.ClusterMember{Name: "f1", Role: "frontend", AgeS: -1, Problems: []string{"unreachable"}}
			c.Nodes[1].Reachable, c.Nodes[1].AgeS, c.Nodes[1].AppliedVersion, c.Nodes[1].Problems = false, 42, 2, []string{"unreachable", "config lags"}
		}, nil, Critical,
			"CRITICAL - 3 nodes, 2 with problems, leader b1, config v4: b1 0.4s, b2 42.0s (unreachable, config lags), f1 never reported (unreachable)" +
				" | nodes=3;;;0 unreachable=2;;0;0 problems=2;0;;0 lag=2;;;0"},
		{"no leader: critical", "check_cluster", func(c *status.Cluster) {
			c.Leader, c.RaftState, c.Nodes = "", "Candidate", c.Nodes[:1]
			c.Note = "the leader's view is not available: the cluster has no leader now"
		}, nil, Critical,
			"CRITICAL - 1 node, 0 with problems, NO LEADER, config v4: b1 0.4s; the leader's view is not available: the cluster has no leader now" +
				" | nodes=1;;;0 unreachable=0;;0;0 problems=0;0;;0 lag=0;;;0"},
		{"a frontend sees itself and says so", "check_cluster", func(c *status.Cluster) {
			c.Node, c.Role, c.RaftState, c.From, c.Nodes = "f1", "frontend", "Follower", "f1", c.Nodes[2:]
			c.Note = "a frontend sees only itself; the leader last contacted it 80ms ago"
		}, nil, OK,
			"OK - 1 node, 0 with problems, leader b1, config v4: f1 0.9s; a frontend sees only itself; the leader last contacted it 80ms ago" +
				" | nodes=1;;;0 unreachable=0;;0;0 problems=0;0;;0 lag=0;;;0"},
		{"not joined yet", "check_cluster", func(c *status.Cluster) {
			*c = status.Cluster{Node: "b1", Role: "backend", RaftState: "not joined", Note: "this node is not in a cluster"}
		}, nil, Warning, "WARNING - b1 is in no cluster yet: this node is not in a cluster"},
		{"no cluster service", "check_cluster", nil, errors.New("cluster service: dial: no such file or directory"), Unknown,
			"UNKNOWN - cluster service: dial: no such file or directory"},
		// Arguments: nodes, unreachable, problems, lag; each warning
		// then critical.
		{"fewer nodes than expected", "check_cluster!4:", nil, nil, Warning, "WARNING - 3 nodes, ..."},
		{"lag over the request's critical", "check_cluster!~:!~:!~:!~:!~:!~:!~:!0", func(c *status.Cluster) {
			c.Nodes[1].AppliedVersion, c.Nodes[1].Problems = 3, []string{"config lags"}
		}, nil, Critical, "CRITICAL - 3 nodes, 1 with problems, ..."},
		{"problems quiet by the request", "check_cluster!~:!~:!~:!~:!~:", func(c *status.Cluster) {
			c.Nodes[1].Problems = []string{"clock off"}
		}, nil, OK, "OK - 3 nodes, 1 with problems, ..."},
		{"too many arguments", "check_cluster!1!1!1!1!1!1!1!1!1", nil, nil, Unknown, "UNKNOWN - check_cluster takes at most 8 arguments..."},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k := &Checker{Src: fakeSources(t)}
			k.Src.Cluster = func(context.Context) (*status.Cluster, error) {
				if tt.err != nil {
					return nil, tt.err
				}
				c := leaderView()
				if tt.view != nil {
					tt.view(c)
				}
				return c, nil
			}
			q, err := ParseQuery(tt.query, true)
			if err != nil {
				t.Fatal(err)
			}
			res := k.Run(context.Background(), cfg, q)
			match := res.Text == tt.text
			if prefix, ok := strings.CutSuffix(tt.text, "..."); ok {
				match = strings.HasPrefix(res.Text, prefix)
			}
			if res.State != tt.state || !match {
				t.Errorf("%d %q\nwant %d %q", res.State, res.Text, tt.state, tt.text)
			}
		})
	}
	// The config's thresholds: lag warns from 2 versions behind.
	r, _ := config.ParseRange("1")
	cfg.NRPE.Checks["check_cluster"] = map[string]config.NRPEThreshold{"lag": {Warning: &r}}
	k := &Checker{Src: fakeSources(t)}
	k.Src.Cluster = func(context.Context) (*status.Cluster, error) {
		c := leaderView()
		c.Config.Version = 6 // every node two behind, and none marked
		return c, nil
	}
	if res := k.Run(context.Background(), cfg, Query{Command: "check_cluster"}); res.State != Warning || !strings.HasSuffix(res.Text, " lag=2;1;;0") {
		t.Errorf("lag 2 over the config's warning 1: %d %q", res.State, res.Text)
	}
}

// ClusterStatus asks the socket as `gatehouse cluster status` does.
func TestClusterStatusSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "cluster.sock")
	ln, err := sockrpc.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var verbs []string
	var mu sync.Mutex
	srv := sockrpc.NewServer(func(req status.ClusterRequest) status.ClusterResponse {
		mu.Lock()
		verbs = append(verbs, req.Verb)
		mu.Unlock()
		if req.Verb != "status" {
			return status.ClusterResponse{Error: "unexpected " + req.Verb}
		}
		return status.ClusterResponse{Status: leaderView()}
	}, slog.New(slog.DiscardHandler))
	srv.UID = uint32(os.Getuid()) // the test may run as another user than root
	go srv.Serve(ctx, ln)
	src := HostSources("", "", sock, nil)
	tctx, tcancel := context.WithTimeout(ctx, 5*time.Second)
	defer tcancel()
	c, err := src.Cluster(tctx)
	if err != nil || c.Leader != "b1" || len(c.Nodes) != 3 {
		t.Fatalf("%+v, %v", c, err)
	}
	mu.Lock()
	if len(verbs) != 1 || verbs[0] != "status" {
		t.Errorf("verbs %v", verbs)
	}
	mu.Unlock()
	if _, err := ClusterStatus(ctx, filepath.Join(t.TempDir(), "none.sock")); err == nil || !strings.HasPrefix(err.Error(), "cluster service: ") {
		t.Errorf("no socket: %v", err)
	}
}
