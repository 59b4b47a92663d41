// Command clusterbench measures the cluster (`make bench-cluster`): how
// long a config change takes from `gatehouse config apply` on a backend
// until every node runs it, how fresh the leader's view of the nodes is,
// and what an idle node costs. Five nodes (three backends, two frontends)
// run as `gatehouse run` processes in host mode, each in a network
// namespace of its own, plugged into one bridge (10.66.0.0/24) in a
// "switch" namespace where chronyd serves time; the benchmark itself runs
// in that switch namespace, so nothing is created in the host's. Needs
// root.
//
//	config_apply_p50_ms=…   from just before `config apply` until all 5
//	config_apply_p99_ms=…   nodes' status shows the new version's hash
//	config_apply_max_ms=…
//	anchor_pmg_sync_s=120   Proxmox Mail Gateway's cluster sync cycle
//	ratio_vs_pmg=…          (120,000 ms / p99)
//	status_age_p50_s=…      age_s of every node in the leader's
//	status_age_max_s=…      `cluster status`
//	idle_cpu_percent_backend=…, idle_cpu_percent_frontend=…
//	rss_mb_backend=…, rss_mb_frontend=…
//
// It also prints how long until the last node logged that it installed
// the version (config_installed_all_*: the cluster's own speed) and how
// much later its status showed it (status_lag_*), the apply command's own
// time, and each idle node's CPU share by process.
//
// The anchor: on a Proxmox Mail Gateway cluster, pmgmirror on each node
// runs cluster_sync every two minutes ($updatetime = 60*2 in
// proxmox/pmg-api src/PMG/Service/pmgmirror.pm), which pulls the master's
// configuration (sync_config_from_master) through the pmgtunnel SSH
// tunnels: a change made on the master reaches every node within about
// 120 s.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/beevik/ntp"

	"gatehouse/cluster"
	"gatehouse/control"
	"gatehouse/status"
	"gatehouse/test/bench"
)

// The cluster's network: the switch (bridge, chronyd) and its nodes.
const (
	switchAddr = "10.66.0.1"
	prefix     = "10.66.0.0/24"
	// pmgSyncS is Proxmox Mail Gateway's cluster sync cycle, seconds.
	pmgSyncS = 120
)

// nodes is the cluster: the first backend makes it, the others join.
var nodes = []struct{ name, role, addr string }{
	{"b1", "backend", "10.66.0.11"},
	{"b2", "backend", "10.66.0.12"},
	{"b3", "backend", "10.66.0.13"},
	{"f1", "frontend", "10.66.0.21"},
	{"f2", "frontend", "10.66.0.22"},
}

type options struct {
	binary    string
	changes   int
	poll      time.Duration
	freshness time.Duration
	idle      time.Duration
	keep      bool
}

func main() {
	var o options
	flag.StringVar(&o.binary, "binary", "build/gatehouse", "the gatehouse binary")
	flag.IntVar(&o.changes, "changes", 100, "config changes to time")
	flag.DurationVar(&o.poll, "poll", 3*time.Millisecond, "how often each node's status is asked while a change spreads")
	flag.DurationVar(&o.freshness, "freshness", 10*time.Second, "how long the leader's cluster status is watched")
	flag.DurationVar(&o.idle, "idle", 30*time.Second, "how long the idle nodes' CPU time is measured")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory")
	flag.Parse()
	bench.Main("clusterbench", func(ctx context.Context) error {
		if sw := os.Getenv("GH_CLUSTERBENCH_NS"); sw != "" {
			return run(ctx, sw, o)
		}
		return outer(ctx, o)
	})
}

