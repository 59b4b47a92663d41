package nrpe

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"gatehouse/config"
	"gatehouse/control"
	"gatehouse/paths"
	"gatehouse/sockrpc"
	"gatehouse/status"
)

// The Nagios plugin states, which are check_nrpe's exit codes.
const (
	OK       = 0
	Warning  = 1
	Critical = 2
	Unknown  = 3
)

var stateNames = [...]string{OK: "OK", Warning: "WARNING", Critical: "CRITICAL", Unknown: "UNKNOWN"}

// Result is a check's answer: the state and the plugin output line,
// "OK - queue 3 messages | depth=3;100;500;0".
type Result struct {
	State int
	Text  string
}

// Sources are where the checks read: PID 1's status, the host's kernel
// figures, the relay's socket (the queue's oldest message), the outbound
// path test and the cluster service's socket (the cluster as this node
// sees it).
type Sources struct {
	Status      func() control.Status
	LoadAvg     func() ([3]float64, error)
	Memory      func() (total, available uint64, err error)
	DiskFree    func(path string) (total, free uint64, err error)
	QueueOldest func() (time.Time, error) // zero: the queue is empty
	Paths       func(ctx context.Context, c *config.Config) []paths.Result
	Cluster     func(ctx context.Context) (*status.Cluster, error)
	Now         func() time.Time
}

// HostSources are the real ones: the control socket at controlSocket,
// /proc, statfs, the relay's socket at relaySocket, paths.Check, the
// cluster service's socket at clusterSocket.
func HostSources(controlSocket, relaySocket, clusterSocket string, resolver paths.Resolver) Sources {
	return Sources{
		Status:   control.Client{Socket: controlSocket}.Status,
		LoadAvg:  loadAvg,
		Memory:   memory,
		DiskFree: diskFree,
		QueueOldest: func() (time.Time, error) {
			var resp status.RelayResponse
			if err := sockrpc.Call(relaySocket, 5*time.Second, status.RelayRequest{Verb: "list"}, &resp); err != nil {
				return time.Time{}, err
			}
			var oldest time.Time
			for _, m := range resp.List {
				if oldest.IsZero() || m.Arrived.Before(oldest) {
					oldest = m.Arrived
				}
			}
			return oldest, nil
		},
		Paths: func(ctx context.Context, c *config.Config) []paths.Result {
			return paths.Check(ctx, paths.Table(c), 3*time.Second, resolver)
		},
		Cluster: func(ctx context.Context) (*status.Cluster, error) {
			return ClusterStatus(ctx, clusterSocket)
		},
		Now: time.Now,
	}
}

// ClusterStatus asks the cluster service at socket for the cluster's
// status, within ctx's deadline (8 s without one). On a backend that is
// not the leader the service asks the leader, which takes a round trip.
func ClusterStatus(ctx context.Context, socket string) (*status.Cluster, error) {
	timeout := 8 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("cluster service: no time left to ask")
	}
	var resp status.ClusterResponse
	if err := sockrpc.Call(socket, timeout, status.ClusterRequest{Verb: "status"}, &resp); err != nil {
		return nil, fmt.Errorf("cluster service: %w", err)
	}
	if resp.Status == nil {
		return nil, fmt.Errorf("cluster service: the answer has no status")
	}
	return resp.Status, nil
}

// Query is a parsed request: a command and its arguments.
type Query struct {
	Command string
	Args    []string
}

// nastyMetachars are the characters the nrpe daemon refuses anywhere in a
// request (its NASTY_METACHARS).
const nastyMetachars = "|`&><'\\[]{};\r\n"

// MaxArguments is the nrpe daemon's MAX_COMMAND_ARGUMENTS.
const MaxArguments = 16

// ParseQuery splits "command!arg1!arg2" and refuses what the nrpe daemon
// refuses: an empty request, its metacharacters, arguments when they are
// not allowed, an empty argument or "$(".
func ParseQuery(buf string, allowArgs bool) (Query, error) {
	if buf == "" {
		return Query{}, fmt.Errorf("empty request")
	}
	if i := strings.IndexAny(buf, nastyMetachars); i >= 0 {
		return Query{}, fmt.Errorf("request contains the forbidden character %q", buf[i])
	}
	parts := strings.Split(buf, "!")
	q := Query{Command: parts[0], Args: parts[1:]}
	if len(q.Args) > 0 && !allowArgs {
		return Query{}, fmt.Errorf("arguments are not allowed (nrpe.allow_arguments is off)")
	}
	if len(q.Args) > MaxArguments {
		return Query{}, fmt.Errorf("%d arguments, at most %d", len(q.Args), MaxArguments)
	}
	for i, a := range q.Args {
		if a == "" {
			return Query{}, fmt.Errorf("argument %d is empty", i+1)
		}
		if strings.Contains(a, "$(") {
			return Query{}, fmt.Errorf("argument %d contains a command substitution", i+1)
		}
	}
	return q, nil
}

