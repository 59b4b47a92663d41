// Package bench is what the benchmark programs (relaybench, fetchbench)
// share: medians of repetitions, a process's CPU time, the repository
// root, and the number formats of their name=value lines.
package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

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
func ProcCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after "(comm) ": state is the first, utime the 12th.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return float64(u+s) / ClkTck
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
