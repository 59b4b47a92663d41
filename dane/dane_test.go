package dane

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"gatehouse/tlsrpt"
)

type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serial int64

// makeCert makes a certificate signed by parent (self-signed when nil).
func makeCert(t *testing.T, parent *testCert, ca bool, notAfter time.Time, names ...string) *testCert {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter}
	if ca {
		tmpl.Subject = pkix.Name{CommonName: fmt.Sprintf("Test CA %d", serial)}
		tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign
	} else {
		tmpl.Subject = pkix.Name{CommonName: names[0]}
		tmpl.DNSNames = names
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	signer, signKey := tmpl, key
	if parent != nil {
		signer, signKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCert{cert: c, key: key}
}

func state(certs ...*testCert) tls.ConnectionState {
	var cs tls.ConnectionState
	for _, c := range certs {
		cs.PeerCertificates = append(cs.PeerCertificates, c.cert)
	}
	return cs
}

func rec(usage, selector, mtype uint8, c *testCert) TLSA {
	sel := c.cert.Raw
	if selector == SelectorSPKI {
		sel = c.cert.RawSubjectPublicKeyInfo
	}
	data := sel
	switch mtype {
	case MatchSHA256:
		h := sha256.Sum256(sel)
		data = h[:]
	case MatchSHA512:
		h := sha512.Sum512(sel)
		data = h[:]
	}
	return TLSA{Usage: usage, Selector: selector, MatchingType: mtype, Data: data}
}

func TestVerify(t *testing.T) {
	later := time.Now().Add(time.Hour)
	ca := makeCert(t, nil, true, later)
	inter := makeCert(t, ca, true, later)
	leaf := makeCert(t, ca, false, later, "mx.example.com")
	leafViaInter := makeCert(t, inter, false, later, "*.example.net")
	expiredLeaf := makeCert(t, ca, false, time.Now().Add(-time.Hour), "mx.example.com")
	selfSigned := makeCert(t, nil, false, time.Now().Add(-time.Hour), "localhost") // expired, wrong name
	other := makeCert(t, nil, false, later, "mx.example.com")
	otherCA := makeCert(t, nil, true, later)

	names := []string{"mx.example.com"}
	for _, tc := range []struct {
		desc  string
		cs    tls.ConnectionState
		recs  []TLSA
		names []string
		want  tlsrpt.ResultType // "" : authenticated
	}{
		{"3 1 1 match", state(leaf, ca), []TLSA{rec(3, 1, 1, leaf)}, names, ""},
		{"3 1 1 mismatch", state(other), []TLSA{rec(3, 1, 1, leaf)}, names, tlsrpt.ValidationFailure},
		{"3 0 1 match", state(leaf), []TLSA{rec(3, 0, 1, leaf)}, names, ""},
		{"3 0 2 match", state(leaf), []TLSA{rec(3, 0, 2, leaf)}, names, ""},
		{"3 1 0 match", state(leaf), []TLSA{rec(3, 1, 0, leaf)}, names, ""},
		{"3 0 0 match", state(leaf), []TLSA{rec(3, 0, 0, leaf)}, names, ""},
		{"3 1 1 ignores names and dates", state(selfSigned), []TLSA{rec(3, 1, 1, selfSigned)}, names, ""},
		{"3 1 1 on the CA does not match the leaf", state(leaf, ca), []TLSA{rec(3, 1, 1, ca)}, names, tlsrpt.ValidationFailure},
		{"one of several matches", state(leaf), []TLSA{rec(3, 1, 1, other), rec(3, 1, 1, leaf)}, names, ""},

		{"2 0 1 match", state(leaf, ca), []TLSA{rec(2, 0, 1, ca)}, names, ""},
		{"2 1 1 match", state(leaf, ca), []TLSA{rec(2, 1, 1, ca)}, names, ""},
		{"2 1 2 through an intermediate", state(leafViaInter, inter, ca), []TLSA{rec(2, 1, 2, ca)}, []string{"a.example.net"}, ""},
		{"2 1 1 on the intermediate", state(leafViaInter, inter), []TLSA{rec(2, 1, 1, inter)}, []string{"a.example.net"}, ""},
		{"2 1 1 second name", state(leaf, ca), []TLSA{rec(2, 1, 1, ca)}, []string{"example.com", "mx.example.com."}, ""},
		{"2 1 1 name mismatch", state(leaf, ca), []TLSA{rec(2, 1, 1, ca)}, []string{"mx2.example.com"}, tlsrpt.CertificateHostMismatch},
		{"2 1 1 wildcard is one label", state(leafViaInter, inter, ca), []TLSA{rec(2, 1, 1, ca)}, []string{"a.b.example.net"}, tlsrpt.CertificateHostMismatch},
		{"2 1 1 expired leaf", state(expiredLeaf, ca), []TLSA{rec(2, 1, 1, ca)}, names, tlsrpt.CertificateExpired},
		{"2 1 1 TA not sent", state(leaf), []TLSA{rec(2, 1, 1, ca)}, names, tlsrpt.ValidationFailure},
		{"2 1 1 other TA", state(leaf, ca), []TLSA{rec(2, 1, 1, otherCA)}, names, tlsrpt.ValidationFailure},
		{"2 1 1 chain of another CA", state(other, ca), []TLSA{rec(2, 1, 1, ca)}, names, tlsrpt.ValidationFailure},

		{"usage 1 never authenticates", state(leaf, ca), []TLSA{rec(1, 1, 1, leaf)}, names, tlsrpt.ValidationFailure},
		{"usage 0 never authenticates", state(leaf, ca), []TLSA{rec(0, 1, 1, ca)}, names, tlsrpt.ValidationFailure},
		{"no certificate", tls.ConnectionState{}, []TLSA{rec(3, 1, 1, leaf)}, names, tlsrpt.ValidationFailure},
		{"digest of the wrong length", state(leaf), []TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: rec(3, 1, 2, leaf).Data}}, names, tlsrpt.ValidationFailure},
	} {
		err := Verify(tc.cs, tc.recs, tc.names)
		if tlsrpt.ResultOf(err) != tc.want {
			t.Errorf("%s: got %v, want %q", tc.desc, err, tc.want)
		}
	}
}

