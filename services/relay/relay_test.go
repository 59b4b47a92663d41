package relay

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/service"
	"gatehouse/test/testlog"
	"gatehouse/test/testserver"
)

// testRelay is a relay running in this process.
type testRelay struct {
	addr, dir string
	// reload writes a new relay section and has the relay reload it.
	reload func(section string)
	// reloadConfig writes a whole config and has the relay reload it.
	reloadConfig func(yaml string)
	// header is the relay section's start: its hostname and listeners.
	header string
	// ended is what Run returned, once it did.
	ended <-chan error
	// logged is what the relay logged so far.
	logged func() string
}

func startRelay(t *testing.T, listener, section string) testRelay {
	t.Helper()
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	listen := map[string]string{"smtp": "off", "submission": "off", "smtps": "off"}
	listen[listener] = addr
	cfg := filepath.Join(dir, "gatehouse.yaml")
	header := fmt.Sprintf("smtp:\n  hostname: mx.example.test\n  listen: {smtp: %q, submission: %q, smtps: %q}\n",
		listen["smtp"], listen["submission"], listen["smtps"])
	if err := os.WriteFile(cfg, []byte(header+section), 0o600); err != nil {
		t.Fatal(err)
	}
	reload := make(chan struct{})
	log := &testlog.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		done <- Run(ctx, Options{Config: cfg, QueueDir: filepath.Join(dir, "queue"), TLSDir: filepath.Join(dir, "tls"),
			ResolvConf: filepath.Join(dir, "resolv.conf"), Socket: filepath.Join(dir, "smtp.sock"),
			Log: slog.New(slog.NewTextHandler(log, nil)), Reload: reload})
	}()
	t.Cleanup(func() {
		cancel()
		<-finished
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("relay: %v", err)
			}
		default: // ended early, already reported
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("relay ended: %v", err)
		default:
		}
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			reloadConfig := func(yaml string) {
				// Replaced whole: the round of a reload before may be
				// reading it still.
				if err := os.WriteFile(cfg+".new", []byte(yaml), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(cfg+".new", cfg); err != nil {
					t.Fatal(err)
				}
				select {
				case reload <- struct{}{}: // taken by the service's loop
				case <-finished:
					t.Fatal("relay ended before the reload")
				}
			}
			return testRelay{addr: addr, dir: dir, header: header, ended: done, logged: log.String, reloadConfig: reloadConfig,
				reload: func(section string) { reloadConfig(header + section) }}
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay not listening on %s", addr)
		}
	}
}

// queuedWith returns the queued message files that contain s.
func queuedWith(t *testing.T, dir, s string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(filepath.Join(dir, "queue"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), s) {
				out = append(out, string(b))
			}
		}
		return nil
	})
	return out
}

// send submits one message from the local address from and returns the
// final reply.
func send(t *testing.T, addr, from, rcpt, msg string) string {
	t.Helper()
	c, err := smtp.NewClient(testserver.DialFrom(t, from, addr), "mx.example.test")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("sender@outside.test"); err != nil {
		return err.Error()
	}
	if err := c.Rcpt(rcpt); err != nil {
		return err.Error()
	}
	w, err := c.Data()
	if err != nil {
		return err.Error()
	}
	fmt.Fprint(w, msg)
	if err := w.Close(); err != nil {
		return err.Error()
	}
	return "250"
}

