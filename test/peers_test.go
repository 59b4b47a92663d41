//go:build e2e

package test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/beevik/ntp"
	"github.com/miekg/dns"
)

// A peer is ready when it answers as its protocol says, not when some time
// has passed: these helpers ask it, retrying until a deadline that only
// bounds a hung peer, and fail naming the peer and the last error.
const peerTimeout = 30 * time.Second

// askUntil calls ask inside ns until it succeeds or the deadline passes.
func askUntil(t *testing.T, ns, what string, ask func() error) {
	t.Helper()
	deadline := time.Now().Add(peerTimeout)
	var err error
	for {
		inNS(t, ns, func() { err = ask() })
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer within %v: %v", what, peerTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// greetings says which greeting each of the tests' mail ports sends, and
// whether it is sent inside TLS.
func greeting(port string) (prefix string, implicitTLS bool) {
	switch port {
	case "143":
		return "* OK", false
	case "993":
		return "* OK", true
	case "110":
		return "+OK", false
	case "995":
		return "+OK", true
	case "465":
		return "220", true
	}
	return "220", false // SMTP: 25, 587 and the tests' own ports
}

// waitGreeting waits until the mail server on host:port in ns greets a new
// connection (SMTP 220, IMAP "* OK", POP3 "+OK"; through TLS on 465, 993
// and 995).
func waitGreeting(t *testing.T, ns, host, port string) {
	t.Helper()
	want, implicitTLS := greeting(port)
	addr := net.JoinHostPort(host, port)
	askUntil(t, ns, "the server on "+addr+" in "+ns, func() error {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		// A greet pause holds the banner back a few seconds.
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if implicitTLS {
			tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true}) // only asking whether it is up
			if err := tc.Handshake(); err != nil {
				return err
			}
			c = tc
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return fmt.Errorf("no greeting: %w", err)
		}
		if !strings.HasPrefix(line, want) {
			return fmt.Errorf("greeting %q, want %q", strings.TrimSpace(line), want)
		}
		return nil
	})
}

// waitDNS waits until the DNS server at server:53, asked from ns, answers
// a query (any answer: a name it does not know is an answer too).
func waitDNS(t *testing.T, ns, server string) {
	t.Helper()
	askUntil(t, ns, "the DNS server "+server, func() error {
		m := new(dns.Msg)
		m.SetQuestion("peer-ready.gatehouse.test.", dns.TypeA)
		_, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, net.JoinHostPort(server, "53"))
		return err
	})
}

// waitNTP waits until the NTP server answers a client request from ns.
func waitNTP(t *testing.T, ns, server string) {
	t.Helper()
	askUntil(t, ns, "the NTP server "+server, func() error {
		_, err := ntp.QueryWithOptions(server, ntp.QueryOptions{Timeout: 2 * time.Second})
		return err
	})
}
