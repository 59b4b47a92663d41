//go:build e2e

package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gatehouse/control"
)

const intlConfig = `
hostname: gw
dns: {servers: [10.77.0.1]}
smtp:
  hostname: mx.example.test
  domains:
    - {name: example.test, next_hop: "[10.88.0.1]:25", tls: none}
  trusted_networks: [10.88.0.0/24]
  connectors:
    - {name: pf, smarthost: "[10.99.0.1]:2528", tls: none}     # Postfix: SMTPUTF8 and DSN, holds what it takes
    - {name: plain, smarthost: "[10.99.0.1]:2531", tls: none}  # smtp-sink -N: neither SMTPUTF8 nor DSN
    - {name: dsn, smarthost: "[10.99.0.1]:2532", tls: none}    # smtp-sink: DSN, no SMTPUTF8
    - {name: refuse, smarthost: "[10.99.0.1]:2533", tls: none} # smtp-sink refusing every RCPT
    - {name: later, smarthost: "[10.99.0.1]:2534", tls: none}  # nothing listens until the test says so
  transport:
    - {domain: utf8.test, connector: pf}
    - {domain: bücher.test, connector: plain}
    - {domain: plain.test, connector: plain}
    - {domain: dsn.test, connector: dsn}
    - {domain: refuse.test, connector: refuse}
    - {domain: later.test, connector: later}
  queue: {lifetime: 1h, min_backoff: 1s, max_backoff: 2s}
`

