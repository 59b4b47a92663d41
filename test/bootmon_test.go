//go:build e2e

package test

import (
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
// monitoring host: check_nrpe over TLS. QEMU's user network forwards the
// host's ports; the appliance sees the host as 10.0.2.2, which is the
// monitoring host, and its firewall lets only that in.
func TestBootMonitoring(t *testing.T) {
	nrpePort := freePort(t, "tcp")
	img := dataDisk(t, map[string]string{"gatehouse.yaml": `
hostname: gw-mon
interfaces:
  - name: eth0
    dhcp: true
monitoring:
  hosts: [10.0.2.2]
nrpe: {}
`})
	v := boot(t, qemu.Options{Data: img, Nics: []string{"user,hostfwd=tcp:127.0.0.1:" + strconv.Itoa(nrpePort) + "-:5666"}})
	waitReady(t, v)

	// Asked until the firewall's full ruleset and the NRPE service are in:
	// ready comes before every service has reported.
	var out []byte
	var err error
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
	command(t, v, "poweroff")
	expect(t, v, `gatehouse: /data unmounted cleanly`)
	if err := v.Wait(stepTimeout); err != nil {
		t.Fatal(err)
	}
}
