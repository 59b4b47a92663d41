// Command relaybench measures the SMTP relay (`make bench-relay`) against
// stock Postfix in the same run, with the same load and the same tools:
// Postfix's own smtp-source pushes MSGS messages of SIZE bytes over
// SESSIONS parallel sessions into the relay, which forwards them to
// Postfix's smtp-sink on loopback.
//
//   - accept: messages per second from smtp-source's start to its exit
//     (every message got its 250 after DATA, i.e. it is on disk);
//   - e2e: until the sink has every message and the queue is empty;
//   - CPU seconds and peak RSS of the relay process per repetition;
//   - the same relay with 100 KiB messages (throughput in MiB/s), next to
//     the disk's durable sequential write speed in the work directory
//     (gatehouse_100k_of_disk) and its 4 KiB fdatasync rate;
//   - the relay's RSS with 1,000 open sessions that said EHLO and wait.
//
// The Postfix side is /work/shared/bench/postfix_baseline.sh (-postfix-script),
// run as is with the same knobs; when it is not there Gatehouse is still
// measured and the ratios are nan. The two never run at the same time.
// The last eight lines are the headline figures, as name=value: the last
// two are the chain's own limit (smtp-source straight into smtp-sink, same
// load) and the relay's e2e rate as a fraction of it.
//
// With -mailauth (`make bench-mailauth`) it measures mail authentication
// and DKIM signing instead, against Postfix with opendkim, opendmarc and
// policyd-spf: see mailauth.go.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"gatehouse/test/bench"
)

const (
	from    = "a@client.test"
	rcpt    = "u@example.test"
	bigSize = 100 << 10
)

type opts struct {
	bin, script           string
	msgs, size, sessions  int
	reps, warmup          int
	bigMsgs, idleSessions int
	port, sinkPort        int
	settle, idleWait      time.Duration
	drain, timeout        time.Duration
	keep                  bool
	mailauth              bool
	miltersScript         string
}

func main() {
	var o opts
	flag.StringVar(&o.bin, "binary", "build/gatehouse", "the gatehouse binary")
	flag.StringVar(&o.script, "postfix-script", "../shared/bench/postfix_baseline.sh",
		"the Postfix baseline script; a relative path is relative to the repository root")
	flag.IntVar(&o.msgs, "msgs", 5000, "messages per repetition (MSGS)")
	flag.IntVar(&o.size, "size", 4096, "message size in bytes (SIZE)")
	flag.IntVar(&o.sessions, "sessions", 20, "parallel smtp-source sessions (SESSIONS)")
	flag.IntVar(&o.reps, "reps", 3, "measured repetitions (REPS); medians are reported")
	flag.IntVar(&o.warmup, "warmup", 500, "messages of the unmeasured warm-up repetition (WARMUP)")
	flag.IntVar(&o.bigMsgs, "big-msgs", 1000, "messages per repetition of the 100 KiB section (0: skip)")
	flag.IntVar(&o.idleSessions, "idle-sessions", 1000, "open sessions of the RSS measurement (0: skip)")
	flag.IntVar(&o.port, "port", 2535, "the relay's port on 127.0.0.1")
	flag.IntVar(&o.sinkPort, "sink-port", 2536, "smtp-sink's port on 127.0.0.1 (not the script's 2526)")
	flag.DurationVar(&o.settle, "settle", 3*time.Second, "pause between repetitions")
	flag.DurationVar(&o.idleWait, "idle-wait", 300*time.Second, "longest wait for an idle machine before a repetition")
	flag.DurationVar(&o.drain, "drain", 60*time.Second, "after smtp-source exits, how long the sink and queue may take")
	flag.DurationVar(&o.timeout, "timeout", 900*time.Second, "longest smtp-source run")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (configs, logs)")
	flag.BoolVar(&o.mailauth, "mailauth", false, "instead: mail authentication and DKIM signing against Postfix's milters (make bench-mailauth)")
	flag.StringVar(&o.miltersScript, "milters-script", "test/relaybench/postfix_milters.sh", "the Postfix milter setup of -mailauth, relative to the repository root")
	flag.Parse()
	if o.mailauth {
		bench.Main("relaybench", func(ctx context.Context) error { return mailAuth(ctx, o) })
		return
	}
	bench.Main("relaybench", func(ctx context.Context) error { return run(ctx, o) })
}

