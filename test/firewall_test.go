//go:build e2e

package test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"gatehouse/control"
	"gatehouse/status"
	"gatehouse/test/netnstest"
	"gatehouse/test/testserver"
)

// listen opens TCP echo listeners on the appliance for the test's probes.
func listen(t *testing.T, ns string, ports ...int) {
	t.Helper()
	for _, p := range ports {
		var l net.Listener
		inNS(t, ns, func() {
			var err error
			if l, err = net.Listen("tcp", fmt.Sprintf(":%d", p)); err != nil {
				t.Fatal(err)
			}
		})
		testserver.Serve(t, l, func(c net.Conn) { io.Copy(c, c) })
	}
}

// addAdmin adds an "admin" namespace, 10.78.0.1, wired to the appliance's
// a1 (10.78.0.2 in the configs).
func addAdmin(t *testing.T, w *netWorld) string {
	admin := w.appl + "x"
	run(t, "ip", "netns", "add", admin)
	t.Cleanup(func() { run(t, "ip", "netns", "del", admin) })
	run(t, "ip", "link", "add", "b0", "netns", admin, "type", "veth", "peer", "name", "a1", "netns", w.appl)
	run(t, "ip", "-n", admin, "addr", "add", "10.78.0.1/24", "dev", "b0")
	run(t, "ip", "-n", admin, "link", "set", "b0", "up")
	return admin
}

// Real connections from two other hosts to the appliance's ports: every
// declared path works, for the declared peers only, and nothing else; the
// same with either backend.
func TestFirewallPathsRealTraffic(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) { firewallPathsRealTraffic(t, backend) })
	}
}

