//go:build e2e

package test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/smtp"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/test/tokenserver"
)

// oauth2Passdb writes the settings of Dovecot's oauth2 passdb into dv and
// returns the passdb block for mechs: every token (with PLAIN: the
// password) is asked about at introspectURL (RFC 7662, POST token=...),
// over TLS trusting the test CA (copied into dv, where the auth process
// can read it). The token server's "username" must be the login name,
// "active" true. Nothing is cached: a token that stops being active stops
// working at once.
func oauth2Passdb(t *testing.T, dv, introspectURL, caFile, mechs string) string {
	t.Helper()
	ca, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dv, "ca.pem"), ca, 0o644)
	os.WriteFile(filepath.Join(dv, "oauth2.conf"), []byte(fmt.Sprintf(`introspection_url = %s
introspection_mode = post
username_attribute = username
active_attribute = active
active_value = true
tls_ca_cert_file = %s/ca.pem
`, introspectURL, dv)), 0o644)
	return fmt.Sprintf(`passdb {
  driver = oauth2
  mechanisms = %s
  args = %s/oauth2.conf
}
`, mechs, dv)
}

// dovecotOAuth runs the internal mail server as w.dovecot does (IMAPS
// 993, IMAP 143, POP3S 995, POP3 110 on 10.88.0.1), but logins are checked
// by the oauth2 passdb against the token server at introspectURL (its
// /introspect, served in the internal namespace). It offers XOAUTH2,
// OAUTHBEARER and PLAIN, all three through the oauth2 passdb: PLAIN's
// password is a token, as Dovecot's oauth2 passdb takes it (with no passdb
// for PLAIN, Dovecot answers PLAIN with a temporary failure, NO
// [UNAVAILABLE], which a client would retry). The users' mail is stored
// and listed through a passwd-file userdb. It returns the homes' parent.
func (w *mailWorld) dovecotOAuth(t *testing.T, introspectURL string, users ...string) string {
	t.Helper()
	m := map[string]string{}
	for _, u := range users {
		m[u] = ""
	}
	dv, homes := dovecotDir(t, m)
	w.mailDovecot(t, dv, "auth_mechanisms = xoauth2 oauthbearer plain\n"+oauth2Passdb(t, dv, introspectURL, w.ca, "xoauth2 oauthbearer plain")+
		fmt.Sprintf("userdb {\n  driver = passwd-file\n  args = username_format=%%u %s/users\n}\n", dv))
	return homes
}

// smarthostOAuth runs w.smarthost with a submission listener on
// 10.99.0.1:587 that relays only for clients that authenticated with SASL
// (after STARTTLS, with the test CA's certificate for smarthost.test).
// Postfix asks a Dovecot in the smarthost namespace that runs only its
// auth service, with the oauth2 passdb of dovecotOAuth (introspectURL
// must be reachable from that namespace). It returns the sink's dump
// directory.
func (w *mailWorld) smarthostOAuth(t *testing.T, introspectURL string) string {
	t.Helper()
	dv, _ := dovecotDir(t, nil)
	socket := filepath.Join(dv, "run", "auth-postfix")
	w.startDovecot(t, w.smart, dv, `protocols = none
ssl = no
auth_mechanisms = xoauth2 oauthbearer
`+oauth2Passdb(t, dv, introspectURL, w.ca, "xoauth2 oauthbearer")+`userdb {
  driver = static
  args = uid=65534 gid=65534 home=/nonexistent
}
service auth {
  unix_listener auth-postfix {
    mode = 0666
  }
}
`)
	askUntil(t, w.smart, "Dovecot's auth socket "+socket, func() error {
		c, err := net.DialTimeout("unix", socket, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "VERSION\t1\t2\nCPID\t%d\n", os.Getpid())
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "VERSION\t1\t") {
			return fmt.Errorf("handshake %q: %v", line, err)
		}
		return nil
	})
	sink := w.smarthost(t, "10.99.0.1:587/inet=10.99.0.1:587 inet n - n - - smtpd"+
		" -o smtpd_tls_security_level=encrypt -o smtpd_tls_auth_only=yes"+
		" -o smtpd_sasl_auth_enable=yes -o smtpd_sasl_type=dovecot -o smtpd_sasl_path="+socket+
		" -o smtpd_relay_restrictions=permit_sasl_authenticated,reject")
	waitGreeting(t, w.smart, "10.99.0.1", "587")
	return sink
}

// nsHTTPClient is an HTTP client whose connections are made in ns and
// which trusts only the CA in caFile.
func nsHTTPClient(t *testing.T, ns, caFile string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: caPool(t, caFile)},
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			inNS(t, ns, func() { c, err = (&net.Dialer{}).DialContext(ctx, network, addr) })
			return c, err
		},
	}}
}