// outer makes the switch namespace and runs the benchmark again inside
// it; it removes the namespaces afterwards, also those of nodes a killed
// inner run left behind.
func outer(ctx context.Context, o options) error {
	bin, err := bench.Binary(o.binary)
	if err != nil {
		return err
	}
	if err := bench.Tools("make deps", "ip", "chronyd"); err != nil {
		return err
	}
	sw := fmt.Sprintf("ghcb%d", os.Getpid())
	if err := ip("netns", "add", sw); err != nil {
		return err
	}
	defer func() {
		out, _ := exec.Command("ip", "netns", "list").Output()
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], sw+"-") {
				exec.Command("ip", "netns", "del", f[0]).Run()
			}
		}
		exec.Command("ip", "netns", "del", sw).Run()
	}()
	if err := ip("-n", sw, "link", "set", "lo", "up"); err != nil {
		return err
	}
	args := []string{"netns", "exec", sw, os.Args[0], "-binary", bin, "-changes", strconv.Itoa(o.changes),
		"-poll", o.poll.String(), "-freshness", o.freshness.String(), "-idle", o.idle.String(), fmt.Sprintf("-keep=%v", o.keep)}
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 60 * time.Second
	cmd.Env = append(os.Environ(), "GH_CLUSTERBENCH_NS="+sw)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

func ip(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// node is one appliance of the cluster.
type node struct {
	name, role, addr string
	ns, dir          string
	bin              string
	cmd              *exec.Cmd
	logDone          chan struct{}

	mu        sync.Mutex
	installed map[string]time.Time // by the first 12 digits of the hash
	errors    []string             // ERROR lines after the cluster formed
	formed    bool
}

// tee copies the node's log to its file and notes when each line came:
// when the cluster service said it installed a version, and which errors
// it logged once the cluster stood.
func (n *node) tee(r io.Reader, f *os.File) {
	defer close(n.logDone)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		at := time.Now()
		l := sc.Text()
		fmt.Fprintln(f, l)
		n.mu.Lock()
		if strings.Contains(l, `msg="cluster config installed"`) {
			if _, h, ok := strings.Cut(l, " hash="); ok {
				n.installed[strings.Fields(h)[0]] = at
			}
		}
		if n.formed && (strings.Contains(l, "level=ERROR") || strings.Contains(l, "[ERROR]")) {
			n.errors = append(n.errors, l)
		}
		n.mu.Unlock()
	}
}

// installedAt is when the node logged that it installed hash.
func (n *node) installedAt(hash string) (time.Time, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	t, ok := n.installed[hash[:12]]
	return t, ok
}

func (n *node) state() string  { return filepath.Join(n.dir, "state") }
func (n *node) config() string { return filepath.Join(n.dir, "gatehouse.yaml") }
func (n *node) logFile() string {
	return filepath.Join(n.dir, "gatehouse.log")
}

// local is the node's own part of its config; the shared part follows.
func (n *node) local() string {
	return fmt.Sprintf("hostname: %s\ncluster:\n  role: %s\n  address: %s\n  peers: [%s]\n  report_interval: 1s\n",
		n.name, n.role, n.addr, prefix)
}

// shared is the replicated config of change i (0: the one the cluster
// starts with): time from the switch, and the SSH shell's port, with a
// comment naming the change.
func shared(i int) string {
	return fmt.Sprintf("# clusterbench change %d\nntp:\n  servers: [%s]\nssh:\n  port: %d\n", i, switchAddr, 2200+i)
}

// hashOf is the hash the cluster gives the config file doc: the SHA-256
// of its shared part.
func hashOf(doc string) (string, error) {
	s, err := cluster.SharedPart([]byte(doc))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(s)
	return hex.EncodeToString(sum[:]), nil
}

// cli runs `gatehouse ARGS --state S` for the node. The CLI only talks to
// the node's Unix sockets, so it runs where the benchmark does.
func (n *node) cli(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, n.bin, append(args, "--state", n.state())...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: gatehouse %s: %v: %s%s", n.name, strings.Join(args, " "), err, errOut.String(), out.String())
	}
	return out.String(), nil
}

// detail is the cluster service's detail in the node's `gatehouse
// status`, asked on PID 1's control socket.
func (n *node) detail() (status.ClusterNode, error) {
	resp, err := control.Call(filepath.Join(n.state(), "control.sock"), control.Request{Verb: "status"})
	if err != nil {
		return status.ClusterNode{}, err
	}
	d, ok, err := status.Detail[status.ClusterNode](resp.Status.Services, "cluster")
	if err == nil && !ok {
		err = fmt.Errorf("%s: no cluster detail in the status yet", n.name)
	}
	return d, err
}

