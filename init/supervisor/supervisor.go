// Package supervisor runs the appliance's services as child processes, the
// way Postfix's master(8) runs its daemons: each in its own process, so that
// a crash, a panic or a leak in one never takes the others (or PID 1) down.
//
// Services start in dependency order: one starts when every service it needs
// is ready. A service that exits is restarted after an exponential backoff
// that resets once it has run stably. Shutdown stops services in the reverse
// order, each with a deadline. The supervisor owns every service's state; the
// CLI, the serial console and the SSH shell read Snapshot.
package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"gatehouse/init/logring"
	"gatehouse/init/reaper"
	"gatehouse/service"
	"gatehouse/status"
)

// Service is what to run and how.
type Service struct {
	Name    string
	Needs   []string // names of services that must be ready first
	After   []string // conditions (see Condition) that must hold first
	Command []string // argv; Command[0] is a path
	Env     []string // added to a minimal environment
	Dir     string
	// Notify services say when they are ready by writing "READY=1" to the
	// file descriptor named by $NOTIFY_FD (see Notify); others count as
	// ready as soon as they run.
	Notify bool
	// User runs the service as an unprivileged user; nil: as the
	// supervisor's own user (root on the appliance).
	User *User
	// Gated services are started before their needs and conditions hold,
	// held at a gate (see service.AwaitGate) and let through once they do:
	// a program's own start (for a Go binary under emulation, a good part
	// of a second) overlaps with what the service waits for, and the
	// service touches nothing before the gate opens.
	Gated bool
	// Prepare, when set, runs before every start, as the supervisor: it
	// gives the service what it cannot take itself as User (its
	// directories, read access to its files). An error fails that start,
	// which is retried after the backoff.
	Prepare func() error
}

// User is who a service runs as: no supplementary groups, and of root's
// capabilities only Caps.
type User struct {
	UID, GID uint32
	Caps     []uintptr // e.g. unix.CAP_NET_BIND_SERVICE, kept as ambient capabilities
}

// Backoff is the restart policy.
type Backoff struct {
	Initial time.Duration // first delay after a crash
	Max     time.Duration // cap of the doubling delay
	Stable  time.Duration // a run this long resets the delay to Initial
}

// next is the delay before the next start, given the previous delay (zero
// before the first restart) and how long the service ran this time.
func (b Backoff) next(prev, ran time.Duration) time.Duration {
	if prev == 0 || ran >= b.Stable {
		return b.Initial
	}
	return min(2*prev, b.Max)
}

// DefaultBackoff restarts quickly at first and at most once a minute.
var DefaultBackoff = Backoff{Initial: 500 * time.Millisecond, Max: time.Minute, Stable: time.Minute}

// Options configure a Supervisor.
type Options struct {
	Reaper   *reaper.Reaper
	Log      *slog.Logger
	Backoff  Backoff
	LogLines int // lines of output kept per service; default 200
	// Echo is where a service's output lines are logged besides its ring
	// and the feed (the console); default Log.
	Echo *slog.Logger
	// Feed, when set, is handed every service's output lines as they
	// come (the syslog service subscribes to it); it never blocks.
	Feed *logring.Feed
}

// Supervisor runs services. Services are added in groups (PID 1 adds its
// own before the config is read, then those the config asks for); a group
// may need services of earlier groups.
type Supervisor struct {
	opts    Options
	log     *slog.Logger
	stopped chan struct{}

	mu       sync.Mutex
	order    []*unit // dependency order
	units    map[string]*unit
	stopping bool
	conds    map[string]chan struct{} // closed once set
}

type unit struct {
	svc   Service
	needs []*unit
	ready chan struct{} // closed the first time the service is ready
	exit  chan struct{} // closed when the run loop has ended

	lines *logring.Ring // recent output

	mu    sync.Mutex
	state status.State
	child *reaper.Child
}

