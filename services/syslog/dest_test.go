package syslog

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

	"gatehouse/config"
	"gatehouse/init/logring"

	gosyslog "github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/octetcounting"
	"github.com/leodido/go-syslog/v4/rfc5424"
)

// receiver is a syslog server for the tests: it reads octet-counted
// records with go-syslog and keeps their messages.
type receiver struct {
	l    net.Listener
	mu   sync.Mutex
	msgs []*rfc5424.SyslogMessage
	errs []error
	eofs chan error // how each connection ended
}

func listenReceiver(t *testing.T, addr string, tc *tls.Config) *receiver {
	t.Helper()
	var l net.Listener
	var err error
	for range 50 { // the port of a stopped receiver may linger briefly
		if tc != nil {
			l, err = tls.Listen("tcp", addr, tc)
		} else {
			l, err = net.Listen("tcp", addr)
		}
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{l: l, eofs: make(chan error, 16)}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				cr := &endReader{r: c}
				octetcounting.NewParser(gosyslog.WithListener(func(res *gosyslog.Result) {
					r.mu.Lock()
					defer r.mu.Unlock()
					if res.Error != nil {
						r.errs = append(r.errs, res.Error)
						return
					}
					r.msgs = append(r.msgs, res.Message.(*rfc5424.SyslogMessage))
				})).Parse(cr)
				r.eofs <- cr.err
			}()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return r
}

// endReader remembers how the stream ended.
type endReader struct {
	r   io.Reader
	err error
}

func (e *endReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

func (r *receiver) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, m := range r.msgs {
		s := *m.Appname + ": "
		if m.Message != nil {
			s += *m.Message
		}
		out = append(out, s)
	}
	return out
}

func (r *receiver) waitFor(t *testing.T, n int) []string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := r.messages(); len(m) >= n {
			return m
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Fatalf("%d messages arrived, want %d (errors %v)", len(r.msgs), n, r.errs)
	return nil
}

func testForwarder(dests ...config.SyslogDestination) (*forwarder, func()) {
	f := newForwarder(slog.New(slog.DiscardHandler))
	s := &settings{hostname: "gw1", kernel: true}
	for _, c := range dests {
		d := newDestination(c, func() string { return "gw1" }, f.log)
		d.start(contextBackground())
		s.dests = append(s.dests, d)
	}
	f.cur.Store(s)
	return f, f.closeAll
}

func dest(transport, addr string, buffer int64) config.SyslogDestination {
	host, port, _ := net.SplitHostPort(addr)
	var p int
	fmt.Sscan(port, &p)
	return config.SyslogDestination{Server: host, Port: p, Transport: transport, Severity: "debug", Facility: "local0",
		Buffer: config.Size{Bytes: buffer}, MaxMessage: config.Size{Bytes: 8192}}
}

func TestTCPDestinationDeliversFramedRecords(t *testing.T) {
	r := listenReceiver(t, "127.0.0.1:0", nil)
	f, stop := testForwarder(dest("tcp", r.l.Addr().String(), 1<<20))
	defer stop()
	f.handle(logring.Record{Service: "smtp", PID: 9, Time: time.Now(), Line: `level=WARN msg="two\nlines" peer=10.0.0.5`})
	sev := 2
	f.handle(logring.Record{Service: "kernel", Time: time.Now(), Line: "oops", Severity: &sev})
	got := r.waitFor(t, 2)
	if got[0] != "smtp: two\nlines" || got[1] != "kernel: oops" {
		t.Fatalf("got %q", got)
	}
	r.mu.Lock()
	m := r.msgs[0]
	r.mu.Unlock()
	if *m.Severity != SevWarning || *m.Facility != 16 || *m.ProcID != "9" || (*m.StructuredData)[SDID]["peer"] != "10.0.0.5" || *m.Hostname != "gw1" {
		t.Errorf("record %+v", m)
	}
}