func (n *node) ready() (bool, error) {
	resp, err := control.Call(filepath.Join(n.state(), "control.sock"), control.Request{Verb: "status"})
	if err != nil {
		return false, err
	}
	return resp.Status.Ready, nil
}

func run(ctx context.Context, sw string, o options) (err error) {
	dir, remove, err := bench.WorkDir("clusterbench", o.keep)
	if err != nil {
		return err
	}
	defer remove()
	// The relay runs as a user of its own and must reach the state.
	os.Chmod(dir, 0o755)

	// The switch: a bridge, and chronyd serving its local clock (-x: it
	// never touches the host's).
	for _, args := range [][]string{
		{"link", "add", "br0", "type", "bridge"},
		{"addr", "add", switchAddr + "/24", "dev", "br0"},
		{"link", "set", "br0", "up"},
	} {
		if err := ip(args...); err != nil {
			return err
		}
	}
	conf := filepath.Join(dir, "chrony.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("local stratum 8\nallow %s\nbindaddress %s\ncmdport 0\npidfile %s/chronyd.pid\ndriftfile %s/drift\n", prefix, switchAddr, dir, dir)), 0o644)
	chrony := exec.Command("chronyd", "-x", "-d", "-f", conf)
	chronyLog, _ := os.Create(filepath.Join(dir, "chrony.log"))
	defer chronyLog.Close()
	chrony.Stdout, chrony.Stderr = chronyLog, chronyLog
	if err := chrony.Start(); err != nil {
		return err
	}
	defer func() { chrony.Process.Signal(syscall.SIGTERM); chrony.Wait() }()
	if err := until(ctx, 20*time.Second, "chronyd answers NTP", func() error {
		_, err := ntp.QueryWithOptions(switchAddr, ntp.QueryOptions{Timeout: time.Second})
		return err
	}); err != nil {
		return err
	}

	// The nodes, each in a namespace of its own behind a veth pair.
	var all []*node
	defer func() {
		for _, n := range all {
			if n.cmd != nil {
				n.cmd.Process.Signal(syscall.SIGTERM)
			}
		}
		for _, n := range all {
			if n.cmd != nil {
				n.cmd.Wait()
				select {
				case <-n.logDone:
				case <-time.After(5 * time.Second):
				}
			}
			exec.Command("ip", "netns", "del", n.ns).Run()
		}
		if err != nil {
			for _, n := range all {
				fmt.Fprintf(os.Stderr, "clusterbench: %s's log (tail):\n%s\n", n.name, bench.ReadTail(n.logFile(), 3000))
			}
		}
	}()
	for _, spec := range nodes {
		n := &node{name: spec.name, role: spec.role, addr: spec.addr, ns: sw + "-" + spec.name, dir: filepath.Join(dir, spec.name), bin: o.binary}
		all = append(all, n)
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			return err
		}
		for _, args := range [][]string{
			{"netns", "add", n.ns},
			{"-n", n.ns, "link", "set", "lo", "up"},
			{"link", "add", "v" + n.name, "type", "veth", "peer", "name", "eth0", "netns", n.ns},
			{"link", "set", "v" + n.name, "master", "br0"},
			{"link", "set", "v" + n.name, "up"},
			{"-n", n.ns, "addr", "add", n.addr + "/24", "dev", "eth0"},
			{"-n", n.ns, "link", "set", "eth0", "up"},
		} {
			if err := ip(args...); err != nil {
				return err
			}
		}
		if err := os.WriteFile(n.config(), []byte(n.local()+shared(0)), 0o644); err != nil {
			return err
		}
		logf, err := os.Create(n.logFile())
		if err != nil {
			return err
		}
		defer logf.Close()
		n.cmd = exec.Command("ip", "netns", "exec", n.ns, o.binary, "run", "--config", n.config(), "--state", n.state(),
			"--service-arg=--ntp-min-poll=2s")
		pr, pw, err := os.Pipe()
		if err != nil {
			return err
		}
		n.cmd.Stdout, n.cmd.Stderr = pw, pw
		err = n.cmd.Start()
		pw.Close()
		if err != nil {
			pr.Close()
			n.cmd = nil
			return err
		}
		n.installed, n.logDone = map[string]time.Time{}, make(chan struct{})
		go n.tee(pr, logf)
	}
	for _, n := range all {
		if err := until(ctx, 60*time.Second, n.name+" ready", func() error {
			ok, err := n.ready()
			if err == nil && !ok {
				err = errors.New("not ready")
			}
			return err
		}); err != nil {
			return err
		}
	}

	// The cluster: init on b1, a token from b1 for each of the others.
	b1 := all[0]
	if _, err := b1.cli(ctx, "cluster", "init"); err != nil {
		return err
	}
	for _, n := range all[1:] {
		tok, err := b1.cli(ctx, "cluster", "token")
		if err != nil {
			return err
		}
		if _, err := n.cli(ctx, "cluster", "join", b1.addr, strings.TrimSpace(tok)); err != nil {
			return err
		}
	}
	want, err := hashOf(b1.local() + shared(0))
	if err != nil {
		return err
	}
	for _, n := range all {
		if err := until(ctx, 30*time.Second, n.name+" runs the cluster's first config", func() error {
			d, err := n.detail()
			if err == nil && (!d.Joined || d.AppliedHash != want) {
				err = fmt.Errorf("%+v", d)
			}
			return err
		}); err != nil {
			return err
		}
	}
	for _, n := range all {
		n.mu.Lock()
		n.formed = true
		n.mu.Unlock()
	}
	d, err := b1.detail()
	if err != nil {
		return err
	}
	var leader *node
	for _, n := range all {
		if n.name == d.Leader {
			leader = n
		}
	}
	if leader == nil || leader.role != "backend" {
		return fmt.Errorf("no backend leads the cluster: %+v", d)
	}
	fmt.Printf("nodes=%d\nbackends=3\nfrontends=2\nleader=%s\nreport_interval_s=1\npoll_ms=%s\nloadavg_before=%s\n",
		len(all), leader.name, bench.F1(float64(o.poll.Microseconds())/1000), bench.Loadavg())

	// The changes, on b1, b2, b3 in turn.
	backends := all[:3]
	var spread, cli, install, lag []float64
	for i := 1; i <= o.changes; i++ {
		on := backends[(i-1)%len(backends)]
		doc := on.local() + shared(i)
		file := filepath.Join(on.dir, fmt.Sprintf("change-%d.yaml", i))
		if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
			return err
		}
		want, err := hashOf(doc)
		if err != nil {
			return err
		}
		t, err := change(ctx, all, on, file, want, o.poll)
		if err != nil {
			return fmt.Errorf("change %d on %s: %w", i, on.name, err)
		}
		spread = append(spread, ms(t.total))
		cli = append(cli, ms(t.applied))
		install = append(install, ms(t.installed))
		lag = append(lag, ms(t.total-t.installed))
		if err := bench.Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	p99 := pct(spread, 0.99)
	fmt.Printf("changes=%d\nconfig_apply_cli_p50_ms=%s\nconfig_apply_cli_max_ms=%s\n", len(spread), bench.F1(pct(cli, 0.5)), bench.F1(slices.Max(cli)))
	fmt.Printf("config_installed_all_p50_ms=%s\nconfig_installed_all_p99_ms=%s\nconfig_installed_all_max_ms=%s\n",
		bench.F1(pct(install, 0.5)), bench.F1(pct(install, 0.99)), bench.F1(slices.Max(install)))
	// How much later than the last node's install its status showed it.
	fmt.Printf("status_lag_p50_ms=%s\nstatus_lag_max_ms=%s\n", bench.F1(pct(lag, 0.5)), bench.F1(slices.Max(lag)))
	fmt.Printf("config_apply_min_ms=%s\nconfig_apply_p50_ms=%s\nconfig_apply_p99_ms=%s\nconfig_apply_max_ms=%s\n",
		bench.F1(slices.Min(spread)), bench.F1(pct(spread, 0.5)), bench.F1(p99), bench.F1(slices.Max(spread)))
	fmt.Printf("anchor_pmg_sync_s=%d\nratio_vs_pmg=%s\n", pmgSyncS, bench.F1(pmgSyncS*1000/p99))

	// An idle cluster: nothing asked for a while, then the CPU time the
	// leader's and a frontend's processes use.
	if err := bench.Sleep(ctx, 5*time.Second); err != nil {
		return err
	}
	f1 := all[3]
	idle, err := idleUse(ctx, o.idle, leader, f1)
	if err != nil {
		return err
	}
	fmt.Printf("idle_s=%g\nprocs_backend=%d\nprocs_frontend=%d\n", o.idle.Seconds(), idle[0].procs, idle[1].procs)
	fmt.Print(breakdown("backend", idle[0]), breakdown("frontend", idle[1]))
	fmt.Printf("idle_cpu_percent_backend=%s\nidle_cpu_percent_frontend=%s\n", bench.F2(idle[0].cpuPct), bench.F2(idle[1].cpuPct))
	fmt.Printf("rss_mb_backend=%s\nrss_mb_frontend=%s\n", bench.F1(idle[0].rssMB), bench.F1(idle[1].rssMB))

	// The leader's view: how old each node's last report is.
	ages, err := freshness(ctx, leader, len(all), o.freshness)
	if err != nil {
		return err
	}
	fmt.Printf("status_samples=%d\nstatus_age_p50_s=%s\nstatus_age_max_s=%s\n", len(ages), bench.F2(pct(ages, 0.5)), bench.F2(slices.Max(ages)))

	// Errors any node logged once the cluster stood (the joins' refused
	// connections before it are expected).
	logErrors := 0
	for _, n := range all {
		n.mu.Lock()
		for i, l := range n.errors {
			if i < 3 {
				fmt.Fprintf(os.Stderr, "clusterbench: %s: %s\n", n.name, l)
			}
		}
		logErrors += len(n.errors)
		n.mu.Unlock()
	}
	fmt.Printf("log_errors=%d\n", logErrors)
	fmt.Printf("loadavg_after=%s\n", bench.Loadavg())
	return nil
}

