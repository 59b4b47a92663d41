//go:build e2e

package test

import (
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"gatehouse/control"
	"gatehouse/status"
)

// detailOf is the detail service last sent; a detail that does not decode
// ends the test.
func detailOf[T any](t *testing.T, st *control.Status, service string) (T, bool) {
	t.Helper()
	v, ok, err := status.Detail[T](st.Services, service)
	if err != nil {
		t.Fatal(err)
	}
	return v, ok
}

func dhcpOf(t *testing.T, st *control.Status) *status.DHCP {
	n, ok := detailOf[status.Network](t, st, "network")
	if !ok || len(n.Links) == 0 {
		return nil
	}
	return n.Links[0].DHCP
}

// The whole DHCP life cycle against dnsmasq: a lease, renewals, and the
// address gone at expiry once the server is gone; static addresses and
// routes beside it.
func TestDHCPLeaseRenewalAndExpiry(t *testing.T) {
	t.Parallel()
	w := newNetWorld(t)
	dnsmasq := w.dnsmasq(t)
	w.gatehouse(t, `
interfaces:
  - name: a0
    dhcp: true
    addresses: [10.88.0.2/24]
routes:
  - {to: 10.99.0.0/16, via: 10.77.0.1}
`)
	st := w.waitFor(t, "DHCP lease", 60*time.Second, func(st *control.Status) bool {
		d := dhcpOf(t, st)
		return d != nil && d.State == "bound"
	})
	lease := dhcpOf(t, st).Address
	if !strings.HasPrefix(lease, "10.77.0.") {
		t.Fatalf("lease %q", lease)
	}
	addrs := ipIn(t, w.appl, "-4", "addr", "show", "a0")
	if !strings.Contains(addrs, "inet "+lease) || !strings.Contains(addrs, "dynamic") || !strings.Contains(addrs, "inet 10.88.0.2/24") {
		t.Errorf("addresses on a0:\n%s", addrs)
	}
	routes := ipIn(t, w.appl, "route")
	for _, want := range []string{"default via 10.77.0.1 dev a0 proto 219 metric 1024", "10.99.0.0/16 via 10.77.0.1 dev a0 proto 219"} {
		if !strings.Contains(routes, want) {
			t.Errorf("route %q missing:\n%s", want, routes)
		}
	}

	// Renewals: dnsmasq sees the lease requested again, unicast at T1.
	w.waitFor(t, "two renewals", 60*time.Second, func(st *control.Status) bool {
		d := dhcpOf(t, st)
		return d != nil && d.Renewals >= 2
	})
	if n := strings.Count(w.log("dnsmasq.log"), "DHCPACK(r0) "+strings.Split(lease, "/")[0]); n < 3 {
		t.Errorf("dnsmasq acknowledged the lease %d times, want >= 3 (grant + renewals)", n)
	}

	// The server goes away: renewing and rebinding fail, and at expiry
	// (2 minutes after the last renewal) the address and its route go.
	dnsmasq.Process.Signal(syscall.SIGTERM)
	dnsmasq.Wait()
	w.waitFor(t, "lease expiry", 3*time.Minute, func(st *control.Status) bool {
		d := dhcpOf(t, st)
		return d != nil && d.Address == "" && d.LastError != ""
	})
	addrs = ipIn(t, w.appl, "-4", "addr", "show", "a0")
	if strings.Contains(addrs, "inet "+lease) {
		t.Errorf("expired lease still on a0:\n%s", addrs)
	}
	if !strings.Contains(addrs, "inet 10.88.0.2/24") {
		t.Errorf("static address lost with the lease:\n%s", addrs)
	}
	if routes := ipIn(t, w.appl, "route"); strings.Contains(routes, "default via 10.77.0.1") {
		t.Errorf("DHCP route outlived its lease:\n%s", routes)
	}
}

// lockedBuffer collects a program's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

