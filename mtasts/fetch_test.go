package mtasts

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"gatehouse/dnsclient"
	"gatehouse/tlsrpt"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue makes a server certificate for names, valid until notAfter.
func (ca *testCA) issue(t *testing.T, notAfter time.Time, names ...string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter, DNSNames: names,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// dnsServer is an in-process name server on 127.0.0.1 answering from a
// zone the test changes.
type dnsServer struct {
	addr string
	mu   sync.Mutex
	zone map[string][]dns.RR
	fail bool // SERVFAIL for everything
}

func newDNSServer(t *testing.T) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dnsServer{addr: pc.LocalAddr().String(), zone: map[string][]dns.RR{}}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
			s.mu.Lock()
			defer s.mu.Unlock()
			m := new(dns.Msg)
			m.SetReply(q)
			rrs, ok := s.zone[q.Question[0].Name]
			switch {
			case s.fail:
				m.Rcode = dns.RcodeServerFailure
			case !ok:
				m.Rcode = dns.RcodeNameError
			default:
				for _, rr := range rrs {
					if rr.Header().Rrtype == q.Question[0].Qtype {
						m.Answer = append(m.Answer, rr)
					}
				}
			}
			w.WriteMsg(m)
		})}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return s
}

func (s *dnsServer) set(name string, rrs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []dns.RR
	for _, r := range rrs {
		rr, err := dns.NewRR(r)
		if err != nil {
			panic(err)
		}
		out = append(out, rr)
	}
	s.zone[dns.Fqdn(name)] = out
}

func (s *dnsServer) setFail(fail bool) {
	s.mu.Lock()
	s.fail = fail
	s.mu.Unlock()
}

// world is a policy domain: its DNS, and its policy host serving body.
type world struct {
	dns  *dnsServer
	ca   *testCA
	srv  *httptest.Server
	port string

	mu      sync.Mutex
	handler http.HandlerFunc
	fetches int
}

const testPolicy = "version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n"

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{dns: newDNSServer(t), ca: newCA(t)}
	w.serve(testPolicy)
	w.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		h := w.handler
		w.fetches++
		w.mu.Unlock()
		h(rw, r)
	}))
	w.srv.TLS = &tls.Config{Certificates: []tls.Certificate{w.ca.issue(t, time.Now().Add(time.Hour), "mta-sts.example.com")}}
	w.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes refused on purpose
	w.srv.StartTLS()
	t.Cleanup(w.srv.Close)
	_, w.port, _ = net.SplitHostPort(w.srv.Listener.Addr().String())
	w.dns.set("_mta-sts.example.com", `_mta-sts.example.com. 300 IN TXT "v=STSv1; id=1"`, `_mta-sts.example.com. 300 IN TXT "v=spf1 -all"`)
	w.dns.set("mta-sts.example.com", "mta-sts.example.com. 300 IN A 127.0.0.1")
	return w
}

func (w *world) serve(body string) {
	w.setHandler(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/mta-sts.txt" || r.Host != "mta-sts.example.com:"+w.port && r.Host != "mta-sts.example.com" {
			http.NotFound(rw, r)
			return
		}
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.Write([]byte(body))
	})
}

func (w *world) setHandler(h http.HandlerFunc) {
	w.mu.Lock()
	w.handler = h
	w.mu.Unlock()
}

func (w *world) fetchCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fetches
}

func (w *world) fetcher() *Fetcher {
	return &Fetcher{Resolver: DNS{Lookup: dnsclient.Lookup{Servers: []string{w.dns.addr}}, Timeout: time.Second},
		Roots: func() *x509.CertPool { return w.ca.pool }, Timeout: 5 * time.Second, port: w.port}
}

func TestFetch(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	for _, tc := range []struct {
		desc    string
		handler http.HandlerFunc
		mode    Mode
		result  tlsrpt.ResultType
	}{
		{desc: "enforce", mode: Enforce},
		{desc: "testing", handler: body("version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 600\n"), mode: Testing},
		{desc: "none", handler: body("version: STSv1\nmode: none\nmax_age: 600\n"), mode: None},
		{desc: "invalid policy", handler: body("version: STSv1\nmode: enforce\n"), result: tlsrpt.STSPolicyInvalid},
		{desc: "redirect refused", handler: func(rw http.ResponseWriter, r *http.Request) {
			http.Redirect(rw, r, "https://mta-sts.example.com/elsewhere.txt", http.StatusFound)
		}, result: tlsrpt.STSPolicyFetchError},
		{desc: "404", handler: http.NotFound, result: tlsrpt.STSPolicyFetchError},
		{desc: "text/html", handler: func(rw http.ResponseWriter, r *http.Request) {
			rw.Header().Set("Content-Type", "text/html")
			rw.Write([]byte(testPolicy))
		}, result: tlsrpt.STSPolicyInvalid},
		{desc: "too long", handler: body(testPolicy + "x: " + string(make([]byte, MaxPolicySize)) + "\n"), result: tlsrpt.STSPolicyInvalid},
	} {
		if tc.handler != nil {
			w.setHandler(tc.handler)
		} else {
			w.serve(testPolicy)
		}
		p, err := w.fetcher().Fetch(ctx, "example.com")
		if tc.result != "" {
			if err == nil || tlsrpt.ResultOf(err) != tc.result {
				t.Errorf("%s: got %v (%s), want %s", tc.desc, err, tlsrpt.ResultOf(err), tc.result)
			}
			continue
		}
		if err != nil || p.Mode != tc.mode {
			t.Errorf("%s: got %v, %v; want mode %s", tc.desc, p, err, tc.mode)
		}
	}
}

func body(s string) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/plain")
		rw.Write([]byte(s))
	}
}

func TestFetchWrongCertificate(t *testing.T) {
	w := newWorld(t)
	for _, tc := range []struct {
		desc string
		cert tls.Certificate
		ca   *testCA
	}{
		{"other name", w.ca.issue(t, time.Now().Add(time.Hour), "www.example.com"), w.ca},
		{"expired", w.ca.issue(t, time.Now().Add(-time.Hour), "mta-sts.example.com"), w.ca},
		{"unknown CA", newCA(t).issue(t, time.Now().Add(time.Hour), "mta-sts.example.com"), nil},
	} {
		w.srv.TLS.Certificates = []tls.Certificate{tc.cert}
		_, err := w.fetcher().Fetch(context.Background(), "example.com")
		if tlsrpt.ResultOf(err) != tlsrpt.STSWebPKIInvalid {
			t.Errorf("%s: got %v, want sts-webpki-invalid", tc.desc, err)
		}
	}
}

func TestFetchNoSystemRootsForTestCA(t *testing.T) {
	// With Roots nil the system roots apply, and the test CA is not one.
	w := newWorld(t)
	f := w.fetcher()
	f.Roots = nil
	if _, err := f.Fetch(context.Background(), "example.com"); tlsrpt.ResultOf(err) != tlsrpt.STSWebPKIInvalid {
		t.Errorf("got %v, want sts-webpki-invalid", err)
	}
}

func TestFetchHostUnresolvable(t *testing.T) {
	w := newWorld(t)
	w.dns.set("mta-sts.example.com")
	_, err := w.fetcher().Fetch(context.Background(), "example.com")
	if tlsrpt.ResultOf(err) != tlsrpt.STSPolicyFetchError {
		t.Errorf("got %v, want sts-policy-fetch-error", err)
	}
	var te *tlsrpt.Error
	if !errors.As(err, &te) {
		t.Errorf("%v is not a *tlsrpt.Error", err)
	}
}