// TestSMTPUTF8AndDSN sends internationalised mail and DSN requests through
// the relay to a real Postfix (which offers both extensions) and to
// smtp-sink (which offers DSN or nothing, and never SMTPUTF8), and reads
// the notifications the relay sends back to the sender's MX.
func TestSMTPUTF8AndDSN(t *testing.T) {
	w := newMailWorld(t)
	w.smarthost(t, "10.99.0.1:2528/inet=10.99.0.1:2528 inet n - n - - smtpd -o {smtpd_client_restrictions = check_client_access static:HOLD}")
	plain := w.sink(t, w.smart, "10.99.0.1:2531", "-N")
	dsn := w.sink(t, w.smart, "10.99.0.1:2532")
	w.sink(t, w.smart, "10.99.0.1:2533", "-f", "RCPT")
	partner := w.sink(t, w.router, "10.77.0.25:25") // sender@partner.test's MX: the DSNs
	w.gatehouse(t, intlConfig)

	// send runs one transaction from the inside with exactly these
	// commands; every reply must be 250 (354 for DATA).
	send := func(t *testing.T, mail string, rcpts []string, msg string) {
		t.Helper()
		c := dialSMTP(t, w.intl, "10.88.0.2:25")
		if r := c.send(t, "EHLO client.example.test\r\n"); !strings.HasPrefix(r, "250 ") {
			t.Fatalf("EHLO: %s", r)
		}
		if r := c.send(t, "MAIL FROM:"+mail+"\r\n"); !strings.HasPrefix(r, "250 ") {
			t.Fatalf("MAIL FROM:%s: %s", mail, r)
		}
		for _, rc := range rcpts {
			if r := c.send(t, "RCPT TO:"+rc+"\r\n"); !strings.HasPrefix(r, "250 ") {
				t.Fatalf("RCPT TO:%s: %s", rc, r)
			}
		}
		if r := c.send(t, "DATA\r\n"); !strings.HasPrefix(r, "354 ") {
			t.Fatalf("DATA: %s", r)
		}
		if r := c.send(t, strings.ReplaceAll(msg, "\n", "\r\n")+".\r\n"); !strings.HasPrefix(r, "250 ") {
			t.Fatalf("end of data: %s", r)
		}
		c.send(t, "QUIT\r\n")
	}

	t.Run("UTF-8 addresses without SMTPUTF8 are refused", func(t *testing.T) {
		c := dialSMTP(t, w.intl, "10.88.0.2:25")
		c.send(t, "EHLO client.example.test\r\n")
		if r := c.send(t, "MAIL FROM:<jörg@partner.test>\r\n"); !strings.HasPrefix(r, "553 5.6.7 ") {
			t.Errorf("MAIL FROM a UTF-8 address without SMTPUTF8: %s", r)
		}
		c.send(t, "MAIL FROM:<sender@partner.test>\r\n")
		if r := c.send(t, "RCPT TO:<müller@utf8.test>\r\n"); !strings.HasPrefix(r, "553 5.6.7 ") {
			t.Errorf("RCPT TO a UTF-8 address without SMTPUTF8: %s", r)
		}
	})

	t.Run("SMTPUTF8 to Postfix arrives intact", func(t *testing.T) {
		send(t, "<jörg@partner.test> SMTPUTF8 BODY=8BITMIME ENVID=utf-env-1", []string{"<müller@utf8.test> NOTIFY=SUCCESS,FAILURE ORCPT=utf-8;müller@utf8.test"},
			"From: Jörg <jörg@partner.test>\nTo: Müller <müller@utf8.test>\nSubject: Grüße aus Köln\nMessage-ID: <utf1@test>\n\nHällo, wie geht's?\n")
		msg := w.postfixHeld(t, "müller@utf8.test")
		for _, want := range []string{"sender: jörg@partner.test", "recipient: müller@utf8.test", "Subject: Grüße aus Köln", "Hällo, wie geht's?",
			"by smarthost.test (Postfix) with UTF8SMTP", "envelope_id=utf-env-1", "dsn_orig_rcpt=utf-8;müller@utf8.test"} {
			if !strings.Contains(msg, want) {
				t.Errorf("Postfix's queue file lacks %q:\n%s", want, msg)
			}
		}
	})

	t.Run("a next hop without SMTPUTF8: 5.6.7 and an internationalised DSN", func(t *testing.T) {
		send(t, "<sender@partner.test> SMTPUTF8", []string{"<müller@plain.test>"}, "Subject: Grüße utf2\n\nx\n")
		d := waitDump(t, partner, 60*time.Second, "utf2", "Status: 5.6.7")
		for _, want := range []string{"message/global-delivery-status", "Final-Recipient: utf-8; müller@plain.test", "Action: failed", "X-Rcpt-Args: <sender@partner.test>"} {
			if !strings.Contains(d, want) {
				t.Errorf("the DSN lacks %q:\n%s", want, d)
			}
		}
		noDump(t, plain, "utf2")
	})

	t.Run("an ASCII message to a U-label domain goes as A-labels", func(t *testing.T) {
		send(t, "<sender@partner.test> SMTPUTF8", []string{"<user@bücher.test>"}, "Subject: alabel3\n\nx\n")
		d := waitDump(t, plain, 60*time.Second, "alabel3")
		if !strings.Contains(d, "<user@xn--bcher-kva.test>") || strings.Contains(d, "SMTPUTF8") {
			t.Errorf("not sent as plain SMTP with A-labels:\n%s", d)
		}
	})

	t.Run("NOTIFY=SUCCESS to a next hop without DSN: a relayed DSN", func(t *testing.T) {
		send(t, "<sender@partner.test> ENVID=env-relayed-4", []string{"<a@plain.test> NOTIFY=SUCCESS ORCPT=rfc822;orig+2Ba@example.org"}, "Subject: relayed4\n\nx\n")
		waitDump(t, plain, 60*time.Second, "relayed4")
		d := waitDump(t, partner, 60*time.Second, "env-relayed-4", "Action: relayed")
		for _, want := range []string{"Status: 2.0.0", "Original-Recipient: rfc822;orig+a@example.org", "Final-Recipient: rfc822; a@plain.test"} {
			if !strings.Contains(d, want) {
				t.Errorf("the DSN lacks %q:\n%s", want, d)
			}
		}
	})

	t.Run("a next hop with DSN gets the parameters and the duty", func(t *testing.T) {
		send(t, "<sender@partner.test> RET=HDRS ENVID=env-5", []string{"<b@dsn.test> NOTIFY=SUCCESS ORCPT=rfc822;b@dsn.test"}, "Subject: dsn5\n\nx\n")
		d := waitDump(t, dsn, 60*time.Second, "dsn5")
		for _, want := range []string{"RET=HDRS", "ENVID=env-5", "NOTIFY=SUCCESS", "ORCPT=rfc822;b@dsn.test"} {
			if !strings.Contains(d, want) {
				t.Errorf("the next hop was not given %q:\n%s", want, d)
			}
		}
	})

	t.Run("RET=HDRS quotes the header, RET=FULL the message", func(t *testing.T) {
		send(t, "<sender@partner.test> RET=HDRS ENVID=env-7", []string{"<d@refuse.test> NOTIFY=FAILURE"}, "Subject: hdrs7\n\nsecret-body-7\n")
		send(t, "<sender@partner.test> RET=FULL ENVID=env-8", []string{"<d@refuse.test>"}, "Subject: full8\n\nfull-body-8\n")
		d := waitDump(t, partner, 60*time.Second, "Original-Envelope-Id: env-7")
		if !strings.Contains(d, "Subject: hdrs7") || strings.Contains(d, "secret-body-7") {
			t.Errorf("RET=HDRS: the DSN must quote the header and only it:\n%s", d)
		}
		d = waitDump(t, partner, 60*time.Second, "Original-Envelope-Id: env-8")
		if !strings.Contains(d, "full-body-8") || !strings.Contains(d, "message/rfc822") {
			t.Errorf("RET=FULL: the DSN must return the message:\n%s", d)
		}
	})

	t.Run("NOTIFY=NEVER: no bounce", func(t *testing.T) {
		send(t, "<sender@partner.test> ENVID=env-never-6", []string{"<c@refuse.test> NOTIFY=NEVER"}, "Subject: never6\n\nx\n")
	})

	t.Run("the parameters survive kill -9", func(t *testing.T) {
		send(t, "<sender@partner.test> SMTPUTF8 RET=HDRS ENVID=env-9", []string{"<e@later.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;e-orig@example.org"}, "Subject: kill9\n\nx\n")
		w.waitQueued(t, "e@later.test", "10.99.0.1", 60*time.Second)
		w.killService(t, "smtp")
		later := w.sink(t, w.smart, "10.99.0.1:2534")
		if out, err := gatehouseCmd(t, w.netWorld, "queue", "flush"); err != nil {
			t.Fatalf("queue flush: %v: %s", err, out)
		}
		d := waitDump(t, later, 60*time.Second, "kill9")
		for _, want := range []string{"RET=HDRS", "ENVID=env-9", "NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;e-orig@example.org"} {
			if !strings.Contains(d, want) {
				t.Errorf("after kill -9 the next hop was not given %q:\n%s", want, d)
			}
		}
	})

	// Once the queue is empty every DSN the relay made has been delivered:
	// none may be about what the sender asked to hear nothing of, or what
	// a next hop with DSN took over.
	poll(t, "the relay's queue to empty", 90*time.Second, func() (bool, string) {
		l := w.queueList(t)
		return len(l) == 0, fmt.Sprintf("%+v", l)
	})
	for _, s := range []string{"env-never-6", "env-5", "utf-env-1", "env-9"} {
		noDump(t, partner, s)
	}
}

