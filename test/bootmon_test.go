//go:build e2e

package test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"gatehouse/image/qemu"
)

// freePort is a port on 127.0.0.1 nothing listens on now, for QEMU's
// forwards into the appliance.
func freePort(t *testing.T, network string) int {
	t.Helper()
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// The booted image answers the monitoring tools an operator runs on the
// monitoring host (check_nrpe over TLS, snmpwalk), and sends its log,
// the kernel's included, to the syslog server there. QEMU's user network
// forwards the host's ports; the appliance sees the host as 10.0.2.2,
// which is the monitoring host, and its firewall lets only that in.
func TestBootMonitoring(t *testing.T) {
	nrpePort, snmpPort := freePort(t, "tcp"), freePort(t, "udp")
	// TCP (octet counting), not UDP: the replay of the boot's lines is a
	// burst that QEMU's user network may drop datagrams of.
	logs, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	img := dataDisk(t, map[string]string{"gatehouse.yaml": fmt.Sprintf(`
hostname: gw-mon
interfaces:
  - name: eth0
    dhcp: true
monitoring:
  hosts: [10.0.2.2]
nrpe: {}
snmp:
  communities: [{community: mon1t0r}]
syslog:
  destinations: [{server: "10.0.2.2", port: %d, transport: tcp}]
`, logs.Addr().(*net.TCPAddr).Port)})
	v := boot(t, qemu.Options{Data: img, Nics: []string{fmt.Sprintf("user,hostfwd=tcp:127.0.0.1:%d-:5666,hostfwd=udp:127.0.0.1:%d-:161", nrpePort, snmpPort)}})
	waitReady(t, v)

	// The kernel's log and the services' reach the syslog server: records
	// are read until one of each has come.
	if l, ok := logs.(*net.TCPListener); ok {
		l.SetDeadline(time.Now().Add(stepTimeout))
	}
	conn, err := logs.Accept()
	if err != nil {
		t.Fatalf("no syslog connection from the appliance: %v", err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	seen := map[string]bool{}
	for !(seen["kernel"] && seen["nrpe"]) {
		conn.SetReadDeadline(time.Now().Add(stepTimeout))
		var n int
		if _, err := fmt.Fscanf(r, "%d ", &n); err != nil || n <= 0 || n > 64<<10 {
			t.Fatalf("syslog frame: %v (length %d); app-names seen %v", err, n, seen)
		}
		rec := make([]byte, n)
		if _, err := io.ReadFull(r, rec); err != nil {
			t.Fatalf("syslog record: %v; app-names seen %v", err, seen)
		}
		// <PRI>1 TIMESTAMP HOSTNAME APP-NAME ...
		if f := strings.Fields(string(rec)); len(f) > 3 && f[2] == "gw-mon" {
			seen[f[3]] = true
		}
	}

	// Asked until the firewall's full ruleset and the NRPE service are in:
	// ready comes before every service has reported.
	var out []byte
	deadline := time.Now().Add(stepTimeout)
	for {
		out, err = exec.Command(checkNRPE, "-H", "127.0.0.1", "-p", strconv.Itoa(nrpePort), "-t", "10", "-c", "check_services").CombinedOutput()
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil || !strings.HasPrefix(string(out), "OK") || !strings.Contains(string(out), "services running") {
		t.Fatalf("check_nrpe check_services: %v: %s", err, out)
	}
	out, err = exec.Command(checkNRPE, "-H", "127.0.0.1", "-p", strconv.Itoa(nrpePort), "-t", "10").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "NRPE") {
		t.Errorf("check_nrpe version: %v: %s", err, out)
	}
	out, _ = exec.Command(checkNRPE, "-H", "127.0.0.1", "-p", strconv.Itoa(nrpePort), "-t", "10", "-c", "check_load").CombinedOutput()
	if !strings.Contains(string(out), "load1=") {
		t.Errorf("check_nrpe check_load: %s", out)
	}
	// The whole tree walks to its end, the enterprise subtree included.
	walk, err := exec.Command("snmpbulkwalk", "-v2c", "-c", "mon1t0r", "-t", "5", "-r", "2", "-Cr50", "-On",
		fmt.Sprintf("udp:127.0.0.1:%d", snmpPort), ".1").CombinedOutput()
	if err != nil || !strings.Contains(string(walk), ".1.3.6.1.2.1.1.5.0 = STRING: \"gw-mon\"") ||
		!strings.Contains(string(walk), ".1.3.6.1.4.1.99999.") {
		t.Errorf("snmpbulkwalk: %v: %.2000s", err, walk)
	}
	command(t, v, "poweroff")
	expect(t, v, `gatehouse: /data unmounted cleanly`)
	if err := v.Wait(stepTimeout); err != nil {
		t.Fatal(err)
	}
}
