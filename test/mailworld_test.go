//go:build e2e

package test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mailWorld is the relay's surroundings, each in its own namespace:
//
//	internet  10.77.0.1  dnsmasq (MX records), outside clients, outside MX
//	          10.77.0.25 (partner.test) and 10.77.0.26 (reject.test)
//	internal  10.88.0.1  the internal mail server (smtp-sink), trusted clients
//	smarthost 10.99.0.1  a Postfix with TLS from the test CA on 25 and a
//	          self-signed certificate on 2525, relaying to its own smtp-sink
//	appliance 10.77.0.2, 10.88.0.2, 10.99.0.2: Gatehouse
type mailWorld struct {
	*netWorld
	intl, smart string
	ca          string // the test CA's certificate file
	chain       string // key and certificate for smarthost.test, from the test CA
	selfSigned  string // the same name, self-signed
	issue       func(name string) string
	postfixConf string
}

// extraDNS are more dnsmasq options (records) for a test's own domains.
func newMailWorld(t *testing.T, extraDNS ...string) *mailWorld {
	t.Helper()
	w := &mailWorld{netWorld: newNetWorld(t)}
	id := mrand.N(1 << 30)
	w.intl, w.smart = fmt.Sprintf("ghn%d", id), fmt.Sprintf("ghs%d", id)
	for _, ns := range []string{w.intl, w.smart} {
		run(t, "ip", "netns", "add", ns)
		ns := ns
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	link := func(peerNS, peerIf, peerAddr, applIf, applAddr string) {
		run(t, "ip", "link", "add", peerIf, "netns", peerNS, "type", "veth", "peer", "name", applIf, "netns", w.appl)
		ipIn(t, peerNS, "addr", "add", peerAddr, "dev", peerIf)
		ipIn(t, peerNS, "link", "set", peerIf, "up")
		ipIn(t, w.appl, "addr", "add", applAddr, "dev", applIf)
		ipIn(t, w.appl, "link", "set", applIf, "up")
	}
	ipIn(t, w.appl, "addr", "add", "10.77.0.2/24", "dev", "a0")
	ipIn(t, w.appl, "link", "set", "a0", "up")
	ipIn(t, w.router, "addr", "add", "10.77.0.25/24", "dev", "r0")
	ipIn(t, w.router, "addr", "add", "10.77.0.26/24", "dev", "r0")
	link(w.intl, "n0", "10.88.0.1/24", "a1", "10.88.0.2/24")
	link(w.smart, "s0", "10.99.0.1/24", "a2", "10.99.0.2/24")
	w.ca, w.chain, w.selfSigned, w.issue = writeCA(t, w.dir)
	w.dnsmasq(t, append([]string{"--mx-host=partner.test,mail.partner.test,10", "--address=/mail.partner.test/10.77.0.25",
		"--mx-host=reject.test,mail.reject.test,10", "--address=/mail.reject.test/10.77.0.26",
		"--address=/smarthost.test/10.99.0.1"}, extraDNS...)...)
	return w
}

// sink runs smtp-sink in ns on addr, dumping every message into a
// directory it returns. extra are smtp-sink flags (-f RCPT rejects...).
func (w *mailWorld) sink(t *testing.T, ns, addr string, extra ...string) string {
	t.Helper()
	dir := filepath.Join(w.dir, "sink-"+strings.NewReplacer(":", "_", ".", "_").Replace(addr))
	os.MkdirAll(dir, 0o755)
	args := append([]string{"smtp-sink", "-u", "root", "-d", dir + "/m."}, extra...)
	w.start(t, ns, filepath.Base(dir)+".log", append(args, addr, "256")...)
	host, port, _ := net.SplitHostPort(addr)
	waitGreeting(t, ns, host, port)
	return dir
}

// dumps returns the messages a sink has received.
func dumps(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
			out = append(out, string(b))
		}
	}
	return out
}

// waitDump waits for a message containing every one of want; the limit is
// a bound on how long delivery may take, not a timing assertion.
func waitDump(t *testing.T, dir string, limit time.Duration, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
	next:
		for _, d := range dumps(dir) {
			for _, s := range want {
				if !strings.Contains(d, s) {
					continue next
				}
			}
			return d
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no message with %q reached %s within %v (it has %d)", want, filepath.Base(dir), limit, len(dumps(dir)))
	return ""
}

// noDump checks that no message containing s reached dir.
func noDump(t *testing.T, dir, s string) {
	t.Helper()
	for _, d := range dumps(dir) {
		if strings.Contains(d, s) {
			t.Errorf("%s received a message it must not have: %q", filepath.Base(dir), s)
		}
	}
}

// swaks runs the swaks client in ns; it returns the transcript.
func swaks(t *testing.T, ns string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "swaks", "--timeout", "30"}, args...)...).CombinedOutput()
	return string(out), err
}

