package service

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/config"
)

// fakeReconciler records each round's config and answers what the test
// set.
type fakeReconciler struct {
	mu     sync.Mutex
	rounds []*config.Config
	next   time.Duration
	errs   []error // one per round, in order; nil beyond
	ready  func(round int) bool
	called chan *config.Config
}

func (f *fakeReconciler) Reconcile(_ context.Context, c *config.Config) (time.Duration, error) {
	f.mu.Lock()
	f.rounds = append(f.rounds, c)
	n := len(f.rounds)
	var err error
	if n <= len(f.errs) {
		err = f.errs[n-1]
	}
	next := f.next
	f.mu.Unlock()
	if f.called != nil {
		f.called <- c
	}
	return next, err
}

func (f *fakeReconciler) Status() Status {
	f.mu.Lock()
	n := len(f.rounds)
	f.mu.Unlock()
	return Status{Ready: f.ready == nil || f.ready(n), Summary: "round " + strconv.Itoa(n), Detail: map[string]int{"round": n}}
}

// notifyPipe is a Notifier whose lines the test reads.
func notifyPipe(t *testing.T) (*Notifier, <-chan string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(); r.Close() })
	lines := make(chan string, 100)
	go func() {
		s := bufio.NewScanner(r)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	return &Notifier{f: w}, lines
}