func firewallPathsRealTraffic(t *testing.T, backend string) {
	w := newNetWorld(t)
	admin := addAdmin(t, w)
	// A monitoring host, 10.79.0.1, on the appliance's a2 (monitoring
	// hosts always reach the SSH shell, with the administrators).
	mon := w.appl + "m"
	run(t, "ip", "netns", "add", mon)
	t.Cleanup(func() { run(t, "ip", "netns", "del", mon) })
	run(t, "ip", "link", "add", "m0", "netns", mon, "type", "veth", "peer", "name", "a2", "netns", w.appl)
	run(t, "ip", "-n", mon, "addr", "add", "10.79.0.1/24", "dev", "m0")
	run(t, "ip", "-n", mon, "link", "set", "m0", "up")
	listen(t, w.appl, 8443, 10046, 2222)
	cfg := `
interfaces:
  - {name: a0, addresses: [10.77.0.2/24]}
  - {name: a1, addresses: [10.78.0.2/24]}
  - {name: a2, addresses: [10.79.0.2/24]}
monitoring:
  hosts: [10.79.0.1]
ssh:
  allow: [10.78.0.1]
  authorized_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIILNx1j5XjRSQhvizLtd/NlOFArTxkVMdLx2wVLOJLwn admin@example.com"]
smtp:
  listen: {submission: "off", smtps: "off"}
  domains:
    - {name: example.test, next_hop: "[10.78.0.1]:25"}
firewall:
  backend: ` + backend + `
  paths:
    - {function: Administration, direction: in, proto: tcp, ports: [8443], peers: [10.78.0.1]}
    - {function: Public service, direction: in, proto: tcp, ports: ["10045-10049"]}
`
	w.gatehouse(t, cfg, "--firewall")
	w.waitFor(t, "firewall applied", 30*time.Second, func(st *control.Status) bool {
		f, ok := detailOf[status.Firewall](t, st, "firewall")
		return ok && f.Applies >= 1
	})
	// Addresses may still be on their way: wait until the public path answers.
	deadline := time.Now().Add(10 * time.Second)
	for netnstest.Reach(t, w.router, "10.77.0.2:10046") != "open" && time.Now().Before(deadline) {
	}

	for _, c := range []struct{ from, to, want string }{
		{w.router, "10.77.0.2:10046", "open"},    // public path, anyone
		{w.router, "10.77.0.2:8443", "blocked"},  // admin path, not for the internet
		{w.router, "10.77.0.2:2222", "blocked"},  // no path
		{admin, "10.78.0.2:8443", "open"},        // admin path, its peer
		{admin, "10.78.0.2:10046", "open"},       // public path
		{admin, "10.78.0.2:2222", "blocked"},     // no path
		{w.router, "10.77.0.2:10050", "blocked"}, // just past the range
		{w.router, "10.77.0.2:22", "blocked"},    // SSH: not for the internet
		{admin, "10.78.0.2:22", "open"},          // SSH: the allowlist
		{mon, "10.79.0.2:22", "open"},            // SSH: the monitoring host
		{mon, "10.79.0.2:8443", "blocked"},       // but not the admin path
		{w.router, "10.77.0.2:25", "open"},       // SMTP, derived from the relay: anyone
		{w.router, "10.77.0.2:587", "blocked"},   // submission is off: no opening
	} {
		if got := netnstest.Reach(t, c.from, c.to); got != c.want {
			t.Errorf("%s -> %s: %s, want %s", c.from, c.to, got, c.want)
		}
	}
	if out, err := nsExec(w.router, "ping", "-c", "1", "-W", "2", "10.77.0.2"); err != nil {
		t.Errorf("ping (ICMP essentials) failed: %v\n%s", err, out)
	}

	// `firewall show` reads the rules back from the kernel, counters and
	// all: the blocked attempts above were counted by the final drop.
	show, err := nsExec(w.appl, gatehouseBinary(t), "firewall", "show", "--state", w.state())
	if err != nil {
		t.Fatalf("firewall show: %v\n%s", err, show)
	}
	wantShown := map[string]*regexp.Regexp{
		"nftables": regexp.MustCompile(`(?s)installed \(nftables, read back from the kernel\):\ntable inet gatehouse \{.*ip saddr @peers\d+ tcp dport 8443 counter packets [1-9]\d* bytes \d+ accept.*counter packets [1-9]\d* bytes \d+ drop`),
		"iptables": regexp.MustCompile(`(?s)installed \(iptables, read back from the kernel\):\n.*-A INPUT -j GATEHOUSE-INPUT.*\[[1-9]\d*:\d+\] -A GATEHOUSE-INPUT -s 10\.78\.0\.1/32 -p tcp -m tcp --dport 8443 -j ACCEPT.*\[[1-9]\d*:\d+\] -A GATEHOUSE-INPUT -j DROP`),
	}[backend]
	if !wantShown.MatchString(show) {
		t.Errorf("firewall show does not match %s:\n%s", wantShown, show)
	}

	// An established connection survives a re-apply that closes its path;
	// new connections on it are refused from then on.
	var conn net.Conn
	inNS(t, admin, func() {
		var err error
		if conn, err = net.DialTimeout("tcp", "10.78.0.2:8443", time.Second); err != nil {
			t.Fatal(err)
		}
	})
	defer conn.Close()
	w.config(t, strings.Replace(cfg, "    - {function: Administration, direction: in, proto: tcp, ports: [8443], peers: [10.78.0.1]}\n", "", 1))
	if out, err := gatehouseCmd(t, w, "config", "reload"); err != nil {
		t.Fatalf("reload: %v %s", err, out)
	}
	w.waitFor(t, "firewall re-applied", 30*time.Second, func(st *control.Status) bool {
		f, _ := detailOf[status.Firewall](t, st, "firewall")
		return f.Applies >= 2
	})
	// The blocked attempts above were counted before the re-apply started
	// the kernel's counters at zero again: the status has them.
	w.waitFor(t, "drops in the status", 5*time.Second, func(st *control.Status) bool {
		f, _ := detailOf[status.Firewall](t, st, "firewall")
		return f.Drops.In.Packets >= 1 && f.Drops.In.Bytes >= 40*f.Drops.In.Packets && f.DropsError == ""
	})
	if got := netnstest.Reach(t, admin, "10.78.0.2:8443"); got != "blocked" {
		t.Errorf("closed admin path: %s, want blocked", got)
	}
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintln(conn, "still there")
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || line != "still there\n" {
		t.Errorf("established connection cut by the re-apply: %q %v", line, err)
	}
}

func nsExec(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	return string(out), err
}

// While the firewall is replaced 200 times, a blocked port never answers
// and an established connection is never cut: there is no moment without
// rules.
func TestFirewallReplaceIsAtomic(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) { firewallReplaceIsAtomic(t, backend) })
	}
}

