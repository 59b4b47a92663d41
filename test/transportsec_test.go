//go:build e2e

package test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// stsServer is the policy domains' web server: HTTPS on 10.77.0.30:443 in
// the internet namespace with certificates for mta-sts.<domain> from the
// test CA, serving each domain's policy until it is taken down.
type stsServer struct {
	mu       sync.Mutex
	policies map[string]string // host → policy file
	srv      *http.Server
}

func (w *mailWorld) stsServer(t *testing.T, policies map[string]string) *stsServer {
	t.Helper()
	ipIn(t, w.router, "addr", "add", "10.77.0.30/24", "dev", "r0")
	s := &stsServer{policies: policies}
	var certs []tls.Certificate
	for host := range policies {
		f := w.issue(host)
		c, err := tls.LoadX509KeyPair(f, f)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	var ln net.Listener
	inNS(t, w.router, func() {
		var err error
		if ln, err = net.Listen("tcp", "10.77.0.30:443"); err != nil {
			t.Fatal(err)
		}
	})
	s.srv = &http.Server{TLSConfig: &tls.Config{Certificates: certs}, Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		pol, ok := s.policies[strings.ToLower(r.Host)]
		s.mu.Unlock()
		if !ok || r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(rw, r)
			return
		}
		rw.Header().Set("Content-Type", "text/plain")
		rw.Write([]byte(pol))
	})}
	go s.srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { s.srv.Close() })
	return s
}

// takeDown makes every policy unavailable (404), as an attacker blocking
// the policy host would.
func (s *stsServer) takeDown() {
	s.mu.Lock()
	s.policies = map[string]string{}
	s.mu.Unlock()
}

// MTA-STS against real peers: the policies over HTTPS from a web server
// with a test CA, the receiving MX a Postfix whose certificate is for
// smarthost.test (from the same CA). sts-good.test's MX is smarthost.test;
// sts-bad.test's and sts-testing.test's MX is wrong.test, the same
// Postfix, whose certificate does not name it.
func TestMTASTSDelivery(t *testing.T) {
	var dns []string
	for _, d := range []string{"sts-good.test", "sts-bad.test", "sts-testing.test"} {
		mx := "wrong.test"
		if d == "sts-good.test" {
			mx = "smarthost.test"
		}
		dns = append(dns, "--mx-host="+d+","+mx+",10", "--txt-record=_mta-sts."+d+",v=STSv1;id=1",
			"--address=/mta-sts."+d+"/10.77.0.30")
	}
	w := newMailWorld(t, append(dns, "--address=/wrong.test/10.99.0.1")...)
	sink := w.smarthost(t)
	policy := func(mode, mx string) string {
		return "version: STSv1\nmode: " + mode + "\nmx: " + mx + "\nmax_age: 86400\n"
	}
	sts := w.stsServer(t, map[string]string{
		"mta-sts.sts-good.test":    policy("enforce", "smarthost.test"),
		"mta-sts.sts-bad.test":     policy("enforce", "wrong.test"),
		"mta-sts.sts-testing.test": policy("testing", "wrong.test"),
	})
	conf := `
hostname: gw
dns: {servers: [10.77.0.1]}
smtp:
  hostname: mx.example.test
  tls: {ca_file: ` + w.ca + `}
  domains:
    - {name: example.test, next_hop: "[10.88.0.1]:25", tls: may}
  trusted_networks: [10.88.0.0/24]
  queue: {lifetime: 1h, min_backoff: 2s, max_backoff: 4s}
  tls_rpt: {organization: Gatehouse Test, contact: postmaster@example.test}
`
	w.gatehouse(t, conf)
	send := func(to, id string) {
		mustSwaks(t, w.intl, "--server", "10.88.0.2:25", "--from", "bob@example.test", "--to", to, "--header", "Message-ID: <"+id+">")
	}

	t.Run("enforce and the right certificate: delivered", func(t *testing.T) {
		send("x@sts-good.test", "good1@test")
		d := waitDump(t, sink, 30*time.Second, "<good1@test>")
		if !strings.Contains(d, "(using TLS") {
			t.Errorf("delivered without TLS:\n%s", d)
		}
		if !w.logShows("verified (MTA-STS enforce)") {
			t.Error("the delivery log does not show the session verified under the policy")
		}
	})
	t.Run("enforce and a certificate for another name: deferred", func(t *testing.T) {
		send("x@sts-bad.test", "bad1@test")
		in := w.waitQueued(t, "x@sts-bad.test", "certificate-host-mismatch", 30*time.Second)
		if !strings.Contains(in.Errors[0], "MTA-STS enforce") {
			t.Errorf("the reason does not name MTA-STS: %q", in.Errors[0])
		}
		noDump(t, sink, "<bad1@test>")
	})
	t.Run("testing: delivered all the same", func(t *testing.T) {
		send("x@sts-testing.test", "testing1@test")
		waitDump(t, sink, 30*time.Second, "<testing1@test>")
		if !w.logShows("(MTA-STS testing)") {
			t.Error("the delivery log does not show the testing policy")
		}
	})

	t.Run("the policy outlives a restart of the relay", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(w.state(), "mta-sts", "sts-bad.test.json")); err != nil {
			t.Fatalf("policy not cached on disk: %v", err)
		}
		w.gatehose.Process.Signal(syscall.SIGTERM)
		w.gatehose.Wait()
		// The day's TLS report counts were saved at the stop: the failure
		// under enforce, and the one testing only reported.
		b, err := os.ReadFile(filepath.Join(w.state(), "tls-rpt", time.Now().UTC().Format("2006-01-02")+".json"))
		if err != nil {
			t.Fatalf("TLS report counts: %v", err)
		}
		for _, want := range []string{`"policy-domain":"sts-bad.test"`, `"policy-domain":"sts-testing.test"`, `"certificate-host-mismatch"`} {
			if !strings.Contains(string(b), want) {
				t.Errorf("TLS report counts lack %s:\n%s", want, b)
			}
		}
		// An attacker now blocks the policy host: without the cache the
		// relay would deliver as without a policy.
		sts.takeDown()
		w.gatehouse(t, conf)
		send("y@sts-bad.test", "bad2@test")
		w.waitQueued(t, "y@sts-bad.test", "certificate-host-mismatch", 30*time.Second)
		time.Sleep(5 * time.Second) // a retry or two
		noDump(t, sink, "<bad2@test>")
		noDump(t, sink, "<bad1@test>")
	})
}