// timing is one change's: from just before the apply until every node's
// status showed the new hash (total), until the apply command returned
// (applied), and until the last node logged that it installed it.
type timing struct{ total, applied, installed time.Duration }

// change applies file on node on, with --confirm-within 0s, and times it.
// Each node is asked from just before the apply on, every poll, until its
// status shows hash want.
func change(ctx context.Context, all []*node, on *node, file, want string, poll time.Duration) (timing, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	start := time.Now()
	seen := make([]time.Duration, len(all))
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, n := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(poll)
			defer t.Stop()
			var last string
			for {
				d, err := n.detail()
				if err == nil && d.AppliedHash == want {
					seen[i] = time.Since(start)
					return
				}
				last = fmt.Sprintf("%+v %v", d, err)
				select {
				case <-ctx.Done():
					errs[i] = fmt.Errorf("%s never showed %.12s: last %s", n.name, want, last)
					return
				case <-t.C:
				}
			}
		}()
	}
	_, aerr := on.cli(ctx, "config", "apply", file, "--confirm-within", "0s")
	applied := time.Since(start)
	if aerr != nil {
		cancel()
	}
	wg.Wait()
	if aerr != nil {
		return timing{}, aerr
	}
	if err := errors.Join(errs...); err != nil {
		return timing{}, err
	}
	t := timing{total: slices.Max(seen), applied: applied}
	for _, n := range all {
		// The log line reaches the log file through the supervisor, a
		// little after the status may show the version.
		var at time.Time
		var ok bool
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if at, ok = n.installedAt(want); ok || time.Now().After(deadline) {
				break
			}
		}
		if !ok {
			return timing{}, fmt.Errorf("%s's status shows %.12s, but its log never said it installed it", n.name, want)
		}
		t.installed = max(t.installed, at.Sub(start))
	}
	return t, nil
}