func firewallReplaceIsAtomic(t *testing.T, backend string) {
	w := newNetWorld(t)
	listen(t, w.appl, 10046, 2222)
	base := "interfaces:\n  - {name: a0, addresses: [10.77.0.2/24]}\nfirewall:\n  backend: " + backend + "\n  paths:\n    - {function: Public, direction: in, proto: tcp, ports: [10046]}\n"
	extra := base + "    - {function: Other, direction: in, proto: tcp, ports: [9999]}\n"
	w.gatehouse(t, base, "--firewall")
	deadline := time.Now().Add(10 * time.Second)
	for netnstest.Reach(t, w.router, "10.77.0.2:10046") != "open" && time.Now().Before(deadline) {
	}
	var conn net.Conn
	inNS(t, w.router, func() {
		var err error
		if conn, err = net.DialTimeout("tcp", "10.77.0.2:10046", time.Second); err != nil {
			t.Fatal(err)
		}
	})
	defer conn.Close()

	stop := make(chan struct{})
	leaks := make(chan string, 100)
	go func() { // the prober: the blocked port, as fast as it goes
		for {
			select {
			case <-stop:
				close(leaks)
				return
			default:
			}
			if r := netnstest.Reach(t, w.router, "10.77.0.2:2222"); r != "blocked" {
				leaks <- r
			}
		}
	}()
	rd := bufio.NewReader(conn)
	for i := range 200 {
		cfg := base
		if i%2 == 0 {
			cfg = extra
		}
		w.config(t, cfg)
		if out, err := gatehouseCmd(t, w, "config", "reload"); err != nil {
			t.Fatalf("reload %d: %v %s", i, err, out)
		}
		// Each reload's table goes in before the next: reloads that came
		// faster than applies would be folded into one, and fewer
		// replacements tested.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			st, err := w.status(t)
			if err == nil {
				if f, _ := detailOf[status.Firewall](t, st, "firewall"); f.Applies >= i+2 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("reload %d not applied within 10 s", i)
			}
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "ping %d\n", i)
		if line, err := rd.ReadString('\n'); err != nil || line != fmt.Sprintf("ping %d\n", i) {
			t.Fatalf("established connection broken at re-apply %d: %q %v", i, line, err)
		}
	}
	close(stop)
	for r := range leaks {
		t.Errorf("the blocked port was %s during a re-apply", r)
	}
	st, err := w.status(t)
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := detailOf[status.Firewall](t, st, "firewall"); f.Applies != 201 {
		t.Errorf("%d applies for the first and 200 alternating reloads, want 201", f.Applies)
	}
}

// Commit-confirm: a config that locks the administrator out is rolled back
// by itself when nobody confirms it; a confirmed one stays.
func TestFirewallLockoutRollsBack(t *testing.T) {
	t.Parallel()
	w := newNetWorld(t)
	admin := addAdmin(t, w)
	listen(t, w.appl, 8443)
	w.dnsmasq(t, "--address=/invalid/") // NXDOMAIN for *.invalid
	good := `
interfaces:
  - {name: a0, addresses: [10.77.0.2/24]}
  - {name: a1, addresses: [10.78.0.2/24]}
dns:
  servers: [10.77.0.1]
firewall:
  paths:
    - {function: Administration, direction: in, proto: tcp, ports: [8443], peers: [10.78.0.1]}
`
	w.gatehouse(t, good, "--firewall")
	deadline := time.Now().Add(10 * time.Second)
	for netnstest.Reach(t, admin, "10.78.0.2:8443") != "open" && time.Now().Before(deadline) {
	}
	// Bad input changes nothing: a peer name that does not resolve (the
	// appliance's DNS, dnsmasq, says NXDOMAIN), and two paths that allow
	// the same traffic, each named at its line.
	unresolvable := strings.Replace(good, "peers: [10.78.0.1]", "peers: [10.78.0.1, gone.invalid]", 1)
	overlapping := good + "    - {function: Admin again, direction: in, proto: tcp, ports: [\"8000-9000\"], peers: [10.78.0.0/24]}\n"
	for _, bad := range []struct{ yaml, want string }{
		{unresolvable, `bad.yaml:9:95: firewall.paths[0].peers[1]: host name gone.invalid does not resolve`},
		{overlapping, `bad.yaml:10:7: firewall.paths[1]: overlaps firewall.paths[0] (Administration): the same in tcp traffic is allowed twice`},
	} {
		file := filepath.Join(w.dir, "bad.yaml")
		os.WriteFile(file, []byte(bad.yaml), 0o644)
		out, err := gatehouseCmd(t, w, "config", "apply", file, "--confirm-within", "30s")
		if err == nil || !strings.Contains(strings.ReplaceAll(out, file, "bad.yaml"), bad.want) {
			t.Errorf("apply of a bad config: %v\n%s\nwant %s", err, out, bad.want)
		}
	}
	// The CLI asks the system's DNS, which this namespace cannot reach:
	// a name it cannot check is a warning, not a refusal (the config may
	// be the one that mends DNS); an overlap is an error all the same.
	file := filepath.Join(w.dir, "bad.yaml")
	os.WriteFile(file, []byte(unresolvable), 0o644)
	if out, err := nsExec(w.appl, gatehouseBinary(t), "config", "validate", file); err != nil ||
		!strings.Contains(strings.ReplaceAll(out, file, "bad.yaml"), "bad.yaml:9:95: firewall.paths[0].peers[1]: host name gone.invalid could not be looked up now") {
		t.Errorf("validate without DNS: %v\n%s", err, out)
	}
	os.WriteFile(file, []byte(overlapping), 0o644)
	if out, err := nsExec(w.appl, gatehouseBinary(t), "config", "validate", "--no-resolve", file); err == nil || !strings.Contains(out, "overlaps firewall.paths[0]") {
		t.Errorf("validate of overlapping paths: %v\n%s", err, out)
	}
	if got := netnstest.Reach(t, admin, "10.78.0.2:8443"); got != "open" {
		t.Errorf("after refused applies, the admin port is %s", got)
	}

	lockout := filepath.Join(w.dir, "lockout.yaml")
	os.WriteFile(lockout, []byte(strings.Replace(good, "peers: [10.78.0.1]", "peers: [10.99.0.1]", 1)), 0o644)

	// Not confirmed: locked out, then let back in.
	if out, err := gatehouseCmd(t, w, "config", "apply", lockout, "--confirm-within", "3s"); err != nil {
		t.Fatalf("apply: %v %s", err, out)
	}
	w.waitFor(t, "lockout applied", 10*time.Second, func(*control.Status) bool { return netnstest.Reach(t, admin, "10.78.0.2:8443") == "blocked" })
	w.waitFor(t, "rolled back", 20*time.Second, func(*control.Status) bool { return netnstest.Reach(t, admin, "10.78.0.2:8443") == "open" })
	if !w.logShows("applied config rolled back") {
		t.Error("the rollback is not in the log")
	}

	// Confirmed: it stays, past the deadline.
	if out, err := gatehouseCmd(t, w, "config", "apply", lockout, "--confirm-within", "2s"); err != nil {
		t.Fatalf("apply: %v %s", err, out)
	}
	if out, err := gatehouseCmd(t, w, "config", "confirm"); err != nil {
		t.Fatalf("confirm: %v %s", err, out)
	}
	time.Sleep(3 * time.Second)
	if got := netnstest.Reach(t, admin, "10.78.0.2:8443"); got != "blocked" {
		t.Errorf("confirmed config did not stay: admin port %s", got)
	}
}