// An inbound connector's required header is a secret between the sender
// and the gateway: it is removed before the message is queued. From
// outside, the fields the header rules route by are removed too, so that no
// outsider chooses the connector for mail the inside later sends on.
func TestHeadersStrippedBeforeQueueing(t *testing.T) {
	r := startRelay(t, "smtp", `  domains:
    - {name: example.test, next_hop: "[127.0.0.1]:1", tls: none}
  trusted_networks: [127.0.0.2]
  connectors:
    - {name: cmg, smarthost: "[127.0.0.1]:1", tls: none}
  inbound_connectors:
    - {name: tenant, networks: [127.0.0.3], require_header: {name: X-Tenant, value: "42"}}
  rules:
    - {header: X-CS-Sensitivity, contains: confidential, connector: cmg}
`)
	for _, tc := range []struct {
		from, tag, tenant string
		keepRuleHeader    bool
	}{
		{"127.0.0.1", "from-outside", "42", false},
		{"127.0.0.2", "from-inside", "42", true},
		// The connector's networks are shared (one provider's tenants):
		// without its header a client there is from outside.
		{"127.0.0.3", "other-tenant", "7", false},
		{"127.0.0.3", "the-tenant", "42", true},
	} {
		msg := "Subject: " + tc.tag + "\r\nX-Tenant: " + tc.tenant + "\r\nX-CS-Sensitivity: confidential\r\n\r\nbody\r\n"
		if reply := send(t, r.addr, tc.from, "alice@example.test", msg); reply != "250" {
			t.Fatalf("%s: %s", tc.tag, reply)
		}
		q := queuedWith(t, r.dir, "Subject: "+tc.tag)
		if len(q) != 1 {
			t.Fatalf("%s: %d queued copies", tc.tag, len(q))
		}
		if strings.Contains(q[0], "X-Tenant") {
			t.Errorf("%s: the connector's secret header was queued:\n%s", tc.tag, q[0])
		}
		if got := strings.Contains(q[0], "X-CS-Sensitivity"); got != tc.keepRuleHeader {
			t.Errorf("%s: routing header kept = %v, want %v:\n%s", tc.tag, got, tc.keepRuleHeader, q[0])
		}
	}
}

// testCA makes a CA and a client certificate with common name cn signed
// by it; it writes the CA's certificate to caFile.
func testCA(t *testing.T, caFile, cn string) tls.Certificate {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "CA " + caFile},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	ca, _ := x509.ParseCertificate(caDER)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

// The CAs that client certificates are verified against follow a reload:
// a connector's partner whose CA came in with the reload relays at once.
func TestClientCAsFollowReload(t *testing.T) {
	dir := t.TempDir()
	caA, caB := filepath.Join(dir, "a.pem"), filepath.Join(dir, "b.pem")
	testCA(t, caA, "other.partner.test")
	cert := testCA(t, caB, "relay.partner.test")
	section := func(ca string) string {
		return fmt.Sprintf(`  tls: {ca_file: %s}
  domains:
    - {name: example.test, next_hop: "[127.0.0.1]:1", tls: none}
  connectors:
    - {name: out, smarthost: "[127.0.0.1]:1", tls: none}
  default_route: out
  inbound_connectors:
    - {name: partner, tls_client_subject: relay.partner.test}
`, ca)
	}
	r := startRelay(t, "smtp", section(caA))
	rcpt := func() error {
		c, err := smtp.Dial(r.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}}); err != nil {
			return err
		}
		if err := c.Mail("partner@partner.test"); err != nil {
			return err
		}
		return c.Rcpt("x@elsewhere.test")
	}
	if err := rcpt(); err == nil || !strings.HasPrefix(err.Error(), "554") {
		t.Fatalf("a certificate from a CA not configured relayed: %v", err)
	}
	r.reload(section(caB))
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err = rcpt(); err == nil {
			return
		}
	}
	t.Errorf("after the reload brought its CA, the partner's certificate is still refused: %v", err)
}