// writeCA creates a CA, a certificate for smarthost.test signed by it and
// a self-signed one; it returns the file names.
func writeCA(t *testing.T, dir string) (ca, chain, selfSigned string, issue func(name string) string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Gatehouse Test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) []byte {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(mrand.Int64N(1 << 60)), Subject: pkix.Name{CommonName: name},
			DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		if ip := net.ParseIP(name); ip != nil {
			tmpl.DNSNames, tmpl.IPAddresses = nil, []net.IP{ip}
		}
		if parent == nil {
			parent, parentKey = tmpl, k
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &k.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalPKCS8PrivateKey(k)
		return append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	ca, chain, selfSigned = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "smarthost.pem"), filepath.Join(dir, "selfsigned.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	os.WriteFile(chain, leaf("smarthost.test", caCert, caKey), 0o600)
	os.WriteFile(selfSigned, leaf("smarthost.test", nil, nil), 0o600)
	issue = func(name string) string {
		f := filepath.Join(dir, name+".pem")
		os.WriteFile(f, leaf(name, caCert, caKey), 0o600)
		return f
	}
	return ca, chain, selfSigned, issue
}

// smarthost runs a Postfix instance in the smarthost namespace: STARTTLS
// with a certificate from the test CA on 10.99.0.1:25 and a self-signed
// one on :2525; everything it accepts goes to its own smtp-sink, whose dump
// directory it returns. extra are more master.cf services (postconf -M).
func (w *mailWorld) smarthost(t *testing.T, extra ...string) string {
	t.Helper()
	sinkDir := w.sink(t, w.smart, "127.0.0.1:2526")
	chain, self := w.chain, w.selfSigned
	name := fmt.Sprintf("ghpf%d", mrand.N(1<<20))
	conf := filepath.Join("/etc", name)
	queue := filepath.Join("/var/spool", name)
	data := filepath.Join("/var/lib", name)
	logFile := filepath.Join("/var/log", name+".log") // maillog_file must be under /var
	w.postfixConf = conf
	t.Cleanup(func() {
		// postfix stop, and the master by its pid file should that not
		// reach it: no Postfix may outlive the test.
		exec.Command("ip", "netns", "exec", w.smart, "postfix", "-c", conf, "stop").Run()
		if b, err := os.ReadFile(filepath.Join(queue, "pid", "master.pid")); err == nil {
			var pid int
			fmt.Sscan(strings.TrimSpace(string(b)), &pid)
			if pid > 1 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		os.RemoveAll(conf)
		os.RemoveAll(queue)
		os.RemoveAll(data)
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("smart host's Postfix log:\n%s", b)
		}
		os.Remove(logFile)
	})
	for _, d := range []string{conf, queue, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run(t, "chown", "postfix:postfix", data)
	os.WriteFile(filepath.Join(conf, "main.cf"), nil, 0o644)
	master, err := os.ReadFile("/usr/share/postfix/master.cf.dist")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(conf, "master.cf"), master, 0o644)
	pc := func(args ...string) { run(t, "postconf", append([]string{"-c", conf}, args...)...) }
	pc("-e", "compatibility_level = 3.6", "queue_directory = "+queue, "data_directory = "+data,
		"myhostname = smarthost.test", "inet_interfaces = 10.99.0.1, 127.0.0.1", "inet_protocols = ipv4",
		"mynetworks = 10.99.0.0/24", "mydestination =", "local_recipient_maps =", "relay_domains =",
		"alias_maps =", "alias_database =", "smtpd_relay_restrictions = permit_mynetworks, reject",
		"default_transport = smtp:[127.0.0.1]:2526", "smtp_dns_support_level = disabled",
		"smtpd_tls_security_level = may", "smtpd_tls_chain_files = "+chain,
		"smtpd_tls_received_header = yes", "maillog_file = "+logFile)
	pc("-MX", "smtp/inet")
	pc("-M", "10.99.0.1:25/inet=10.99.0.1:25 inet n - n - - smtpd")
	pc("-M", "10.99.0.1:2525/inet=10.99.0.1:2525 inet n - n - - smtpd -o smtpd_tls_chain_files="+self)
	for _, e := range extra {
		pc("-M", e)
	}
	exec.Command("env", "MAIL_CONFIG="+conf, "/usr/lib/postfix/configure-instance.sh").Run()
	exec.Command("postfix", "-c", conf, "check").Run()
	if out, err := exec.Command("ip", "netns", "exec", w.smart, "postfix", "-c", conf, "start").CombinedOutput(); err != nil {
		t.Fatalf("postfix start: %v: %s", err, out)
	}
	waitGreeting(t, w.smart, "10.99.0.1", "25")
	waitGreeting(t, w.smart, "10.99.0.1", "2525")
	return sinkDir
}

// dovecot runs Dovecot in the internal namespace on 10.88.0.1: IMAPS 993,
// IMAP 143 (STARTTLS), POP3S 995, POP3 110 (STLS), with a certificate for
// 10.88.0.1 from the test CA and the users given (name: password).
// It returns the directory under which each user's Maildir lives.
func (w *mailWorld) dovecot(t *testing.T, users map[string]string) string {
	t.Helper()
	dv, homes := dovecotDir(t, users)
	w.mailDovecot(t, dv, fmt.Sprintf(`auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[1]s/users
}
userdb {
  driver = passwd-file
  args = username_format=%%u %[1]s/users
}
`, dv))
	return homes
}

// dovecotDir makes the directory of a Dovecot instance, with a
// passwd-file "users" of the users given (name: password; a password ""
// leaves the field empty, for a file that serves only as the userdb) and
// their homes. It returns the directory and the homes' parent.
func dovecotDir(t *testing.T, users map[string]string) (dv, homes string) {
	t.Helper()
	// Outside the test's 0700 temporary directory: Dovecot's processes run
	// as dovecot and as the mail users.
	dv, err := os.MkdirTemp("", "ghdovecot")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dv, 0o755)
	t.Cleanup(func() { os.RemoveAll(dv) })
	homes = filepath.Join(dv, "home")
	os.MkdirAll(filepath.Join(dv, "run"), 0o755)
	os.MkdirAll(homes, 0o755)
	var pw strings.Builder
	for u, p := range users {
		home := filepath.Join(homes, u)
		os.MkdirAll(home, 0o700)
		os.Chown(home, 65534, 65534)
		if p != "" {
			p = "{PLAIN}" + p
		}
		fmt.Fprintf(&pw, "%s:%s:65534:65534::%s::\n", u, p, home)
	}
	os.WriteFile(filepath.Join(dv, "users"), []byte(pw.String()), 0o644)
	return dv, homes
}