// New returns a Supervisor with no services.
func New(opts Options) (*Supervisor, error) {
	if opts.Reaper == nil {
		return nil, errors.New("supervisor: no reaper")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Backoff == (Backoff{}) {
		opts.Backoff = DefaultBackoff
	}
	if opts.Echo == nil {
		opts.Echo = opts.Log
	}
	if opts.LogLines <= 0 {
		opts.LogLines = 200
	}
	return &Supervisor{opts: opts, log: opts.Log.With("subsystem", "supervisor"), units: map[string]*unit{},
		stopped: make(chan struct{}), conds: map[string]chan struct{}{}}, nil
}

// Add checks the services (unique names, known needs, no cycles), orders
// them after their needs and starts them. On error nothing is added.
func (s *Supervisor) Add(services ...Service) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return errors.New("supervisor: stopping")
	}
	added := map[string]*unit{}
	for _, svc := range services {
		if svc.Name == "" || len(svc.Command) == 0 {
			return fmt.Errorf("supervisor: service %q has no name or no command", svc.Name)
		}
		if s.units[svc.Name] != nil || added[svc.Name] != nil {
			return fmt.Errorf("supervisor: service %q defined twice", svc.Name)
		}
		added[svc.Name] = &unit{svc: svc, ready: make(chan struct{}), exit: make(chan struct{}),
			lines: logring.New(s.opts.LogLines), state: status.State{Name: svc.Name, Phase: status.Waiting, Since: time.Now()}}
	}
	for _, svc := range services {
		u := added[svc.Name]
		for _, n := range svc.Needs {
			dep := added[n]
			if dep == nil {
				dep = s.units[n]
			}
			if dep == nil {
				return fmt.Errorf("supervisor: service %q needs unknown service %q", svc.Name, n)
			}
			u.needs = append(u.needs, dep)
		}
	}
	// Depth-first topological order of the new services, in the order they
	// were given; services added earlier are placed already.
	var order []*unit
	mark := map[*unit]int{} // 1 visiting, 2 done
	var visit func(u *unit, path []string) error
	visit = func(u *unit, path []string) error {
		if added[u.svc.Name] != u {
			return nil
		}
		switch mark[u] {
		case 1:
			return fmt.Errorf("supervisor: dependency cycle: %s", strings.Join(append(path, u.svc.Name), " -> "))
		case 2:
			return nil
		}
		mark[u] = 1
		for _, d := range u.needs {
			if err := visit(d, append(path, u.svc.Name)); err != nil {
				return err
			}
		}
		mark[u] = 2
		order = append(order, u)
		return nil
	}
	for _, svc := range services {
		if err := visit(added[svc.Name], nil); err != nil {
			return err
		}
	}
	for _, u := range order {
		s.units[u.svc.Name] = u
		s.order = append(s.order, u)
		go s.run(u)
	}
	return nil
}

func (s *Supervisor) all() []*unit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.order)
}

// Order is the start order; shutdown uses its reverse.
func (s *Supervisor) Order() []string {
	var names []string
	for _, u := range s.all() {
		names = append(names, u.svc.Name)
	}
	return names
}

// Ready returns a channel that is closed once every service added so far
// has been ready at least once.
func (s *Supervisor) Ready() <-chan struct{} {
	ch := make(chan struct{})
	units := s.all()
	go func() {
		for _, u := range units {
			<-u.ready
		}
		close(ch)
	}()
	return ch
}

func (s *Supervisor) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// run is one service's life: wait for its needs, then run and restart it
// until the supervisor stops.
func (s *Supervisor) run(u *unit) {
	defer close(u.exit)
	log := s.log.With("service", u.svc.Name)
	waits := make([]<-chan struct{}, 0, len(u.needs)+len(u.svc.After))
	for _, d := range u.needs {
		waits = append(waits, d.ready)
	}
	for _, c := range u.svc.After {
		waits = append(waits, s.Condition(c))
	}
	released := make(chan struct{}) // closed once every wait is over
	go func() {
		for _, w := range waits {
			select {
			case <-w:
			case <-s.stopped:
				return
			}
		}
		close(released)
	}()
	if !u.svc.Gated {
		select {
		case <-released:
		case <-s.stopped:
			u.setPhase(status.Stopped)
			return
		}
	}
	delay := time.Duration(0)
	for {
		started := time.Now()
		exit, err := s.runOnce(u, log, released)
		if s.isStopping() {
			u.setPhase(status.Stopped)
			return
		}
		ran := time.Since(started)
		delay = s.opts.Backoff.next(delay, ran)
		msg := exit
		if err != nil {
			msg = err.Error()
		}
		u.mu.Lock()
		u.state.Phase, u.state.Since, u.state.PID = status.BackingOff, time.Now(), 0
		u.state.LastExit, u.state.NextStart = msg, delay
		u.mu.Unlock()
		log.Warn("service exited; restarting after backoff", "exit", msg, "ran", ran.Round(time.Millisecond), "backoff", delay)
		select {
		case <-time.After(delay):
		case <-s.stopped:
			u.setPhase(status.Stopped)
			return
		}
		u.mu.Lock()
		u.state.Restarts++
		u.mu.Unlock()
	}
}