func run(ctx context.Context, o opts) error {
	var err error
	if o.bin, err = bench.Binary(o.bin); err != nil {
		return err
	}
	if err := bench.Tools("make deps installs postfix", "smtp-source", "smtp-sink"); err != nil {
		return err
	}
	if o.msgs < 1 || o.reps < 1 || o.sessions < 1 || o.size < 1 {
		return errors.New("-msgs, -reps, -sessions and -size must be positive")
	}
	if err := raiseNofile(uint64(o.idleSessions) + 1024); err != nil {
		return err
	}
	script, err := bench.FromRoot(o.script)
	if err != nil {
		return err
	}
	dir, remove, err := bench.WorkDir("relaybench", o.keep)
	if err != nil {
		return err
	}
	defer remove()
	t0 := time.Now()

	// 1. Gatehouse under the baseline's load.
	gh, err := benchGatehouse(ctx, o, filepath.Join(dir, "main"), "gatehouse", o.msgs, o.size, o.warmup)
	if err != nil {
		return err
	}
	fmt.Printf("gatehouse_accept_msgs_per_s_min=%s\ngatehouse_accept_msgs_per_s_max=%s\n", bench.F1(gh.accept.Min), bench.F1(gh.accept.Max))
	fmt.Printf("gatehouse_e2e_msgs_per_s_min=%s\ngatehouse_e2e_msgs_per_s_max=%s\n", bench.F1(gh.e2e.Min), bench.F1(gh.e2e.Max))
	fmt.Printf("gatehouse_cpu_s=%.2f\ngatehouse_cpu_pct_median=%.0f\n", gh.cpu.Med, gh.cpuPct.Med)
	fmt.Printf("gatehouse_cpu_us_per_msg=%.0f\n", gh.cpu.Med*1e6/float64(o.msgs))
	fmt.Printf("gatehouse_peak_rss_kib=%d\n", gh.peakRSS)
	fmt.Printf("gatehouse_log_problems=%d\n", gh.logProblems)

	// 2. Postfix, after Gatehouse has stopped.
	pfAccept, pfE2E, pfErr := benchPostfix(ctx, o, script)
	if ctx.Err() != nil {
		return ctx.Err()
	}

	// 3. The chain's own limit: smtp-source straight into smtp-sink.
	chain, err := benchChain(ctx, o, filepath.Join(dir, "chain"), o.msgs, o.size)
	if err != nil {
		return err
	}

	// 4. Large messages: the copy and fsync path rather than per-message
	// costs, next to what the disk under the queue can write durably.
	diskMiBps, fsyncs, err := diskLimits(dir)
	if err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	fmt.Printf("disk_seq_write_fsync_mib_per_s=%.1f\ndisk_4k_fdatasyncs_per_s=%.0f\n", diskMiBps, fsyncs)
	if o.bigMsgs > 0 {
		big, err := benchGatehouse(ctx, o, filepath.Join(dir, "big"), "gatehouse_100k", o.bigMsgs, bigSize, max(o.bigMsgs/10, 1))
		if err != nil {
			return err
		}
		fmt.Printf("gatehouse_100k_accept_msgs_per_s=%s\n", bench.F1(big.accept.Med))
		fmt.Printf("gatehouse_100k_e2e_msgs_per_s=%s\n", bench.F1(big.e2e.Med))
		fmt.Printf("gatehouse_100k_mib_per_s=%s\n", bench.F1(big.e2e.Med*bigSize/(1<<20)))
		fmt.Printf("gatehouse_100k_of_disk=%s\n", bench.F2(big.e2e.Med*bigSize/(1<<20)/diskMiBps))
		fmt.Printf("gatehouse_100k_cpu_s=%.2f\n", big.cpu.Med)
		fmt.Printf("gatehouse_100k_peak_rss_kib=%d\n", big.peakRSS)
		fmt.Printf("gatehouse_100k_log_problems=%d\n", big.logProblems)
	}

	// 5. Memory per idle session.
	if o.idleSessions > 0 {
		if err := benchSessions(ctx, o, filepath.Join(dir, "sessions")); err != nil {
			return err
		}
	}

	fmt.Printf("params: msgs=%d size=%d sessions=%d reps=%d warmup=%d big_msgs=%d idle_sessions=%d cores=%d loadavg_at_end='%s' total_s=%.0f\n",
		o.msgs, o.size, o.sessions, o.reps, o.warmup, o.bigMsgs, o.idleSessions, runtime.NumCPU(), bench.Loadavg(), time.Since(t0).Seconds())
	fmt.Printf("gatehouse_accept_msgs_per_s=%s\n", bench.F1(gh.accept.Med))
	fmt.Printf("postfix_accept_msgs_per_s=%s\n", bench.F1(pfAccept))
	fmt.Printf("accept_ratio=%s\n", bench.F2(gh.accept.Med/pfAccept))
	fmt.Printf("gatehouse_e2e_msgs_per_s=%s\n", bench.F1(gh.e2e.Med))
	fmt.Printf("postfix_e2e_msgs_per_s=%s\n", bench.F1(pfE2E))
	fmt.Printf("e2e_ratio=%s\n", bench.F2(gh.e2e.Med/pfE2E))
	fmt.Printf("chain_limit_msgs_per_s=%s\n", bench.F1(chain.Med))
	fmt.Printf("gatehouse_of_limit=%s\n", bench.F2(gh.e2e.Med/chain.Med))
	return pfErr
}