// A reload that changes what only a new server applies ends the relay
// with an error that asks for a restart; the supervisor starts it again.
func TestReloadNeedingRestartEndsTheRelay(t *testing.T) {
	const domains = `  domains:
    - {name: example.test, next_hop: "[127.0.0.1]:1", tls: none}
`
	for _, tc := range []struct {
		name, want string
		config     func(r testRelay) string
	}{
		{"listen address", "listen addresses changed", func(r testRelay) string {
			return "smtp:\n  hostname: mx.example.test\n  listen: {smtp: \"127.0.0.1:2\", submission: off, smtps: off}\n" + domains
		}},
		{"message size", "limits.message_size", func(r testRelay) string {
			return r.header + domains + "  limits: {message_size: 1MiB}\n"
		}},
		{"recipients", "limits.recipients", func(r testRelay) string {
			return r.header + domains + "  limits: {recipients: 7}\n"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t, "smtp", domains)
			r.reloadConfig(tc.config(r))
			select {
			case err := <-r.ended:
				if !errors.Is(err, service.ErrRestart) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("relay ended with %v; want a restart naming %q", err, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the relay goes on after a reload that needs a restart")
			}
		})
	}
}

// A reload that removes the relay section closes the listeners and keeps
// the relay running (the queue is still delivered); one that brings the
// section back asks for a restart.
func TestReloadRemovingTheSectionClosesListeners(t *testing.T) {
	r := startRelay(t, "smtp", `  domains:
    - {name: example.test, next_hop: "[127.0.0.1]:1", tls: none}
`)
	if got := send(t, r.addr, "127.0.0.1", "u@example.test", "Subject: before\r\n\r\nbody\r\n"); got != "250" {
		t.Fatalf("before the reload: %s", got)
	}
	r.reloadConfig("hostname: gw\n")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp", r.addr)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the relay still listens after its section was removed")
		}
	}
	r.reloadConfig("hostname: gw\n") // taken only once the round before ended
	select {
	case err := <-r.ended:
		t.Fatalf("the relay ended when its section was removed: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if q := queuedWith(t, r.dir, "Subject: before"); len(q) != 1 {
		t.Errorf("%d queued copies of the message accepted before the reload, want 1", len(q))
	}

	r.reload("")
	select {
	case err := <-r.ended:
		if !errors.Is(err, service.ErrRestart) || !strings.Contains(err.Error(), "turned on again") {
			t.Fatalf("relay ended with %v; want a restart", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the relay goes on after a reload turned it on again")
	}
}

// A reload whose section cannot be applied (a CA file without a
// certificate) keeps the running settings: the domain relayed before is
// relayed still, and the next good reload applies.
func TestReloadThatFailsKeepsTheRunningSettings(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(bad, []byte("no certificate here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startRelay(t, "smtp", `  domains:
    - {name: example.test, next_hop: "[127.0.0.1]:1", tls: none}
`)
	r.reload(fmt.Sprintf(`  tls: {ca_file: %s}
  domains:
    - {name: other.test, next_hop: "[127.0.0.1]:1", tls: none}
`, bad))
	r.reload(fmt.Sprintf(`  tls: {ca_file: %s}
  domains:
    - {name: other.test, next_hop: "[127.0.0.1]:1", tls: none}
`, bad)) // taken only once the round before ended
	if !strings.Contains(r.logged(), "holds no PEM certificate") {
		t.Errorf("the failed reload was not logged:\n%s", r.logged())
	}
	if got := send(t, r.addr, "127.0.0.1", "u@example.test", "Subject: kept\r\n\r\nbody\r\n"); got != "250" {
		t.Fatalf("after a reload that failed, the running domain: %s", got)
	}
	r.reload(`  domains:
    - {name: other.test, next_hop: "[127.0.0.1]:1", tls: none}
`)
	r.reload(`  domains:
    - {name: other.test, next_hop: "[127.0.0.1]:1", tls: none}
`)
	if got := send(t, r.addr, "127.0.0.1", "u@other.test", "Subject: applied\r\n\r\nbody\r\n"); got != "250" {
		t.Fatalf("after a good reload, its domain: %s", got)
	}
	if got := send(t, r.addr, "127.0.0.1", "u@example.test", "Subject: gone\r\n\r\nbody\r\n"); got == "250" {
		t.Fatal("after a good reload, the domain it removed still relays")
	}
}
