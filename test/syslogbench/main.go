// Command syslogbench measures the syslog service: records per second to
// rsyslog over TLS, without loss. The records come from a stand-in for
// PID 1's log feed (syslogpeer.PID1), paced so that the feed never drops
// one; rsyslog runs in a network namespace of the benchmark's own, with its
// own config, and writes each record it parsed to a file; the clock runs
// from the first record handed to the feed until the last one is in that
// file, and every record is counted there. Needs root.
//
//	syslogbench_tls_records=500000
//	syslogbench_tls_lost=0
//	syslogbench_tls_records_per_s=…
//	syslogbench_tls_ratio_vs_target=…   (target 50,000/s)
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"gatehouse/init/logring"
	"gatehouse/test/bench"
	"gatehouse/test/syslogpeer"
)

const target = 50000.0

func main() {
	binary := flag.String("binary", "build/gatehouse", "the gatehouse binary")
	n := flag.Int("n", 500000, "records to send")
	keep := flag.Bool("keep", false, "keep the work directory")
	flag.Parse()
	bench.Main("syslogbench", func(ctx context.Context) error { return run(ctx, *binary, *n, *keep) })
}

func run(ctx context.Context, binary string, n int, keep bool) error {
	bin, err := bench.Binary(binary)
	if err != nil {
		return err
	}
	if err := bench.Tools("make deps", "rsyslogd", "ip"); err != nil {
		return err
	}
	dir, remove, err := bench.WorkDir("syslogbench", keep)
	if err != nil {
		return err
	}
	defer remove()
	ns := fmt.Sprintf("ghsb%d", rand.N(1<<30))
	for _, args := range [][]string{{"netns", "add", ns}, {"-n", ns, "link", "set", "lo", "up"}, {"-n", ns, "addr", "add", "10.77.0.1/32", "dev", "lo"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	defer exec.Command("ip", "netns", "del", ns).Run()

	peerDir := filepath.Join(dir, "rsyslog")
	os.MkdirAll(peerDir, 0o755)
	peer, err := syslogpeer.New(peerDir, ns, "10.77.0.1")
	if err != nil {
		return err
	}
	if err := peer.Start(); err != nil {
		return err
	}
	defer peer.Stop()
	if err := peer.Ready(30 * time.Second); err != nil {
		return err
	}

	runDir := filepath.Join(dir, "run")
	os.MkdirAll(runDir, 0o700)
	pid1 := &syslogpeer.PID1{}
	pid1.Serve(ctx, filepath.Join(runDir, "control.sock"))
	cfg := filepath.Join(dir, "gatehouse.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("hostname: gw1\nsyslog:\n  destinations:\n    - {server: 10.77.0.1, transport: tls, buffer: 512MiB, ca: %s, server_name: %s}\n",
		peer.CA, syslogpeer.ServerName)), 0o644)
	logf, _ := os.Create(filepath.Join(dir, "syslog.out"))
	defer logf.Close()
	svc := exec.Command("ip", "netns", "exec", ns, bin, "service", "syslog", "--config", cfg, "--run", runDir)
	svc.Stdout, svc.Stderr = logf, logf
	if err := svc.Start(); err != nil {
		return err
	}
	defer func() { svc.Process.Signal(os.Interrupt); svc.Wait() }()
	if err := pid1.Subscribed(10 * time.Second); err != nil {
		return err
	}
	// Warm up: one record through, so the TLS connection is up.
	tls := peer.File("tls")
	for deadline := time.Now().Add(30 * time.Second); ; {
		pid1.Feed.Publish(logring.Record{Service: "bench", Time: time.Now(), Line: "level=INFO msg=warmup"})
		if b, _ := os.ReadFile(tls); bytes.Contains(b, []byte("|warmup")) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no record reached rsyslog (see %s)", logf.Name())
		}
		if err := bench.Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}

	lastMsg := []byte(fmt.Sprintf(`id="%d"]|message queued`, n-1))
	start := time.Now()
	for i := 0; i < n; {
		if pid1.Pending() > logring.SubscriberBuffer/2 {
			time.Sleep(50 * time.Microsecond)
			continue
		}
		for j := 0; j < 1000 && i < n; j++ {
			pid1.Feed.Publish(logring.Record{Service: "smtp", PID: 4242, Time: time.Now(),
				Line: fmt.Sprintf(`level=INFO msg="message queued" from=sender@example.com size=4096 id=%d`, i)})
			i++
		}
	}
	var elapsed time.Duration
	for deadline := time.Now().Add(5 * time.Minute); ; {
		if bytes.Contains([]byte(bench.ReadTail(tls, 4096)), lastMsg) {
			elapsed = time.Since(start)
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the last record never arrived (see %s)", logf.Name())
		}
		if err := bench.Sleep(ctx, 5*time.Millisecond); err != nil {
			return err
		}
	}
	b, err := os.ReadFile(tls)
	if err != nil {
		return err
	}
	got := bytes.Count(b, []byte("|message queued\n"))
	rate := float64(n) / elapsed.Seconds()
	fmt.Printf("syslogbench_tls_records=%d\n", n)
	fmt.Printf("syslogbench_tls_lost=%d\n", n-got)
	fmt.Printf("syslogbench_tls_elapsed_s=%s\n", bench.F2(elapsed.Seconds()))
	fmt.Printf("syslogbench_tls_records_per_s=%.0f\n", rate)
	fmt.Printf("syslogbench_tls_ratio_vs_target=%s\n", bench.F2(rate/target))
	if got != n {
		return fmt.Errorf("%d of %d records arrived", got, n)
	}
	return nil
}
