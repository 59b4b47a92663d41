//go:build e2e

package test

import (
	"crypto/tls"
	"net"
	"net/http"
	"os"
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
