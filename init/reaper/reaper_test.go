package reaper

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func start(t *testing.T) *Reaper {
	t.Helper()
	if err := BecomeSubreaper(); err != nil {
		t.Fatal(err)
	}
	r := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	// Wait for this reaper to stop: a reaper left running would take the
	// next test's children for orphans (there is one per process in use).
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func TestOwnerGetsExitStatus(t *testing.T) {
	r := start(t)
	for _, tc := range []struct {
		script string
		want   string
	}{
		{"exit 0", "exit status 0"},
		{"exit 3", "exit status 3"},
		{"kill -KILL $$", "killed by SIGKILL"},
	} {
		c, err := r.Start(exec.Command("/bin/sh", "-c", tc.script))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Wait().String(); got != tc.want {
			t.Errorf("%q: %s, want %s", tc.script, got, tc.want)
		}
	}
}

// Many children that exit at once, started concurrently: every owner gets its
// own status, none is mistaken for an orphan.
func TestConcurrentOwnersNoneLost(t *testing.T) {
	r := start(t)
	const n = 50
	errs := make(chan string, n)
	for i := range n {
		go func() {
			c, err := r.Start(exec.Command("/bin/sh", "-c", "exit "+strconv.Itoa(i%7)))
			if err != nil {
				errs <- err.Error()
				return
			}
			if e := c.Wait(); e.Status.ExitStatus() != i%7 {
				errs <- "wrong status " + e.String()
				return
			}
			errs <- ""
		}()
	}
	for range n {
		select {
		case e := <-errs:
			if e != "" {
				t.Error(e)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("an owner never got its exit status")
		}
	}
	if o := r.Orphans(); o != 0 {
		t.Errorf("%d owned children counted as orphans", o)
	}
}

// A grandchild whose parent exits is re-parented to us (as to PID 1) and must
// be reaped, not left a zombie.
func TestOrphanIsReaped(t *testing.T) {
	r := start(t)
	rd, wr, _ := os.Pipe()
	cmd := exec.Command("/bin/sh", "-c", "sleep 0.5 >/dev/null & echo $!")
	cmd.Stdout = wr
	c, err := r.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	wr.Close()
	out, _ := io.ReadAll(rd)
	c.Wait()
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("grandchild pid %q: %v", out, err)
	}
	// While it runs, its parent is us.
	if ppid := parentOf(pid); ppid != os.Getpid() {
		t.Fatalf("grandchild %d has parent %d, want %d (not re-parented)", pid, ppid, os.Getpid())
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); os.IsNotExist(err) && r.Orphans() >= 1 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("orphan %d not reaped (state %q, orphans %d)", pid, stateOf(pid), r.Orphans())
}

func TestStartRejectsNonFileStreams(t *testing.T) {
	r := start(t)
	cmd := exec.Command("/bin/true")
	cmd.Stdout = &strings.Builder{}
	if _, err := r.Start(cmd); err == nil {
		t.Fatal("Start accepted a non-file stdout")
	}
}

func TestSignalAfterExit(t *testing.T) {
	r := start(t)
	c, err := r.Start(exec.Command("/bin/true"))
	if err != nil {
		t.Fatal(err)
	}
	c.Wait()
	if err := c.Signal(os.Interrupt); err != os.ErrProcessDone {
		t.Errorf("Signal after exit: %v, want ErrProcessDone", err)
	}
}

func statFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
}

func parentOf(pid int) int {
	f := statFields(pid)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

func stateOf(pid int) string {
	if f := statFields(pid); len(f) > 0 {
		return f[0]
	}
	return "gone"
}
