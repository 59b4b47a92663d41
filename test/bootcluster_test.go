//go:build e2e

package test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"gatehouse/image/qemu"
)

// Two appliances on one link, made a cluster from their consoles: vm1
// initialises it and makes a join token, vm2 joins with it over the link
// (the firewall on both, the cluster port open to cluster.peers alone),
// and runs vm1's shared config from then on. The link is a pair of UDP
// sockets on the host's loopback (QEMU's socket netdev), which needs
// neither root nor a bridge. Each node's NTP server is one nobody
// answers, and a different one on each: a cluster needs ntp.servers,
// not a synced clock (both guests take the host's time from the RTC),
// and vm2 showing vm1's server after the join is the shared config
// replicated.
func TestBootCluster(t *testing.T) {
	p1, p2 := freePort(t, "udp"), freePort(t, "udp")
	node := func(n int, role, ntp string, local, remote int) (*qemu.VM, string) {
		img := dataDisk(t, map[string]string{"gatehouse.yaml": fmt.Sprintf(`
hostname: vm%d
shutdown: {timeout: 5s}
interfaces:
  - name: eth0
    addresses: [10.55.0.%d/24]
ntp:
  servers: [%s]
cluster:
  role: %s
  address: 10.55.0.%d
  peers: [10.55.0.0/24]
  report_interval: 1s
`, n, n, ntp, role, n)})
		// The link's NIC is given here, not in Nics: the two VMs' first
		// NICs would have the same MAC address.
		link := []string{
			"-netdev", fmt.Sprintf("socket,id=link,udp=127.0.0.1:%d,localaddr=127.0.0.1:%d", remote, local),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=link,mac=52:54:00:55:00:%02x,romfile=", n),
		}
		return boot(t, qemu.Options{Data: img, CPUs: 1, Extra: link}), img
	}
	v1, img1 := node(1, "backend", "10.55.0.201", p1, p2)
	v2, img2 := node(2, "frontend", "10.55.0.202", p2, p1)
	for _, v := range []*qemu.VM{v1, v2} {
		waitReady(t, v)
		command(t, v, "") // the first prompt
		expect(t, v, `gatehouse> `)
	}
	t.Logf("both ready %v after QEMU started", time.Since(v1.Started).Round(time.Millisecond))

	// Ready comes before every service has reported: the link is up once
	// virtio-net is loaded and the network service has seen it, and the
	// cluster service answers once the firewall's full ruleset is in.
	vm2addr := `eth0\s+UP\s+mtu 1500\s+52:54:00:55:00:02 10\.55\.0\.2/24`
	until(t, v1, "ip", `eth0\s+UP\s+mtu 1500\s+52:54:00:55:00:01 10\.55\.0\.1/24`)
	until(t, v2, "ip", vm2addr)
	notJoined := `(?m)^cluster\s+running .*not in a cluster`
	until(t, v1, "status", notJoined)
	answers(t, v1, "cluster init", `cluster initialised; this node is its first backend; running config version 1`)
	token := regexp.MustCompile(`GH1\.[0-9a-f]{16}\.[0-9a-f]{32}\.[0-9a-f]{64}`).FindString(ask(t, v1, "cluster token"))
	if token == "" {
		t.Fatal("cluster token printed no token")
	}
	until(t, v2, "status", notJoined)
	answers(t, v2, "cluster join 10.55.0.1 "+token, `joined the cluster; running config version 1`)
	t.Logf("joined %v after QEMU started", time.Since(v1.Started).Round(time.Millisecond))

	// vm2 runs the cluster's shared config (vm1's NTP server), beside its
	// own node-local sections (its address is still its own).
	until(t, v2, "ntp", `servers 10\.55\.0\.201 `)
	until(t, v2, "status", `(?m)^cluster\s+running .*frontend vm2, follower, leader vm1, config v1`)
	answers(t, v2, "ip", vm2addr)

	// The leader hears from both nodes, which run the same config: the
	// cluster's version 1, by its hash.
	out := until(t, v1, "cluster status", `(?m)^vm2\s+frontend\s+10\.55\.0\.2:8446\s+\d+\.\ds ago\s+v1 [0-9a-f]{12}\s+\S+\s+\d+\s+-\s*$`)
	m := regexp.MustCompile(`(?m)^config version 1  ([0-9a-f]{12})  by `).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("cluster status has no config version 1:\n%s", out)
	}
	for _, n := range []string{`vm1\s+backend\s+10\.55\.0\.1:8446`, `vm2\s+frontend\s+10\.55\.0\.2:8446`} {
		re := `(?m)^` + n + `\s+\d+\.\ds ago\s+v1 ` + m[1] + `\s+\S+\s+\d+\s+-\s*$`
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("cluster status: no line %s:\n%s", re, out)
		}
	}
	if !strings.Contains(out, "node vm1 (backend, Leader), leader vm1") {
		t.Errorf("cluster status: vm1 is not the leader:\n%s", out)
	}
	// The firewall was on all along: the cluster port is open to the
	// peers alone, and the join and Raft came in through that rule.
	for _, v := range []*qemu.VM{v1, v2} {
		answers(t, v, "firewall", `(?s)tcp 8446 from/to 10\.55\.0\.0-10\.55\.0\.255 accept.*ip saddr @peers\d+ tcp dport 8446 counter packets [1-9]\d* bytes \d+ accept`)
	}

	// The frontend goes first: the leader then stops with a member gone,
	// and must not wait out its dials to it (once it did, past
	// shutdown.timeout, and the supervisor killed every service left).
	for _, i := range []int{1, 0} {
		v := []*qemu.VM{v1, v2}[i]
		command(t, v, "poweroff")
		expect(t, v, `gatehouse: /data unmounted cleanly`)
		if err := v.Wait(stepTimeout); err != nil {
			t.Fatalf("vm%d: QEMU did not exit by itself after poweroff: %v", i+1, err)
		}
		if out := v.Output(); strings.Contains(out, "did not stop in time") {
			t.Errorf("vm%d: services were killed at poweroff:\n%s", i+1, out[strings.LastIndex(out, "init: shutting down"):])
		}
	}
	cleanlyUnmounted(t, img1)
	cleanlyUnmounted(t, img2)
}

// ask types a line at the prompt and returns what the console printed up
// to the next prompt (the services' log lines included).
func ask(t *testing.T, v *qemu.VM, line string) string {
	t.Helper()
	command(t, v, line)
	// join and init answer once the node runs the cluster's config.
	m, err := v.Expect(`(?s)(.*?)gatehouse> `, 2*stepTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return m[1]
}

// answers is ask, and the answer must match re.
func answers(t *testing.T, v *qemu.VM, line, re string) string {
	t.Helper()
	out := ask(t, v, line)
	if !regexp.MustCompile(re).MatchString(out) {
		t.Fatalf("%s: want %s, got:\n%s", line, re, out)
	}
	return out
}

// until asks line again, once a second, until the answer matches re.
func until(t *testing.T, v *qemu.VM, line, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(stepTimeout)
	for {
		out := ask(t, v, line)
		if rx.MatchString(out) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: want %s within %v, last got:\n%s", line, re, stepTimeout, out)
		}
		time.Sleep(time.Second)
	}
}