// A host-name peer is looked up again when its DNS answer runs out: when
// the name moves (dnsmasq restarted with another address, TTL 2 s), the
// firewall follows, without a reload.
func TestFirewallHostNameFollowsTTL(t *testing.T) {
	t.Parallel()
	w := newNetWorld(t)
	admin := addAdmin(t, w)
	listen(t, w.appl, 8443)
	dnsmasq := w.dnsmasq(t, "--local-ttl=2", "--address=/admin.example.test/10.78.0.99")
	w.gatehouse(t, `
interfaces:
  - {name: a0, addresses: [10.77.0.2/24]}
  - {name: a1, addresses: [10.78.0.2/24]}
dns:
  servers: [10.77.0.1]
firewall:
  paths:
    - {function: Administration, direction: in, proto: tcp, ports: [8443], peers: [admin.example.test]}
`, "--firewall")
	w.waitFor(t, "firewall with the name resolved", 30*time.Second, func(st *control.Status) bool {
		f, ok := detailOf[status.Firewall](t, st, "firewall")
		return ok && f.LastError == "" && slices.ContainsFunc(f.In, func(r string) bool { return strings.Contains(r, "10.78.0.99") })
	})
	if got := netnstest.Reach(t, admin, "10.78.0.2:8443"); got != "blocked" {
		t.Fatalf("admin.example.test is 10.78.0.99, yet 10.78.0.1 is %s", got)
	}
	st, _ := w.status(t)
	f, _ := detailOf[status.Firewall](t, st, "firewall")
	if ahead := time.Until(f.NextLookup); f.NextLookup.IsZero() || ahead > 11*time.Second {
		t.Errorf("next lookup in %v, want within the 10 s floor of a 2 s TTL", ahead)
	}
	dnsmasq.Process.Signal(syscall.SIGTERM)
	dnsmasq.Wait()
	w.dnsmasq(t, "--local-ttl=2", "--address=/admin.example.test/10.78.0.1")
	w.waitFor(t, "the firewall follows the name", 30*time.Second, func(*control.Status) bool { return netnstest.Reach(t, admin, "10.78.0.2:8443") == "open" })
}

func phaseOf(st *control.Status, service string) string {
	for _, s := range st.Services {
		if s.Name == service {
			return string(s.Phase)
		}
	}
	return ""
}

