// Command apibench measures the REST API (`make bench-api`): status
// requests per second and their latency (p50, p99) from 50 concurrent
// clients (from four source addresses), each a keep-alive HTTPS
// connection with a bearer token,
// against the way an operator's script gets the same document without an
// API, in the same run: `status --format json` through the SSH shell with
// OpenSSH's client, the same number of clients. Gatehouse runs in host
// mode in a network namespace of its own.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gatehouse/control"
	"gatehouse/test/bench"
)

func main() {
	binary := flag.String("binary", "build/gatehouse", "the gatehouse binary")
	clients := flag.Int("clients", 50, "concurrent clients against each")
	dur := flag.Duration("duration", 10*time.Second, "how long each is measured")
	keep := flag.Bool("keep", false, "keep the work directory")
	flag.Parse()
	bench.Main("apibench", func(ctx context.Context) error { return run(ctx, *binary, *clients, *dur, *keep) })
}

func run(ctx context.Context, binary string, clients int, dur time.Duration, keep bool) error {
	if os.Getenv("GH_APIBENCH_NS") == "" {
		bin, err := bench.Binary(binary)
		if err != nil {
			return err
		}
		name := fmt.Sprintf("ghapibench%d", os.Getpid())
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			return fmt.Errorf("ip netns add %s: %v: %s", name, err, out)
		}
		defer exec.Command("ip", "netns", "del", name).Run()
		if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
			return fmt.Errorf("lo up: %v: %s", err, out)
		}
		args := []string{"netns", "exec", name, os.Args[0], "-binary", bin, "-clients", fmt.Sprint(clients), "-duration", dur.String(), fmt.Sprintf("-keep=%v", keep)}
		cmd := exec.CommandContext(ctx, "ip", args...)
		cmd.Env = append(os.Environ(), "GH_APIBENCH_NS="+name)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		return cmd.Run()
	}
	if err := bench.Tools("test/deps.sh installs openssh-client", "ssh", "ssh-keygen"); err != nil {
		return err
	}
	dir, remove, err := bench.WorkDir("apibench", keep)
	if err != nil {
		return err
	}
	defer remove()
	key := filepath.Join(dir, "id")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		return fmt.Errorf("ssh-keygen: %v: %s", err, out)
	}
	pub, _ := os.ReadFile(key + ".pub")
	cfg := filepath.Join(dir, "gatehouse.yaml")
	state := filepath.Join(dir, "state")
	os.WriteFile(cfg, fmt.Appendf(nil, "hostname: gw\nssh: {port: 2222, allow: [127.0.0.1], authorized_keys: [%q]}\nadmin: {allow: [127.0.0.0/8]}\n", strings.TrimSpace(string(pub))), 0o644)
	gh := exec.CommandContext(ctx, binary, "run", "--config", cfg, "--state", state)
	gh.Cancel = func() error { return gh.Process.Signal(syscall.SIGTERM) }
	gh.WaitDelay = 10 * time.Second
	ghLog, _ := os.Create(filepath.Join(dir, "gatehouse.log"))
	gh.Stdout, gh.Stderr = ghLog, ghLog
	if err := gh.Start(); err != nil {
		return err
	}
	defer func() { gh.Process.Signal(syscall.SIGTERM); gh.Wait() }()
	if err := waitReady(ctx, filepath.Join(state, "control.sock")); err != nil {
		return err
	}
	out, err := exec.Command(binary, "api", "token", "create", "bench", "--role", "read", "--state", state).Output()
	if err != nil {
		return fmt.Errorf("api token create: %v", err)
	}
	token := strings.SplitN(string(out), "\n", 2)[0]
	pem, err := os.ReadFile(filepath.Join(state, "admin", "cert.pem"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)

	api := func(c *http.Client) error {
		req, _ := http.NewRequestWithContext(ctx, "GET", "https://127.0.0.1:8445/api/v1/status", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var st control.Status
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != 200 || st.Hostname == "" {
			return fmt.Errorf("status %d: %v", resp.StatusCode, err)
		}
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	// The clients come from four addresses, as from a few monitoring
	// hosts: the API takes at most 32 connections from one source.
	var nclient atomic.Int32
	newClient := func() *http.Client {
		src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+nclient.Add(1)%4))}
		d := &net.Dialer{LocalAddr: src, Timeout: 10 * time.Second}
		return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext,
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "gw"}, MaxIdleConnsPerHost: 1}}
	}
	sshStatus := func() error {
		out, err := exec.CommandContext(ctx, "ssh", "-p", "2222", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
			"admin@127.0.0.1", "status", "--format", "json").Output()
		var st control.Status
		if err != nil || json.Unmarshal(out, &st) != nil || st.Hostname == "" {
			return fmt.Errorf("ssh status: %v", err)
		}
		return nil
	}
	// Both answer before anything is timed (the SSH shell starts with
	// the rest: wait until it logs in).
	deadline := time.Now().Add(30 * time.Second)
	for {
		errA, errS := api(newClient()), sshStatus()
		if errA == nil && errS == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("not answering: api %v, ssh %v", errA, errS)
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Printf("clients=%d\nduration_s=%g\nloadavg_before=%s\n", clients, dur.Seconds(), bench.Loadavg())
	apiRate, apiLat, apiFail := measure(ctx, clients, dur, func() func() error {
		c := newClient()
		return func() error { return api(c) }
	})
	sshRate, sshLat, sshFail := measure(ctx, clients, dur, func() func() error { return sshStatus })
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fmt.Printf("api_status_per_s=%s\napi_p50_ms=%s\napi_p99_ms=%s\napi_failed=%d\n", bench.F1(apiRate), bench.F2(pct(apiLat, 50)), bench.F2(pct(apiLat, 99)), apiFail)
	fmt.Printf("ssh_status_per_s=%s\nssh_p50_ms=%s\nssh_p99_ms=%s\nssh_failed=%d\n", bench.F1(sshRate), bench.F2(pct(sshLat, 50)), bench.F2(pct(sshLat, 99)), sshFail)
	if sshRate > 0 {
		fmt.Printf("ratio_vs_ssh=%s\n", bench.F2(apiRate/sshRate))
	}
	fmt.Printf("loadavg_after=%s\n", bench.Loadavg())
	if apiFail > 0 {
		return errors.New("some API requests failed")
	}
	return nil
}

// waitReady asks PID 1 until it says ready.
func waitReady(ctx context.Context, sock string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp, err := control.Call(sock, control.Request{Verb: "status"}); err == nil && resp.Status.Ready {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return errors.New("gatehouse not ready within 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// measure runs clients loops of one request for d; it returns requests
// answered per second, their latencies in milliseconds, and failures.
func measure(ctx context.Context, clients int, d time.Duration, client func() func() error) (float64, []float64, int) {
	var mu sync.Mutex
	var lat []float64
	failed := 0
	stop := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		do := client()
		wg.Go(func() {
			var mine []float64
			bad := 0
			for time.Now().Before(stop) && ctx.Err() == nil {
				t := time.Now()
				if err := do(); err != nil {
					bad++
					continue
				}
				mine = append(mine, float64(time.Since(t).Microseconds())/1000)
			}
			mu.Lock()
			lat, failed = append(lat, mine...), failed+bad
			mu.Unlock()
		})
	}
	wg.Wait()
	return float64(len(lat)) / time.Since(start).Seconds(), lat, failed
}

func pct(v []float64, p int) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}
