package delivery

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"gatehouse/config"
	"gatehouse/dnsclient"
	"gatehouse/mtasts"
	"gatehouse/queue"
	"gatehouse/test/testserver"
	"gatehouse/tlsrpt"
)

// zone is an in-process DNS server: answers by name and type, with the
// AD bit for the names in secure, SERVFAIL for those in broken.
type zone struct {
	mu     sync.Mutex
	rrs    map[string][]dns.RR // "name. TYPE"
	secure map[string]bool
	broken map[string]bool
}

func startZone(t *testing.T) (*zone, string) {
	z := &zone{rrs: map[string][]dns.RR{}, secure: map[string]bool{}, broken: map[string]bool{}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		name := strings.ToLower(q.Name)
		z.mu.Lock()
		defer z.mu.Unlock()
		switch {
		case z.broken[name]:
			m.Rcode = dns.RcodeServerFailure
		default:
			m.Answer = z.rrs[name+" "+dns.TypeToString[q.Qtype]]
			m.AuthenticatedData = z.secure[name]
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return z, pc.LocalAddr().String()
}

func (z *zone) add(t *testing.T, s string) {
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	h := rr.Header()
	k := strings.ToLower(h.Name) + " " + dns.TypeToString[h.Rrtype]
	z.mu.Lock()
	z.rrs[k] = append(z.rrs[k], rr)
	z.mu.Unlock()
}

// testPKI is a CA and a certificate from it for mx.good.test.
type testPKI struct {
	roots *x509.CertPool
	leaf  tls.Certificate
}

func newPKI(t *testing.T) testPKI {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "mx.good.test"}, DNSNames: []string{"mx.good.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return testPKI{roots: pool, leaf: tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: k, Leaf: leaf}}
}

// spki311 is the DANE-EE SPKI SHA-256 TLSA data of the leaf.
func (p testPKI) spki311() string {
	h := sha256.Sum256(p.leaf.Leaf.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(h[:])
}

// tlsServer is an MX that offers STARTTLS (when cert is not nil) and
// closes after the second EHLO.
func tlsServer(t *testing.T, cert *tls.Certificate) string {
	return testserver.Local(t, func(c net.Conn) {
		var r *bufio.Reader = bufio.NewReader(c)
		var w io.Writer = c
		cert := cert // offered until used
		io.WriteString(w, "220 mx ESMTP\r\n")
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch strings.ToUpper(strings.Fields(l + " x")[0]) {
			case "EHLO":
				if cert != nil {
					io.WriteString(w, "250-mx\r\n250 STARTTLS\r\n")
				} else {
					io.WriteString(w, "250 mx\r\n")
				}
			case "STARTTLS":
				io.WriteString(w, "220 go ahead\r\n")
				tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{*cert}})
				if tc.Handshake() != nil {
					return
				}
				r, w, cert = bufio.NewReader(tc), tc, nil
			case "QUIT":
				io.WriteString(w, "221 bye\r\n")
				return
			default:
				io.WriteString(w, "250 ok\r\n")
			}
		}
	})
}