// ---------------------------------------------------------------- Gatehouse

type result struct {
	accept, e2e, cpu, cpuPct bench.Stat
	peakRSS                  int
	logProblems              int
}

// benchGatehouse starts a fresh relay and sink in dir, runs a warm-up and
// o.reps measured repetitions of n messages of size bytes, prints a line
// per repetition with keys named after prefix, and stops both.
func benchGatehouse(ctx context.Context, o opts, dir, prefix string, n, size, warmup int) (result, error) {
	var r result
	in, err := startInstance(o, dir)
	if err != nil {
		return r, err
	}
	defer in.stop()
	var accept, e2e, cpu, pct []float64
	for i := 0; i <= o.reps; i++ {
		if i == 0 && warmup == 0 {
			continue
		}
		if i > 0 {
			if err := bench.Sleep(ctx, o.settle); err != nil {
				return r, err
			}
		}
		idle, err := waitIdle(ctx, o.idleWait)
		if err != nil {
			return r, err
		}
		m := n
		if i == 0 {
			m = warmup // caches, goroutine stacks, the sink's sessions: not measured
		}
		rr, err := in.rep(ctx, o, m, size)
		if err != nil {
			return r, fmt.Errorf("%s rep %d: %w", prefix, i, err)
		}
		if i == 0 {
			continue
		}
		a, e := float64(m)/rr.acceptS, float64(m)/rr.e2eS
		accept, e2e, cpu = append(accept, a), append(e2e, e), append(cpu, rr.cpuS)
		pct = append(pct, 100*rr.cpuS/rr.e2eS)
		r.peakRSS = max(r.peakRSS, rr.peakKiB)
		extra := ""
		if size == bigSize {
			extra = fmt.Sprintf(" %s_mib_per_s=%.1f", prefix, e*float64(size)/(1<<20))
		}
		fmt.Printf("rep=%d ok=1 msgs=%d size=%d sessions=%d accept_s=%.3f e2e_s=%.3f %s_accept_msgs_per_s=%.1f %s_e2e_msgs_per_s=%.1f%s"+
			" %s_cpu_s=%.2f %s_cpu_pct=%.0f %s_peak_rss_kib=%d machine_busy_s=%.2f idle_ok=%d\n",
			i, m, size, o.sessions, rr.acceptS, rr.e2eS, prefix, a, prefix, e, extra,
			prefix, rr.cpuS, prefix, 100*rr.cpuS/rr.e2eS, prefix, rr.peakKiB, rr.busyS, b2i(idle))
	}
	r.accept, r.e2e, r.cpu, r.cpuPct = bench.Stats(accept), bench.Stats(e2e), bench.Stats(cpu), bench.Stats(pct)
	r.logProblems = bench.LogProblems("relaybench", in.log)
	return r, nil
}