// metric is one measured value with its thresholds.
type metric struct {
	name, unit string
	value      float64
	warn, crit *config.Range
	min        string // perfdata minimum, "" for none
	absolute   bool   // thresholds apply to |value| (an offset)
}

func (m metric) state() int {
	v := m.value
	if m.absolute {
		v = math.Abs(v)
	}
	switch {
	case m.crit.Alerts(v):
		return Critical
	case m.warn.Alerts(v):
		return Warning
	}
	return OK
}

func (m metric) perf() string {
	v := strconv.FormatFloat(m.value, 'f', -1, 64)
	if m.name == "offset" || m.name == "load1" || m.name == "load5" || m.name == "load15" {
		v = strconv.FormatFloat(m.value, 'f', 3, 64)
	}
	return fmt.Sprintf("%s=%s%s;%s;%s;%s", m.name, v, m.unit, m.warn.String(), m.crit.String(), m.min)
}

// thresholds are a check's ranges: the defaults, then the config's, then
// the request's arguments ($ARG1$ the first metric's warning...).
func thresholds(chk config.NRPECheck, c *config.NRPE, args []string) (map[string][2]*config.Range, error) {
	out := map[string][2]*config.Range{}
	parse := func(s string) *config.Range {
		if s == "" {
			return nil
		}
		r, err := config.ParseRange(s)
		if err != nil {
			return nil // the table's defaults parse (tested)
		}
		return &r
	}
	if len(args) > 2*len(chk.Metrics) {
		return nil, fmt.Errorf("%s takes at most %d arguments (warning and critical of %s)", chk.Name, 2*len(chk.Metrics), metricNames(chk))
	}
	for i, m := range chk.Metrics {
		t := [2]*config.Range{parse(m.Warning), parse(m.Critical)}
		if ct, ok := c.Checks[chk.Name][m.Name]; ok {
			if ct.Warning.Set() {
				t[0] = ct.Warning
			}
			if ct.Critical.Set() {
				t[1] = ct.Critical
			}
		}
		for j := range 2 {
			if k := 2*i + j; k < len(args) {
				r, err := config.ParseRange(args[k])
				if err != nil {
					return nil, fmt.Errorf("argument %d (%s %s): %v", k+1, m.Name, [2]string{"warning", "critical"}[j], err)
				}
				t[j] = &r
			}
		}
		out[m.Name] = t
	}
	return out, nil
}

func metricNames(chk config.NRPECheck) string {
	var n []string
	for _, m := range chk.Metrics {
		n = append(n, m.Name)
	}
	return strings.Join(n, ", ")
}

// Checker answers queries with the built-in checks.
type Checker struct {
	Src     Sources
	Version string
}

