//go:build e2e

package test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gatehouse/control"
	"gatehouse/status"
)

// checkNRPE is Debian's check_nrpe 4.1 (nagios-nrpe-plugin), run on the
// monitoring host (the router namespace, 10.77.0.1) against the appliance.
const checkNRPE = "/usr/lib/nagios/plugins/check_nrpe"

func (w *netWorld) checkNRPE(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", w.router, checkNRPE, "-H", "10.77.0.2", "-t", "20"}, args...)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return strings.TrimSpace(string(out)), 0
	case errors.As(err, &ee):
		return strings.TrimSpace(string(out)), ee.ExitCode()
	}
	t.Fatalf("check_nrpe: %v", err)
	return "", 0
}

// nrpeUntil asks with check_nrpe until ok holds (a reload is in force):
// the bound is how long a reload may take, not a timing assertion.
func (w *netWorld) nrpeUntil(t *testing.T, what string, ok func(out string, code int) bool, args ...string) {
	t.Helper()
	var out string
	var code int
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if out, code = w.checkNRPE(t, args...); ok(out, code) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: last answer %d %q", what, code, out)
}

func (w *netWorld) reload(t *testing.T, yaml string) {
	t.Helper()
	w.config(t, yaml)
	if _, err := control.Call(filepath.Join(w.state(), "control.sock"), control.Request{Verb: "reload"}); err != nil {
		t.Fatalf("reload: %v", err)
	}
}

