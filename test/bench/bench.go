// Package bench is what the benchmark programs (relaybench, fetchbench)
// share: running until Ctrl-C, the binary and tools they need, the
// work directory, the baseline script run beside Gatehouse, smtp-sink's
// count, the relay's log problems, medians of repetitions, a process's
// CPU time, the repository root, and the number formats of their
// name=value lines.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Main runs run with a context that Ctrl-C and SIGTERM cancel (run
// returns and its deferred cleanups stop everything it started), and
// exits 1 if run fails, naming the program.
func Main(name string, run func(context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// Binary is the absolute path of the gatehouse binary at path, which must
// exist.
func Binary(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(abs); err != nil {
		return "", fmt.Errorf("%w (make build/gatehouse)", err)
	}
	return abs, nil
}

// Tools checks that the programs are on PATH; hint says how to get them.
func Tools(hint string, names ...string) error {
	for _, t := range names {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%s: %w (%s)", t, err, hint)
		}
	}
	return nil
}

// FromRoot is path, or path below the repository root when it is relative.
func FromRoot(path string) (string, error) {
	if filepath.IsAbs(path) {
		return path, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, path), nil
}

// WorkDir makes a temporary directory for a run's configs and logs.
// remove deletes it, or with keep says on standard error where it is.
func WorkDir(name string, keep bool) (dir string, remove func(), err error) {
	dir, err = os.MkdirTemp("", name)
	if err != nil {
		return "", nil, err
	}
	if keep {
		return dir, func() { fmt.Fprintln(os.Stderr, name+": work directory kept:", dir) }, nil
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// Baseline runs the baseline script's run mode with env added to this
// process's and passes its output through, except the name=value lines
// headline takes (returns true for): the caller prints those last. It
// prints <name>_baseline=ok or =failed.
func Baseline(ctx context.Context, name, script string, env []string, headline func(key, value string) bool) error {
	cmd := exec.CommandContext(ctx, "bash", script, "run")
	// The scripts trap TERM and stop what they started.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 60 * time.Second
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			l := sc.Text()
			k, v, _ := strings.Cut(l, "=")
			if !headline(k, v) {
				fmt.Println(l)
			}
		}
		io.Copy(io.Discard, pr)
	}()
	err := cmd.Run()
	pw.Close()
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		fmt.Printf("%s_baseline=failed\n", name)
		return fmt.Errorf("%s: %w", script, err)
	}
	fmt.Printf("%s_baseline=ok\n", name)
	return nil
}

// Output is cmd's standard output; an error carries its standard error.
func Output(cmd *exec.Cmd) ([]byte, error) {
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		err = fmt.Errorf("%v: %s", err, ee.Stderr)
	}
	return out, err
}

// SinkCount is the mesg=N of the last complete "sess=N quit=N mesg=N"
// counter line smtp-sink -c printed to the file at path (it rewrites one
// line with \r).
func SinkCount(path string) int {
	b := []byte(ReadTail(path, 256))
	i := bytes.LastIndexAny(b, "\r\n")
	if i < 0 {
		return 0
	}
	b = b[:i]
	if j := bytes.LastIndexAny(b, "\r\n"); j >= 0 {
		b = b[j+1:]
	}
	for f := range strings.FieldsSeq(string(b)) {
		if v, ok := strings.CutPrefix(f, "mesg="); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// LogProblems counts the relay's log lines at path that are neither INFO
// nor DEBUG (warnings, errors, deferrals, panics) and shows the first few
// on standard error, naming the program.
func LogProblems(name, path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "level=INFO ") || strings.HasPrefix(l, "level=DEBUG ") {
			continue
		}
		if n++; n <= 5 {
			fmt.Fprintln(os.Stderr, name+": gatehouse log:", l)
		}
	}
	return n
}

// ClkTck is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100 on
// every Linux architecture Gatehouse runs on (getconf CLK_TCK needs cgo).
const ClkTck = 100

// Stat summarises repetitions.
type Stat struct{ Min, Med, Max float64 }

// Stats is the minimum, median and maximum of v (NaN for none).
func Stats(v []float64) Stat {
	if len(v) == 0 {
		return Stat{math.NaN(), math.NaN(), math.NaN()}
	}
	v = slices.Sorted(slices.Values(v))
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + m) / 2
	}
	return Stat{v[0], m, v[len(v)-1]}
}

// ProcCPU is the user and system CPU seconds process pid has used (0 when
// it cannot be read).
func ProcCPU(pid int) float64 { return statSeconds(pid, 11) }

// ChildrenCPU is the CPU seconds of pid's children that it has reaped
// (cutime + cstime): a server master's per-connection processes.
func ChildrenCPU(pid int) float64 { return statSeconds(pid, 13) }

// statSeconds is the sum of the user and system clock ticks at field i
// and i+1 of pid's stat (after the command), in seconds.
func statSeconds(pid, i int) float64 {
	f := procStat(pid)
	if len(f) < i+2 {
		return 0
	}
	u, _ := strconv.ParseInt(f[i], 10, 64)
	s, _ := strconv.ParseInt(f[i+1], 10, 64)
	return float64(u+s) / ClkTck
}

// PPID is process pid's parent (0 when it cannot be read).
func PPID(pid int) int {
	f := procStat(pid)
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p
}

// procStat is /proc/PID/stat's fields after "(comm) ": the state first,
// the parent second, utime the 12th.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	return strings.Fields(string(b[i+1:]))
}

// ProcStatus is a kB field of /proc/PID/status (VmRSS, VmHWM); 0 when it
// cannot be read.
func ProcStatus(pid int, key string) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// RepoRoot is the directory holding go.mod, at or above the working one.
func RepoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", errors.New("no go.mod above the working directory (run from the repository)")
		}
		d = p
	}
}

// ReadTail is the last n bytes of a file ("" if it cannot be read).
func ReadTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		f.Seek(-n, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// Sleep waits d, or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// ParseFloat reads a number a baseline script printed (NaN if it is not one).
func ParseFloat(s string) float64 {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return math.NaN()
	}
	return f
}

// F1 and F2 print a figure with one or two decimals; "nan" for none.
func F1(v float64) string { return ff(v, 1) }

// F2: see F1.
func F2(v float64) string { return ff(v, 2) }

func ff(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "nan"
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

// Loadavg is the 1, 5 and 15 minute load averages.
func Loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// SysTicks are the busy and total ticks of all CPUs, from /proc/stat's
// first line (as the baseline scripts count them): busy over total
// between two readings is how full the machine was.
func SysTicks() (busy, total int64) {
	b, _ := os.ReadFile("/proc/stat")
	l, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(l))
	v := func(i int) int64 {
		if i >= len(f) {
			return 0
		}
		n, _ := strconv.ParseInt(f[i], 10, 64)
		return n
	}
	busy = v(1) + v(2) + v(3) + v(6) + v(7) + v(8)
	return busy, busy + v(4) + v(5)
}
