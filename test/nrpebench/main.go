// Command nrpebench measures the NRPE server (`make bench-nrpe`): checks
// per second answered to Debian's check_nrpe 4.1 over TLS, against
// Debian's nrpe 4.1 daemon running the equivalent plugin (check_load of
// monitoring-plugins with the same thresholds) with the same certificate,
// in the same run, in a network namespace of its own. Each side gets the
// same number of concurrent clients, each running check_nrpe in a loop,
// for the same time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gatehouse/test/bench"
)

const (
	checkNRPE = "/usr/lib/nagios/plugins/check_nrpe"
	checkLoad = "/usr/lib/nagios/plugins/check_load"
	nrpeBin   = "/usr/sbin/nrpe"
)

func main() {
	binary := flag.String("binary", "build/gatehouse", "the gatehouse binary")
	clients := flag.Int("clients", 4, "concurrent check_nrpe loops against each server")
	dur := flag.Duration("duration", 10*time.Second, "how long each server is measured")
	keep := flag.Bool("keep", false, "keep the work directory")
	flag.Parse()
	bench.Main("nrpebench", func(ctx context.Context) error { return run(ctx, *binary, *clients, *dur, *keep) })
}

func run(ctx context.Context, binary string, clients int, dur time.Duration, keep bool) error {
	// The whole run is in a namespace of its own: its loopback, its ports.
	if os.Getenv("GH_NRPEBENCH_NS") == "" {
		bin, err := bench.Binary(binary)
		if err != nil {
			return err
		}
		name := fmt.Sprintf("ghnrpebench%d", os.Getpid())
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			return fmt.Errorf("ip netns add %s: %v: %s", name, err, out)
		}
		defer exec.Command("ip", "netns", "del", name).Run()
		if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
			return fmt.Errorf("lo up: %v: %s", err, out)
		}
		args := append([]string{"netns", "exec", name, os.Args[0]}, "-binary", bin, "-clients", fmt.Sprint(clients), "-duration", dur.String(), fmt.Sprintf("-keep=%v", keep))
		cmd := exec.CommandContext(ctx, "ip", args...)
		cmd.Env = append(os.Environ(), "GH_NRPEBENCH_NS="+name)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		return cmd.Run()
	}
	if err := bench.Tools("test/deps.sh installs nagios-nrpe-plugin, nagios-nrpe-server, monitoring-plugins-basic", checkNRPE, nrpeBin, checkLoad); err != nil {
		return err
	}
	dir, remove, err := bench.WorkDir("nrpebench", keep)
	if err != nil {
		return err
	}
	defer remove()
	os.Chmod(dir, 0o755) // nrpe runs as nagios

	// Gatehouse, host mode, the NRPE server on 5666 with its self-signed
	// certificate.
	cfg := filepath.Join(dir, "gatehouse.yaml")
	os.WriteFile(cfg, []byte("monitoring: {hosts: [127.0.0.1]}\nnrpe: {listen: \"127.0.0.1:5666\", ssl: required, connections_per_host: 64}\n"), 0o644)
	gh := exec.CommandContext(ctx, binary, "run", "--config", cfg, "--state", filepath.Join(dir, "state"))
	gh.Cancel = func() error { return gh.Process.Signal(syscall.SIGTERM) }
	gh.WaitDelay = 10 * time.Second
	ghLog, _ := os.Create(filepath.Join(dir, "gatehouse.log"))
	gh.Stdout, gh.Stderr = ghLog, ghLog
	if err := gh.Start(); err != nil {
		return err
	}
	defer func() { gh.Process.Signal(syscall.SIGTERM); gh.Wait() }()
	if err := waitFor(ctx, "5666", "gatehouse"); err != nil {
		return err
	}

	// nrpe 4.1 with the same certificate, running check_load with the
	// thresholds of Gatehouse's defaults.
	crt, key := filepath.Join(dir, "nrpe.crt"), filepath.Join(dir, "nrpe.key")
	for src, dst := range map[string]string{"state/nrpe/nrpe.crt": crt, "state/nrpe/nrpe.key": key} {
		b, err := os.ReadFile(filepath.Join(dir, src))
		if err != nil {
			return err
		}
		os.WriteFile(dst, b, 0o644)
	}
	nrpeCfg := filepath.Join(dir, "nrpe.cfg")
	os.WriteFile(nrpeCfg, []byte(fmt.Sprintf(`server_port=5667
server_address=127.0.0.1
nrpe_user=nagios
nrpe_group=nagios
pid_file=%[1]s/nrpe.pid
allowed_hosts=127.0.0.1
dont_blame_nrpe=0
command_timeout=60
connection_timeout=300
disable_syslog=1
ssl_cert_file=%[2]s
ssl_privatekey_file=%[3]s
command[check_load]=%[4]s -w 8,6,4 -c 16,12,8
`, dir, crt, key, checkLoad)), 0o644)
	nd := exec.CommandContext(ctx, nrpeBin, "-c", nrpeCfg, "-f")
	ndLog, _ := os.Create(filepath.Join(dir, "nrpe.log"))
	nd.Stdout, nd.Stderr = ndLog, ndLog
	if err := nd.Start(); err != nil {
		return err
	}
	defer func() { nd.Process.Kill(); nd.Wait() }()
	if err := waitFor(ctx, "5667", "nrpe"); err != nil {
		return err
	}

	// Both answer the same command the same way before anything is timed.
	for _, port := range []string{"5666", "5667"} {
		out, err := exec.Command(checkNRPE, "-H", "127.0.0.1", "-p", port, "-c", "check_load").CombinedOutput()
		if !strings.Contains(string(out), "load average") {
			return fmt.Errorf("check_load on %s: %v: %s", port, err, out)
		}
		fmt.Printf("# %s: %s", port, out)
	}

	fmt.Printf("clients=%d\nduration_s=%g\nloadavg_before=%s\n", clients, dur.Seconds(), bench.Loadavg())
	ghRate, ghErr := measure(ctx, "5666", clients, dur)
	ndRate, ndErr := measure(ctx, "5667", clients, dur)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fmt.Printf("gatehouse_checks_per_s=%s\ngatehouse_failed=%d\n", bench.F1(ghRate), ghErr)
	fmt.Printf("nrpe_checks_per_s=%s\nnrpe_failed=%d\n", bench.F1(ndRate), ndErr)
	if ndRate > 0 {
		fmt.Printf("ratio_vs_nrpe=%s\n", bench.F2(ghRate/ndRate))
	}
	if ghErr > 0 || ndErr > 0 {
		return errors.New("some checks failed")
	}
	return nil
}

// waitFor asks with check_nrpe until the server on port answers.
func waitFor(ctx context.Context, port, what string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := exec.CommandContext(ctx, checkNRPE, "-H", "127.0.0.1", "-p", port, "-t", "2").CombinedOutput()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s on %s does not answer: %v: %s", what, port, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// measure runs clients loops of check_nrpe -c check_load over TLS
// against port for d, and says how many answered per second and how many
// failed.
func measure(ctx context.Context, port string, clients int, d time.Duration) (float64, int64) {
	var ok, failed atomic.Int64
	stop := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) && ctx.Err() == nil {
				out, err := exec.CommandContext(ctx, checkNRPE, "-H", "127.0.0.1", "-p", port, "-c", "check_load").Output()
				// OK, or a WARNING from a loaded machine: an answer either way.
				var ee *exec.ExitError
				if (err == nil || errors.As(err, &ee) && ee.ExitCode() <= 2) && strings.Contains(string(out), "load average") {
					ok.Add(1)
				} else if ctx.Err() == nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return float64(ok.Load()) / time.Since(start).Seconds(), failed.Load()
}