// From is what was written after the first n bytes, less the lines about
// the marker address: its removal is reported as more than one event
// (the address, then its local route), and the last may come late.
func (l *lockedBuffer) From(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var keep []string
	marker := false
	for _, line := range strings.SplitAfter(l.b.String()[n:], "\n") {
		// An event is a line and its indented continuation lines.
		if !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t") {
			marker = strings.Contains(line, markerAddr)
		}
		if !marker {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "")
}

// markerAddr is added to lo and removed again to see that the monitor
// listens.
const markerAddr = "192.0.2.254"

// waitEvents waits until the monitor's output after offset from holds
// every one of want, and returns that output.
func waitEvents(t *testing.T, events *lockedBuffer, from int, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := events.From(from)
		missing := ""
		for _, w := range want {
			if !strings.Contains(got, w) {
				missing = w
			}
		}
		if missing == "" {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("ip monitor did not report %q within 20s; it reported:\n%s", missing, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Re-applying the same config makes no netlink change at all; a changed
// config changes only what differs.
func TestReloadSameConfigNoNetlinkEvents(t *testing.T) {
	t.Parallel()
	w := newNetWorld(t)
	cfg := `
interfaces:
  - name: a0
    mtu: 1400
    addresses: [10.77.0.2/24, "2001:db8:77::2/64"]
routes:
  - {to: 10.99.0.0/16, via: 10.77.0.1}
  - {to: 10.98.0.0/16, via: 10.77.0.1, metric: 50}
`
	w.gatehouse(t, cfg)
	w.waitFor(t, "network applied", 30*time.Second, func(st *control.Status) bool {
		n, ok := detailOf[status.Network](t, st, "network")
		return ok && len(n.Links) == 1 && len(n.Links[0].Addresses) >= 2
	})
	if out := ipIn(t, w.appl, "-d", "link", "show", "a0"); !strings.Contains(out, "mtu 1400") {
		t.Errorf("mtu not applied:\n%s", out)
	}
	// Let IPv6 duplicate address detection finish: its end is an event of
	// the kernel's own.
	deadline := time.Now().Add(20 * time.Second)
	for strings.Contains(ipIn(t, w.appl, "addr"), "tentative") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}

	mon := exec.Command("ip", "-n", w.appl, "monitor", "link", "address", "route")
	events := &lockedBuffer{}
	mon.Stdout = events
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { mon.Process.Kill(); mon.Wait() }()
	// The monitor is listening once it reports a change of our own (an
	// address on lo, added and removed); only what follows counts.
	for _, op := range []string{"add", "del"} {
		ipIn(t, w.appl, "addr", op, markerAddr+"/32", "dev", "lo")
	}
	// Both of the removal's events: the address's and its local route's.
	removed := regexp.MustCompile(`(?m)^Deleted .*` + regexp.QuoteMeta(markerAddr))
	for deadline := time.Now().Add(20 * time.Second); len(removed.FindAllString(events.all(), -1)) < 2; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("ip monitor did not report the marker within 20s:\n%s", events.all())
		}
	}
	from := events.Len()
	reloaded := time.Now()
	if out, err := gatehouseCmd(t, w, "config", "reload"); err != nil {
		t.Fatalf("reload: %v: %s", err, out)
	}
	w.waitFor(t, "the same config applied again", 30*time.Second, func(st *control.Status) bool {
		n, ok := detailOf[status.Network](t, st, "network")
		return ok && n.Updated.After(reloaded)
	})
	if s := strings.TrimSpace(events.From(from)); s != "" {
		t.Errorf("re-applying the same config changed the kernel:\n%s", s)
	}

	// Now one more address: that, and only that, changes.
	w.config(t, strings.Replace(cfg, "addresses: [10.77.0.2/24,", "addresses: [10.77.0.2/24, 10.66.0.2/24,", 1))
	if out, err := gatehouseCmd(t, w, "config", "reload"); err != nil {
		t.Fatalf("reload: %v: %s", err, out)
	}
	w.waitFor(t, "the changed config applied", 30*time.Second, func(st *control.Status) bool {
		n, ok := detailOf[status.Network](t, st, "network")
		return ok && len(n.Links) == 1 && slices.Contains(n.Links[0].Addresses, "10.66.0.2/24")
	})
	got := waitEvents(t, events, from, "10.66.0.2/24")
	if regexp.MustCompile(`(?m)^Deleted`).MatchString(got) || strings.Contains(got, "10.99.0.0") {
		t.Errorf("changed config: events\n%s", got)
	}

	// A link taken down behind its back is brought up again: the service
	// follows link events.
	ipIn(t, w.appl, "link", "set", "a0", "down")
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(ipIn(t, w.appl, "link", "show", "a0"), ",UP") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if out := ipIn(t, w.appl, "link", "show", "a0"); !strings.Contains(out, ",UP") {
		t.Errorf("a0 left down:\n%s", out)
	}

	// An invalid config is refused and changes nothing.
	w.config(t, "interfaces:\n  - name: a0\n    addresses: [10.77.0.300/24]\n")
	out, err := gatehouseCmd(t, w, "config", "reload")
	if err == nil || !strings.Contains(out, `gatehouse.yaml:3:17: interfaces[0].addresses[0]: "10.77.0.300/24" is not an address`) {
		t.Errorf("invalid reload: err %v, output %s", err, out)
	}
}