// instance is one relay process and the smtp-sink it delivers to.
type instance struct {
	dir, run, log, sinkOut string
	bin                    string
	port                   int
	gh, sink               *exec.Cmd
	exited                 chan struct{} // closed when the relay process ends
	exitErr                error
}

func startInstance(o opts, dir string) (*instance, error) {
	return startRelay(o, dir, fmt.Sprintf(`hostname: bench
smtp:
  hostname: bench.localdomain
  listen: {smtp: "127.0.0.1:%d", submission: "off", smtps: "off"}
  domains:
    - {name: example.test, next_hop: "[127.0.0.1]:%d", tls: none}
  trusted_networks: [127.0.0.0/8]
  limits: {connections_per_client: %d, connections: %d, message_size: 200MiB}
`, o.port, o.sinkPort, max(1000, o.idleSessions), max(2000, 2*o.idleSessions)))
}

// startRelay starts smtp-sink (with sinkArgs before its address) and the
// relay with config yaml in dir.
func startRelay(o opts, dir, yaml string, sinkArgs ...string) (_ *instance, err error) {
	in := &instance{dir: dir, run: filepath.Join(dir, "run"), log: filepath.Join(dir, "gatehouse.log"),
		sinkOut: filepath.Join(dir, "sink.out"), bin: o.bin, port: o.port}
	defer func() {
		if err != nil {
			in.stop()
		}
	}()
	if err := os.MkdirAll(in.run, 0o755); err != nil {
		return nil, err
	}
	for _, p := range []int{o.port, o.sinkPort} {
		if err := portFree(p); err != nil {
			return nil, err
		}
	}
	// The same peer as the baseline script's: smtp-sink, counting (-c)
	// on stdout, a file we read the last counter line from.
	in.sink, err = startLogged(filepath.Join(dir, "sink"), "smtp-sink", append(append([]string{"-4", "-c", "-u", "postfix"}, sinkArgs...),
		fmt.Sprintf("127.0.0.1:%d", o.sinkPort), "1024")...)
	if err != nil {
		return nil, fmt.Errorf("smtp-sink: %w", err)
	}
	if err := waitListen(o.sinkPort, nil); err != nil {
		return nil, fmt.Errorf("smtp-sink: %w: %s", err, bench.ReadTail(filepath.Join(dir, "sink.err"), 500))
	}
	cfg := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		return nil, err
	}
	if out, err := exec.Command(o.bin, "config", "validate", cfg).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("config validate: %v: %s", err, out)
	}
	lf, err := os.Create(in.log)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	in.gh = exec.Command(o.bin, "service", "smtp", "--config", cfg, "--run", in.run)
	in.gh.Stdout, in.gh.Stderr = lf, lf
	if err := in.gh.Start(); err != nil {
		in.gh = nil
		return nil, err
	}
	in.exited = make(chan struct{})
	go func() { in.exitErr = in.gh.Wait(); close(in.exited) }()
	if err := waitListen(o.port, in.exited); err != nil {
		return nil, fmt.Errorf("gatehouse: %w: %s", err, bench.ReadTail(in.log, 2000))
	}
	return in, nil
}

