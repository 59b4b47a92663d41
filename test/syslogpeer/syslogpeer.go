// Package syslogpeer runs rsyslog as the syslog server of the syslog tests
// and benchmark: in a network namespace, with its own config, pid file and
// work directory (never the host's rsyslog), listening on UDP 514, TCP 514
// and TLS 6514 with a certificate for syslog.test from a CA of its own.
// Each transport writes to a file of its own, one line per record, with
// the fields rsyslog parsed out of it (Record).
package syslogpeer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
)

// ServerName is the name in the server's certificate.
const ServerName = "syslog.test"

// Transports are the listeners, each with its own log file.
var Transports = []string{"udp", "tcp", "tls"}

// Server is one rsyslogd.
type Server struct {
	Dir  string // its config, certificates, work directory and output
	NS   string
	Addr string // the address it listens on
	CA   string // the CA file that verifies its certificate
	conf string
	cmd  *exec.Cmd
}

// template writes the fields rsyslog parsed, separated by '|'.
const template = `%pri%|%app-name%|%procid%|%msgid%|%hostname%|%structured-data%|%msg%\n`

// New writes the config and a CA and server certificate in dir.
func New(dir, ns, addr string) (*Server, error) {
	s := &Server{Dir: dir, NS: ns, Addr: addr, CA: filepath.Join(dir, "ca.pem"), conf: filepath.Join(dir, "rsyslog.conf")}
	cert, key := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	if err := writePKI(s.CA, cert, key); err != nil {
		return nil, err
	}
	work := filepath.Join(dir, "work")
	if err := os.MkdirAll(work, 0o700); err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "global(workDirectory=%q maxMessageSize=\"64k\"\n  defaultNetstreamDriverCAFile=%q defaultNetstreamDriverCertFile=%q defaultNetstreamDriverKeyFile=%q)\n", work, s.CA, cert, key)
	b.WriteString("module(load=\"imudp\")\nmodule(load=\"imtcp\" maxSessions=\"100\")\n")
	fmt.Fprintf(&b, "main_queue(queue.size=\"200000\")\n")
	fmt.Fprintf(&b, "input(type=\"imudp\" address=%q port=\"514\" ruleset=\"udp\")\n", addr)
	fmt.Fprintf(&b, "input(type=\"imtcp\" address=%q port=\"514\" ruleset=\"tcp\")\n", addr)
	fmt.Fprintf(&b, "input(type=\"imtcp\" address=%q port=\"6514\" ruleset=\"tls\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\")\n", addr)
	b.WriteString("template(name=\"fields\" type=\"string\" string=\"" + template + "\")\n")
	for _, t := range Transports {
		fmt.Fprintf(&b, "ruleset(name=%q) { action(type=\"omfile\" file=%q template=\"fields\" ioBufferSize=\"256k\" flushOnTXEnd=\"on\") }\n", t, s.File(t))
	}
	return s, os.WriteFile(s.conf, []byte(b.String()), 0o644)
}

// File is where the records that came over transport are written.
func (s *Server) File(transport string) string { return filepath.Join(s.Dir, transport+".log") }

// Start runs rsyslogd in the foreground; its own messages go to
// rsyslogd.out.
func (s *Server) Start() error {
	out, err := os.OpenFile(filepath.Join(s.Dir, "rsyslogd.out"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	s.cmd = exec.Command("ip", "netns", "exec", s.NS, "rsyslogd", "-n", "-f", s.conf, "-i", filepath.Join(s.Dir, "rsyslogd.pid"))
	s.cmd.Stdout, s.cmd.Stderr = out, out
	return s.cmd.Start()
}

// Stop ends rsyslogd and waits for it.
func (s *Server) Stop() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
	return nil
}

// Record is one record as rsyslog parsed it.
type Record struct {
	PRI, AppName, ProcID, MsgID, Hostname, SD, Msg string
}

// Records reads what came over transport.
func (s *Server) Records(transport string) []Record {
	b, _ := os.ReadFile(s.File(transport))
	var out []Record
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		f := strings.SplitN(line, "|", 7)
		if len(f) < 7 {
			continue
		}
		out = append(out, Record{f[0], f[1], f[2], f[3], f[4], f[5], f[6]})
	}
	return out
}

// Ready sends a probe record over each transport from the server's own
// namespace until each has arrived: rsyslog then listens on all three.
func (s *Server) Ready(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	tag := fmt.Sprintf("probe-%d", time.Now().UnixNano())
	for {
		missing := s.missing(tag)
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("syslogpeer: rsyslog never took a probe over %v (see %s)", missing, filepath.Join(s.Dir, "rsyslogd.out"))
		}
		s.probe(tag, missing)
		for range 10 {
			if len(s.missing(tag)) < len(missing) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func (s *Server) missing(tag string) []string {
	var out []string
	for _, t := range Transports {
		found := false
		for _, r := range s.Records(t) {
			if r.AppName == "probe" && r.Msg == tag {
				found = true
			}
		}
		if !found {
			out = append(out, t)
		}
	}
	return out
}

// probe sends one probe record over each transport named, from the
// server's namespace.
func (s *Server) probe(tag string, transports []string) {
	InNS(s.NS, func() { s.sendProbes(tag, transports) })
}

// InNS runs f on a thread switched into the named namespace; the thread
// is thrown away afterwards.
func InNS(ns string, f func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		h, err := netns.GetFromName(ns)
		if err == nil {
			err = netns.Set(h)
			h.Close()
		}
		if err == nil {
			f()
		}
		errc <- err
	}()
	return <-errc
}

func (s *Server) sendProbes(tag string, transports []string) {
	rec := "<14>1 - - probe - - - " + tag
	for _, t := range transports {
		var c net.Conn
		var err error
		switch t {
		case "udp":
			c, err = net.Dial("udp", net.JoinHostPort(s.Addr, "514"))
		case "tcp":
			c, err = net.DialTimeout("tcp", net.JoinHostPort(s.Addr, "514"), time.Second)
		case "tls":
			c, err = tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", net.JoinHostPort(s.Addr, "6514"), &tls.Config{InsecureSkipVerify: true})
		}
		if err != nil {
			continue
		}
		c.SetDeadline(time.Now().Add(time.Second))
		if t == "udp" {
			c.Write([]byte(rec))
		} else {
			fmt.Fprintf(c, "%d %s", len(rec), rec)
		}
		c.Close()
	}
}

// writePKI writes a CA and a certificate for ServerName signed by it.
func writePKI(caFile, certFile, keyFile string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "syslog test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ServerName}, DNSNames: []string{ServerName},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return errors.Join(
		os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644),
		os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644),
		os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600))
}