func caPool(t *testing.T, caFile string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	return pool
}

// clientCredentials gets an access token from the token server at base.
func clientCredentials(t *testing.T, hc *http.Client, base, id, secret string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != 200 || tok.AccessToken == "" {
		t.Fatalf("token request: %s %+v %v", resp.Status, tok, err)
	}
	return tok.AccessToken
}

func xoauth2(user, token string) string {
	return base64.StdEncoding.EncodeToString([]byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01"))
}

func oauthBearer(user, host, port, token string) string {
	return base64.StdEncoding.EncodeToString([]byte("n,a=" + user + ",\x01host=" + host + "\x01port=" + port + "\x01auth=Bearer " + token + "\x01\x01"))
}

// mailSession is a conversation with an IMAP or POP3 server over TLS,
// opened in a namespace.
type mailSession struct {
	t *testing.T
	c *tls.Conn
	r *bufio.Reader
}

// freshSource is a loopback address no earlier connection of the test
// came from. Dovecot's auth penalty delays every login from an address
// after a failed one (2 s, doubling up to 15 s): from fresh addresses the
// test's refused logins cost only auth_failure_delay each.
func freshSource() *net.TCPAddr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(sourceSeq.Add(1)))}
}

var sourceSeq atomic.Int32

func dialMail(t *testing.T, ns, addr, caFile string) *mailSession {
	t.Helper()
	host, _, _ := net.SplitHostPort(addr)
	var c *tls.Conn
	var err error
	inNS(t, ns, func() {
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second, LocalAddr: freshSource()}, "tcp", addr,
			&tls.Config{RootCAs: caPool(t, caFile), ServerName: host})
	})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	s := &mailSession{t: t, c: c, r: bufio.NewReader(c)}
	s.line() // the greeting
	return s
}

func (s *mailSession) line() string {
	s.t.Helper()
	l, err := s.r.ReadString('\n')
	if err != nil {
		s.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// command sends cmd and returns the server's final reply: the line that
// starts with final (an IMAP tag), or for POP3 (final "") +OK or -ERR. A
// SASL challenge ("+ ..." after an initial response: the server's error
// details) is answered with an empty response, as RFC 7628 3.2.3 says.
func (s *mailSession) command(cmd, final string) string {
	s.t.Helper()
	fmt.Fprintf(s.c, "%s\r\n", cmd)
	for {
		l := s.line()
		switch {
		case strings.HasPrefix(l, "+ ") && (final != "" || !strings.HasPrefix(l, "+OK")):
			fmt.Fprintf(s.c, "\r\n")
		case final != "" && strings.HasPrefix(l, final+" "):
			return l
		case final == "" && (strings.HasPrefix(l, "+OK") || strings.HasPrefix(l, "-ERR")):
			return l
		}
	}
}

// xoauth2Auth is XOAUTH2 for net/smtp.
type xoauth2Auth struct{ user, token string }

func (a xoauth2Auth) Start(*smtp.ServerInfo) (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + a.user + "\x01auth=Bearer " + a.token + "\x01\x01"), nil
}

func (a xoauth2Auth) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return []byte{}, nil // the error challenge: an empty response ends the exchange
	}
	return nil, nil
}