// postfixHeld waits for a message to rcpt on the smart host's hold queue
// and returns postcat's view of it (run where the instance's addresses
// are, as Postfix wants): envelope records and content.
func (w *mailWorld) postfixHeld(t *testing.T, rcpt string) string {
	t.Helper()
	dir, err := exec.Command("postconf", "-c", w.postfixConf, "-h", "queue_directory").Output()
	if err != nil {
		t.Fatalf("postconf queue_directory: %v", err)
	}
	hold := filepath.Join(strings.TrimSpace(string(dir)), "hold")
	var msg string
	poll(t, "Postfix to hold a message to "+rcpt, 60*time.Second, func() (bool, string) {
		ents, _ := os.ReadDir(hold)
		last := ""
		for _, e := range ents {
			out, err := exec.Command("ip", "netns", "exec", w.smart, "postcat", "-c", w.postfixConf, "-q", e.Name()).CombinedOutput()
			if err == nil && strings.Contains(string(out), "recipient: "+rcpt) {
				msg = string(out)
				return true, ""
			}
			last = fmt.Sprintf("%s: %v\n%s", e.Name(), err, out)
		}
		return false, fmt.Sprintf("%d held; %s", len(ents), last)
	})
	return msg
}

// killService kills a service of the appliance with SIGKILL and waits for
// the supervisor to have it running again.
func (w *netWorld) killService(t *testing.T, name string) {
	t.Helper()
	pidOf := func(st *control.Status) (int, int) {
		for _, s := range st.Services {
			if s.Name == name {
				return s.PID, s.Restarts
			}
		}
		return 0, 0
	}
	st := w.waitFor(t, name+" running", 20*time.Second, func(st *control.Status) bool {
		pid, _ := pidOf(st)
		return pid > 0 && serviceRunning(st, name)
	})
	pid, restarts := pidOf(st)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s (%d): %v", name, pid, err)
	}
	w.waitFor(t, name+" restarted", 30*time.Second, func(st *control.Status) bool {
		_, r := pidOf(st)
		return r > restarts && serviceRunning(st, name)
	})
}