func TestDecide(t *testing.T) {
	later := time.Now().Add(time.Hour)
	leaf := makeCert(t, nil, false, later, "mx.example.com")
	ee := rec(3, 1, 1, leaf)
	pkix := rec(1, 1, 1, leaf)
	pkixTA := rec(0, 0, 1, leaf)
	badSel := TLSA{Usage: 3, Selector: 2, MatchingType: 1, Data: ee.Data}
	badMatch := TLSA{Usage: 3, Selector: 1, MatchingType: 3, Data: ee.Data}

	if d := Decide([]TLSA{ee}, false); d.Mandatory || d.Authenticates() {
		t.Errorf("unauthenticated records decided %+v", d)
	}
	if d := Decide(nil, true); d.Mandatory {
		t.Errorf("no records decided %+v", d)
	}
	d := Decide([]TLSA{pkix, pkixTA, badSel, badMatch}, true)
	if !d.Mandatory || d.Authenticates() || len(d.Unusable) != 4 {
		t.Errorf("only unusable records: %+v; want mandatory, no usable", d)
	}
	// Mandatory without usable records: TLS, unauthenticated.
	if err := d.VerifyConnection("mx.example.com")(state(makeCert(t, nil, false, later, "x"))); err != nil {
		t.Errorf("unusable records verified something: %v", err)
	}
	d = Decide([]TLSA{pkix, ee}, true)
	if !d.Mandatory || len(d.Usable) != 1 || len(d.Unusable) != 1 {
		t.Errorf("mixed: %+v", d)
	}
	if err := d.VerifyConnection("mx.example.com")(state(leaf)); err != nil {
		t.Error(err)
	}
	if err := d.VerifyConnection("mx.example.com")(state(makeCert(t, nil, false, later, "mx.example.com"))); err == nil {
		t.Error("another key verified")
	}
}

