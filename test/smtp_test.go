//go:build e2e

package test

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/control"
	"gatehouse/queue"
)

// alice's password is "secret".
const aliceHash = "$2a$10$w5Y5j7XPMHTKUuGMWDLN0Oy7N919.rBKI14pnF5RdkLqnSduj6WUq"

func relayConfig(ca string) string {
	return `
hostname: gw
dns: {servers: [10.77.0.1]}
smtp:
  hostname: mx.example.test
  tls: {ca_file: ` + ca + `}
  domains:
    - {name: example.test, next_hop: "[10.88.0.1]:25", tls: may}
  trusted_networks: [10.88.0.0/24]
  users:
    - {login: alice, password_hash: "` + aliceHash + `", addresses: [alice@example.test]}
  auth_imap: {server: "10.88.0.1:993"}   # everyone else: the internal server's IMAP LOGIN
  connectors:
    - {name: cmg, smarthost: "[smarthost.test]:25", tls: verify}
    - {name: untrusted, smarthost: "[smarthost.test]:2525", tls: verify}
    - {name: later, smarthost: "[10.99.0.1]:2600", tls: none}
    - {name: dead, smarthost: "[10.99.0.1]:2700", tls: none}
  transport:
    - {domain: untrusted.test, connector: untrusted}
    - {domain: later.test, connector: later}
    - {domain: dead.test, connector: dead}
  rules:
    - {header: X-CS-Sensitivity, contains: confidential, connector: cmg}
  pop_before_smtp: {window: 10m}
  limits: {message_size: 1MiB}
  queue: {lifetime: 20s, min_backoff: 2s, max_backoff: 4s}
`
}

// rawSMTP is a client that writes exactly what the test says, for the
// inputs no well-behaved client would send.
type rawSMTP struct {
	c net.Conn
	r *bufio.Reader
}