// The built-in resolver answers from cache, and when the upstream is gone
// it serves stale answers rather than none, and says so.
func TestResolverCachesAndServesStale(t *testing.T) {
	t.Parallel()
	w := newNetWorld(t)
	dnsmasq := w.dnsmasq(t, "--local-ttl=2")
	w.gatehouse(t, `
interfaces:
  - name: a0
    addresses: [10.77.0.2/24]
dns:
  servers: [10.77.0.1]
  search: [example.test]
  resolver: builtin
`)
	w.waitFor(t, "resolver up", 30*time.Second, func(st *control.Status) bool {
		d, ok := detailOf[status.DNS](t, st, "dns")
		return ok && d.Resolver != nil
	})
	query := func(name string, qtype uint16) *dns.Msg {
		var resp *dns.Msg
		inNS(t, w.appl, func() {
			m := new(dns.Msg)
			m.SetQuestion(name, qtype)
			var err error
			resp, _, err = (&dns.Client{Timeout: 10 * time.Second}).Exchange(m, "127.0.0.1:53")
			if err != nil {
				t.Errorf("query %s: %v", name, err)
			}
		})
		return resp
	}
	if m := query("mail.example.test.", dns.TypeA); m == nil || len(m.Answer) != 1 || !strings.Contains(m.Answer[0].String(), "10.77.0.25") {
		t.Fatalf("A answer %v", m)
	}
	if m := query("example.test.", dns.TypeMX); m == nil || len(m.Answer) != 1 || !strings.Contains(m.Answer[0].String(), "mail.example.test.") {
		t.Fatalf("MX answer %v", m)
	}
	query("mail.example.test.", dns.TypeA) // from the cache
	upstreamQueries := strings.Count(w.log("dnsmasq.log"), "query[A] mail.example.test")
	if upstreamQueries != 1 {
		t.Errorf("dnsmasq was asked %d times for a cached name", upstreamQueries)
	}

	dnsmasq.Process.Signal(syscall.SIGTERM)
	dnsmasq.Wait()
	time.Sleep(3 * time.Second) // past the 2s TTL
	m := query("mail.example.test.", dns.TypeA)
	if m == nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 || m.Answer[0].Header().Ttl != 30 {
		t.Fatalf("stale answer %v", m)
	}
	st := w.waitFor(t, "status says upstream down", 10*time.Second, func(st *control.Status) bool {
		d, _ := detailOf[status.DNS](t, st, "dns")
		return d.Resolver != nil && d.Resolver.UpstreamDown && d.Resolver.StaleServed >= 1
	})
	if d, _ := detailOf[status.DNS](t, st, "dns"); d.Resolver.CacheHits < 1 {
		t.Errorf("resolver stats %+v", d.Resolver)
	}
	conf := w.log("state/resolv.conf")
	if !strings.Contains(conf, "nameserver 127.0.0.1\n") || !strings.Contains(conf, "search example.test\n") {
		t.Errorf("resolv.conf:\n%s", conf)
	}
}

