//go:build e2e

package test

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"gatehouse/test/testserver"
)

// paths check against real peers: every outbound path is tested with its
// protocol; when one is blocked, it and only it is named, with the opening
// that is missing.
func TestPathsCheckNamesTheBlockedPath(t *testing.T) {
	t.Parallel()
	w := newNetWorld(t)
	w.dnsmasq(t)
	w.chrony(t)
	var l net.Listener // an SMTP server's greeting
	inNS(t, w.router, func() {
		var err error
		if l, err = net.Listen("tcp", "10.77.0.1:25"); err != nil {
			t.Fatal(err)
		}
	})
	testserver.Serve(t, l, func(c net.Conn) { fmt.Fprint(c, "220 mx.example.test ESMTP\r\n") })
	ipIn(t, w.appl, "addr", "add", "10.77.0.2/24", "dev", "a0")
	ipIn(t, w.appl, "link", "set", "a0", "up")
	cfg := w.config(t, `
dns: {servers: [10.77.0.1]}
ntp: {servers: [10.77.0.1]}
firewall:
  paths:
    - {function: Mail delivery, direction: out, proto: tcp, ports: [25], peers: [10.77.0.1], description: SMTP to the smarthost}
`)
	check := func() (string, error) {
		out, err := exec.Command("ip", "netns", "exec", w.appl, gatehouseBinary(t), "paths", "check", "--config", cfg, "--timeout", "2s").CombinedOutput()
		return string(out), err
	}
	out, err := check()
	if err != nil || strings.Count(out, " ok ") != 4 {
		t.Fatalf("all open: %v\n%s", err, out)
	}

	// The router now drops NTP.
	nft := func(args ...string) {
		if o, err := exec.Command("ip", append([]string{"netns", "exec", w.router, "nft"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("nft: %v %s", err, o)
		}
	}
	nft("add", "table", "inet", "block")
	nft("add", "chain", "inet", "block", "in", "{ type filter hook input priority 0; }")
	nft("add", "rule", "inet", "block", "in", "udp", "dport", "123", "drop")
	ntpBlocked := regexp.MustCompile(`Time synchronisation\s+UDP 123\s+10\.77\.0\.1:123\s+blocked\s+missing opening: allow UDP 123 from this appliance to 10\.77\.0\.1`)
	smtpBlocked := regexp.MustCompile(`Mail delivery\s+TCP 25\s+10\.77\.0\.1:25\s+blocked\s+missing opening: allow TCP 25 from this appliance to 10\.77\.0\.1`)
	out, err = check()
	// NTP is optional outside a cluster: named, but not a failure.
	if err != nil || !ntpBlocked.MatchString(out) || strings.Count(out, "blocked") != 1 || strings.Count(out, " ok ") != 3 {
		t.Errorf("NTP blocked: %v\n%s", err, out)
	}
	// A required path blocked too: exit status 1, both named.
	nft("add", "rule", "inet", "block", "in", "tcp", "dport", "25", "drop")
	out, err = check()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("required path blocked: exit %v\n%s", err, out)
	}
	if !ntpBlocked.MatchString(out) || !smtpBlocked.MatchString(out) || strings.Count(out, "blocked") != 2 {
		t.Errorf("output:\n%s", out)
	}
}