func dialSMTP(t *testing.T, ns, addr string) *rawSMTP {
	t.Helper()
	var c net.Conn
	inNS(t, ns, func() {
		var err error
		if c, err = net.DialTimeout("tcp", addr, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(func() { c.Close() })
	s := &rawSMTP{c: c, r: bufio.NewReader(c)}
	if l := s.reply(t); !strings.HasPrefix(l, "220 ") {
		t.Fatalf("greeting %q", l)
	}
	return s
}

// reply returns the last line of the next reply, or "EOF".
func (s *rawSMTP) reply(t *testing.T) string {
	t.Helper()
	s.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		l, err := s.r.ReadString('\n')
		if err != nil {
			return "EOF"
		}
		if len(l) < 4 || l[3] != '-' {
			return strings.TrimRight(l, "\r\n")
		}
	}
}

func (s *rawSMTP) send(t *testing.T, text string) string {
	t.Helper()
	s.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := s.c.Write([]byte(text)); err != nil {
		return "EOF"
	}
	return s.reply(t)
}

func (w *mailWorld) queueList(t *testing.T) []queue.Info {
	t.Helper()
	out, err := gatehouseCmd(t, w.netWorld, "queue", "list", "--format", "json")
	if err != nil {
		t.Fatalf("queue list: %v: %s", err, out)
	}
	var list []queue.Info
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("queue list json: %v: %s", err, out)
	}
	return list
}

// waitQueued waits until a queued message to rcpt shows an error containing s.
func (w *mailWorld) waitQueued(t *testing.T, rcpt, s string, limit time.Duration) queue.Info {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last []queue.Info
	for time.Now().Before(deadline) {
		last = w.queueList(t)
		for _, in := range last {
			for i, r := range in.Rcpts {
				if r == rcpt && strings.Contains(in.Errors[i], s) {
					return in
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no queued message to %s with error %q within %v; queue: %+v", rcpt, s, limit, last)
	return queue.Info{}
}

func mustSwaks(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := swaks(t, ns, args...)
	if err != nil {
		t.Fatalf("swaks %v: %v\n%s", args, err, out)
	}
	return out
}

func TestSMTPRelay(t *testing.T) {
	w := newMailWorld(t)
	smartSink := w.smarthost(t)
	intlSink := w.sink(t, w.intl, "10.88.0.1:25")
	partnerSink := w.sink(t, w.router, "10.77.0.25:25")
	rejectSink := w.sink(t, w.router, "10.77.0.26:25", "-f", "RCPT")
	w.dovecot(t, map[string]string{"dave@example.test": "davepass"})
	w.gatehouse(t, relayConfig(w.ca))
	const mx = "10.77.0.2:25"
	inside := func(args ...string) []string { return append([]string{"--server", "10.88.0.2:25"}, args...) }

	t.Run("inbound for a managed domain", func(t *testing.T) {
		mustSwaks(t, w.router, "--server", mx, "--from", "someone@partner.test", "--to", "alice@example.test", "--header", "Message-ID: <in1@test>")
		d := waitDump(t, intlSink, 30*time.Second, "<in1@test>", "X-Rcpt-Args: <alice@example.test>")
		if !strings.Contains(d, "by mx.example.test (Gatehouse) with ESMTP id") {
			t.Errorf("no Received header of the relay:\n%s", d)
		}
	})

	t.Run("outbound from a trusted network by MX", func(t *testing.T) {
		mustSwaks(t, w.intl, inside("--from", "bob@example.test", "--to", "x@partner.test", "--header", "Message-ID: <out1@test>")...)
		waitDump(t, partnerSink, 30*time.Second, "<out1@test>", "X-Rcpt-Args: <x@partner.test>")
	})

	t.Run("no open relay", func(t *testing.T) {
		tricks := []struct{ from, to string }{
			{"someone@partner.test", "x@partner.test"},
			{"", "x@partner.test"},
			{"someone@partner.test", "x%partner.test@example.test"},
			{"someone@partner.test", `"x@partner.test"@example.test`},
			{"someone@partner.test", "x@partner.test@example.test"},
			{"someone@partner.test", "partner.test!x@example.test"},
			{"someone@partner.test", "@mail.partner.test:x@partner.test"},
			{"someone@partner.test", "x@[10.77.0.25]"},
			{"someone@partner.test", "x@partner.test."},
		}
		for _, tr := range tricks {
			out, err := swaks(t, w.router, "--server", mx, "--from", tr.from, "--to", tr.to, "--header", "Subject: trick "+tr.to)
			if err == nil || !(strings.Contains(out, "<** 554 5.7.1") || strings.Contains(out, "<** 501 5.1.3")) {
				t.Errorf("RCPT TO:<%s> from the internet was not refused:\n%s", tr.to, out)
			}
		}
		// Anything the relay did accept would have been delivered by now.
		time.Sleep(3 * time.Second)
		noDump(t, partnerSink, "trick")
		noDump(t, intlSink, "trick")
	})

	t.Run("unauthenticated sender in a managed domain", func(t *testing.T) {
		out, err := swaks(t, w.router, "--server", mx, "--from", "ceo@example.test", "--to", "alice@example.test")
		if err == nil || !strings.Contains(out, "<** 550 5.7.1") {
			t.Errorf("spoofed local sender accepted:\n%s", out)
		}
	})

	t.Run("submission with AUTH over TLS only", func(t *testing.T) {
		out := mustSwaks(t, w.router, "--server", "10.77.0.2:587", "--tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "secret",
			"--from", "alice@example.test", "--to", "y@partner.test", "--header", "Message-ID: <sub1@test>")
		if !strings.Contains(out, "<~  235") {
			t.Errorf("no 235 after AUTH:\n%s", out)
		}
		d := waitDump(t, partnerSink, 30*time.Second, "<sub1@test>")
		if !strings.Contains(d, "with ESMTPSA id") {
			t.Errorf("Received header does not say ESMTPSA:\n%s", d)
		}
		mustSwaks(t, w.router, "--server", "10.77.0.2:465", "--tlsc", "--auth", "LOGIN", "--auth-user", "alice", "--auth-password", "secret",
			"--from", "alice@example.test", "--to", "y@partner.test", "--header", "Message-ID: <sub2@test>")
		waitDump(t, partnerSink, 30*time.Second, "<sub2@test>")

		out, err := swaks(t, w.router, "--server", "10.77.0.2:587", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "secret",
			"--from", "alice@example.test", "--to", "y@partner.test")
		if err == nil || strings.Contains(out, " 235 ") {
			t.Errorf("AUTH without TLS succeeded:\n%s", out)
		}
		out, err = swaks(t, w.router, "--server", "10.77.0.2:587", "--tls", "--from", "alice@example.test", "--to", "y@partner.test")
		if err == nil || !strings.Contains(out, " 530 5.7.0") {
			t.Errorf("submission without AUTH accepted:\n%s", out)
		}
		out, err = swaks(t, w.router, "--server", "10.77.0.2:587", "--tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "secret",
			"--from", "boss@example.test", "--to", "y@partner.test")
		if err == nil || !strings.Contains(out, " 553 5.7.1") {
			t.Errorf("alice sent as someone else:\n%s", out)
		}
		out, err = swaks(t, w.router, "--server", "10.77.0.2:587", "--tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "wrong",
			"--from", "alice@example.test", "--to", "y@partner.test")
		if err == nil || !strings.Contains(out, " 535") {
			t.Errorf("wrong password accepted:\n%s", out)
		}
	})

	t.Run("AUTH checked against the internal IMAP server", func(t *testing.T) {
		mustSwaks(t, w.router, "--server", "10.77.0.2:587", "--tls", "--auth", "PLAIN", "--auth-user", "dave@example.test", "--auth-password", "davepass",
			"--from", "dave@example.test", "--to", "y@partner.test", "--header", "Message-ID: <imapauth1@test>")
		waitDump(t, partnerSink, 30*time.Second, "<imapauth1@test>")
		out, err := swaks(t, w.router, "--server", "10.77.0.2:587", "--tls", "--auth", "PLAIN", "--auth-user", "dave@example.test", "--auth-password", "wrong",
			"--from", "dave@example.test", "--to", "y@partner.test")
		if err == nil || !strings.Contains(out, " 535") {
			t.Errorf("a wrong IMAP password was accepted:\n%s", out)
		}
		out, err = swaks(t, w.router, "--server", "10.77.0.2:587", "--tls", "--auth", "PLAIN", "--auth-user", "dave@example.test", "--auth-password", "davepass",
			"--from", "alice@example.test", "--to", "y@partner.test")
		if err == nil || !strings.Contains(out, " 553 5.7.1") {
			t.Errorf("dave sent as alice:\n%s", out)
		}
	})

	t.Run("header rule routes to its connector over verified TLS", func(t *testing.T) {
		mustSwaks(t, w.intl, inside("--from", "bob@example.test", "--to", "z@partner.test", "--header", "X-CS-Sensitivity: Confidential",
			"--header", "Message-ID: <rule1@test>")...)
		d := waitDump(t, smartSink, 30*time.Second, "<rule1@test>")
		if !strings.Contains(d, "(using TLSv1.3") && !strings.Contains(d, "(using TLSv1.2") {
			t.Errorf("the smart host did not receive it over TLS:\n%s", d)
		}
		noDump(t, partnerSink, "<rule1@test>")
	})

	t.Run("verify refuses an untrusted certificate and keeps the message", func(t *testing.T) {
		mustSwaks(t, w.intl, inside("--from", "bob@example.test", "--to", "u@untrusted.test", "--header", "Message-ID: <untrusted1@test>")...)
		in := w.waitQueued(t, "u@untrusted.test", "certificate not trusted", 30*time.Second)
		if in.Status[0] != "pending" {
			t.Errorf("status %v", in.Status)
		}
		noDump(t, smartSink, "<untrusted1@test>")
	})

	t.Run("deferred while the next hop is down, delivered when it is back", func(t *testing.T) {
		mustSwaks(t, w.intl, inside("--from", "bob@example.test", "--to", "v@later.test", "--header", "Message-ID: <later1@test>")...)
		w.waitQueued(t, "v@later.test", "connection refused", 30*time.Second)
		laterSink := w.sink(t, w.smart, "10.99.0.1:2600")
		waitDump(t, laterSink, 30*time.Second, "<later1@test>") // the retry, after min_backoff
	})

	t.Run("5xx from the next hop bounces at once", func(t *testing.T) {
		mustSwaks(t, w.intl, inside("--from", "bob@example.test", "--to", "w@reject.test", "--header", "Message-ID: <reject1@test>")...)
		d := waitDump(t, intlSink, 30*time.Second, "X-Rcpt-Args: <bob@example.test>", "Final-Recipient: rfc822; w@reject.test")
		for _, s := range []string{"X-Mail-Args: <>", "multipart/report; report-type=delivery-status", "Action: failed", "Status: 5.", "<reject1@test>"} {
			if !strings.Contains(d, s) {
				t.Errorf("DSN lacks %q:\n%s", s, d)
			}
		}
		if len(dumps(rejectSink)) != 0 {
			t.Error("the rejecting sink stored a message")
		}
	})

	t.Run("queue lifetime ends in a DSN", func(t *testing.T) {
		mustSwaks(t, w.intl, inside("--from", "bob@example.test", "--to", "d@dead.test", "--header", "Message-ID: <dead1@test>")...)
		w.waitQueued(t, "d@dead.test", "connection refused", 30*time.Second)
		d := waitDump(t, intlSink, 90*time.Second, "Final-Recipient: rfc822; d@dead.test")
		if !strings.Contains(d, "expired") || !strings.Contains(d, "Action: failed") {
			t.Errorf("DSN:\n%s", d)
		}
	})

	t.Run("bare LF smuggling is refused", func(t *testing.T) {
		s := dialSMTP(t, w.router, mx)
		for _, c := range []string{"EHLO attacker.test\r\n", "MAIL FROM:<a@partner.test>\r\n", "RCPT TO:<alice@example.test>\r\n", "DATA\r\n"} {
			if r := s.send(t, c); !strings.HasPrefix(r, "2") && !strings.HasPrefix(r, "354") {
				t.Fatalf("%q: %s", c, r)
			}
		}
		r := s.send(t, "Subject: innocent\r\n\r\nhello\n.\r\nMAIL FROM:<a@partner.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n")
		if !strings.HasPrefix(r, "521 5.5.2") {
			t.Errorf("reply %q, want 521 5.5.2", r)
		}
		if r := s.reply(t); r != "EOF" {
			t.Errorf("connection not closed after the smuggling attempt: %q", r)
		}
		time.Sleep(2 * time.Second)
		noDump(t, intlSink, "smuggled")
		noDump(t, intlSink, "innocent")
	})

	t.Run("bad input gets the documented replies", func(t *testing.T) {
		// A client that sends one byte per second is served; the others
		// are not held up by it.
		slow := make(chan string, 1)
		go func() {
			s := dialSMTP(t, w.router, mx)
			for _, b := range []byte("EHLO slow\r\n") {
				s.c.Write([]byte{b})
				time.Sleep(time.Second)
			}
			slow <- s.reply(t)
		}()
		s := dialSMTP(t, w.router, mx)
		if r := s.send(t, "FROB nicate\r\n"); !strings.HasPrefix(r, "500 5.5.2") {
			t.Errorf("garbage command: %q", r)
		}
		if r := s.send(t, "MAIL FROM:<a@partner.test>\r\n"); !strings.HasPrefix(r, "502 5.5.1") {
			t.Errorf("MAIL before EHLO: %q", r)
		}
		s.send(t, "EHLO client.test\r\n")
		if r := s.send(t, "MAIL FROM:<a@partner.test> SIZE=5000000\r\n"); !strings.HasPrefix(r, "552 5.3.4") {
			t.Errorf("announced oversize: %q", r)
		}
		s.send(t, "MAIL FROM:<a@partner.test>\r\n")
		s.send(t, "RCPT TO:<alice@example.test>\r\n")
		s.send(t, "DATA\r\n")
		big := strings.Repeat(strings.Repeat("x", 998)+"\r\n", 1100) // > 1 MiB
		if r := s.send(t, "Subject: big\r\n\r\n"+big+".\r\n"); !strings.HasPrefix(r, "552 5.3.4") {
			t.Errorf("oversized message: %q", r)
		}
		s2 := dialSMTP(t, w.router, mx)
		s2.send(t, "EHLO client.test\r\n")
		s2.send(t, "MAIL FROM:<a@partner.test>\r\n")
		s2.send(t, "RCPT TO:<alice@example.test>\r\n")
		s2.send(t, "DATA\r\n")
		if r := s2.send(t, "Subject: long\r\n\r\n"+strings.Repeat("y", 5000)+"\r\n.\r\n"); !strings.HasPrefix(r, "500 5.4.0") {
			t.Errorf("overlong line: %q", r)
		}
		mustSwaks(t, w.router, "--server", mx, "--from", "someone@partner.test", "--to", "alice@example.test", "--header", "Message-ID: <during-slow@test>")
		select {
		case r := <-slow:
			if !strings.HasPrefix(r, "250 ") {
				t.Errorf("slow client's EHLO: %q", r)
			}
		case <-time.After(60 * time.Second):
			t.Error("slow client got no answer")
		}
		waitDump(t, intlSink, 30*time.Second, "<during-slow@test>")
		noDump(t, intlSink, "Subject: big")
		noDump(t, intlSink, "Subject: long")
	})

	t.Run("queue, status and POP-before-SMTP through the CLI", func(t *testing.T) {
		st, err := w.status(t)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, s := range st.Services {
			if s.Name == "smtp" && s.Phase == "running" {
				found = true
				if !strings.Contains(s.Status, "queue ") {
					t.Errorf("smtp status line %q", s.Status)
				}
			}
		}
		if !found {
			t.Errorf("no running smtp service in %+v", st.Services)
		}
		// The internet client may relay for a while after its POP login.
		if out, err := swaks(t, w.router, "--server", mx, "--from", "someone@partner.test", "--to", "p@partner.test"); err == nil {
			t.Fatalf("relay before the POP login:\n%s", out)
		}
		if out, err := gatehouseCmd(t, w.netWorld, "smtp", "pop-auth", "10.77.0.1"); err != nil {
			t.Fatalf("pop-auth: %v: %s", err, out)
		}
		mustSwaks(t, w.router, "--server", mx, "--from", "someone@partner.test", "--to", "p@partner.test", "--header", "Message-ID: <pop1@test>")
		waitDump(t, partnerSink, 30*time.Second, "<pop1@test>")

		mustSwaks(t, w.intl, inside("--from", "bob@example.test", "--to", "u2@untrusted.test")...)
		id := w.waitQueued(t, "u2@untrusted.test", "certificate not trusted", 30*time.Second).ID
		for _, verb := range []string{"hold", "release"} {
			if out, err := gatehouseCmd(t, w.netWorld, "queue", verb, id); err != nil {
				t.Errorf("queue %s: %v: %s", verb, err, out)
			}
		}
		out, err := gatehouseCmd(t, w.netWorld, "queue", "list")
		if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "Request") {
			t.Errorf("queue list: %v\n%s", err, out)
		}
		if out, err := gatehouseCmd(t, w.netWorld, "queue", "delete", id); err != nil {
			t.Errorf("queue delete: %v: %s", err, out)
		}
		if out, err := gatehouseCmd(t, w.netWorld, "queue", "show", id); err == nil {
			t.Errorf("deleted message still shown: %s", out)
		}
	})
}

// applianceSink runs smtp-sink on 127.0.0.1:2526 in the appliance's
// namespace, dumping each message into the returned directory.
func applianceSink(t *testing.T, w *netWorld) string {
	t.Helper()
	sink := filepath.Join(w.dir, "sink")
	os.MkdirAll(sink, 0o755)
	w.start(t, w.appl, "sink.log", "smtp-sink", "-u", "root", "-d", sink+"/m.", "127.0.0.1:2526", "16")
	waitGreeting(t, w.appl, "127.0.0.1", "2526")
	return sink
}

// The relay starts when a reload brings its section, and stops listening
// when a reload removes it.
func TestSMTPTurnedOnAndOffByReload(t *testing.T) {
	w := newNetWorld(t)
	sink := applianceSink(t, w)
	w.gatehouse(t, "hostname: gw\n")
	relay := `
hostname: gw
smtp:
  hostname: mx.example.test
  listen: {smtp: "127.0.0.1:2525", submission: "off", smtps: "off"}
  domains:
    - {name: example.test, next_hop: "[127.0.0.1]:2526", tls: none}
`
	w.config(t, relay)
	if out, err := gatehouseCmd(t, w, "config", "reload"); err != nil {
		t.Fatalf("reload: %v: %s", err, out)
	}
	w.waitFor(t, "smtp running", 30*time.Second, func(st *control.Status) bool {
		for _, s := range st.Services {
			if s.Name == "smtp" && s.Phase == "running" {
				return true
			}
		}
		return false
	})
	mustSwaks(t, w.appl, "--server", "127.0.0.1:2525", "--from", "a@partner.test", "--to", "u@example.test", "--header", "Message-ID: <on1@test>")
	waitDump(t, sink, 30*time.Second, "<on1@test>")

	w.config(t, "hostname: gw\n")
	if out, err := gatehouseCmd(t, w, "config", "reload"); err != nil {
		t.Fatalf("reload: %v: %s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := swaks(t, w.appl, "--server", "127.0.0.1:2525", "--from", "a@partner.test", "--to", "u@example.test"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the relay still accepts mail after its section was removed")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// With a greet pause, a client on port 25 that talks before the banner
// (as spam engines do) is refused at MAIL; one that waits is served.
func TestSMTPGreetPauseCatchesEarlyTalkers(t *testing.T) {
	w := newNetWorld(t)
	sink := applianceSink(t, w)
	w.gatehouse(t, `
hostname: gw
interfaces:
  - {name: a0, addresses: [10.77.0.2/24]}
smtp:
  hostname: mx.example.test
  greet_pause: 2s
  listen: {smtp: "10.77.0.2:25", submission: "off", smtps: "off"}
  trusted_networks: [127.0.0.0/8]
  domains:
    - {name: example.test, next_hop: "[127.0.0.1]:2526", tls: none}
`)
	waitGreeting(t, w.appl, "10.77.0.2", "25")

	// The early talker: EHLO and MAIL at once, before any banner.
	var c net.Conn
	inNS(t, w.router, func() {
		var err error
		if c, err = net.DialTimeout("tcp", "10.77.0.2:25", 10*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	defer c.Close()
	s := &rawSMTP{c: c, r: bufio.NewReader(c)}
	c.Write([]byte("EHLO bot.test\r\nMAIL FROM:<a@partner.test>\r\n"))
	if l := s.reply(t); !strings.HasPrefix(l, "220 ") {
		t.Fatalf("greeting %q", l)
	}
	if l := s.reply(t); !strings.HasPrefix(l, "250 ") {
		t.Fatalf("EHLO: %q", l)
	}
	if l := s.reply(t); !strings.HasPrefix(l, "503 ") {
		t.Errorf("MAIL from an early talker: %q, want 503", l)
	}

	// A client that waits for the banner is served after the pause.
	start := time.Now()
	mustSwaks(t, w.router, "--server", "10.77.0.2:25", "--from", "a@partner.test", "--to", "u@example.test", "--header", "Message-ID: <polite@test>")
	t.Logf("a polite client's message was accepted %v after connecting", time.Since(start).Round(time.Millisecond))
	waitDump(t, sink, 30*time.Second, "<polite@test>")
	w.logShows("rejected: client spoke before the greeting")
	if n := strings.Count(w.log("gatehouse.log"), "rejected: client spoke before the greeting"); n != 1 {
		t.Errorf("%d early-talker rejections logged, want 1", n)
	}
}