// writePolicy puts a policy in the MTA-STS cache directory as fetched
// just now for id, as the cache keeps it across restarts.
func writePolicy(t *testing.T, dir, domain, id, policy string) {
	now := time.Now()
	b, _ := json.Marshal(map[string]any{"domain": domain, "id": id, "policy": policy, "fetched": now, "expires": now.Add(24 * time.Hour)})
	if err := os.WriteFile(filepath.Join(dir, domain+".json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// The decisions of DANE and MTA-STS per MX, against an MX speaking
// STARTTLS with a certificate for mx.good.test from a test CA, and what
// the TLS report counts.
func TestTransportSecurity(t *testing.T) {
	pki := newPKI(t)
	good := tlsServer(t, &pki.leaf)
	plain := tlsServer(t, nil)
	z, dnsAddr := startZone(t)
	mx := func(domain, host string) {
		z.add(t, domain+". 60 IN MX 10 "+host+".")
		if z.rrs[host+". A"] == nil {
			z.add(t, host+". 60 IN A 127.0.0.1")
		}
	}
	sts := func(domain, mode string, mxs ...string) string {
		z.add(t, `_mta-sts.`+domain+`. 60 IN TXT "v=STSv1; id=1"`)
		pol := "version: STSv1\nmode: " + mode + "\n"
		for _, m := range mxs {
			pol += "mx: " + m + "\n"
		}
		return pol + "max_age: 86400\n"
	}
	stsDir := t.TempDir()
	policies := map[string]string{
		"enforce-good.test": sts("enforce-good.test", "enforce", "mx.good.test"),
		"enforce-bad.test":  sts("enforce-bad.test", "enforce", "mx.bad.test"),
		"enforce-nomx.test": sts("enforce-nomx.test", "enforce", "mx.elsewhere.test"),
		"testing-bad.test":  sts("testing-bad.test", "testing", "mx.bad.test"),
		"dane-sts.test":     sts("dane-sts.test", "enforce", "mx.bad.test"),
	}
	for d, p := range policies {
		writePolicy(t, stsDir, d, "1", p)
	}
	mx("enforce-good.test", "mx.good.test")
	mx("enforce-bad.test", "mx.bad.test")
	mx("enforce-nomx.test", "mx.good.test")
	mx("testing-bad.test", "mx.bad.test")
	mx("none.test", "mx.bad.test")

	// DANE: the MX's key (3 1 1), a wrong one, only unusable records,
	// the right one but unauthenticated, a lookup that fails; and a DANE
	// host under an MTA-STS policy it does not meet (DANE comes first).
	daneMX := map[string]string{"dane-good.test": "mx.dane-good.test", "dane-wrong.test": "mx.dane-wrong.test",
		"dane-unusable.test": "mx.dane-unusable.test", "dane-insecure.test": "mx.dane-insecure.test",
		"dane-servfail.test": "mx.dane-servfail.test", "dane-plain.test": "mx.dane-plain.test", "dane-sts.test": "mx.dane-sts.test",
		"dane-servfail-unsigned.test": "mx.dane-servfail-unsigned.test"}
	for d, h := range daneMX {
		mx(d, h)
	}
	tlsa := func(host, rdata string, secure bool) {
		z.add(t, "_25._tcp."+host+". 60 IN TLSA "+rdata)
		z.secure["_25._tcp."+host+"."] = secure
	}
	tlsa("mx.dane-good.test", "3 1 1 "+pki.spki311(), true)
	tlsa("mx.dane-sts.test", "3 1 1 "+pki.spki311(), true)
	tlsa("mx.dane-wrong.test", "3 1 1 "+strings.Repeat("ab", 32), true)
	tlsa("mx.dane-unusable.test", "0 0 1 "+strings.Repeat("ab", 32), true)
	tlsa("mx.dane-plain.test", "0 0 1 "+strings.Repeat("ab", 32), true)
	tlsa("mx.dane-insecure.test", "3 1 1 "+strings.Repeat("ab", 32), false)
	// A failed TLSA lookup defers a host whose address is secure, and is
	// no reason to defer one in an unsigned zone (RFC 7672 2.2.2).
	z.broken["_25._tcp.mx.dane-servfail.test."] = true
	z.secure["mx.dane-servfail.test."] = true
	z.broken["_25._tcp.mx.dane-servfail-unsigned.test."] = true

	resolver := mtasts.DNS{Lookup: dnsclient.Lookup{Servers: []string{dnsAddr}}}
	cache, err := mtasts.Open(stsDir, &mtasts.Fetcher{Resolver: resolver}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := tlsrpt.Open(t.TempDir(), tlsrpt.Options{Organization: "Test", Contact: "postmaster@relay.test", Submitter: "relay.test"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.SMTP{Hostname: "relay.test", OutboundTLS: config.TLSMay, TLSRPT: &config.TLSRPT{Organization: "Test", Contact: "postmaster@relay.test"}}
	for d := range daneMX {
		cfg.TLSPolicy = append(cfg.TLSPolicy, config.TLSPolicyEntry{Destination: d, Level: config.TLSDane})
	}
	tr := &Transport{Log: slog.New(slog.DiscardHandler), Config: func() *config.SMTP { return cfg },
		Roots: func() *x509.CertPool { return pki.roots }, STS: cache, Reports: rec, dnsServers: []string{dnsAddr}, wait: testWait}
	// The plain MX (no STARTTLS) is told apart by its address.
	z.rrs["mx.dane-plain.test. A"] = nil
	z.add(t, "mx.dane-plain.test. 60 IN A 127.0.0.2")
	tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		to := good
		if strings.HasPrefix(addr, "127.0.0.2:") {
			to = plain
		}
		return (&net.Dialer{}).DialContext(ctx, network, to)
	}

	tests := []struct {
		domain string
		ok     string // in the TLS result when the session opens
		err    string // in the error otherwise
		result tlsrpt.ResultType
		failed int64
	}{
		{domain: "enforce-good.test", ok: "verified (MTA-STS enforce)"},
		{domain: "enforce-bad.test", err: "certificate-host-mismatch", result: tlsrpt.CertificateHostMismatch, failed: 1},
		{domain: "enforce-nomx.test", err: "is not among the MTA-STS policy's", result: tlsrpt.ValidationFailure, failed: 1},
		{domain: "testing-bad.test", ok: "(MTA-STS testing)", result: tlsrpt.CertificateHostMismatch, failed: 1},
		{domain: "none.test", ok: "TLS"},
		{domain: "dane-good.test", ok: "verified (DANE)"},
		{domain: "dane-sts.test", ok: "verified (DANE)"},
		{domain: "dane-wrong.test", err: "no TLSA record matches", result: tlsrpt.ValidationFailure, failed: 1},
		{domain: "dane-unusable.test", ok: "(DANE, no usable TLSA record)"},
		{domain: "dane-plain.test", err: "does not offer STARTTLS", result: tlsrpt.StartTLSNotSupported, failed: 1},
		{domain: "dane-insecure.test", ok: "TLS"},
		{domain: "dane-servfail.test", err: "DANE: TLSA lookup"},
		{domain: "dane-servfail-unsigned.test", ok: "TLS"},
	}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			c, err := tr.open(context.Background(), queue.Route{Kind: queue.MX, Name: tt.domain})
			switch {
			case tt.ok != "" && err != nil:
				t.Fatalf("not opened: %v", err)
			case tt.ok != "":
				if !strings.Contains(c.tlsRes, tt.ok) {
					t.Errorf("TLS %q, want %q", c.tlsRes, tt.ok)
				}
				c.Close()
			case err == nil:
				c.Close()
				t.Fatalf("opened (%s), want %q", c.tlsRes, tt.err)
			case !strings.Contains(err.Error(), tt.err):
				t.Errorf("error %q, want %q", err, tt.err)
			}
			if err := rec.Flush(); err != nil {
				t.Fatal(err)
			}
			rep, err := rec.Report(time.Now().UTC().Format("2006-01-02"), tt.domain)
			if err != nil {
				t.Fatal(err)
			}
			var failed int64
			var results []tlsrpt.ResultType
			if rep != nil {
				for _, p := range rep.Policies {
					failed += p.Summary.Failed
					for _, d := range p.FailureDetails {
						results = append(results, d.Result)
					}
				}
			}
			if failed != tt.failed || tt.failed > 0 && (len(results) == 0 || results[0] != tt.result) {
				t.Errorf("reported %d failures %v, want %d %s", failed, results, tt.failed, tt.result)
			}
		})
	}
}
