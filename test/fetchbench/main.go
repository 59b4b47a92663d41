// Command fetchbench measures the mail collector (`make bench-fetch`)
// against Debian's fetchmail in the same run, on the same Dovecot mailbox
// contents and the same sink:
//
//	seeded Maildir --> Dovecot 127.0.0.1 POP3S --> gatehouse collector
//	               --> gatehouse relay --> smtp-sink
//
// Collection time runs from the relay's start (the collector polls at
// once) until the sink has all MSGS messages and the Maildir is empty;
// the relay's start-up is part of it. Everything runs in a private
// network namespace whose loopback routes carry "quickack 1", the
// conditions under which the baseline script shows fetchmail at its best.
//
// The fetchmail side is /work/shared/bench/fetchmail_baseline.sh
// (-fetchmail-script), run as is with QUICKACK=1 and the same knobs. Its
// "setup" mode also writes the Dovecot instance the collector polls (the
// same dovecot.conf, certificate and passwd-file), so both read the same
// server. The two never run at the same time. The collector speaks only
// Both collectors are measured over POP3S and IMAPS.
// The last six lines are the headline figures, as name=value.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gatehouse/test/bench"
)

const (
	// The script's mailbox account (MBOX_USER, MBOX_PASS): its setup
	// mode writes them into Dovecot's passwd-file.
	mboxUser = "alice"
	mboxPass = "fmbench-secret"
	addr     = "127.0.0.1" // the script's ADDR, an IP SAN of its certificate
	mailUID  = "nobody"    // the script's MAIL_UID default
	rcpt     = "u@example.test"
)

type opts struct {
	bin, script                          string
	msgs, size, reps, fmReps             int
	port, sinkPort, pop3sPort, imapsPort int
	settle, timeout                      time.Duration
	keep                                 bool
}

func main() {
	var o opts
	flag.StringVar(&o.bin, "binary", "build/gatehouse", "the gatehouse binary")
	flag.StringVar(&o.script, "fetchmail-script", "../shared/bench/fetchmail_baseline.sh",
		"the fetchmail baseline script; a relative path is relative to the repository root")
	flag.IntVar(&o.msgs, "msgs", 5000, "messages in the mailbox per repetition (MSGS)")
	flag.IntVar(&o.size, "size", 10240, "message size in bytes (SIZE)")
	flag.IntVar(&o.reps, "reps", 3, "Gatehouse repetitions; medians are reported")
	flag.IntVar(&o.fmReps, "fetchmail-reps", 3, "the script's REPS (per protocol)")
	flag.IntVar(&o.port, "port", 2545, "the relay's SMTP port on 127.0.0.1 (in the namespace)")
	flag.IntVar(&o.sinkPort, "sink-port", 2546, "smtp-sink's port on 127.0.0.1 (in the namespace)")
	flag.IntVar(&o.pop3sPort, "pop3s-port", 10995, "Dovecot's POP3S port on 127.0.0.1 (in the namespace)")
	flag.IntVar(&o.imapsPort, "imaps-port", 10993, "Dovecot's IMAPS port on 127.0.0.1 (in the namespace)")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "idle time before each repetition (the script's SETTLE)")
	flag.DurationVar(&o.timeout, "timeout", 2*time.Minute, "longest collection; later, messages count as lost")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (configs, logs)")
	flag.Parse()
	// Ctrl-C and SIGTERM end run, whose deferred cleanups also delete the
	// namespace.
	bench.Main("fetchbench", func(ctx context.Context) error { return run(ctx, o) })
}

