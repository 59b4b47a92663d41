//go:build e2e

package test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/control"
	"gatehouse/test/netnstest"
)

// netWorld is two network namespaces joined by a veth pair: a "router"
// (10.77.0.1, where dnsmasq and chrony run) and the "appliance"
// (Gatehouse in host mode). Nothing is created in the host's namespace.
type netWorld struct {
	dir      string
	router   string // namespace names
	appl     string
	procs    []*exec.Cmd
	gatehose *exec.Cmd
}

func gatehouseBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("GATEHOUSE_BIN")
	if bin == "" {
		bin = "../build/gatehouse"
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatalf("no gatehouse binary (run make): %v", err)
	}
	shared.once.Do(func() { shared.path, shared.err = shareBinary(abs) })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.path
}

// shared is the binary as every test runs it: a copy the relay's own user
// can reach, since the checkout may lie in a directory only root may
// enter (a clone into `mktemp -d`, mode 0700).
var shared struct {
	once sync.Once
	path string
	err  error
}

func shareBinary(src string) (string, error) {
	dir, err := os.MkdirTemp("", "gatehouse-bin-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	dst := filepath.Join(dir, "gatehouse")
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return "", err
	}
	return dst, out.Close()
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newNetWorld(t *testing.T) *netWorld {
	t.Helper()
	id := rand.N(1 << 30)
	w := &netWorld{dir: t.TempDir(), router: fmt.Sprintf("ghr%d", id), appl: fmt.Sprintf("gha%d", id)}
	// The relay runs as its own user and must reach the state directory:
	// t.TempDir's parent is mode 0700.
	if err := os.Chmod(filepath.Dir(w.dir), 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "netns", "add", w.router)
	run(t, "ip", "netns", "add", w.appl)
	t.Cleanup(func() {
		for _, p := range w.procs {
			p.Process.Kill()
			p.Wait()
		}
		exec.Command("ip", "netns", "del", w.router).Run()
		exec.Command("ip", "netns", "del", w.appl).Run()
	})
	run(t, "ip", "link", "add", "r0", "netns", w.router, "type", "veth", "peer", "name", "a0", "netns", w.appl)
	run(t, "ip", "-n", w.router, "addr", "add", "10.77.0.1/24", "dev", "r0")
	run(t, "ip", "-n", w.router, "link", "set", "r0", "up")
	run(t, "ip", "-n", w.router, "link", "set", "lo", "up")
	run(t, "ip", "-n", w.appl, "link", "set", "lo", "up")
	return w
}

// start runs a program in a namespace until the test ends.
func (w *netWorld) start(t *testing.T, ns, logName string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	f, err := os.Create(filepath.Join(w.dir, logName))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.procs = append(w.procs, cmd)
	return cmd
}

// logShows says whether the appliance's log shows s within a few seconds:
// a service's lines reach it through the supervisor, a little after the
// event a client saw.
func (w *netWorld) logShows(s string) bool {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if strings.Contains(w.log("gatehouse.log"), s) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

func (w *netWorld) log(name string) string {
	b, _ := os.ReadFile(filepath.Join(w.dir, name))
	return string(b)
}

// dnsmasq serves DHCP (2-minute leases, dnsmasq's shortest, renewed every
// few seconds) and DNS with an A and an MX record.
func (w *netWorld) dnsmasq(t *testing.T, extra ...string) *exec.Cmd {
	args := []string{"dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
		"--interface=r0", "--bind-interfaces", "--user=root",
		"--dhcp-range=10.77.0.100,10.77.0.150,2m", "--dhcp-option=option:T1,4", "--dhcp-option=option:T2,6",
		"--dhcp-option=option:dns-server,10.77.0.1", "--dhcp-option=option:ntp-server,10.77.0.1",
		"--dhcp-option=option:domain-name,example.test",
		"--dhcp-leasefile=" + filepath.Join(w.dir, "leases"),
		"--address=/mail.example.test/10.77.0.25", "--mx-host=example.test,mail.example.test,10",
		"--log-dhcp", "--log-queries", "--log-facility=" + filepath.Join(w.dir, "dnsmasq.log"),
		"--pid-file=" + filepath.Join(w.dir, "dnsmasq.pid")}
	cmd := w.start(t, w.router, "dnsmasq.out", append(args, extra...)...)
	waitDNS(t, w.router, "10.77.0.1")
	return cmd
}

// chrony serves time from its local clock at stratum 8; -x: it never
// touches the host's clock.
func (w *netWorld) chrony(t *testing.T) {
	conf := filepath.Join(w.dir, "chrony.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("local stratum 8\nallow 10.77.0.0/24\nbindaddress 10.77.0.1\ncmdport 0\npidfile %s/chronyd.pid\ndriftfile %s/drift\n", w.dir, w.dir)), 0o644)
	w.start(t, w.router, "chrony.log", "chronyd", "-x", "-d", "-f", conf)
	waitNTP(t, w.router, "10.77.0.1")
}

func (w *netWorld) state() string { return filepath.Join(w.dir, "state") }

func (w *netWorld) config(t *testing.T, yaml string) string {
	f := filepath.Join(w.dir, "gatehouse.yaml")
	if err := os.WriteFile(f, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// gatehouse runs `gatehouse run` in the appliance namespace and waits until
// it is ready.
func (w *netWorld) gatehouse(t *testing.T, yaml string, extra ...string) {
	t.Helper()
	w.startGatehouse(t, yaml, extra...)
	w.waitFor(t, "ready", 30*time.Second, func(st *control.Status) bool { return st.Ready })
}

// startGatehouse runs `gatehouse run` in the appliance namespace.
func (w *netWorld) startGatehouse(t *testing.T, yaml string, extra ...string) {
	t.Helper()
	cfg := w.config(t, yaml)
	args := append([]string{gatehouseBinary(t), "run", "--config", cfg, "--state", w.state()}, extra...)
	w.gatehose = w.start(t, w.appl, "gatehouse.log", args...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gatehouse log:\n%s", w.log("gatehouse.log"))
		}
	})
}

func (w *netWorld) status(t *testing.T) (*control.Status, error) {
	resp, err := control.Call(filepath.Join(w.state(), "control.sock"), control.Request{Verb: "status"})
	if err != nil {
		return nil, err
	}
	return resp.Status, nil
}

// waitFor polls the status until ok holds; these waits are bounds on how
// long the protocol may take, not timing assertions.
func (w *netWorld) waitFor(t *testing.T, what string, limit time.Duration, ok func(*control.Status) bool) *control.Status {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last *control.Status
	for time.Now().Before(deadline) {
		if st, err := w.status(t); err == nil {
			last = st
			if ok(st) {
				return st
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v; last status %+v", what, limit, last)
	return nil
}

// inNS runs f in namespace ns: the test's own sockets (a DNS query, say)
// then live in that network.
func inNS(t *testing.T, ns string, f func()) { netnstest.In(t, ns, f) }

func ipIn(t *testing.T, ns string, args ...string) string {
	return run(t, "ip", append([]string{"-n", ns}, args...)...)
}

func gatehouseCmd(t *testing.T, w *netWorld, args ...string) (string, error) {
	cmd := exec.CommandContext(context.Background(), gatehouseBinary(t), append(args, "--state", w.state())...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestMain removes the shared copy of the binary once every test is done.
func TestMain(m *testing.M) {
	code := m.Run()
	if shared.path != "" {
		os.RemoveAll(filepath.Dir(shared.path))
	}
	os.Exit(code)
}