// runOnce starts the service and waits for it to exit. A gated service is
// let through its gate when released is closed.
func (s *Supervisor) runOnce(u *unit, log *slog.Logger, released <-chan struct{}) (string, error) {
	if u.svc.Prepare != nil {
		if err := u.svc.Prepare(); err != nil {
			return "", fmt.Errorf("prepare: %w", err)
		}
	}
	out, outW, err := os.Pipe()
	if err != nil {
		return "", fmt.Errorf("supervisor: %s: output pipe: %w", u.svc.Name, err)
	}
	cmd := exec.Command(u.svc.Command[0], u.svc.Command[1:]...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin"}, u.svc.Env...)
	cmd.Dir = u.svc.Dir
	cmd.Stdout, cmd.Stderr = outW, outW
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // signals to the service reach its own children too
		Pdeathsig: syscall.SIGKILL, // in host mode, never outlive the supervisor
	}
	if usr := u.svc.User; usr != nil {
		// The kernel switches users in the forked child before the exec,
		// while it is a single thread: no groups, setgid, setuid keeping
		// capabilities, then Caps raised into the ambient set, which the
		// exec turns into exactly Caps permitted and effective. A running
		// Go service cannot drop root this robustly itself: setuid, capset
		// and prctl act on one thread, and the runtime has several.
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: usr.UID, Gid: usr.GID, Groups: []uint32{}}
		cmd.SysProcAttr.AmbientCaps = usr.Caps
	}
	var notify, notifyW *os.File
	if u.svc.Notify {
		if notify, notifyW, err = os.Pipe(); err != nil {
			out.Close()
			outW.Close()
			return "", fmt.Errorf("supervisor: %s: notify pipe: %w", u.svc.Name, err)
		}
		cmd.ExtraFiles = []*os.File{notifyW}
		cmd.Env = append(cmd.Env, service.EnvFD+"=3")
	}
	var gateR, gateW *os.File
	if u.svc.Gated {
		if gateR, gateW, err = os.Pipe(); err != nil {
			out.Close()
			outW.Close()
			if notify != nil {
				notify.Close()
				notifyW.Close()
			}
			return "", fmt.Errorf("supervisor: %s: gate pipe: %w", u.svc.Name, err)
		}
		cmd.ExtraFiles = append(cmd.ExtraFiles, gateR)
		cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d", service.EnvGateFD, 2+len(cmd.ExtraFiles)))
	}
	select {
	case <-released:
		u.setPhase(status.Starting)
	default: // at its gate: still waiting, as far as anyone can tell
	}
	child, err := s.opts.Reaper.Start(cmd)
	outW.Close()
	if notifyW != nil {
		notifyW.Close()
	}
	if gateR != nil {
		gateR.Close()
	}
	if err != nil {
		out.Close()
		if notify != nil {
			notify.Close()
		}
		if gateW != nil {
			gateW.Close()
		}
		return "", fmt.Errorf("start: %w", err)
	}
	exited := make(chan struct{})
	defer close(exited)
	if gateW != nil {
		go func() {
			defer gateW.Close() // without a byte: the service gives up
			select {
			case <-released:
			case <-exited:
				return
			case <-s.stopped:
				return
			}
			if s.isStopping() { // both ready at once: stopping wins
				return
			}
			u.mu.Lock()
			if u.state.Phase == status.Waiting {
				u.state.Phase, u.state.Since = status.Starting, time.Now()
			}
			u.mu.Unlock()
			gateW.Write([]byte{1})
			if !u.svc.Notify {
				u.markReady(log) // runs, now that it is through its gate
			}
		}()
	}
	u.mu.Lock()
	u.child = child
	u.state.PID = child.Pid()
	u.mu.Unlock()
	log.Info("service started", "pid", child.Pid())
	if s.isStopping() { // Stop may have looked before u.child was set
		syscall.Kill(-child.Pid(), syscall.SIGTERM)
	}

	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		// A service's own output is logged as its own subsystem.
		u.collect(out, s.opts.Echo.With("subsystem", u.svc.Name), s.opts.Feed, child.Pid())
	}()
	if notify != nil {
		readers.Add(1)
		go func() {
			defer readers.Done()
			u.readNotify(notify, log, s.setCondition)
		}()
	} else if gateW == nil {
		u.markReady(log)
	}
	exit := child.Wait()
	// The service's own children may hold the pipes open; do not wait on them.
	done := make(chan struct{})
	go func() { readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		out.Close()
		if notify != nil {
			notify.Close()
		}
	}
	u.mu.Lock()
	u.child = nil
	u.mu.Unlock()
	return exit.String(), nil
}

func (u *unit) setPhase(p status.Phase) {
	u.mu.Lock()
	u.state.Phase, u.state.Since = p, time.Now()
	if p == status.Stopped {
		u.state.PID = 0
	}
	u.mu.Unlock()
}

func (u *unit) markReady(log *slog.Logger) {
	u.mu.Lock()
	first := u.state.Phase == status.Starting
	if first {
		u.state.Phase, u.state.Since = status.Running, time.Now()
	}
	u.mu.Unlock()
	select {
	case <-u.ready:
	default:
		close(u.ready)
	}
	if first {
		log.Info("service ready")
	}
}

