// Package reaper is the one place that waits for child processes.
//
// PID 1 (and a child subreaper in host mode) inherits every orphan on the
// system and must reap them, which means calling wait4(-1). That call would
// steal exit statuses from exec.Cmd.Wait, so Gatehouse never uses Cmd.Wait:
// every child is started through a Reaper, which hands each exit status to the
// owner of that process and counts the rest as reaped orphans.
package reaper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Exit is how a child ended.
type Exit struct {
	Pid    int
	Status unix.WaitStatus
}

func (e Exit) String() string {
	switch {
	case e.Status.Exited():
		return fmt.Sprintf("exit status %d", e.Status.ExitStatus())
	case e.Status.Signaled():
		s := "killed by " + unix.SignalName(e.Status.Signal())
		if e.Status.CoreDump() {
			s += " (core dumped)"
		}
		return s
	}
	return fmt.Sprintf("wait status %#x", uint32(e.Status))
}

// Reaper reaps all children of this process.
type Reaper struct {
	log     *slog.Logger
	mu      sync.Mutex
	owners  map[int]*Child
	orphans atomic.Int64
	kick    chan struct{}
}

// Child is a process started through the Reaper.
type Child struct {
	Cmd  *exec.Cmd
	pid  int
	done chan struct{}
	exit Exit

	mu       sync.Mutex // orders Signal against the release of the pidfd
	released bool
}

// Pid is the child's process id.
func (c *Child) Pid() int { return c.pid }

// Done is closed when the child has exited and been reaped.
func (c *Child) Done() <-chan struct{} { return c.done }

// Wait blocks until the child has exited and returns how.
func (c *Child) Wait() Exit {
	<-c.done
	return c.exit
}

// Signal sends sig to the child unless it has already been reaped. Go uses a
// pidfd for this, so a recycled pid can never be hit.
func (c *Child) Signal(sig os.Signal) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.released {
		return os.ErrProcessDone
	}
	return c.Cmd.Process.Signal(sig)
}

// New returns a Reaper; call Run to start reaping.
func New(log *slog.Logger) *Reaper {
	return &Reaper{
		log:    log.With("subsystem", "reaper"),
		owners: make(map[int]*Child),
		kick:   make(chan struct{}, 1),
	}
}

// BecomeSubreaper makes orphaned descendants of this process its children,
// as they are for PID 1. Host mode uses it so that nothing a service leaves
// behind becomes a zombie of someone else.
func BecomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("reaper: set child subreaper: %w", err)
	}
	return nil
}

// Start starts cmd and registers it, so its exit status reaches Child.Wait.
// Standard streams must be nil or *os.File: exec.Cmd copies other writers in
// goroutines that only Cmd.Wait would end.
func (r *Reaper) Start(cmd *exec.Cmd) (*Child, error) {
	for _, s := range []any{cmd.Stdin, cmd.Stdout, cmd.Stderr} {
		switch s.(type) {
		case nil, *os.File:
		default:
			return nil, errors.New("reaper: standard streams must be *os.File or nil")
		}
	}
	c := &Child{Cmd: cmd, done: make(chan struct{})}
	// Hold the lock across fork and registration: a child that exits at once
	// is reaped, but its status waits for this owner instead of being taken
	// for an orphan's.
	r.mu.Lock()
	err := cmd.Start()
	if err == nil {
		c.pid = cmd.Process.Pid
		r.owners[c.pid] = c
	}
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	r.poke()
	return c, nil
}

// Orphans is the number of processes reaped that no owner was waiting for.
func (r *Reaper) Orphans() int64 { return r.orphans.Load() }

func (r *Reaper) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run reaps children until ctx ends.
func (r *Reaper) Run(ctx context.Context) {
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, unix.SIGCHLD)
	defer signal.Stop(sigc)
	for ctx.Err() == nil {
		r.reapAll()
		select {
		case <-ctx.Done():
			return
		case <-sigc:
		case <-r.kick:
		}
	}
}

func (r *Reaper) reapAll() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 { // ECHILD: no children; 0: none exited yet
			return
		}
		r.mu.Lock()
		c := r.owners[pid]
		delete(r.owners, pid)
		r.mu.Unlock()
		if c == nil {
			r.orphans.Add(1)
			r.log.Debug("reaped orphan", "pid", pid, "status", Exit{pid, ws}.String())
			continue
		}
		c.exit = Exit{Pid: pid, Status: ws}
		c.mu.Lock()
		c.Cmd.Process.Release() // closes the pidfd; the process is gone
		c.released = true
		c.mu.Unlock()
		close(c.done)
	}
}