// mailDovecot runs the internal mail server (see dovecot) from dv; auth
// is its part of dovecot.conf that checks logins: auth_mechanisms, passdb
// and userdb.
func (w *mailWorld) mailDovecot(t *testing.T, dv, auth string) {
	t.Helper()
	keyCert := w.issue("10.88.0.1")
	w.startDovecot(t, w.intl, dv, fmt.Sprintf(`protocols = imap pop3
listen = 10.88.0.1
ssl = yes
ssl_cert = <%[1]s
ssl_key = <%[1]s
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
%[2]s
first_valid_uid = 1
mail_location = maildir:~/Maildir
pop3_uidl_format = %%08Xu%%08Xv
`, keyCert, auth))
	for _, port := range []string{"993", "143", "995", "110"} {
		waitGreeting(t, w.intl, "10.88.0.1", port)
	}
}

// startDovecot runs a Dovecot instance of its own (name, base and state
// directory, log in dv) in ns with the settings given, in the foreground
// as the test's child: it ends with the test.
func (w *mailWorld) startDovecot(t *testing.T, ns, dv, settings string) {
	t.Helper()
	conf := filepath.Join(dv, "dovecot.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`instance_name = gh%[2]d
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
%[3]s`, dv, mrand.N(1<<20), settings)), 0o644)
	w.start(t, ns, filepath.Base(dv)+".out", "dovecot", "-F", "-c", conf)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dv, "dovecot.log"))
			t.Logf("dovecot log (%s):\n%s", dv, tail(string(b), 40))
		}
	})
}