// testPKI writes a CA, a server certificate and a client certificate it
// signed, and a client certificate of another CA.
func testPKI(t *testing.T, dir string) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	serial := int64(1)
	issue := func(name string, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
		k := key()
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
		if parent == nil {
			parent, parentKey = tmpl, k
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &k.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalPKCS8PrivateKey(k)
		write(name+".crt", "CERTIFICATE", der)
		write(name+".key", "PRIVATE KEY", kb)
		c, _ := x509.ParseCertificate(der)
		return c, k
	}
	ca := func(name string) (*x509.Certificate, *ecdsa.PrivateKey) {
		return issue(name, &x509.Certificate{Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, nil, nil)
	}
	caCert, caKey := ca("ca")
	otherCert, otherKey := ca("other-ca")
	issue("server", &x509.Certificate{Subject: pkix.Name{CommonName: "gw.example.test"}, DNSNames: []string{"gw.example.test"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, caCert, caKey)
	client := &x509.Certificate{Subject: pkix.Name{CommonName: "nagios"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	issue("client", client, caCert, caKey)
	issue("stranger", client, otherCert, otherKey)
}

// TestNRPE asks the appliance with Debian's check_nrpe 4.1 from the
// monitoring host: every packet version and transport check_nrpe uses,
// refusals, each built-in check crossing its warning and its critical
// threshold, and mutual TLS. The firewall is on: its NRPE path lets the
// monitoring host in.
func TestNRPE(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(checkNRPE); err != nil {
		t.Fatalf("no check_nrpe (test/deps.sh installs nagios-nrpe-plugin): %v", err)
	}
	w := newNetWorld(t)
	// 10.77.0.3 is a host the firewall lets through to 5666 but NRPE's
	// allow lists do not name: the server itself must refuse it.
	ipIn(t, w.router, "addr", "add", "10.77.0.3/24", "dev", "r0")
	w.chrony(t)
	testPKI(t, w.dir)
	os.WriteFile(filepath.Join(w.dir, "pw"), []byte("secret\n"), 0o644)
	base := fmt.Sprintf(`
interfaces:
  - name: a0
    addresses: [10.77.0.2/24]
ntp:
  servers: [10.77.0.1]
monitoring:
  hosts: [10.77.0.1]
firewall:
  paths:
    - {function: NRPE from a stranger, direction: in, proto: tcp, ports: [5666], peers: [10.77.0.3]}
smtp:
  hostname: gw.example.test
  listen: {smtp: "127.0.0.1:2525", submission: "off", smtps: "off"}
  domains:
    - {name: example.test, next_hop: "[10.77.0.1]:25", tls: none}
fetch:
  - {name: helpdesk, protocol: pop3, server: 10.77.0.1, user: helpdesk, password_file: %s/pw, deliver_to: helpdesk@example.test, poll: 1m}
`, w.dir)
	w.gatehouse(t, base+"nrpe: {}\n", "--firewall", "--service-arg=--ntp-min-poll=2s")

	t.Run("protocols", func(t *testing.T) {
		for _, args := range [][]string{nil, {"-2"}, {"-n"}, {"-n", "-2"}} {
			out, code := w.checkNRPE(t, args...)
			if code != 0 || !regexp.MustCompile(`^NRPE v\S+$`).MatchString(out) {
				t.Errorf("check_nrpe %v: %d %q", args, code, out)
			}
		}
		// The default is v4 over TLS; -2 is v2 over TLS, -n plain.
		w.waitFor(t, "every packet version and transport counted", 10*time.Second, func(st *control.Status) bool {
			n, ok := detailOf[status.NRPE](t, st, "nrpe")
			return ok && n.Protocols["v4+tls"] >= 1 && n.Protocols["v2+tls"] >= 1 && n.Protocols["v4+plain"] >= 1 && n.Protocols["v2+plain"] >= 1
		})
	})
	t.Run("unknown command", func(t *testing.T) {
		if out, code := w.checkNRPE(t, "-c", "check_everything"); code != 3 || out != "NRPE: Command 'check_everything' not defined" {
			t.Errorf("%d %q", code, out)
		}
	})
	t.Run("arguments refused when not allowed", func(t *testing.T) {
		out, code := w.checkNRPE(t, "-c", "check_load", "-a", "1", "2")
		if code != 3 || !strings.Contains(out, "arguments are not allowed") {
			t.Errorf("%d %q", code, out)
		}
	})
	t.Run("host not allowed", func(t *testing.T) {
		for _, args := range [][]string{{"-b", "10.77.0.3"}, {"-b", "10.77.0.3", "-n"}} {
			out, code := w.checkNRPE(t, args...)
			if code == 0 || strings.Contains(out, "NRPE v") {
				t.Errorf("check_nrpe %v from a host not allowed: %d %q", args, code, out)
			}
		}
		w.waitFor(t, "the refusals counted", 10*time.Second, func(st *control.Status) bool {
			n, ok := detailOf[status.NRPE](t, st, "nrpe")
			return ok && n.NotAllowed >= 2
		})
	})

	// Thresholds from the request's arguments.
	w.reload(t, base+"nrpe: {allow_arguments: true}\n")
	w.nrpeUntil(t, "arguments allowed after the reload", func(out string, code int) bool { return code == 0 },
		"-c", "check_load", "-a", "~:", "~:", "~:", "~:", "~:", "~:")
	w.waitFor(t, "ntp synced", 60*time.Second, func(st *control.Status) bool {
		n, ok := detailOf[status.NTP](t, st, "ntp")
		return ok && n.Synced
	})
	w.waitFor(t, "the collector's account failed once", 60*time.Second, func(st *control.Status) bool {
		r, ok := detailOf[status.Relay](t, st, "smtp")
		return ok && len(r.Fetch) == 1 && r.Fetch[0].LastError != ""
	})
	w.waitFor(t, "the firewall's ruleset in", 30*time.Second, func(st *control.Status) bool {
		f, ok := detailOf[status.Firewall](t, st, "firewall")
		return ok && f.Ruleset == "config"
	})
	// "~:" never alerts, "@~:" always does: each check's first metric
	// crosses its warning, then its critical, the other metrics quiet.
	checks := map[string]int{"check_load": 3, "check_disk": 1, "check_mem": 1, "check_services": 2, "check_service_nrpe": 2,
		"check_queue": 3, "check_ntp": 1, "check_collector": 1, "check_firewall": 1, "check_paths": 1}
	perf := regexp.MustCompile(` \| ([a-z0-9_]+=-?[0-9.]+(%|s)?;[^;]*;[^;]*;[0-9]*( |$))+$`)
	for cmd, metrics := range checks {
		t.Run(cmd, func(t *testing.T) {
			quiet := strings.Split(strings.TrimSpace(strings.Repeat("~: ", 2*metrics)), " ")
			for _, tt := range []struct {
				first []string
				code  int
				state string
			}{{[]string{"~:", "~:"}, 0, "OK"}, {[]string{"@~:", "~:"}, 1, "WARNING"}, {[]string{"~:", "@~:"}, 2, "CRITICAL"}, {[]string{"@~:", "@~:"}, 2, "CRITICAL"}} {
				args := append([]string{"-c", cmd, "-a"}, append(tt.first, quiet[2:]...)...)
				out, code := w.checkNRPE(t, args...)
				if code != tt.code || !strings.HasPrefix(out, tt.state+" - ") || !perf.MatchString(out) {
					t.Errorf("%v: %d %q, want %d %s with perfdata", args[3:], code, out, tt.code, tt.state)
				}
			}
		})
	}
	t.Run("defaults and real values", func(t *testing.T) {
		for _, tt := range []struct {
			cmd  string
			code int
			re   string
		}{
			{"check_queue", 0, `^OK - queue 0 messages, 0 deferred, 0 held, oldest 0s \| depth=0;100;500;0 deferred=0;50;200;0 oldest=0s;3600;14400;0$`},
			{"check_collector", 2, `^CRITICAL - 1 fetch accounts, 1 failing: helpdesk failing \(\d+ in a row\) \| failing=1;;0;0$`},
			{"check_ntp", 0, `^OK - offset -?[0-9.]+[µnm]?s from 10\.77\.0\.1, stratum 8 \| offset=-?0\.\d{3}s;0\.5;1;$`},
			{"check_firewall", 0, `^OK - nftables, \d+ inbound paths, egress open \| rules_in=\d+;;;0 drops_in=\d+;;;0 drops_out=\d+;;;0$`},
			// The POP3 server is not there: refused.
			{"check_paths", 2, `^CRITICAL - \d+ outbound paths tested, \d+ failed: .*Mail collection helpdesk 10\.77\.0\.1:110 refused`},
			{"check_services", 0, `^OK - \d+ services running, \d+ restarts \| down=0;;0;0 restarts=\d+;;;0$`},
		} {
			out, code := w.checkNRPE(t, "-c", tt.cmd)
			if code != tt.code || !regexp.MustCompile(tt.re).MatchString(out) {
				t.Errorf("%s: %d %q, want %d %s", tt.cmd, code, out, tt.code, tt.re)
			}
		}
		// Values against thresholds: one message... none here; the
		// queue's depth 0 is inside "@0", the collector's one failing
		// account below "2:".
		if out, code := w.checkNRPE(t, "-c", "check_queue", "-a", "@0", "~:"); code != 1 || !strings.HasPrefix(out, "WARNING - queue 0 messages") {
			t.Errorf("queue depth 0 inside @0: %d %q", code, out)
		}
		if out, code := w.checkNRPE(t, "-c", "check_collector", "-a", "~:", "~:1"); code != 0 {
			t.Errorf("one failing account within ~:1: %d %q", code, out)
		}
		if out, code := w.checkNRPE(t, "-c", "check_collector", "-a", "~:", "2:"); code != 2 {
			t.Errorf("one failing account below 2: %d %q", code, out)
		}
	})
	t.Run("forbidden characters", func(t *testing.T) {
		for _, arg := range []string{"1;reboot", "`id`", "$(id)", "a|b"} {
			if out, code := w.checkNRPE(t, "-c", "check_load", "-a", arg); code != 3 || !strings.Contains(out, "refused") {
				t.Errorf("%q: %d %q", arg, code, out)
			}
		}
	})

	// Mutual TLS: the configured certificate, client certificates of the
	// test CA required, TLS required.
	w.reload(t, base+fmt.Sprintf("nrpe:\n  ssl: required\n  tls: {cert: %[1]s/server.crt, key: %[1]s/server.key, client_ca: %[1]s/ca.crt, client_certs: required}\n", w.dir))
	mutual := []string{"-A", filepath.Join(w.dir, "ca.crt"), "-C", filepath.Join(w.dir, "client.crt"), "-K", filepath.Join(w.dir, "client.key")}
	w.nrpeUntil(t, "mutual TLS after the reload", func(out string, code int) bool { return code == 0 && strings.HasPrefix(out, "NRPE v") }, mutual...)
	t.Run("mutual TLS", func(t *testing.T) {
		if out, code := w.checkNRPE(t, append(mutual, "-2")...); code != 0 || !strings.HasPrefix(out, "NRPE v") {
			t.Errorf("-2 with a client certificate: %d %q", code, out)
		}
		stranger := []string{"-A", filepath.Join(w.dir, "ca.crt"), "-C", filepath.Join(w.dir, "stranger.crt"), "-K", filepath.Join(w.dir, "stranger.key")}
		for name, args := range map[string][]string{
			"no client certificate":      {"-A", filepath.Join(w.dir, "ca.crt")},
			"another CA's certificate":   stranger,
			"plain text (ssl required)":  {"-n"},
			"the server's CA is not his": {"-A", filepath.Join(w.dir, "other-ca.crt"), "-C", filepath.Join(w.dir, "client.crt"), "-K", filepath.Join(w.dir, "client.key")},
		} {
			if out, code := w.checkNRPE(t, args...); code == 0 || strings.HasPrefix(out, "NRPE v") {
				t.Errorf("%s: %d %q", name, code, out)
			}
		}
	})
}
