package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gatehouse/init/logring"
	"gatehouse/init/reaper"
	"gatehouse/service"
	"gatehouse/status"
	"gatehouse/test/asuser"

	"golang.org/x/sys/unix"
)

// The test binary doubles as the services under test: with HELPER set it
// behaves as the named kind of service instead of running tests.
func TestMain(m *testing.M) {
	if kind := os.Getenv("HELPER"); kind != "" {
		helper(kind)
		return
	}
	os.Exit(m.Run())
}

func record(event string) {
	f, err := os.OpenFile(os.Getenv("JOURNAL"), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		panic(err)
	}
	fmt.Fprintf(f, "%s %s %d\n", event, os.Getenv("NAME"), time.Now().UnixNano())
	f.Close()
}

func helper(kind string) {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	if kind == "gated" { // as cmdService: started early, held at its gate
		record("exec")
		if err := service.AwaitGate(); err != nil {
			record("not-released")
			return
		}
		kind = "steady"
	}
	record("start")
	switch kind {
	case "steady": // ready after a pause, then serves until SIGTERM
		time.Sleep(100 * time.Millisecond)
		record("ready")
		n := service.NewNotifier()
		n.Status("serving")
		n.Detail(map[string]int{"answers": 42})
		n.Ready()
		<-term
		record("stop")
	case "syncer": // sets a condition after a while
		time.Sleep(100 * time.Millisecond)
		record("synced")
		n := service.NewNotifier()
		n.Ready()
		n.Condition("clock-synced")
		<-term
	case "gate": // running at once, a condition set; ready only once the file GATE exists
		n := service.NewNotifier()
		n.Condition("gate-started")
		for {
			if _, err := os.Stat(os.Getenv("GATE")); err == nil {
				break
			}
			select {
			case <-term:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
		record("ready")
		n.Ready()
		<-term
	case "crash":
		fmt.Println("about to crash")
		os.Exit(3)
	case "stubborn": // ignores SIGTERM
		signal.Ignore(syscall.SIGTERM)
		service.NewNotifier().Ready()
		select {}
	case "whoami": // writes who it runs as and whether it may bind port 1
		var out strings.Builder
		status, _ := os.ReadFile("/proc/self/status")
		for _, l := range strings.Split(string(status), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && slices.Contains([]string{"Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapAmb"}, k) {
				fmt.Fprintf(&out, "%s: %s\n", k, strings.Join(strings.Fields(v), " "))
			}
		}
		if l, err := net.Listen("tcp", "127.0.0.1:1"); err != nil {
			fmt.Fprintf(&out, "bind: %v\n", err)
		} else {
			l.Close()
			out.WriteString("bind: ok\n")
		}
		os.WriteFile(os.Getenv("WHOAMI"), []byte(out.String()), 0o644)
		service.NewNotifier().Ready()
		<-term
	case "chatty":
		for i := range 500 {
			fmt.Printf("line %d\n", i)
		}
		service.NewNotifier().Ready()
		<-term
	}
}

type world struct {
	journal string
	reaper  *reaper.Reaper
}

func newWorld(t *testing.T) *world {
	t.Helper()
	r := reaper.New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go r.Run(ctx)
	return &world{journal: filepath.Join(t.TempDir(), "journal"), reaper: r}
}

func (w *world) svc(name, kind string, needs ...string) Service {
	exe, _ := os.Executable()
	return Service{Name: name, Needs: needs, Command: []string{exe}, Notify: true,
		Env: []string{"HELPER=" + kind, "NAME=" + name, "JOURNAL=" + w.journal}}
}

func (w *world) start(t *testing.T, b Backoff, svcs ...Service) *Supervisor {
	t.Helper()
	s, err := New(Options{Reaper: w.reaper, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Backoff: b})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(svcs...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Stop(ctx)
	})
	return s
}

// events returns the journal's "event name" pairs in order, with times.
func (w *world) events() (evs []string, at []int64) {
	b, _ := os.ReadFile(w.journal)
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var ev, name string
		var ns int64
		if _, err := fmt.Sscan(l, &ev, &name, &ns); err == nil {
			evs = append(evs, ev+" "+name)
			at = append(at, ns)
		}
	}
	return evs, at
}