func (u *unit) readNotify(r io.ReadCloser, log *slog.Logger, setCondition func(name, by string)) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == service.MsgReady:
			u.markReady(log)
		case strings.HasPrefix(line, service.PrefixStatus):
			u.mu.Lock()
			u.state.Status = strings.TrimPrefix(line, service.PrefixStatus)
			u.mu.Unlock()
		case strings.HasPrefix(line, service.PrefixCondition):
			setCondition(strings.TrimPrefix(line, service.PrefixCondition), u.svc.Name)
		case strings.HasPrefix(line, service.PrefixDetail):
			d := json.RawMessage(strings.TrimPrefix(line, service.PrefixDetail))
			if json.Valid(d) {
				u.mu.Lock()
				u.state.Detail = d
				u.mu.Unlock()
			}
		}
	}
}

// collect keeps the service's output lines and passes them to the log
// and to the feed.
func (u *unit) collect(r io.ReadCloser, log *slog.Logger, feed *logring.Feed, pid int) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64*1024)
	for sc.Scan() {
		line := sc.Text()
		u.lines.Add(line)
		feed.Publish(logring.Record{Service: u.svc.Name, PID: pid, Time: time.Now(), Line: line})
		log.Info(line)
	}
}

// Condition returns a channel that is closed once the named condition
// holds, such as "clock-synced" from the time service. Conditions, once
// set, stay set.
func (s *Supervisor) Condition(name string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.conds[name]
	if c == nil {
		c = make(chan struct{})
		s.conds[name] = c
	}
	return c
}

// SetCondition says that a condition holds, on behalf of PID 1 itself
// (such as "modules-loaded").
func (s *Supervisor) SetCondition(name string) { s.setCondition(name, "init") }

func (s *Supervisor) setCondition(name, by string) {
	s.mu.Lock()
	c := s.conds[name]
	if c == nil {
		c = make(chan struct{})
		s.conds[name] = c
	}
	select {
	case <-c:
		s.mu.Unlock()
		return
	default:
	}
	close(c)
	s.mu.Unlock()
	s.log.Info("condition holds", "condition", name, "service", by)
}

// Conditions lists the conditions that hold.
func (s *Supervisor) Conditions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name, c := range s.conds {
		select {
		case <-c:
			out = append(out, name)
		default:
		}
	}
	slices.Sort(out)
	return out
}

// SignalAll sends sig to every running service (SIGHUP: re-read the config).
func (s *Supervisor) SignalAll(sig syscall.Signal) {
	for _, u := range s.all() {
		u.mu.Lock()
		c := u.child
		u.mu.Unlock()
		if c != nil {
			c.Signal(sig)
		}
	}
}

// signal sends sig to the service's whole process group, so that whatever it
// started goes too.
func (u *unit) signal(sig syscall.Signal) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.child == nil {
		return
	}
	select {
	case <-u.child.Done():
		return
	default:
	}
	if sig == syscall.SIGTERM {
		u.state.Phase, u.state.Since = status.Stopping, time.Now()
	}
	syscall.Kill(-u.child.Pid(), sig)
}

// Logs returns up to n of the service's most recent output lines, oldest first.
func (s *Supervisor) Logs(name string, n int) ([]string, error) {
	s.mu.Lock()
	u := s.units[name]
	s.mu.Unlock()
	if u == nil {
		return nil, fmt.Errorf("no service %q", name)
	}
	return u.lines.Last(n), nil
}

// Snapshot returns every service's state, in start order.
func (s *Supervisor) Snapshot() []status.State {
	units := s.all()
	out := make([]status.State, 0, len(units))
	for _, u := range units {
		u.mu.Lock()
		out = append(out, u.state)
		u.mu.Unlock()
	}
	return out
}

// Stop stops every service in reverse dependency order: a service is sent
// SIGTERM only once every service that needs it has stopped, and SIGKILL if
// it has not exited when ctx ends. It returns the names in the order they
// stopped.
func (s *Supervisor) Stop(ctx context.Context) []string {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return nil
	}
	s.stopping = true
	close(s.stopped)
	s.mu.Unlock()

	var stoppedOrder []string
	for _, u := range slices.Backward(s.all()) {
		u.signal(syscall.SIGTERM)
		select {
		case <-u.exit:
		case <-ctx.Done():
			s.log.Warn("service did not stop in time; killing it", "service", u.svc.Name)
			u.signal(syscall.SIGKILL)
			<-u.exit
		}
		stoppedOrder = append(stoppedOrder, u.svc.Name)
		s.log.Info("service stopped", "service", u.svc.Name)
	}
	return stoppedOrder
}