// stop ends the relay the way the supervisor does (SIGTERM, then SIGKILL
// after 10 s), then the sink. Safe to call twice.
func (in *instance) stop() {
	if in.gh != nil {
		in.gh.Process.Signal(syscall.SIGTERM)
		select {
		case <-in.exited:
			if in.exitErr != nil {
				fmt.Fprintf(os.Stderr, "relaybench: gatehouse exited after SIGTERM: %v: %s\n", in.exitErr, bench.ReadTail(in.log, 1000))
			}
		case <-time.After(10 * time.Second):
			fmt.Fprintln(os.Stderr, "relaybench: gatehouse still running 10 s after SIGTERM; killed")
			in.gh.Process.Kill()
			<-in.exited
		}
		in.gh = nil
	}
	if in.sink != nil {
		in.sink.Process.Kill()
		in.sink.Wait()
		in.sink = nil
	}
}

type repResult struct {
	acceptS, e2eS, cpuS, busyS float64
	peakKiB                    int
}

// rep pushes n messages through the relay with smtp-source and waits
// until the sink has them all and the queue is empty.
func (in *instance) rep(ctx context.Context, o opts, n, size int) (repResult, error) {
	var r repResult
	pid := in.gh.Process.Pid
	if q, err := in.queue(); err != nil {
		return r, err
	} else if len(q) > 0 {
		return r, fmt.Errorf("%d message(s) queued before the repetition", len(q))
	}
	// "5" resets VmHWM, so the peak is this repetition's.
	os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
	c0 := bench.SinkCount(in.sinkOut)
	cpu0 := bench.ProcCPU(pid)
	busy0, _ := bench.SysTicks()
	var srcOut bytes.Buffer
	src := exec.Command("smtp-source", "-4", "-s", strconv.Itoa(o.sessions), "-m", strconv.Itoa(n),
		"-l", strconv.Itoa(size), "-f", from, "-t", rcpt, fmt.Sprintf("127.0.0.1:%d", o.port))
	src.Stdout, src.Stderr = &srcOut, &srcOut
	t0 := time.Now()
	if err := src.Start(); err != nil {
		return r, err
	}
	done := make(chan error, 1)
	go func() { done <- src.Wait() }()
	select {
	case err := <-done:
		r.acceptS = time.Since(t0).Seconds()
		if err != nil {
			return r, fmt.Errorf("smtp-source: %v: %s", err, tail(srcOut.String(), 500))
		}
	case <-ctx.Done():
		src.Process.Kill()
		<-done
		return r, ctx.Err()
	case <-in.exited:
		src.Process.Kill()
		<-done
		return r, fmt.Errorf("gatehouse exited: %v: %s", in.exitErr, bench.ReadTail(in.log, 2000))
	case <-time.After(o.timeout):
		src.Process.Kill()
		<-done
		return r, fmt.Errorf("smtp-source still running after %s", o.timeout)
	}

	// Only the sink's counter file is read while messages are in flight
	// (no process started that would compete for the 2 cores); the queue
	// is asked once the sink has them all. The end time is taken after
	// the answer, which can only flatter Postfix (the script globs).
	deadline := time.Now().Add(o.drain)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		if c := bench.SinkCount(in.sinkOut); c-c0 >= n {
			q, err := in.queue()
			if err != nil {
				return r, err
			}
			if len(q) == 0 {
				r.e2eS = time.Since(t0).Seconds()
				break
			}
		}
		if time.Now().After(deadline) {
			c := bench.SinkCount(in.sinkOut)
			q, _ := in.queue()
			return r, fmt.Errorf("sink got %d of %d messages, %d still queued after %s%s",
				c-c0, n, len(q), o.drain, describeQueue(q))
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return r, ctx.Err()
		case <-in.exited:
			return r, fmt.Errorf("gatehouse exited: %v: %s", in.exitErr, bench.ReadTail(in.log, 2000))
		}
	}
	r.cpuS = bench.ProcCPU(pid) - cpu0
	busy1, _ := bench.SysTicks()
	r.busyS = float64(busy1-busy0) / bench.ClkTck
	r.peakKiB = bench.ProcStatus(pid, "VmHWM")
	// Late duplicates would show up here.
	if err := bench.Sleep(ctx, 200*time.Millisecond); err != nil {
		return r, err
	}
	if c1 := bench.SinkCount(in.sinkOut); c1-c0 > n {
		fmt.Fprintf(os.Stderr, "relaybench: the sink got %d messages for %d sent (duplicates)\n", c1-c0, n)
	}
	return r, nil
}