func writeConfig(t *testing.T, file, host string) {
	t.Helper()
	if err := os.WriteFile(file, []byte("hostname: "+host+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

type runner struct {
	t      *testing.T
	file   string
	reload chan struct{}
	kick   chan struct{}
	lines  <-chan string
	cancel context.CancelFunc
	done   chan error
	log    *strings.Builder
	logMu  *sync.Mutex
}

func start(t *testing.T, f *fakeReconciler) *runner {
	t.Helper()
	file := filepath.Join(t.TempDir(), "appliance.yaml")
	writeConfig(t, file, "gw1")
	n, lines := notifyPipe(t)
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{t: t, file: file, reload: make(chan struct{}, 1), kick: make(chan struct{}, 1), lines: lines,
		cancel: cancel, done: make(chan error, 1), log: &strings.Builder{}, logMu: &sync.Mutex{}}
	log := slog.New(slog.NewTextHandler(lockedWriter{r.logMu, r.log}, nil))
	go func() {
		r.done <- Run(ctx, Options{Config: file, Log: log, Notify: n, Reload: r.reload, Kick: r.kick}, f)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	return r
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (r *runner) logged() string {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	return r.log.String()
}

// expect reads the next notify lines and compares them with want.
func (r *runner) expect(want ...string) {
	r.t.Helper()
	for _, w := range want {
		select {
		case got := <-r.lines:
			if got != w {
				r.t.Fatalf("notify line %q, want %q", got, w)
			}
		case <-time.After(5 * time.Second):
			r.t.Fatalf("no notify line; want %q", w)
		}
	}
}

func waitRound(t *testing.T, called <-chan *config.Config) *config.Config {
	t.Helper()
	select {
	case c := <-called:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no round")
	}
	return nil
}

func noRound(t *testing.T, called <-chan *config.Config, within time.Duration) {
	t.Helper()
	select {
	case c := <-called:
		t.Fatalf("a round ran (config of %s); want none", c.Hostname)
	case <-time.After(within):
	}
}

// The first round runs on the config file's content; its status goes out,
// then ready, once.
func TestRunFirstRoundReportsThenReady(t *testing.T) {
	f := &fakeReconciler{called: make(chan *config.Config, 10)}
	r := start(t, f)
	if c := waitRound(t, f.called); c.Hostname != "gw1" {
		t.Errorf("first round on hostname %q, want gw1", c.Hostname)
	}
	r.expect(`DETAIL={"round":1}`, "STATUS=round 1", "READY=1")
	r.kick <- struct{}{}
	waitRound(t, f.called)
	r.expect(`DETAIL={"round":2}`, "STATUS=round 2") // no second READY
	select {
	case l := <-r.lines:
		t.Errorf("unexpected notify line %q", l)
	case <-time.After(50 * time.Millisecond):
	}
}

// Ready waits for the round that says so.
func TestRunReadyWhenReconcilerSaysSo(t *testing.T) {
	f := &fakeReconciler{called: make(chan *config.Config, 10), next: 10 * time.Millisecond,
		ready: func(n int) bool { return n >= 3 }}
	r := start(t, f)
	r.expect(`DETAIL={"round":1}`, "STATUS=round 1", `DETAIL={"round":2}`, "STATUS=round 2",
		`DETAIL={"round":3}`, "STATUS=round 3", "READY=1")
}

// An error in the first round ends the service with it.
func TestRunFirstRoundErrorEnds(t *testing.T) {
	boom := errors.New("no backend")
	f := &fakeReconciler{errs: []error{boom}}
	r := start(t, f)
	select {
	case err := <-r.done:
		if !errors.Is(err, boom) {
			t.Fatalf("Run returned %v, want %v", err, boom)
		}
		r.done <- err // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not end")
	}
}

// A config that does not load ends the service before any round.
func TestRunBadConfigEnds(t *testing.T) {
	file := filepath.Join(t.TempDir(), "appliance.yaml")
	writeConfig(t, file, "-bad")
	f := &fakeReconciler{}
	err := Run(context.Background(), Options{Config: file, Log: slog.New(slog.DiscardHandler), Notify: &Notifier{}}, f)
	if err == nil || len(f.rounds) != 0 {
		t.Fatalf("Run = %v after %d rounds; want a config error and none", err, len(f.rounds))
	}
}

// Later errors are logged; the service goes on.
func TestRunLaterErrorLogged(t *testing.T) {
	f := &fakeReconciler{called: make(chan *config.Config, 10), errs: []error{nil, errors.New("apply refused")}}
	r := start(t, f)
	waitRound(t, f.called)
	r.kick <- struct{}{}
	waitRound(t, f.called)
	r.kick <- struct{}{}
	waitRound(t, f.called)
	if !strings.Contains(r.logged(), "apply refused") {
		t.Errorf("error not logged:\n%s", r.logged())
	}
}

// A reload hands the new config to the next round; a config that fails
// to load is logged and runs no round: the running config stays.
func TestRunReload(t *testing.T) {
	f := &fakeReconciler{called: make(chan *config.Config, 10)}
	r := start(t, f)
	first := waitRound(t, f.called)

	writeConfig(t, r.file, "gw2")
	r.reload <- struct{}{}
	if c := waitRound(t, f.called); c.Hostname != "gw2" {
		t.Fatalf("round after reload on hostname %q, want gw2", c.Hostname)
	}

	writeConfig(t, r.file, "-bad")
	r.reload <- struct{}{}
	noRound(t, f.called, 200*time.Millisecond)
	if !strings.Contains(r.logged(), "new config rejected") {
		t.Errorf("rejected config not logged:\n%s", r.logged())
	}
	r.kick <- struct{}{}
	if c := waitRound(t, f.called); c.Hostname != "gw2" || c == first {
		t.Fatalf("round after a failed reload on hostname %q, want the running gw2", c.Hostname)
	}
}

// A kick or the time the reconciler asked for runs a round with the same
// config; with no time asked for, nothing but a kick or reload does.
func TestRunTimerAndKick(t *testing.T) {
	f := &fakeReconciler{called: make(chan *config.Config, 10), next: 20 * time.Millisecond}
	start(t, f)
	c1 := waitRound(t, f.called)
	if c2 := waitRound(t, f.called); c2 != c1 {
		t.Error("a timed round got another config")
	}

	g := &fakeReconciler{called: make(chan *config.Config, 10)}
	r := start(t, g)
	waitRound(t, g.called)
	noRound(t, g.called, 200*time.Millisecond)
	r.kick <- struct{}{}
	waitRound(t, g.called)
}

// Run ends with nil when its context does, without another round.
func TestRunStops(t *testing.T) {
	f := &fakeReconciler{called: make(chan *config.Config, 10), next: time.Hour}
	r := start(t, f)
	waitRound(t, f.called)
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		r.done <- err
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not end")
	}
	noRound(t, f.called, 50*time.Millisecond)
}

// A later round's error that wraps ErrRestart ends the service with it,
// as the error the reconciler made; nothing is published after it.
func TestRunRestartEnds(t *testing.T) {
	moved := errors.New("listen address changed")
	f := &fakeReconciler{called: make(chan *config.Config, 10), errs: []error{nil, Restart(moved)}}
	r := start(t, f)
	waitRound(t, f.called)
	r.expect(`DETAIL={"round":1}`, "STATUS=round 1", "READY=1")
	r.kick <- struct{}{}
	waitRound(t, f.called)
	select {
	case err := <-r.done:
		if !errors.Is(err, ErrRestart) || !errors.Is(err, moved) || err.Error() != moved.Error() {
			t.Fatalf("Run returned %v, want %v wrapped in ErrRestart", err, moved)
		}
		r.done <- err // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not end")
	}
	select {
	case l := <-r.lines:
		t.Errorf("notify line %q after the restart error", l)
	case <-time.After(50 * time.Millisecond):
	}
	if strings.Contains(r.logged(), "not converged") {
		t.Errorf("a restart logged as a round not converged:\n%s", r.logged())
	}
	if Restart(nil) != nil {
		t.Error("Restart(nil) is not nil")
	}
}