func run(ctx context.Context, o opts) error {
	var err error
	if o.bin, err = bench.Binary(o.bin); err != nil {
		return err
	}
	if err := bench.Tools("make deps; the script installs dovecot", "smtp-sink", "dovecot", "doveadm", "ip"); err != nil {
		return err
	}
	if o.msgs < 1 || o.size < 1 || o.reps < 1 || o.fmReps < 1 {
		return errors.New("-msgs, -size, -reps and -fetchmail-reps must be positive")
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespace, Dovecot, smtp-sink -u postfix)")
	}
	script, err := bench.FromRoot(o.script)
	if err != nil {
		return err
	}
	haveScript := true
	if _, err := os.Stat(script); err != nil {
		haveScript = false
		fmt.Fprintln(os.Stderr, "fetchbench: no fetchmail baseline:", err)
	}
	t0 := time.Now()

	// 1. Gatehouse. Its Dovecot is the script's (setup mode), so without
	// the script there is nothing to poll either.
	gh, ghIMAP := bench.Stats(nil), bench.Stats(nil)
	var ghErr error
	if haveScript {
		var cpu bench.Stat
		var rates map[string]bench.Stat
		rates, cpu, ghErr = benchGatehouse(ctx, o, script)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if r, ok := rates["pop3s"]; ok {
			gh = r
		}
		if r, ok := rates["imaps"]; ok {
			ghIMAP = r
		}
		if ghErr == nil {
			fmt.Printf("gatehouse_fetch_pop3s_msgs_per_s_min=%s\ngatehouse_fetch_pop3s_msgs_per_s_max=%s\n", bench.F1(gh.Min), bench.F1(gh.Max))
			fmt.Printf("gatehouse_fetch_imaps_msgs_per_s_min=%s\ngatehouse_fetch_imaps_msgs_per_s_max=%s\n", bench.F1(ghIMAP.Min), bench.F1(ghIMAP.Max))
			fmt.Printf("gatehouse_fetch_cpu_s=%.2f\n", cpu.Med)
			fmt.Printf("gatehouse_fetch_cpu_us_per_msg=%.0f\n", cpu.Med*1e6/float64(o.msgs))
		} else {
			fmt.Println("gatehouse_fetch=failed")
		}
	}

	// 2. fetchmail, after Gatehouse and its Dovecot have stopped.
	fmPOP3S, fmIMAPS, fmErr := benchFetchmail(ctx, o, script, haveScript)
	if ctx.Err() != nil {
		return ctx.Err()
	}

	fmt.Printf("params: msgs=%d size=%d reps=%d fetchmail_reps=%d cores=%d loadavg_at_end='%s' total_s=%.0f\n",
		o.msgs, o.size, o.reps, o.fmReps, runtime.NumCPU(), bench.Loadavg(), time.Since(t0).Seconds())
	fmt.Printf("gatehouse_fetch_pop3s_msgs_per_s=%s\n", bench.F1(gh.Med))
	fmt.Printf("fetchmail_pop3s_msgs_per_s=%s\n", bench.F1(fmPOP3S))
	fmt.Printf("fetch_pop3s_ratio=%s\n", bench.F2(gh.Med/fmPOP3S))
	fmt.Printf("gatehouse_fetch_msgs_per_s=%s\n", bench.F1(ghIMAP.Med))
	fmt.Printf("fetchmail_msgs_per_s=%s\n", bench.F1(fmIMAPS))
	fmt.Printf("fetch_ratio=%s\n", bench.F2(ghIMAP.Med/fmIMAPS))
	return errors.Join(ghErr, fmErr)
}

// ---------------------------------------------------------------- Gatehouse

// world is the namespace, the Dovecot instance and the sink the relay
// runs against.
type world struct {
	dir, work, ns   string
	conf, maildir   string
	sinkOut         string
	nsMade, dovecot bool // to undo in stop
	sink            *exec.Cmd
}

// benchGatehouse sets up the world, then per repetition reseeds the
// mailbox and times a fresh relay emptying it. It returns the rates and
// the relay's CPU seconds.
func benchGatehouse(ctx context.Context, o opts, script string) (rates map[string]bench.Stat, cpu bench.Stat, err error) {
	rates = map[string]bench.Stat{}
	dir, remove, err := bench.WorkDir("fetchbench", o.keep)
	if err != nil {
		return rates, cpu, err
	}
	defer remove()
	// Dovecot's mail and auth processes (nobody, dovecot) walk down to
	// the Maildir and the passwd-file.
	if err := os.Chmod(dir, 0o755); err != nil {
		return rates, cpu, err
	}
	w := &world{dir: dir, work: filepath.Join(dir, "fm"), ns: fmt.Sprintf("fetchbench%d", os.Getpid())}
	defer w.stop()
	if err := w.start(ctx, o, script); err != nil {
		return rates, cpu, err
	}
	var cpus []float64
	for _, proto := range []string{"pop3s", "imaps"} {
		var rs []float64
		for i := 1; i <= o.reps; i++ {
			secs, c, err := w.rep(ctx, o, proto, i)
			if err != nil {
				return rates, cpu, fmt.Errorf("gatehouse %s rep %d: %w", proto, i, err)
			}
			r := float64(o.msgs) / secs
			rs = append(rs, r)
			if proto == "pop3s" {
				cpus = append(cpus, c)
			}
			fmt.Printf("rep=%d proto=%s ok=1 msgs=%d size=%d wall_s=%.3f gatehouse_fetch_msgs_per_s=%.1f gatehouse_fetch_cpu_s=%.2f load1=%s\n",
				i, proto, o.msgs, o.size, secs, r, c, strings.Fields(bench.Loadavg() + " ?")[0])
		}
		rates[proto] = bench.Stats(rs)
	}
	return rates, bench.Stats(cpus), nil
}