func waitReady(t *testing.T, s *Supervisor) {
	t.Helper()
	select {
	case <-s.Ready():
	case <-time.After(20 * time.Second):
		t.Fatalf("not ready: %+v", s.Snapshot())
	}
}

func TestDependencyOrder(t *testing.T) {
	w := newWorld(t)
	// Given in the wrong order on purpose: web needs app, app needs db.
	s := w.start(t, DefaultBackoff, w.svc("web", "steady", "app"), w.svc("app", "steady", "db"), w.svc("db", "steady"))
	if got := strings.Join(s.Order(), ","); got != "db,app,web" {
		t.Fatalf("order %s, want db,app,web", got)
	}
	waitReady(t, s)
	evs, _ := w.events()
	want := []string{"start db", "ready db", "start app", "ready app", "start web", "ready web"}
	if !slices.Equal(evs, want) {
		t.Errorf("events %q, want %q (a service started before its needs were ready)", evs, want)
	}
	for _, st := range s.Snapshot() {
		if st.Phase != status.Running || st.PID == 0 || st.Status != "serving" || string(st.Detail) != `{"answers":42}` {
			t.Errorf("%s: %+v, want running with a pid and status", st.Name, st)
		}
	}
}

func TestShutdownInReverseOrder(t *testing.T) {
	w := newWorld(t)
	s := w.start(t, DefaultBackoff, w.svc("web", "steady", "app"), w.svc("app", "steady", "db"), w.svc("db", "steady"))
	waitReady(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got := strings.Join(s.Stop(ctx), ","); got != "web,app,db" {
		t.Errorf("stop order %s, want web,app,db", got)
	}
	evs, _ := w.events()
	var stops []string
	for _, e := range evs {
		if strings.HasPrefix(e, "stop ") {
			stops = append(stops, strings.TrimPrefix(e, "stop "))
		}
	}
	if got := strings.Join(stops, ","); got != "web,app,db" {
		t.Errorf("services saw SIGTERM in order %s, want web,app,db", got)
	}
	for _, st := range s.Snapshot() {
		if st.Phase != status.Stopped {
			t.Errorf("%s is %s after Stop", st.Name, st.Phase)
		}
	}
}

func TestCrashRestartsWithBackoffAndIsolation(t *testing.T) {
	w := newWorld(t)
	b := Backoff{Initial: 20 * time.Millisecond, Max: 80 * time.Millisecond, Stable: time.Hour}
	s := w.start(t, b, w.svc("steady", "steady"), w.svc("crasher", "crash"))
	deadline := time.Now().Add(20 * time.Second)
	var crasher, steady status.State
	for time.Now().Before(deadline) {
		snap := s.Snapshot()
		steady, crasher = snap[0], snap[1]
		if crasher.Restarts >= 5 && steady.Phase == status.Running {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if crasher.Restarts < 5 {
		t.Fatalf("crasher restarted %d times, want >= 5: %+v", crasher.Restarts, crasher)
	}
	if crasher.LastExit != "exit status 3" {
		t.Errorf("crasher last exit %q", crasher.LastExit)
	}
	evs, at := w.events()
	var steadyStarts int
	var crashTimes []int64
	for i, e := range evs {
		switch e {
		case "start steady":
			steadyStarts++
		case "start crasher":
			crashTimes = append(crashTimes, at[i])
		}
	}
	if steadyStarts != 1 || steady.Phase != status.Running || steady.Restarts != 0 {
		t.Errorf("steady service disturbed by the crasher: %d starts, %+v", steadyStarts, steady)
	}
	// Restarts never come sooner than the backoff allows: 20, 40, 80, 80 ms.
	for i := 1; i < len(crashTimes) && i <= 4; i++ {
		min := b.Initial << (i - 1)
		if min > b.Max {
			min = b.Max
		}
		if gap := time.Duration(crashTimes[i] - crashTimes[i-1]); gap < min {
			t.Errorf("restart %d came %v after the previous start, backoff was %v", i, gap, min)
		}
	}
	logs, _ := s.Logs("crasher", 1)
	if len(logs) != 1 || logs[0] != "about to crash" {
		t.Errorf("crasher logs %q", logs)
	}
}

func TestBackoffSequence(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 8 * time.Second, Stable: time.Minute}
	var got []time.Duration
	d := time.Duration(0)
	for _, ran := range []time.Duration{0, 0, 0, 0, 0, 0, 2 * time.Minute, 0} {
		d = b.next(d, ran)
		got = append(got, d)
	}
	want := []time.Duration{1, 2, 4, 8, 8, 8, 1, 2}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("delays %v, want %v seconds", got, want)
		}
	}
}