// NTP against chrony: the offset is measured and the service reports
// synced and sets the clock-synced condition; in host mode it never
// touches the clock.
func TestNTPSyncsWithChrony(t *testing.T) {
	t.Parallel()
	w := newNetWorld(t)
	w.chrony(t)
	w.gatehouse(t, `
interfaces:
  - name: a0
    addresses: [10.77.0.2/24]
ntp:
  servers: [10.77.0.1]
`, "--service-arg=--ntp-min-poll=2s")
	st := w.waitFor(t, "ntp synced", 60*time.Second, func(st *control.Status) bool {
		n, ok := detailOf[status.NTP](t, st, "ntp")
		return ok && n.Synced
	})
	n, _ := detailOf[status.NTP](t, st, "ntp")
	if n.Server != "10.77.0.1" || n.Stratum != 8 || n.SetsClock || n.Steps+n.Slews != 0 {
		t.Errorf("ntp status %+v", n)
	}
	// Both clocks are the host's: anything near a second would be a bug.
	if n.Offset > time.Second || n.Offset < -time.Second {
		t.Errorf("offset %v against a server on the same clock", n.Offset)
	}
	if !strings.Contains(strings.Join(st.Conditions, " "), "clock-synced") {
		t.Errorf("conditions %v", st.Conditions)
	}
	out, err := gatehouseCmd(t, w, "status")
	if err != nil || !regexp.MustCompile(`ntp: synced to 10\.77\.0\.1, stratum 8, offset -?[0-9.]+[µnm]?s`).MatchString(out) {
		t.Errorf("status text: %v\n%s", err, out)
	}
}

// Stopping the appliance releases its lease, so the server can hand the
// address out again at once.
func TestDHCPReleaseOnShutdown(t *testing.T) {
	t.Parallel()
	w := newNetWorld(t)
	w.dnsmasq(t)
	w.gatehouse(t, "interfaces:\n  - name: a0\n    dhcp: true\n")
	st := w.waitFor(t, "DHCP lease", 60*time.Second, func(st *control.Status) bool {
		d := dhcpOf(t, st)
		return d != nil && d.State == "bound"
	})
	addr := strings.Split(dhcpOf(t, st).Address, "/")[0]
	w.gatehose.Process.Signal(syscall.SIGTERM)
	w.gatehose.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(w.log("dnsmasq.log"), "DHCPRELEASE(r0) "+addr) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(w.log("dnsmasq.log"), "DHCPRELEASE(r0) "+addr) {
		t.Errorf("no DHCPRELEASE for %s in dnsmasq's log", addr)
	}
	if out := ipIn(t, w.appl, "-4", "addr", "show", "a0"); strings.Contains(out, addr) {
		t.Errorf("released address still on a0:\n%s", out)
	}
}

// A DHCP server that never answers: everything else comes up, and the
// status says why there is no address.
func TestSilentDHCPServer(t *testing.T) {
	t.Parallel()
	w := newNetWorld(t)
	w.gatehouse(t, "interfaces:\n  - name: a0\n    dhcp: true\n")
	st := w.waitFor(t, "DHCP error reported", 60*time.Second, func(st *control.Status) bool {
		d := dhcpOf(t, st)
		return d != nil && d.State == "selecting" && d.LastError != ""
	})
	for _, s := range st.Services {
		if s.Phase != "running" {
			t.Errorf("%s is %s", s.Name, s.Phase)
		}
	}
	out, _ := gatehouseCmd(t, w, "status")
	if !strings.Contains(out, "dhcp selecting; last error: ") {
		t.Errorf("status text does not say why:\n%s", out)
	}
}