// While the firewall cannot put the config's ruleset in (the kernel refuses
// it a table), SSH and SMTP are not reachable from another host: they do
// not even start. Once the refusal ends, the firewall retries, and only with
// the full ruleset in do they start and answer. With iptables the refusal is
// IPv6's alone, and IPv4 is filtered throughout: a port no path opens is
// dropped.
func TestFirewallNotReadyKeepsListenersClosed(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ backend, refused string }{
		{"iptables", "ip6 filter"},
		{"nftables", "inet gatehouse"},
	} {
		t.Run(c.backend, func(t *testing.T) { firewallNotReadyKeepsListenersClosed(t, c.backend, c.refused) })
	}
}

func firewallNotReadyKeepsListenersClosed(t *testing.T, backend, refused string) {
	w := newNetWorld(t)
	// The network service waits for the default deny, in every family,
	// which may never come: the host's own address, as a host-mode
	// appliance has it.
	ipIn(t, w.appl, "addr", "add", "10.77.0.2/24", "dev", "a0")
	ipIn(t, w.appl, "link", "set", "a0", "up")
	listen(t, w.appl, 2222) // something of the host's, on a port no path opens
	release := netnstest.OwnTable(t, w.appl, refused)
	w.startGatehouse(t, `
interfaces:
  - {name: a0, addresses: [10.77.0.2/24]}
ssh:
  allow: [10.77.0.1]
  authorized_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIILNx1j5XjRSQhvizLtd/NlOFArTxkVMdLx2wVLOJLwn admin@example.com"]
smtp:
  listen: {submission: "off", smtps: "off"}
  domains:
    - {name: example.test, next_hop: "[10.77.0.1]:25"}
firewall:
  backend: `+backend+`
`, "--firewall")

	// Refused, and refused again when retried.
	st := w.waitFor(t, "the firewall refused twice", 40*time.Second, func(*control.Status) bool {
		return strings.Count(w.log("gatehouse.log"), "firewall not applied") >= 2
	})
	for _, port := range []string{"22", "25"} {
		if got := netnstest.Reach(t, w.router, "10.77.0.2:"+port); got == "open" {
			t.Errorf("port %s open while the firewall is not ready", port)
		}
	}
	if backend == "iptables" {
		if got := netnstest.Reach(t, w.router, "10.77.0.2:2222"); got != "blocked" {
			t.Errorf("IPv4 with IPv6 refused: port 2222 %s, want blocked", got)
		}
		if save, _ := nsExec(w.appl, "iptables-save"); !strings.Contains(save, "-A INPUT -j GATEHOUSE-INPUT\n") ||
			!strings.Contains(save, "-A GATEHOUSE-INPUT -p tcp -m tcp --dport 25 -j ACCEPT\n") {
			t.Errorf("IPv4 has not the full ruleset while IPv6 is refused:\n%s", save)
		}
	}
	for _, name := range []string{"ssh", "smtp", "network"} {
		if p := phaseOf(st, name); p != "waiting" {
			t.Errorf("%s is %s while the firewall is not ready, want waiting", name, p)
		}
	}
	f, _ := detailOf[status.Firewall](t, st, "firewall")
	if f.Ruleset != "" || f.LastError == "" || st.Ready {
		t.Errorf("firewall status %+v, ready %v: want nothing in place everywhere, the error, and not ready", f, st.Ready)
	}
	if backend == "iptables" && !strings.Contains(f.LastError, "IPv6: ip6tables-restore") {
		t.Errorf("last error %q does not name IPv6", f.LastError)
	}

	release()
	st = w.waitFor(t, "ready with the full ruleset", 40*time.Second, func(st *control.Status) bool {
		f, _ := detailOf[status.Firewall](t, st, "firewall")
		return f.Ruleset == "config" && phaseOf(st, "ssh") == "running" && phaseOf(st, "smtp") == "running"
	})
	if f, _ := detailOf[status.Firewall](t, st, "firewall"); f.LastError != "" {
		t.Errorf("last error after the retry: %s", f.LastError)
	}
	for port, want := range map[string]string{"22": "open", "25": "open", "2222": "blocked"} {
		if got := netnstest.Reach(t, w.router, "10.77.0.2:"+port); got != want {
			t.Errorf("with the full ruleset, port %s %s, want %s", port, got, want)
		}
	}
	if backend == "iptables" {
		if save, _ := nsExec(w.appl, "ip6tables-save"); !strings.Contains(save, "-A INPUT -j GATEHOUSE-INPUT\n") {
			t.Errorf("IPv6 not hooked after the retry:\n%s", save)
		}
	}
}