// signedZone writes dane.test signed with a fresh key (ldns-keygen,
// ldns-signzone) and returns the signed file and the trust anchor (DS).
func signedZone(t *testing.T, dir, zone string) (signed, anchor string) {
	t.Helper()
	zd := filepath.Join(dir, "zone")
	os.MkdirAll(zd, 0o755)
	cmd := exec.Command("ldns-keygen", "-a", "ECDSAP256SHA256", "-k", "dane.test")
	cmd.Dir = zd
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ldns-keygen: %v", err)
	}
	key := filepath.Join(zd, strings.TrimSpace(string(out)))
	unsigned := filepath.Join(zd, "dane.test.zone")
	os.WriteFile(unsigned, []byte(zone), 0o644)
	signed = unsigned + ".signed"
	run(t, "ldns-signzone", "-f", signed, unsigned, key)
	return signed, key + ".ds"
}

// validatingResolver runs unbound in the internet namespace on
// 10.77.0.53: dane.test from the signed zone file, validated against
// its trust anchor (the AD bit set); partner.test forwarded to dnsmasq,
// insecure (no trust anchor above it). A forward zone for "." would take
// dane.test too: unbound prefers forwarding to its auth-zone.
func (w *mailWorld) validatingResolver(t *testing.T, signed, anchor string) {
	t.Helper()
	ipIn(t, w.router, "addr", "add", "10.77.0.53/24", "dev", "r0")
	dir := filepath.Join(w.dir, "unbound")
	os.MkdirAll(dir, 0o755)
	conf := filepath.Join(dir, "unbound.conf")
	os.WriteFile(conf, []byte(`server:
  interface: 10.77.0.53
  access-control: 10.77.0.0/24 allow
  username: ""
  chroot: ""
  directory: "`+dir+`"
  pidfile: "`+dir+`/unbound.pid"
  use-syslog: no
  logfile: "`+dir+`/unbound.log"
  module-config: "validator iterator"
  trust-anchor-file: "`+anchor+`"
  local-zone: "test." nodefault
  do-not-query-localhost: no
  val-log-level: 2
remote-control:
  control-enable: no
auth-zone:
  name: "dane.test"
  zonefile: "`+signed+`"
  for-upstream: yes
  for-downstream: no
  fallback-enabled: no
forward-zone:
  name: "partner.test."
  forward-addr: 10.77.0.1
`), 0o644)
	w.start(t, w.router, "unbound.out", "unbound", "-d", "-c", conf)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "unbound.log"))
			t.Logf("unbound log:\n%s", tail(string(b), 30))
		}
	})
	waitDNS(t, w.router, "10.77.0.53")
}