// Run answers one query under cfg.
func (k *Checker) Run(ctx context.Context, cfg *config.Config, q Query) Result {
	if q.Command == HelloCommand {
		if len(q.Args) > 0 {
			return Result{Unknown, "NRPE: _NRPE_CHECK takes no arguments"}
		}
		return Result{OK, "NRPE v" + k.Version}
	}
	name, service := q.Command, ""
	if s, ok := strings.CutPrefix(q.Command, "check_service_"); ok && s != "" {
		name, service = "check_services", s
	}
	chk, ok := config.NRPECheckNamed(name)
	if !ok {
		return Result{Unknown, fmt.Sprintf("NRPE: Command '%s' not defined", q.Command)}
	}
	th, err := thresholds(chk, cfg.NRPE, q.Args)
	if err != nil {
		return Result{Unknown, "UNKNOWN - " + err.Error()}
	}
	m := func(name string, v float64) metric {
		for _, cm := range chk.Metrics {
			if cm.Name == name {
				return metric{name: name, unit: cm.Unit, value: v, warn: th[name][0], crit: th[name][1], min: "0"}
			}
		}
		panic("nrpe: no metric " + name) // the table and the code disagree: a test catches it
	}
	switch name {
	case "check_load":
		l, err := k.Src.LoadAvg()
		if err != nil {
			return unknown(err)
		}
		ms := []metric{m("load1", l[0]), m("load5", l[1]), m("load15", l[2])}
		return judge(fmt.Sprintf("load average: %.2f, %.2f, %.2f", l[0], l[1], l[2]), ms, OK)
	case "check_mem":
		total, avail, err := k.Src.Memory()
		if err != nil {
			return unknown(err)
		}
		pct := 100 * float64(avail) / float64(max(total, 1))
		mm := m("available", round2(pct))
		return judge(fmt.Sprintf("memory %.1f%% available (%d MiB of %d MiB)", pct, avail>>20, total>>20), []metric{mm}, OK)
	case "check_cluster":
		if cfg.Cluster == nil {
			return Result{Unknown, "UNKNOWN - not a cluster node (the config has no cluster section)"}
		}
		c, err := k.Src.Cluster(ctx)
		if err != nil {
			return unknown(err)
		}
		return clusterCheck(c, m)
	}
	st := k.Src.Status()
	if st.Mode == "unreachable" {
		return Result{Unknown, "UNKNOWN - the appliance's status is unavailable: " + st.Emergency}
	}
	switch name {
	case "check_disk":
		total, free, err := k.Src.DiskFree(st.Data.Path)
		if err != nil {
			return unknown(err)
		}
		pct := 100 * float64(free) / float64(max(total, 1))
		state := OK
		text := fmt.Sprintf("%s %.1f%% free (%d MiB of %d MiB)", st.Data.Path, pct, free>>20, total>>20)
		if st.Data.ReadOnly {
			state, text = Critical, text+"; READ-ONLY: "+st.Data.Problem
		}
		return judge(text, []metric{m("free", round2(pct))}, state)
	case "check_services":
		return k.services(st, service, m)
	case "check_queue":
		r, ok, err := status.Detail[status.Relay](st.Services, "smtp")
		if err != nil || !ok {
			return Result{Unknown, "UNKNOWN - no relay runs (no smtp section) or it has not reported yet"}
		}
		oldest := 0.0
		if t, err := k.Src.QueueOldest(); err != nil {
			return unknown(fmt.Errorf("queue listing: %w", err))
		} else if !t.IsZero() {
			oldest = math.Max(0, k.Src.Now().Sub(t).Seconds())
		}
		ms := []metric{m("depth", float64(r.Queue.Depth)), m("deferred", float64(r.Queue.Deferred)), m("oldest", math.Round(oldest))}
		return judge(fmt.Sprintf("queue %d messages, %d deferred, %d held, oldest %s", r.Queue.Depth, r.Queue.Deferred, r.Queue.Held,
			(time.Duration(oldest)*time.Second).String()), ms, OK)
	case "check_ntp":
		n, ok, err := status.Detail[status.NTP](st.Services, "ntp")
		if err != nil || !ok {
			return Result{Unknown, "UNKNOWN - the ntp service has not reported yet"}
		}
		if !n.Synced {
			why := "no server answered yet"
			if n.LastError != "" {
				why = n.LastError
			}
			return Result{Critical, "CRITICAL - clock not synchronised: " + why}
		}
		off := m("offset", n.Offset.Seconds())
		off.absolute, off.min = true, ""
		return judge(fmt.Sprintf("offset %s from %s, stratum %d", n.Offset, n.Server, n.Stratum), []metric{off}, OK)
	case "check_collector":
		r, ok, err := status.Detail[status.Relay](st.Services, "smtp")
		if err != nil || !ok {
			return Result{Unknown, "UNKNOWN - no relay runs (no smtp section) or it has not reported yet"}
		}
		failing := 0
		var bad []string
		for _, a := range r.Fetch {
			if a.LastError != "" {
				failing++
				bad = append(bad, fmt.Sprintf("%s failing (%d in a row)", a.Name, a.Failures))
			}
		}
		text := fmt.Sprintf("%d fetch accounts, %d failing", len(r.Fetch), failing)
		if len(bad) > 0 {
			text += ": " + strings.Join(bad, ", ")
		}
		return judge(text, []metric{m("failing", float64(failing))}, OK)
	case "check_firewall":
		fw, ok, err := status.Detail[status.Firewall](st.Services, "firewall")
		if err != nil || !ok {
			return Result{Critical, "CRITICAL - no firewall service reports: the appliance is not filtering"}
		}
		state, text := OK, fw.Summary()
		switch {
		case fw.Ruleset != "config":
			state = Critical
		case fw.LastError != "":
			state, text = Warning, text+"; last apply failed: "+fw.LastError
		}
		return judge(text, []metric{m("rules_in", float64(len(fw.In))), m("drops_in", float64(fw.Drops.In.Packets)), m("drops_out", float64(fw.Drops.Out.Packets))}, state)
	case "check_paths":
		results := k.Src.Paths(ctx, cfg)
		failed, tested := 0, 0
		var bad []string
		for _, r := range results {
			if r.Outcome == paths.Skipped {
				continue
			}
			tested++
			if r.Outcome != paths.OK {
				failed++
				bad = append(bad, fmt.Sprintf("%s %s %s", r.Path.Function, r.Target, r.Outcome))
			}
		}
		text := fmt.Sprintf("%d outbound paths tested, %d failed", tested, failed)
		if len(bad) > 0 {
			text += ": " + strings.Join(bad, "; ")
		}
		return judge(text, []metric{m("failed", float64(failed))}, OK)
	}
	return Result{Unknown, fmt.Sprintf("NRPE: Command '%s' not defined", q.Command)}
}