func TestStopKillsAfterDeadline(t *testing.T) {
	w := newWorld(t)
	s := w.start(t, DefaultBackoff, w.svc("stubborn", "stubborn"))
	waitReady(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan []string)
	go func() { done <- s.Stop(ctx) }()
	select {
	case got := <-done:
		if len(got) != 1 {
			t.Errorf("stopped %v", got)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Stop never returned for a service that ignores SIGTERM")
	}
}

func TestLogsKeepTheLastLines(t *testing.T) {
	w := newWorld(t)
	s := w.start(t, DefaultBackoff, w.svc("chatty", "chatty"))
	waitReady(t, s)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		lines, err := s.Logs("chatty", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(lines) == 200 && lines[199] == "line 499" {
			if lines[0] != "line 300" {
				t.Errorf("oldest kept line %q, want line 300", lines[0])
			}
			last, _ := s.Logs("chatty", 3)
			if strings.Join(last, ",") != "line 497,line 498,line 499" {
				t.Errorf("last 3: %q", last)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("output never collected")
}

func TestNewRejectsBadGraphs(t *testing.T) {
	r := reaper.New(slog.Default())
	for name, svcs := range map[string][]Service{
		"cycle":     {{Name: "a", Command: []string{"x"}, Needs: []string{"b"}}, {Name: "b", Command: []string{"x"}, Needs: []string{"a"}}},
		"unknown":   {{Name: "a", Command: []string{"x"}, Needs: []string{"nope"}}},
		"duplicate": {{Name: "a", Command: []string{"x"}}, {Name: "a", Command: []string{"x"}}},
		"nocommand": {{Name: "a"}},
	} {
		s, _ := New(Options{Reaper: r})
		if err := s.Add(svcs...); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if len(s.Order()) != 0 {
			t.Errorf("%s: services added despite the error: %v", name, s.Order())
		}
	}
}

func TestNoServicesIsReadyAtOnce(t *testing.T) {
	w := newWorld(t)
	s := w.start(t, DefaultBackoff)
	waitReady(t, s)
}

// A later group may need services of an earlier one; it starts after them.
func TestAddLaterGroupNeedsEarlier(t *testing.T) {
	w := newWorld(t)
	s := w.start(t, DefaultBackoff, w.svc("base", "steady"))
	if err := s.Add(w.svc("top", "steady", "base")); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(w.svc("base", "steady")); err == nil {
		t.Error("a second service named base was accepted")
	}
	waitReady(t, s)
	evs, _ := w.events()
	if want := []string{"start base", "ready base", "start top", "ready top"}; !slices.Equal(evs, want) {
		t.Errorf("events %q, want %q", evs, want)
	}
}

// A service that is After a condition starts only once another service
// has said that it holds.
func TestAfterCondition(t *testing.T) {
	w := newWorld(t)
	waiter := w.svc("cluster", "steady")
	waiter.After = []string{"clock-synced"}
	s := w.start(t, DefaultBackoff, waiter, w.svc("ntp", "syncer"))
	waitReady(t, s)
	evs, _ := w.events()
	iSynced, iStart := slices.Index(evs, "synced ntp"), slices.Index(evs, "start cluster")
	if iSynced < 0 || iStart < iSynced {
		t.Errorf("events %q: cluster started before the clock was synced", evs)
	}
	if got := s.Conditions(); !slices.Equal(got, []string{"clock-synced"}) {
		t.Errorf("conditions %v", got)
	}
}

// A service that needs another starts only once that one is ready, not
// when it merely runs or has set a condition, however long readiness
// takes; a service after the condition starts meanwhile. (So the listeners
// wait for the firewall's full ruleset while the network comes up under
// its default deny.)
func TestNeedsWaitsForReadinessNotStart(t *testing.T) {
	w := newWorld(t)
	gate := filepath.Join(t.TempDir(), "gate")
	fwall := w.svc("firewall", "gate")
	fwall.Env = append(fwall.Env, "GATE="+gate)
	net := w.svc("network", "steady")
	net.After = []string{"gate-started"}
	s := w.start(t, DefaultBackoff, fwall, net, w.svc("ssh", "steady", "firewall"))
	phase := func(name string) status.Phase {
		for _, st := range s.Snapshot() {
			if st.Name == name {
				return st.Phase
			}
		}
		return ""
	}
	for deadline := time.Now().Add(20 * time.Second); phase("network") != status.Running; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("network never ran: %+v", s.Snapshot())
		}
	}
	if p := phase("firewall"); p != status.Starting {
		t.Errorf("firewall %s before its gate opened, want starting", p)
	}
	if p := phase("ssh"); p != status.Waiting {
		t.Errorf("ssh %s while the firewall runs but is not ready, want waiting", p)
	}
	os.WriteFile(gate, nil, 0o644)
	waitReady(t, s)
	evs, _ := w.events()
	if iReady, iStart := slices.Index(evs, "ready firewall"), slices.Index(evs, "start ssh"); iReady < 0 || iStart < iReady {
		t.Errorf("events %q: ssh started before the firewall was ready", evs)
	}
}

// A service with a User runs as that user with no supplementary groups and
// only the capabilities named (ambient: they survive the exec); without
// CAP_NET_BIND_SERVICE it may not bind a port below 1024. Prepare runs
// before every start, and a failed one is a failed start, retried.
func TestUserAndPrepare(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs a service as another user")
	}
	w := newWorld(t)
	exe := asuser.Executable(t)
	dir := asuser.Dir(t)
	whoami := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		return string(b)
	}
	var prepared atomic.Int32
	bind := Service{Name: "bind", Command: []string{exe}, Notify: true,
		Env:  []string{"HELPER=whoami", "NAME=bind", "JOURNAL=/dev/null", "WHOAMI=" + filepath.Join(dir, "bind")},
		User: &User{UID: 65534, GID: 65534, Caps: []uintptr{unix.CAP_NET_BIND_SERVICE}},
		Prepare: func() error {
			if prepared.Add(1) == 1 {
				return errors.New("directory not ready")
			}
			return nil
		}}
	plain := Service{Name: "plain", Command: []string{exe}, Notify: true,
		Env:  []string{"HELPER=whoami", "NAME=plain", "JOURNAL=/dev/null", "WHOAMI=" + filepath.Join(dir, "plain")},
		User: &User{UID: 65534, GID: 65534}}
	// Both write into dir as uid 65534.
	os.Chmod(dir, 0o777)
	s := w.start(t, Backoff{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond, Stable: time.Minute}, bind, plain)
	waitReady(t, s)

	const netBindService = "0000000000000400" // 1 << CAP_NET_BIND_SERVICE
	for _, want := range []string{"Uid: 65534 65534 65534 65534", "Gid: 65534 65534 65534 65534", "Groups: \n",
		"CapInh: " + netBindService, "CapPrm: " + netBindService, "CapEff: " + netBindService, "CapAmb: " + netBindService, "bind: ok"} {
		if got := whoami("bind"); !strings.Contains(got, want) {
			t.Errorf("with CAP_NET_BIND_SERVICE: no %q in\n%s", want, got)
		}
	}
	const none = "0000000000000000"
	for _, want := range []string{"Uid: 65534 65534 65534 65534", "CapPrm: " + none, "CapEff: " + none, "CapAmb: " + none, "permission denied"} {
		if got := whoami("plain"); !strings.Contains(got, want) {
			t.Errorf("without capabilities: no %q in\n%s", want, got)
		}
	}
	if n := prepared.Load(); n != 2 {
		t.Errorf("Prepare ran %d times, want 2 (a failure, then the start)", n)
	}
	for _, st := range s.Snapshot() {
		if st.Name == "bind" && (st.Restarts != 1 || !strings.Contains(st.LastExit, "directory not ready")) {
			t.Errorf("bind: restarts %d, last exit %q; want 1 and the Prepare error", st.Restarts, st.LastExit)
		}
	}
}