// dnsServer answers TLSA queries from a zone, with the AD bit when ad is
// set, as a validating resolver does for a signed zone.
type dnsServer struct {
	addr string
	mu   sync.Mutex
	zone map[string][]dns.RR
	ad   bool
	fail bool
	last *dns.Msg // the last query
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
			s.last = q
			m := new(dns.Msg)
			m.SetReply(q)
			m.AuthenticatedData = s.ad
			rrs, ok := s.zone[q.Question[0].Name]
			switch {
			case s.fail:
				m.Rcode = dns.RcodeServerFailure
				m.AuthenticatedData = false
			case !ok:
				m.Rcode = dns.RcodeNameError
			default:
				m.Answer = rrs
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

func TestLookupTLSA(t *testing.T) {
	s := newDNSServer(t)
	leaf := makeCert(t, nil, false, time.Now().Add(time.Hour), "mx.example.com")
	ee := rec(3, 1, 1, leaf)
	s.set("_25._tcp.mx.example.com",
		"_25._tcp.mx.example.com. 300 IN TLSA 3 1 1 "+hex.EncodeToString(ee.Data),
		"_25._tcp.mx.example.com. 300 IN TLSA 1 1 1 "+hex.EncodeToString(ee.Data),
		"other.example.com. 300 IN TLSA 3 1 1 "+hex.EncodeToString(ee.Data)) // not for the name asked
	s.set("_25._tcp.alias.example.com",
		"_25._tcp.alias.example.com. 300 IN CNAME tlsa.example.org.",
		"tlsa.example.org. 300 IN TLSA 3 1 1 "+hex.EncodeToString(ee.Data))
	s.set("_25._tcp.nodata.example.com")
	ctx := context.Background()
	servers := []string{"127.0.0.1:1", s.addr} // the first does not answer
	for _, ad := range []bool{true, false} {
		s.mu.Lock()
		s.ad = ad
		s.mu.Unlock()
		recs, auth, err := LookupTLSA(ctx, servers, "mx.example.com.", 25, 200*time.Millisecond)
		if err != nil || auth != ad || len(recs) != 2 {
			t.Fatalf("ad=%v: %v, %v, %v", ad, recs, auth, err)
		}
		d := Decide(recs, auth)
		if d.Mandatory != ad || len(d.Usable) != map[bool]int{true: 1}[ad] {
			t.Errorf("ad=%v: decided %+v", ad, d)
		}
		if ad {
			if err := d.VerifyConnection("mx.example.com")(state(leaf)); err != nil {
				t.Errorf("authenticated match: %v", err)
			}
		}
	}
	s.mu.Lock()
	q := s.last
	s.ad = true
	s.mu.Unlock()
	if !q.AuthenticatedData || q.IsEdns0() == nil || !q.IsEdns0().Do() {
		t.Errorf("the query does not ask for DNSSEC: %v", q)
	}

	recs, auth, err := LookupTLSA(ctx, servers, "alias.example.com", 25, time.Second)
	if err != nil || !auth || len(recs) != 1 {
		t.Errorf("through a CNAME: %v, %v, %v", recs, auth, err)
	}
	for _, host := range []string{"nodata.example.com", "nxdomain.example.com"} {
		recs, auth, err := LookupTLSA(ctx, servers, host, 25, time.Second)
		if err != nil || !auth || len(recs) != 0 || Decide(recs, auth).Mandatory {
			t.Errorf("%s: %v, %v, %v", host, recs, auth, err)
		}
	}
	s.mu.Lock()
	s.fail = true
	s.mu.Unlock()
	if _, _, err := LookupTLSA(ctx, servers, "mx.example.com", 25, time.Second); err == nil {
		t.Error("SERVFAIL is no error")
	}
	if _, _, err := LookupTLSA(ctx, []string{"127.0.0.1:1"}, "mx.example.com", 25, 100*time.Millisecond); err == nil {
		t.Error("no server answering is no error")
	}
}

func FuzzTLSA(f *testing.F) {
	leaf := makeCert(&testing.T{}, nil, false, time.Now().Add(time.Hour), "mx.example.com")
	ee := rec(3, 1, 1, leaf)
	f.Add(uint8(3), uint8(1), uint8(1), hex.EncodeToString(ee.Data), leaf.cert.Raw)
	f.Add(uint8(2), uint8(0), uint8(0), hex.EncodeToString(leaf.cert.Raw), leaf.cert.Raw)
	f.Add(uint8(3), uint8(1), uint8(2), "zz", []byte{0x30, 0x03, 0x02, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, usage, selector, mtype uint8, data string, der []byte) {
		r, err := FromRR(&dns.TLSA{Hdr: dns.RR_Header{Name: "_25._tcp.mx.example.com."}, Usage: usage, Selector: selector, MatchingType: mtype, Certificate: data})
		if err != nil && len(r.Data) != 0 {
			t.Fatal("data kept on an error")
		}
		d := Decide([]TLSA{r}, true)
		if !d.Mandatory || len(d.Usable)+len(d.Unusable) != 1 {
			t.Fatalf("decided %+v", d)
		}
		if r.Usable() && (r.Usage < 2 || r.Usage > 3) {
			t.Fatalf("usage %d usable", r.Usage)
		}
		cs := state(leaf)
		if c, err := x509.ParseCertificate(der); err == nil {
			cs.PeerCertificates = append([]*x509.Certificate{c}, leaf.cert)
			r.Matches(c)
		}
		err = Verify(cs, d.Usable, []string{"mx.example.com"})
		if err != nil && tlsrpt.ResultOf(err) == "" {
			t.Fatal("an error without a result type")
		}
		if err == nil && !r.Usable() {
			t.Fatalf("%v authenticated with an unusable record", r)
		}
	})
}