// TestOAuthPeers shows the OAuth2 peers work by themselves, with no
// Gatehouse: tokens from the token server open Dovecot's IMAP and POP3
// with XOAUTH2 and OAUTHBEARER and Postfix's submission with XOAUTH2;
// expired tokens and other users' tokens do not.
func TestOAuthPeers(t *testing.T) {
	w := newMailWorld(t)
	ts := tokenserver.New()
	ts.AddClient("collector", "collector-secret", nil, "alice@example.test")
	ts.AddClient("relay", "relay-secret", nil, "relay@example.test")
	intlURL := ts.Serve(t, w.intl, "10.88.0.1:443", w.issue("10.88.0.1"))
	smartURL := ts.Serve(t, w.smart, "10.99.0.1:443", w.issue("10.99.0.1"))
	homes := w.dovecotOAuth(t, intlURL+"/introspect", "alice@example.test", "bob@example.test")
	sink := w.smarthostOAuth(t, smartURL+"/introspect")

	hc := nsHTTPClient(t, w.intl, w.ca)
	token := clientCredentials(t, hc, intlURL, "collector", "collector-secret")
	const alice = "alice@example.test"
	asked := ts.Introspections()

	imap := func(mech, ir string) string {
		s := dialMail(t, w.intl, "10.88.0.1:993", w.ca)
		reply := s.command("a AUTHENTICATE "+mech+" "+ir, "a")
		if strings.HasPrefix(reply, "a OK") {
			if st := s.command("b STATUS INBOX (MESSAGES)", "b"); !strings.HasPrefix(st, "b OK") {
				t.Errorf("IMAP STATUS after %s: %q", mech, st)
			}
		}
		s.command("z LOGOUT", "z")
		return reply
	}
	pop3 := func(ir string) string {
		s := dialMail(t, w.intl, "10.88.0.1:995", w.ca)
		reply := s.command("AUTH XOAUTH2 "+ir, "")
		if strings.HasPrefix(reply, "+OK") {
			if st := s.command("STAT", ""); !strings.HasPrefix(st, "+OK 0 ") {
				t.Errorf("POP3 STAT: %q", st)
			}
		}
		s.command("QUIT", "")
		return reply
	}
	for _, c := range []struct {
		name, reply, want string
	}{
		{"IMAP XOAUTH2", imap("XOAUTH2", xoauth2(alice, token)), "a OK"},
		{"IMAP OAUTHBEARER", imap("OAUTHBEARER", oauthBearer(alice, "10.88.0.1", "993", token)), "a OK"},
		{"POP3 XOAUTH2", pop3(xoauth2(alice, token)), "+OK"},
		{"IMAP XOAUTH2, alice's token as bob", imap("XOAUTH2", xoauth2("bob@example.test", token)), "a NO"},
		{"IMAP XOAUTH2, no such token", imap("XOAUTH2", xoauth2(alice, "forged")), "a NO"},
		{"IMAP PLAIN, the token as password", imap("PLAIN", base64.StdEncoding.EncodeToString([]byte("\x00"+alice+"\x00"+token))), "a OK"},
	} {
		if !strings.HasPrefix(c.reply, c.want) {
			t.Errorf("%s: %q, want %s", c.name, c.reply, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(homes, alice, "Maildir")); err != nil {
		t.Errorf("alice's Maildir after her logins: %v", err)
	}
	if ts.Introspections() == asked {
		t.Error("Dovecot never asked the token server")
	}

	ts.ExpireAll()
	if r := imap("XOAUTH2", xoauth2(alice, token)); !strings.HasPrefix(r, "a NO") {
		t.Errorf("IMAP XOAUTH2 with an expired token: %q", r)
	}
	if r := pop3(xoauth2(alice, token)); !strings.HasPrefix(r, "-ERR") {
		t.Errorf("POP3 XOAUTH2 with an expired token: %q", r)
	}

	// Submission: AUTH only after STARTTLS, relaying only when authenticated.
	relayToken := clientCredentials(t, nsHTTPClient(t, w.smart, w.ca), smartURL, "relay", "relay-secret")
	marker := fmt.Sprintf("oauth-peers-%d", time.Now().UnixNano())
	submit := func(auth smtp.Auth) error {
		var conn net.Conn
		var err error
		inNS(t, w.smart, func() {
			conn, err = (&net.Dialer{Timeout: 5 * time.Second, LocalAddr: freshSource()}).Dial("tcp", "10.99.0.1:587")
		})
		if err != nil {
			return err
		}
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		c, err := smtp.NewClient(conn, "smarthost.test")
		if err != nil {
			return err
		}
		defer c.Close()
		if ok, _ := c.Extension("AUTH"); ok {
			t.Error("submission offers AUTH before STARTTLS")
		}
		if err := c.StartTLS(&tls.Config{RootCAs: caPool(t, w.ca), ServerName: "smarthost.test"}); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
		if auth != nil {
			if err := c.Auth(auth); err != nil {
				return fmt.Errorf("AUTH: %w", err)
			}
		}
		if err := c.Mail("relay@example.test"); err != nil {
			return err
		}
		if err := c.Rcpt("someone@partner.test"); err != nil {
			return fmt.Errorf("RCPT: %w", err)
		}
		d, err := c.Data()
		if err != nil {
			return err
		}
		fmt.Fprintf(d, "From: relay@example.test\r\nTo: someone@partner.test\r\nSubject: %s\r\n\r\nsent with a token\r\n", marker)
		if err := d.Close(); err != nil {
			return err
		}
		return c.Quit()
	}
	if err := submit(nil); err == nil || !strings.Contains(err.Error(), "RCPT") {
		t.Errorf("submission without AUTH: %v, want RCPT refused", err)
	}
	if err := submit(xoauth2Auth{"relay@example.test", "forged"}); err == nil || !strings.Contains(err.Error(), "AUTH") {
		t.Errorf("submission with a forged token: %v, want AUTH refused", err)
	}
	if err := submit(xoauth2Auth{"relay@example.test", relayToken}); err != nil {
		t.Fatalf("submission with XOAUTH2: %v", err)
	}
	waitDump(t, sink, 30*time.Second, marker)
}