func TestFeedGetsEveryServiceLine(t *testing.T) {
	w := newWorld(t)
	feed := &logring.Feed{}
	sub, err := feed.Subscribe(0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	s, err := New(Options{Reaper: w.reaper, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Feed: feed})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(w.svc("chatty", "chatty")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Stop(ctx)
	})
	for i := range 500 {
		select {
		case r := <-sub.C():
			if want := fmt.Sprintf("line %d", i); r.Service != "chatty" || r.Line != want || r.PID == 0 || r.Time.IsZero() {
				t.Fatalf("record %d: %+v, want chatty's %q with pid and time", i, r, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("record %d never came", i)
		}
	}
}

// A gated service runs before its condition holds, at its gate, looking
// waiting; it does its work only once the condition holds. Stopped at the
// gate, it ends without being let through.
func TestGatedServiceStartsEarlyAndWaits(t *testing.T) {
	w := newWorld(t)
	gated := w.svc("relay", "gated")
	gated.After, gated.Gated = []string{"go"}, true
	s := w.start(t, DefaultBackoff, gated)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if evs, _ := w.events(); slices.Contains(evs, "exec relay") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the gated service was not started before its condition held")
		}
	}
	st := s.Snapshot()[0]
	if st.Phase != status.Waiting || st.PID == 0 {
		t.Errorf("at its gate: phase %s pid %d, want waiting with a process", st.Phase, st.PID)
	}
	if evs, _ := w.events(); slices.Contains(evs, "start relay") {
		t.Fatalf("events %q: through the gate before the condition held", evs)
	}
	s.SetCondition("go")
	waitReady(t, s)
	evs, _ := w.events()
	if !slices.Equal(evs[:2], []string{"exec relay", "start relay"}) {
		t.Errorf("events %q", evs)
	}

	// Stopped while at the gate: the process ends, never let through.
	// (The same world: one reaper per process.)
	held := w.svc("held", "gated")
	held.After, held.Gated = []string{"never"}, true
	s2, err := New(Options{Reaper: w.reaper, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	s2.Add(held)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if evs, _ := w.events(); slices.Contains(evs, "exec held") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the held service never started")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s2.Stop(ctx)
	if ctx.Err() != nil {
		t.Error("the held service had to be killed")
	}
	if evs, _ := w.events(); slices.Contains(evs, "start held") || !slices.Contains(evs, "not-released held") {
		t.Errorf("events %q: want the held service to end at its gate", evs)
	}
}

// A gated service that does not notify counts as ready once through its
// gate, not when its process starts.
func TestGatedWithoutNotifyReadyAfterGate(t *testing.T) {
	w := newWorld(t)
	svc := w.svc("plain", "gated")
	svc.After, svc.Gated, svc.Notify = []string{"go"}, true, false
	s := w.start(t, DefaultBackoff, svc)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if evs, _ := w.events(); slices.Contains(evs, "exec plain") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never started")
		}
	}
	// Ready would close at once if it counted; a while without is enough
	// to catch it (a pass here cannot hide a later failure).
	select {
	case <-s.Ready():
		t.Fatal("ready while at its gate")
	case <-time.After(300 * time.Millisecond):
	}
	s.SetCondition("go")
	waitReady(t, s)
}