// While the server is down, records wait in the buffer up to its size and
// the rest are counted; once it is back, what was buffered arrives, then
// the report of what was dropped.
func TestDestinationBuffersWhileDownAndReportsDrops(t *testing.T) {
	r := listenReceiver(t, "127.0.0.1:0", nil)
	addr := r.l.Addr().String()
	r.l.Close()
	f, stop := testForwarder(dest("tcp", addr, 64<<10))
	defer stop()
	d := f.cur.Load().dests[0]
	for deadline := time.Now().Add(5 * time.Second); d.status().State != stateDown; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("never down")
		}
	}
	line := strings.Repeat("x", 900)
	for i := range 200 {
		f.handle(logring.Record{Service: "smtp", Time: time.Now(), Line: fmt.Sprintf("level=INFO msg=%d-%s", i, line)})
	}
	st := d.status()
	if st.Queued+int(st.Dropped) != 200 || st.Dropped == 0 || st.QueuedBytes > 64<<10 {
		t.Fatalf("while down: %+v", st)
	}
	r2 := listenReceiver(t, addr, nil)
	got := r2.waitFor(t, st.Queued+1)
	for i := range st.Queued {
		if !strings.HasPrefix(got[i], fmt.Sprintf("smtp: %d-", i)) {
			t.Fatalf("message %d: %.20q", i, got[i])
		}
	}
	if want := fmt.Sprintf("syslog: %d messages dropped while unreachable", st.Dropped); got[st.Queued] != want {
		t.Fatalf("after the buffer: %q, want %q", got[st.Queued], want)
	}
	if s := d.status(); s.State != stateUp || s.Sent != uint64(st.Queued+1) {
		t.Errorf("after: %+v", s)
	}
}

// A destination that does not answer holds up neither the others nor the
// caller.
func TestDownDestinationBlocksNothing(t *testing.T) {
	r := listenReceiver(t, "127.0.0.1:0", nil)
	blackhole, _ := net.Listen("tcp", "127.0.0.1:0") // accepts (backlog) but never reads
	defer blackhole.Close()
	f, stop := testForwarder(dest("tcp", blackhole.Addr().String(), 64<<10), dest("tcp", r.l.Addr().String(), 16<<20))
	defer stop()
	start := time.Now()
	for i := range 20000 {
		f.handle(logring.Record{Service: "smtp", Time: time.Now(), Line: fmt.Sprintf("level=INFO msg=%d pad=%s", i, strings.Repeat("p", 200))})
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("handing out 20000 records took %v", time.Since(start))
	}
	r.waitFor(t, 20000)
}

func TestTLSDestinationVerifiesAndSendsCloseNotify(t *testing.T) {
	dir := t.TempDir()
	ca, serverCert, clientCert := testPKI(t, dir)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(mustRead(t, ca))
	r := listenReceiver(t, "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert})
	c := dest("tls", r.l.Addr().String(), 1<<20)
	c.CA, c.ServerName, c.Cert, c.Key = ca, "logs.test", clientCert, clientCert
	f, stop := testForwarder(c)
	f.handle(logring.Record{Service: "ssh", Time: time.Now(), Line: `level=INFO msg="login" user=admin`})
	if got := r.waitFor(t, 1); got[0] != "ssh: login" {
		t.Fatalf("got %q", got)
	}
	stop()
	select {
	case err := <-r.eofs:
		if !errors.Is(err, io.EOF) {
			t.Errorf("the connection ended with %v, not close_notify's clean EOF", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the connection was not closed")
	}

	// The wrong name: the certificate is refused, nothing is sent.
	c.ServerName = "other.test"
	f2, stop2 := testForwarder(c)
	defer stop2()
	d := f2.cur.Load().dests[0]
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(d.status().LastError, "certificate"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a certificate for another name was not refused: %+v", d.status())
		}
	}
}

func mustRead(t *testing.T, f string) []byte {
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testPKI makes a CA, a server certificate for logs.test and a client
// certificate (key and certificate in one file).
func testPKI(t *testing.T, dir string) (ca string, server tls.Certificate, client string) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(name string, usage x509.ExtKeyUsage) ([]byte, []byte) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalPKCS8PrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
	}
	ca = filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	sc, sk := leaf("logs.test", x509.ExtKeyUsageServerAuth)
	server, err := tls.X509KeyPair(sc, sk)
	if err != nil {
		t.Fatal(err)
	}
	cc, ck := leaf("gw1", x509.ExtKeyUsageClientAuth)
	client = filepath.Join(dir, "client.pem")
	os.WriteFile(client, append(cc, ck...), 0o600)
	return ca, server, client
}

func contextBackground() context.Context { return context.Background() }