// spkiSHA256 is the DANE-EE SPKI SHA2-256 association data (3 1 1) of
// the first certificate in a PEM file.
func spkiSHA256(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			t.Fatalf("no certificate in %s", file)
		}
		if blk.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
			return hex.EncodeToString(h[:])
		}
	}
}

// DANE against real peers: a DNSSEC-signed zone (ldns) behind a
// validating unbound, the receiving MX the Postfix with a certificate
// from the test CA (its name does not matter to DANE-EE), and an
// smtp-sink without STARTTLS.
func TestDANEDelivery(t *testing.T) {
	w := newMailWorld(t)
	sink := w.smarthost(t)
	plainSink := w.sink(t, w.router, "10.77.0.25:25") // mail.partner.test: no STARTTLS
	right := spkiSHA256(t, w.chain)
	zone := `$ORIGIN dane.test.
$TTL 60
@ IN SOA ns.dane.test. admin.dane.test. 1 3600 600 86400 60
@ IN NS ns.dane.test.
ns IN A 10.77.0.53
good IN MX 10 mx-good.dane.test.
mx-good IN A 10.99.0.1
_25._tcp.mx-good IN TLSA 3 1 1 ` + right + `
bad IN MX 10 mx-bad.dane.test.
mx-bad IN A 10.99.0.1
_25._tcp.mx-bad IN TLSA 3 1 1 ` + strings.Repeat("ab", 32) + `
notls IN MX 10 mx-notls.dane.test.
mx-notls IN A 10.77.0.25
_25._tcp.mx-notls IN TLSA 0 0 1 ` + right + `
`
	signed, anchor := signedZone(t, w.dir, zone)
	w.validatingResolver(t, signed, anchor)
	w.gatehouse(t, `
hostname: gw
dns: {servers: [10.77.0.53]}
smtp:
  hostname: mx.example.test
  domains:
    - {name: example.test, next_hop: "[10.88.0.1]:25", tls: may}
  trusted_networks: [10.88.0.0/24]
  outbound_tls: dane
  queue: {lifetime: 1h, min_backoff: 2s, max_backoff: 4s}
`)
	send := func(to, id string) {
		mustSwaks(t, w.intl, "--server", "10.88.0.2:25", "--from", "bob@example.test", "--to", to, "--header", "Message-ID: <"+id+">")
	}
	t.Run("a TLSA record that matches: delivered, verified", func(t *testing.T) {
		send("x@good.dane.test", "dane-good@test")
		d := waitDump(t, sink, 30*time.Second, "<dane-good@test>")
		if !strings.Contains(d, "(using TLS") {
			t.Errorf("delivered without TLS:\n%s", d)
		}
		if !w.logShows("verified (DANE)") {
			t.Error("the delivery log does not show a session verified by DANE")
		}
	})
	t.Run("a TLSA record that does not match: deferred", func(t *testing.T) {
		send("x@bad.dane.test", "dane-bad@test")
		w.waitQueued(t, "x@bad.dane.test", "no TLSA record matches", 30*time.Second)
		noDump(t, sink, "<dane-bad@test>")
	})
	t.Run("unusable TLSA records still require TLS", func(t *testing.T) {
		send("x@notls.dane.test", "dane-notls@test")
		w.waitQueued(t, "x@notls.dane.test", "does not offer STARTTLS", 30*time.Second)
		noDump(t, plainSink, "<dane-notls@test>")
	})
	t.Run("an unsigned domain: opportunistic TLS as may", func(t *testing.T) {
		send("x@partner.test", "dane-unsigned@test")
		waitDump(t, plainSink, 30*time.Second, "<dane-unsigned@test>")
	})
}