func (k *Checker) services(st control.Status, only string, m func(string, float64) metric) Result {
	var down []string
	restarts, n := 0, 0
	for _, s := range st.Services {
		if only != "" && s.Name != only {
			continue
		}
		n++
		restarts += s.Restarts
		if s.Phase != status.Running {
			down = append(down, s.Name+" "+string(s.Phase))
		}
	}
	if n == 0 {
		return Result{Unknown, fmt.Sprintf("UNKNOWN - no service %s runs", only)}
	}
	text := fmt.Sprintf("%d services running", n-len(down))
	if only != "" {
		text = fmt.Sprintf("service %s running", only)
		if len(down) > 0 {
			text = "service " + down[0]
		}
	} else if len(down) > 0 {
		text += "; not running: " + strings.Join(down, ", ")
	}
	text += fmt.Sprintf(", %d restarts", restarts)
	return judge(text, []metric{m("down", float64(len(down))), m("restarts", float64(restarts))}, OK)
}

// clusterCheck judges the cluster as this node sees it: the leader's view
// of every node on a backend, only itself on a frontend (the view's note
// says so and goes into the text). A cluster without a leader is
// critical whatever the thresholds: no config can be applied.
func clusterCheck(c *status.Cluster, m func(string, float64) metric) Result {
	if len(c.Nodes) == 0 {
		// A member always sees at least itself: this node has the
		// cluster section but was neither initialised nor joined.
		text := fmt.Sprintf("WARNING - %s is in no cluster yet", c.Node)
		if c.Note != "" {
			text += ": " + c.Note
		}
		return Result{Warning, text}
	}
	unreachable, problems, lag := 0, 0, uint64(0)
	var nodes []string
	for _, n := range c.Nodes {
		line := n.Name + " never reported"
		if n.AgeS >= 0 {
			line = fmt.Sprintf("%s %.1fs", n.Name, n.AgeS)
			// The version it last reported; a node never heard from
			// has none to lag by.
			if c.Config.Version > n.AppliedVersion {
				lag = max(lag, c.Config.Version-n.AppliedVersion)
			}
		}
		if len(n.Problems) > 0 {
			problems++
			line += " (" + strings.Join(n.Problems, ", ") + ")"
		}
		if !n.Reachable {
			unreachable++
		}
		nodes = append(nodes, line)
	}
	state, leader := OK, "leader "+c.Leader
	if c.Leader == "" {
		state, leader = Critical, "NO LEADER"
	}
	text := fmt.Sprintf("%s, %d with problems, %s, config v%d: %s", plural(len(c.Nodes), "node"), problems, leader,
		c.Config.Version, strings.Join(nodes, ", "))
	if c.Note != "" {
		text += "; " + c.Note
	}
	ms := []metric{m("nodes", float64(len(c.Nodes))), m("unreachable", float64(unreachable)), m("problems", float64(problems)), m("lag", float64(lag))}
	return judge(text, ms, state)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// judge is the worst of floor and the metrics' states, with the text and
// the perfdata.
func judge(text string, ms []metric, floor int) Result {
	state := floor
	var perf []string
	for _, m := range ms {
		state = max(state, m.state())
		perf = append(perf, m.perf())
	}
	return Result{state, fmt.Sprintf("%s - %s | %s", stateNames[state], text, strings.Join(perf, " "))}
}

func unknown(err error) Result { return Result{Unknown, "UNKNOWN - " + err.Error()} }

func round2(v float64) float64 { return math.Round(v*100) / 100 }

func loadAvg() ([3]float64, error) {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l, fmt.Errorf("load average: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return l, fmt.Errorf("load average: %q", b)
	}
	for i := range 3 {
		if l[i], err = strconv.ParseFloat(f[i], 64); err != nil {
			return l, fmt.Errorf("load average: %w", err)
		}
	}
	return l, nil
}

func memory() (total, available uint64, err error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, 0, fmt.Errorf("memory: %w", err)
	}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "MemTotal:":
			total = v << 10
		case "MemAvailable:":
			available = v << 10
		}
	}
	if total == 0 {
		return 0, 0, fmt.Errorf("memory: no MemTotal in /proc/meminfo")
	}
	return total, available, nil
}

func diskFree(path string) (total, free uint64, err error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return 0, 0, fmt.Errorf("disk %s: %w", path, err)
	}
	return fs.Blocks * uint64(fs.Bsize), fs.Bavail * uint64(fs.Bsize), nil
}
