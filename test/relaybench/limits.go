package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"gatehouse/test/bench"
)

// The machine's own limits, measured in the same run, so that the relay's
// figures read as a fraction of what this machine can do at all.

// benchChain is smtp-source straight into smtp-sink, with the relay's
// load (messages, size, sessions): the most any relay between the two
// could reach here, since it does the work of both and more.
func benchChain(ctx context.Context, o opts, dir string, n, size int) (bench.Stat, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return bench.Stat{}, err
	}
	if err := portFree(o.sinkPort); err != nil {
		return bench.Stat{}, err
	}
	pre := filepath.Join(dir, "sink")
	sink, err := startLogged(pre, "smtp-sink", "-4", "-c", "-u", "postfix", fmt.Sprintf("127.0.0.1:%d", o.sinkPort), "1024")
	if err != nil {
		return bench.Stat{}, fmt.Errorf("smtp-sink: %w", err)
	}
	defer func() { sink.Process.Kill(); sink.Wait() }()
	if err := waitListen(o.sinkPort, nil); err != nil {
		return bench.Stat{}, fmt.Errorf("smtp-sink: %w", err)
	}
	var rates []float64
	for i := 0; i <= o.reps; i++ {
		m := n
		if i == 0 {
			m = max(n/10, 1) // warm-up
		}
		if _, err := waitIdle(ctx, o.idleWait); err != nil {
			return bench.Stat{}, err
		}
		c0 := bench.SinkCount(pre + ".out")
		src := exec.CommandContext(ctx, "smtp-source", "-4", "-s", strconv.Itoa(o.sessions), "-m", strconv.Itoa(m),
			"-l", strconv.Itoa(size), "-f", from, "-t", rcpt, fmt.Sprintf("127.0.0.1:%d", o.sinkPort))
		t0 := time.Now()
		if out, err := src.CombinedOutput(); err != nil {
			return bench.Stat{}, fmt.Errorf("smtp-source: %v: %s", err, tail(string(out), 500))
		}
		d := time.Since(t0).Seconds()
		// smtp-source exits after the sink's last 250: the sink has them.
		if got := bench.SinkCount(pre+".out") - c0; got < m {
			// The counter file is written once a second or so: wait for it.
			for deadline := time.Now().Add(5 * time.Second); got < m && time.Now().Before(deadline); got = bench.SinkCount(pre+".out") - c0 {
				time.Sleep(50 * time.Millisecond)
			}
			if got < m {
				return bench.Stat{}, fmt.Errorf("the sink counted %d of %d messages", got, m)
			}
		}
		if i > 0 {
			rates = append(rates, float64(m)/d)
			fmt.Printf("rep=%d chain_limit_size=%d chain_limit_msgs_per_s=%.1f\n", i, size, float64(m)/d)
		}
	}
	return bench.Stats(rates), nil
}

// diskLimits measures the file system the queue is on, in dir: sequential
// writes made durable (256 MiB in 1 MiB writes, then fdatasync), and how
// many 4 KiB write+fdatasync pairs one writer gets through in 2 s.
func diskLimits(dir string) (seqMiBps, fsyncsPerS float64, err error) {
	path := filepath.Join(dir, "disk-limit")
	defer os.Remove(path)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7 + i>>8) // not all zeros: no file system may skip it
	}
	const total = 256
	t0 := time.Now()
	for range total {
		if _, err := f.Write(buf); err != nil {
			return 0, 0, err
		}
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return 0, 0, err
	}
	seqMiBps = total / time.Since(t0).Seconds()
	if err := f.Truncate(0); err != nil {
		return 0, 0, err
	}
	n := 0
	t0 = time.Now()
	for time.Since(t0) < 2*time.Second {
		if _, err := f.WriteAt(buf[:4096], int64(n%256)*4096); err != nil {
			return 0, 0, err
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return 0, 0, err
		}
		n++
	}
	return seqMiBps, float64(n) / time.Since(t0).Seconds(), nil
}