type queued struct {
	ID       string   `json:"id"`
	Active   bool     `json:"active"`
	Attempts int      `json:"attempts"`
	Status   []string `json:"status"`
	Error    string   `json:"last_error"`
}

// queue is `gatehouse queue list --format json`: the relay's socket is
// found next to the control socket path given.
func (in *instance) queue() ([]queued, error) {
	out, err := bench.Output(exec.Command(in.bin, "queue", "list", "--format", "json",
		"--socket", filepath.Join(in.run, "control.sock")))
	if err != nil {
		return nil, fmt.Errorf("queue list: %w", err)
	}
	var q []queued
	if err := json.Unmarshal(out, &q); err != nil {
		return nil, fmt.Errorf("queue list: %w", err)
	}
	return q, nil
}

func describeQueue(q []queued) string {
	deferred, active := 0, 0
	errs := map[string]int{}
	for _, m := range q {
		if m.Active {
			active++
		} else if m.Attempts > 0 {
			deferred++
		}
		if m.Error != "" {
			errs[m.Error]++
		}
	}
	s := fmt.Sprintf(" (%d active, %d deferred)", active, deferred)
	for e, c := range errs {
		s += fmt.Sprintf("; %dx %s", c, e)
	}
	return s
}

// ---------------------------------------------------------------- Postfix

// benchPostfix runs the baseline script with the same knobs and returns
// its medians (NaN when it is missing or failed). Its output is passed
// through except the two headline lines, which come last from run.
func benchPostfix(ctx context.Context, o opts, script string) (accept, e2e float64, err error) {
	accept, e2e = math.NaN(), math.NaN()
	if _, err := os.Stat(script); err != nil {
		fmt.Println("postfix_baseline=missing")
		fmt.Fprintln(os.Stderr, "relaybench: no Postfix baseline:", err)
		return accept, e2e, nil
	}
	// MSGS etc. are set; other knobs (PF_PORT, SINK_PORT, IDLE_WAIT...)
	// pass through from the environment.
	err = bench.Baseline(ctx, "postfix", script, []string{fmt.Sprintf("MSGS=%d", o.msgs), fmt.Sprintf("SIZE=%d", o.size),
		fmt.Sprintf("SESSIONS=%d", o.sessions), fmt.Sprintf("REPS=%d", o.reps), fmt.Sprintf("WARMUP=%d", o.warmup)}, func(k, v string) bool {
		switch k {
		case "postfix_accept_msgs_per_s":
			accept = bench.ParseFloat(v)
		case "postfix_e2e_msgs_per_s":
			e2e = bench.ParseFloat(v)
		default:
			return false
		}
		return true
	})
	return accept, e2e, err
}

// ---------------------------------------------------------------- sessions