type use struct {
	procs  int
	cpuPct float64 // of one core
	rssMB  float64 // MiB
	by     map[string]float64
}

// idleUse measures, over d, the CPU time of each node's processes (the
// run process and its services: every process whose command line names
// the node's state directory) as a share of one core, and their RSS at
// the end.
func idleUse(ctx context.Context, d time.Duration, ns ...*node) ([]use, error) {
	before := make([]map[int]float64, len(ns))
	for i, n := range ns {
		before[i] = cpuOf(n)
		if len(before[i]) == 0 {
			return nil, fmt.Errorf("%s: no processes found", n.name)
		}
	}
	start := time.Now()
	if err := bench.Sleep(ctx, d); err != nil {
		return nil, err
	}
	el := time.Since(start).Seconds()
	out := make([]use, len(ns))
	for i, n := range ns {
		after := cpuOf(n)
		var cpu float64
		for pid, c := range after {
			cpu += c - before[i][pid] // a process started meanwhile counts whole
			out[i].rssMB += float64(bench.ProcStatus(pid, "VmRSS")) / 1024
		}
		out[i].procs = len(after)
		out[i].cpuPct = 100 * cpu / el
		out[i].by = map[string]float64{}
		for pid, c := range after {
			out[i].by[procName(pid)] += 100 * (c - before[i][pid]) / el
		}
	}
	return out, nil
}