func (w *world) start(ctx context.Context, o opts, script string) error {
	// The script's setup mode writes Dovecot's config, the self-signed
	// certificate (CN fmbench.test, SAN 127.0.0.1) and the passwd-file
	// under WORK and starts nothing.
	cmd := exec.CommandContext(ctx, "bash", script, "setup")
	cmd.Env = append(os.Environ(), "WORK="+w.work, fmt.Sprintf("POP3S_PORT=%d", o.pop3sPort), fmt.Sprintf("IMAPS_PORT=%d", o.imapsPort),
		fmt.Sprintf("MSGS=%d", o.msgs), fmt.Sprintf("SIZE=%d", o.size))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s setup: %v: %s", script, err, out)
	}
	w.conf = filepath.Join(w.work, "dovecot", "dovecot.conf")
	w.maildir = filepath.Join(w.work, "mail", mboxUser, "Maildir")

	// The namespace, as the script's QUICKACK=1 builds it.
	if out, err := exec.Command("ip", "netns", "add", w.ns).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add: %v: %s", err, out)
	}
	w.nsMade = true
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"route", "change", "table", "local", "local", "127.0.0.1", "dev", "lo", "proto", "kernel",
			"scope", "host", "src", "127.0.0.1", "quickack", "1"},
		{"route", "change", "table", "local", "local", "127.0.0.0/8", "dev", "lo", "proto", "kernel",
			"scope", "host", "src", "127.0.0.1", "quickack", "1"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", w.ns}, args...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}

	// Dovecot daemonizes; its master's pid is in base_dir/master.pid. Its
	// output goes to a file: the daemon keeps the descriptors, and a pipe
	// (CombinedOutput) would never see EOF.
	dvOut, err := os.Create(filepath.Join(w.dir, "dovecot.out"))
	if err != nil {
		return err
	}
	defer dvOut.Close()
	dv := w.nsCommand("dovecot", "-c", w.conf)
	dv.Stdout, dv.Stderr = dvOut, dvOut
	if err := dv.Run(); err != nil {
		return fmt.Errorf("dovecot: %v: %s %s", err, bench.ReadTail(dvOut.Name(), 500),
			bench.ReadTail(filepath.Join(w.work, "dovecot", "dovecot.log"), 1000))
	}
	w.dovecot = true
	if err := w.waitListen(ctx, o.imapsPort); err != nil {
		return fmt.Errorf("dovecot: %w: %s", err, bench.ReadTail(filepath.Join(w.work, "dovecot", "dovecot.log"), 1000))
	}
	if err := w.waitListen(ctx, o.pop3sPort); err != nil {
		return fmt.Errorf("dovecot: %w: %s", err, bench.ReadTail(filepath.Join(w.work, "dovecot", "dovecot.log"), 1000))
	}

	// The sink, as the script runs it: counting on stdout.
	w.sinkOut = filepath.Join(w.dir, "sink.out")
	out, err := os.Create(w.sinkOut)
	if err != nil {
		return err
	}
	defer out.Close()
	w.sink = w.nsCommand("smtp-sink", "-u", "postfix", "-c", fmt.Sprintf("%s:%d", addr, o.sinkPort), "1024")
	w.sink.Stdout, w.sink.Stderr = out, out
	if err := w.sink.Start(); err != nil {
		w.sink = nil
		return fmt.Errorf("smtp-sink: %w", err)
	}
	if err := w.waitListen(ctx, o.sinkPort); err != nil {
		return fmt.Errorf("smtp-sink: %w: %s", err, bench.ReadTail(w.sinkOut, 500))
	}
	return nil
}

// nsCommand runs a command in the namespace. ip netns exec execs it in
// place, so the pid is the command's own.
func (w *world) nsCommand(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", w.ns, name}, args...)...)
}