// benchSessions opens o.idleSessions sessions to a fresh relay, each
// greeted and past EHLO, and reports the relay's RSS while they wait.
func benchSessions(ctx context.Context, o opts, dir string) error {
	in, err := startInstance(o, dir)
	if err != nil {
		return err
	}
	defer in.stop()
	pid := in.gh.Process.Pid
	if err := bench.Sleep(ctx, time.Second); err != nil {
		return err
	}
	idle := bench.ProcStatus(pid, "VmRSS")
	conns := make([]net.Conn, o.idleSessions)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	// 50 at a time: a burst of 1,000 SYNs is a test of the backlog,
	// not of what a session costs.
	errs := make(chan error, o.idleSessions)
	sem := make(chan struct{}, 50)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := ehlo(o.port)
			conns[i] = c
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return fmt.Errorf("session: %w (%d failed)", err, len(errs)+1)
	}
	// The highest of a few samples over 2 s: what the sessions hold once
	// set up, not a transient.
	rss := 0
	for range 4 {
		if err := bench.Sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
		rss = max(rss, bench.ProcStatus(pid, "VmRSS"))
	}
	select {
	case <-in.exited:
		return fmt.Errorf("gatehouse exited: %v: %s", in.exitErr, bench.ReadTail(in.log, 2000))
	default:
	}
	for i, c := range conns {
		c.Close()
		conns[i] = nil
	}
	if err := bench.Sleep(ctx, time.Second); err != nil {
		return err
	}
	after := bench.ProcStatus(pid, "VmRSS")
	fmt.Printf("gatehouse_rss_idle_kib=%d\n", idle)
	fmt.Printf("gatehouse_rss_per_session_kib=%.1f\n", float64(rss-idle)/float64(o.idleSessions))
	fmt.Printf("gatehouse_rss_after_close_kib=%d\n", after)
	fmt.Printf("gatehouse_rss_%d_sessions_kib=%d\n", o.idleSessions, rss)
	return nil
}

// ehlo opens a session and gets it past EHLO; the caller closes it.
func ehlo(port int) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	if err := reply(br, "220"); err != nil {
		return c, fmt.Errorf("greeting: %w", err)
	}
	if _, err := io.WriteString(c, "EHLO bench.client.test\r\n"); err != nil {
		return c, err
	}
	if err := reply(br, "250"); err != nil {
		return c, fmt.Errorf("EHLO: %w", err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// reply reads a (multi-line) SMTP reply and checks its code.
func reply(br *bufio.Reader, code string) error {
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(l, code) {
			return fmt.Errorf("unexpected reply %q", strings.TrimSpace(l))
		}
		if len(l) < 4 || l[3] != '-' {
			return nil
		}
	}
}

// ---------------------------------------------------------------- helpers

// startLogged starts a command with stdout in pre.out, stderr in pre.err.
func startLogged(pre string, name string, args ...string) (*exec.Cmd, error) {
	out, err := os.Create(pre + ".out")
	if err != nil {
		return nil, err
	}
	defer out.Close()
	errf, err := os.Create(pre + ".err")
	if err != nil {
		return nil, err
	}
	defer errf.Close()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = out, errf
	return cmd, cmd.Start()
}

func portFree(port int) error {
	ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return fmt.Errorf("port %d busy: %w", port, err)
	}
	return ln.Close()
}

// waitListen waits up to 10 s for a listener on the port, or until exited
// is closed.
func waitListen(port int, exited <-chan struct{}) error {
	for range 200 {
		if c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited before listening")
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("not listening on 127.0.0.1:%d after 10 s", port)
}

// waitIdle waits, like the script's wait_idle, until the machine was at
// most 10 % busy over one second; false if it never was within limit.
func waitIdle(ctx context.Context, limit time.Duration) (bool, error) {
	end := time.Now().Add(limit)
	for {
		b0, t0 := bench.SysTicks()
		if err := bench.Sleep(ctx, time.Second); err != nil {
			return false, err
		}
		b1, t1 := bench.SysTicks()
		if 100*(b1-b0) <= 10*(t1-t0) {
			return true, nil
		}
		if time.Now().After(end) {
			fmt.Fprintf(os.Stderr, "relaybench: machine still busy after %s; measuring anyway\n", limit)
			return false, nil
		}
	}
}

// raiseNofile makes room for the idle sessions. Setting the limit
// explicitly also passes it on to the relay (Go otherwise restores the
// original soft limit in the processes it starts).
func raiseNofile(need uint64) error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	rl.Cur, rl.Max = max(rl.Cur, need), max(rl.Max, need)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("RLIMIT_NOFILE %d: %w", need, err)
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