// procName is "run" for a node's PID 1 stand-in, the service's name for
// a service.
func procName(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	a := strings.Split(string(b), "\x00")
	switch {
	case len(a) > 2 && a[1] == "service":
		return a[2]
	case len(a) > 1:
		return a[1]
	}
	return "?"
}

// breakdown prints a node's CPU share by process, as a comment.
func breakdown(what string, u use) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(u.by)) {
		parts = append(parts, fmt.Sprintf("%s %s%%", k, bench.F2(u.by[k])))
	}
	return fmt.Sprintf("# %s idle CPU by process: %s\n", what, strings.Join(parts, ", "))
}

// cpuOf is the CPU seconds of each of the node's processes, by PID.
func cpuOf(n *node) map[int]float64 {
	out := map[int]float64{}
	for _, pid := range procsOf(n) {
		out[pid] = bench.ProcCPU(pid)
	}
	return out
}

// procsOf finds the node's processes in /proc: those whose command line
// names its state directory, and their descendants.
func procsOf(n *node) []int {
	ents, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	mine := map[int]bool{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		for _, a := range bytes.Split(cmdline, []byte{0}) {
			if s := string(a); s == n.state() || strings.HasPrefix(s, n.state()+"/") || strings.HasSuffix(s, "="+n.state()) {
				mine[pid] = true
			}
		}
		parent[pid] = bench.PPID(pid)
	}
	var out []int
	for pid := range parent {
		for p := pid; p > 1; p = parent[p] {
			if mine[p] {
				out = append(out, pid)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// freshness runs `gatehouse cluster status --format json` on the leader
// every 200 ms for d and collects every node's age_s; each answer must
// list all the nodes, reachable.
func freshness(ctx context.Context, leader *node, want int, d time.Duration) ([]float64, error) {
	var ages []float64
	for end := time.Now().Add(d); time.Now().Before(end); {
		out, err := leader.cli(ctx, "cluster", "status", "--format", "json")
		if err != nil {
			return nil, err
		}
		var c status.Cluster
		if err := json.Unmarshal([]byte(out), &c); err != nil {
			return nil, fmt.Errorf("cluster status: %v: %s", err, out)
		}
		if len(c.Nodes) != want {
			return nil, fmt.Errorf("cluster status lists %d nodes, not %d: %s", len(c.Nodes), want, out)
		}
		for _, m := range c.Nodes {
			if !m.Reachable || m.AgeS < 0 {
				return nil, fmt.Errorf("cluster status: %s is not reachable: %s", m.Name, out)
			}
			ages = append(ages, m.AgeS)
		}
		if err := bench.Sleep(ctx, 200*time.Millisecond); err != nil {
			return nil, err
		}
	}
	return ages, nil
}

// until retries f every 100 ms until it succeeds, for at most limit.
func until(ctx context.Context, limit time.Duration, what string, f func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %v: %v", what, limit, err)
		}
		if err := bench.Sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// pct is the p-th quantile of v, nearest rank.
func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(v))
	return s[max(0, int(math.Ceil(p*float64(len(s))))-1)]
}