// waitListen waits up to 10 s for a listener on the namespace's
// 127.0.0.1:port (ss, since this process lives outside it). Only used
// outside the timed part.
func (w *world) waitListen(ctx context.Context, port int) error {
	for range 100 {
		out, _ := w.nsCommand("ss", "-ltnH", fmt.Sprintf("sport = :%d", port)).Output()
		if len(bytes.TrimSpace(out)) > 0 {
			return nil
		}
		if err := bench.Sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("not listening on %s:%d after 10 s", addr, port)
}

// stop ends the sink and Dovecot and deletes the namespace (with
// anything still running in it). Safe to call twice.
func (w *world) stop() {
	if w.sink != nil {
		w.sink.Process.Kill()
		w.sink.Wait()
		w.sink = nil
	}
	if w.dovecot {
		if b, err := os.ReadFile(filepath.Join(w.work, "dovecot", "run", "master.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && procComm(pid) == "dovecot" {
				// SIGTERM: the master stops its children.
				syscall.Kill(pid, syscall.SIGTERM)
				for i := 0; i < 100 && procComm(pid) != ""; i++ {
					time.Sleep(100 * time.Millisecond)
				}
				if procComm(pid) != "" {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		w.dovecot = false
	}
	if w.nsMade {
		out, _ := exec.Command("ip", "netns", "pids", w.ns).Output()
		for f := range strings.FieldsSeq(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if out, err := exec.Command("ip", "netns", "delete", w.ns).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "fetchbench: ip netns delete %s: %v: %s\n", w.ns, err, out)
		}
		w.nsMade = false
	}
}

// rep seeds the mailbox, starts a fresh relay whose collector empties it,
// and returns the seconds from the relay's start until the sink has every
// message and the Maildir is empty, and the relay's CPU seconds.
func (w *world) rep(ctx context.Context, o opts, proto string, i int) (secs, cpu float64, err error) {
	if err := w.seed(o.msgs, o.size); err != nil {
		return 0, 0, err
	}
	run := filepath.Join(w.dir, fmt.Sprintf("run-%s-%d", proto, i))
	if err := os.MkdirAll(run, 0o755); err != nil {
		return 0, 0, err
	}
	pw := filepath.Join(w.dir, "password")
	if err := os.WriteFile(pw, []byte(mboxPass+"\n"), 0o600); err != nil {
		return 0, 0, err
	}
	cfg := filepath.Join(w.dir, "gatehouse.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `hostname: bench
smtp:
  hostname: bench.localdomain
  listen: {smtp: "127.0.0.1:%d", submission: "off", smtps: "off"}
  domains:
    - {name: example.test, next_hop: "[127.0.0.1]:%d", tls: none}
  limits: {message_size: 200MiB}
fetch:
  - {name: bench, protocol: %s, server: %s, port: %d, user: %s, password_file: %s, deliver_to: %s, ca_file: %s, poll: 1h}
`, o.port, o.sinkPort, proto, addr, map[string]int{"pop3s": o.pop3sPort, "imaps": o.imapsPort}[proto], mboxUser, pw, rcpt, filepath.Join(w.work, "tls", "cert.pem")), 0o644); err != nil {
		return 0, 0, err
	}
	if out, err := exec.Command(o.bin, "config", "validate", cfg).CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("config validate: %v: %s", err, out)
	}
	c0 := bench.SinkCount(w.sinkOut)
	if err := bench.Sleep(ctx, o.settle); err != nil {
		return 0, 0, err
	}
	dvPID := w.dovecotPID()
	dv0 := bench.ChildrenCPU(dvPID)

	logPath := filepath.Join(w.dir, fmt.Sprintf("gatehouse-%s-%d.log", proto, i))
	lf, err := os.Create(logPath)
	if err != nil {
		return 0, 0, err
	}
	defer lf.Close()
	gh := w.nsCommand(o.bin, "service", "smtp", "--config", cfg, "--run", run)
	gh.Stdout, gh.Stderr = lf, lf
	busy0, total0 := bench.SysTicks()
	t0 := time.Now()
	if err := gh.Start(); err != nil {
		return 0, 0, err
	}
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = gh.Wait(); close(exited) }()
	defer func() {
		// As the supervisor stops it: SIGTERM, SIGKILL after 10 s.
		gh.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			fmt.Fprintln(os.Stderr, "fetchbench: gatehouse still running 10 s after SIGTERM; killed")
			gh.Process.Kill()
			<-exited
		}
		if n := bench.LogProblems("fetchbench", logPath); n > 0 {
			fmt.Printf("gatehouse_fetch_log_problems=%d\n", n)
		}
	}()

	// Only the sink's counter file and two directories are read while
	// the collector works: no process started that would compete for
	// the cores.
	deadline := t0.Add(o.timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	// When each end finished, for the figure's make-up: the sink has
	// every message, and the server has none (its QUIT expunged them).
	var sinkDone, emptied float64
	for {
		if sinkDone == 0 && bench.SinkCount(w.sinkOut)-c0 >= o.msgs {
			sinkDone = time.Since(t0).Seconds()
		}
		if emptied == 0 && w.mailboxEmpty() {
			emptied = time.Since(t0).Seconds()
		}
		if sinkDone > 0 && emptied > 0 {
			secs = max(sinkDone, emptied)
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("after %s the sink got %d of %d messages, %d left in the Maildir; relay log: %s",
				o.timeout, bench.SinkCount(w.sinkOut)-c0, o.msgs, w.mailboxCount(), bench.ReadTail(logPath, 1500))
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-exited:
			return 0, 0, fmt.Errorf("gatehouse exited: %v: %s", exitErr, bench.ReadTail(logPath, 2000))
		}
	}
	cpu = bench.ProcCPU(gh.Process.Pid)
	// How full the whole machine was meanwhile (relay, Dovecot, sink),
	// as a fraction of all its cores.
	busy1, total1 := bench.SysTicks()
	machine := float64(busy1-busy0) / float64(max(total1-total0, 1))
	// Late duplicates would show up here.
	if err := bench.Sleep(ctx, 300*time.Millisecond); err != nil {
		return 0, 0, err
	}
	if c := bench.SinkCount(w.sinkOut) - c0; c != o.msgs {
		return 0, 0, fmt.Errorf("the sink got %d messages for %d in the mailbox (duplicates)", c, o.msgs)
	}
	if err := fetchStatus(o.bin, run); err != nil {
		return 0, 0, err
	}
	// Dovecot's side, as the baseline script counts it: the CPU of the
	// pop3/imap processes its master reaped, once they have ended.
	for range 50 {
		if !w.dovecotBusy(dvPID) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	dv := bench.ChildrenCPU(dvPID) - dv0
	fmt.Printf("rep=%d proto=%s dovecot_cpu_s=%.2f dovecot_busy_of_wall=%.2f sink_done_s=%.3f mailbox_empty_s=%.3f machine_busy_of_cores=%.2f\n", i, proto, dv, dv/secs, sinkDone, emptied, machine)
	return secs, cpu, nil
}

// seed writes the messages straight into Maildir/new exactly as the
// script's seed() does (same headers, body lines, padding and
// Dovecot-style names with S= and W=), then has doveadm index the
// mailbox (new/ to cur/, dovecot.index) outside the timed part.
func (w *world) seed(n, size int) error {
	home := filepath.Dir(w.maildir)
	if err := os.RemoveAll(home); err != nil {
		return err
	}
	for _, d := range []string{"new", "cur", "tmp"} {
		if err := os.MkdirAll(filepath.Join(w.maildir, d), 0o700); err != nil {
			return err
		}
	}
	u, err := user.Lookup(mailUID)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	now := time.Now().Unix()
	tag := time.Now().UnixNano()
	date := time.Unix(now, 0).UTC().Format("Mon Jan _2 15:04:05 2006") // perl's scalar(gmtime)
	line := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz", 3) + "\n"
	for i := 1; i <= n; i++ {
		h := "Return-Path: <sender@example.test>\n" +
			"From: Sender <sender@example.test>\n" +
			"To: Alice <alice@example.test>\n" +
			fmt.Sprintf("Subject: fmbench message %d of %d\n", i, n) +
			"Date: " + date + " +0000\n" +
			fmt.Sprintf("Message-ID: <%d.%d@fmbench.test>\n", i, tag) +
			"MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n"
		var body strings.Builder
		fmt.Fprintf(&body, "message %d\n", i)
		for len(h)+body.Len()+len(line) <= size {
			body.WriteString(line)
		}
		m := h + body.String()
		if len(m) < size {
			m += strings.Repeat("x", size-len(m)-1) + "\n"
		}
		s, wv := len(m), len(m)+strings.Count(m, "\n")
		f := filepath.Join(w.maildir, "new", fmt.Sprintf("%d.M%dP%d.fmbench,S=%d,W=%d", now, i, os.Getpid(), s, wv))
		if err := os.WriteFile(f, []byte(m), 0o600); err != nil {
			return err
		}
	}
	if err := filepath.WalkDir(home, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	}); err != nil {
		return err
	}
	out, err := exec.Command("doveadm", "-c", w.conf, "-f", "flow", "mailbox", "status",
		"-u", mboxUser, "messages", "INBOX").CombinedOutput()
	if err != nil {
		return fmt.Errorf("doveadm: %v: %s", err, out)
	}
	// -f flow: "INBOX messages=N"
	if !slices.Contains(strings.Fields(string(out)), fmt.Sprintf("messages=%d", n)) {
		return fmt.Errorf("seeding: Dovecot sees %q, expected messages=%d", strings.TrimSpace(string(out)), n)
	}
	return nil
}

// mailboxCount is the number of files in the Maildir's new/ and cur/.
func (w *world) mailboxCount() int {
	n := 0
	for _, d := range []string{"new", "cur"} {
		if f, err := os.Open(filepath.Join(w.maildir, d)); err == nil {
			names, _ := f.Readdirnames(-1)
			f.Close()
			n += len(names)
		}
	}
	return n
}

// mailboxEmpty reads at most one name per directory: cheap enough to ask
// every tick.
func (w *world) mailboxEmpty() bool {
	for _, d := range []string{"new", "cur"} {
		f, err := os.Open(filepath.Join(w.maildir, d))
		if err != nil {
			return false
		}
		names, _ := f.Readdirnames(1)
		f.Close()
		if len(names) > 0 {
			return false
		}
	}
	return true
}

// fetchStatus fails if the collector reports an error for an account.
func fetchStatus(bin, run string) error {
	out, err := bench.Output(exec.Command(bin, "fetch", "status", "--format", "json",
		"--socket", filepath.Join(run, "control.sock")))
	if err != nil {
		return fmt.Errorf("fetch status: %w", err)
	}
	var st []struct {
		Name      string `json:"name"`
		Collected int64  `json:"collected"`
		Deleted   int64  `json:"deleted"`
		OnServer  int    `json:"on_server"`
		LastError string `json:"last_error"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return fmt.Errorf("fetch status: %w", err)
	}
	if len(st) == 0 {
		return errors.New("fetch status: no account")
	}
	for _, a := range st {
		fmt.Printf("fetch_status account=%s collected=%d deleted=%d on_server=%d last_error=%q\n",
			a.Name, a.Collected, a.Deleted, a.OnServer, a.LastError)
		if a.LastError != "" {
			return fmt.Errorf("fetch status: account %s: %s", a.Name, a.LastError)
		}
	}
	return nil
}

// ---------------------------------------------------------------- fetchmail

// benchFetchmail runs the baseline script with QUICKACK=1 and the same
// knobs and returns its POP3S and IMAPS medians (NaN when it is missing
// or failed). Its output is passed through except the headline lines,
// which come last from run.
func benchFetchmail(ctx context.Context, o opts, script string, have bool) (pop3s, imaps float64, err error) {
	pop3s, imaps = math.NaN(), math.NaN()
	if !have {
		fmt.Println("fetchmail_baseline=missing")
		return pop3s, imaps, nil
	}
	// PROTO etc. are set; other knobs (ports, WORK, EXPUNGE...) pass
	// through from the environment. Its namespace is its own, so its
	// ports cannot collide with ours (and ours is gone by now anyway).
	err = bench.Baseline(ctx, "fetchmail", script, []string{"PROTO=imaps pop3s", "QUICKACK=1", fmt.Sprintf("MSGS=%d", o.msgs),
		fmt.Sprintf("SIZE=%d", o.size), fmt.Sprintf("REPS=%d", o.fmReps)}, func(k, v string) bool {
		// With QUICKACK=1 the script names them
		// fetchmail_<proto>_quickack_msgs_per_s.
		switch strings.Replace(k, "_quickack", "", 1) {
		case "fetchmail_pop3s_msgs_per_s":
			pop3s = bench.ParseFloat(v)
		case "fetchmail_imaps_msgs_per_s":
			imaps = bench.ParseFloat(v)
		default:
			return false
		}
		return true
	})
	return pop3s, imaps, err
}

// ---------------------------------------------------------------- helpers

// dovecotPID is the Dovecot master's process id (0 if unknown).
func (w *world) dovecotPID() int {
	b, err := os.ReadFile(filepath.Join(w.work, "dovecot", "run", "master.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// dovecotBusy says whether the master still has a pop3 or imap process.
func (w *world) dovecotBusy(master int) bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || bench.PPID(pid) != master {
			continue
		}
		if c := procComm(pid); c == "pop3" || c == "imap" {
			return true
		}
	}
	return false
}

// procComm is a live process's name, "" when it is gone (or a zombie).
func procComm(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	i, j := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if i < 0 || j < i || bytes.HasPrefix(b[j+1:], []byte(" Z")) {
		return ""
	}
	return string(b[i+1 : j])
}
