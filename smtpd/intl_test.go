package smtpd

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"gatehouse/config"
	"gatehouse/mailmsg"
	"gatehouse/queue"
)

// ehlo returns every line of the reply to EHLO.
func (s *rawSession) ehlo() string {
	fmt.Fprintf(s.c, "EHLO client.test\r\n")
	var b strings.Builder
	for {
		l, err := s.r.ReadString('\n')
		b.WriteString(l)
		if err != nil || len(l) < 4 || l[3] != '-' {
			return b.String()
		}
	}
}

func TestSMTPUTF8AndDSNOffered(t *testing.T) {
	const domains = `  domains:
    - {name: bücher.test, next_hop: "[127.0.0.1]:1", recipients: [müller]}
`
	s := dial(t, relay(t, "smtp", domains))
	caps := s.ehlo()
	if !strings.Contains(caps, "250-SMTPUTF8") || !strings.Contains(caps, "DSN") {
		t.Fatalf("EHLO does not offer SMTPUTF8 and DSN:\n%s", caps)
	}
	for _, tc := range []struct{ cmd, want string }{
		{"MAIL FROM:<jörg@outside.test>", "553 5.6.7"}, // UTF-8 needs SMTPUTF8
		{"MAIL FROM:<jörg@outside.test> SMTPUTF8 BODY=8BITMIME", "250 "},
		{"RCPT TO:<müller@xn--bcher-kva.test> NOTIFY=SUCCESS,DELAY ORCPT=utf-8;müller@bücher.test", "250 "},
		{"RCPT TO:<MÜLLER@Bücher.test>", "250 "},
		{"RCPT TO:<anna@bücher.test>", "550 5.1.1"},
		{"RCPT TO:<x@bücher.test> NOTIFY=NEVER,SUCCESS", "501 5.5.4"},
		{`RCPT TO:<müller@bücher.test> ORCPT=utf-8;a\x{1}b@x.test`, "501 5.5.4"}, // go-smtp lets the control through, we do not
		{"RSET", "250 "},
		{"MAIL FROM:<a@outside.test> ENVID=" + strings.Repeat("x", 101), "501 5.5.4"},
		{"MAIL FROM:<a@outside.test> RET=HDRS ENVID=QQ+2B1", "250 "},
		{"RCPT TO:<müller@bücher.test>", "553 5.6.7"}, // no SMTPUTF8 in this transaction
	} {
		if r := s.cmd(tc.cmd); !strings.HasPrefix(r, tc.want) {
			t.Errorf("%s: %q, want %s", tc.cmd, r, tc.want)
		}
	}

	s = dial(t, relay(t, "smtp", domains+"  smtputf8: false\n"))
	if caps := s.ehlo(); strings.Contains(caps, "SMTPUTF8") {
		t.Errorf("smtputf8: false, and EHLO offers it:\n%s", caps)
	}
	if r := s.cmd("MAIL FROM:<a@outside.test> SMTPUTF8"); !strings.HasPrefix(r, "504 5.5.4") {
		t.Errorf("smtputf8: false, MAIL with SMTPUTF8: %q", r)
	}
}

// Every comparison of domains holds for either spelling, in the config
// and in the mail.
func TestInternationalDomainsInThePolicy(t *testing.T) {
	c, errs, err := config.Parse("t.yaml", []byte(`
smtp:
  hostname: mx.example.com
  domains:
    - {name: bücher.example, next_hop: "[10.0.0.5]:25", recipients: [müller, anna@xn--bcher-kva.example]}
  trusted_networks: [10.0.0.0/8]
  local_sender_exceptions: [news@xn--bcher-kva.example]
  connectors:
    - {name: cmg, smarthost: "[cmg.example.com]:25"}
  transport:
    - {domain: xn--mnchen-3ya.example, connector: cmg}
  rules:
    - {header: X-Dest, contains: "@münchen.example", connector: cmg}
`))
	if err != nil || len(errs) > 0 {
		t.Fatalf("config: %v %v", err, errs)
	}
	p := NewPolicy(c.SMTP, nil, NewPopAuth(), nil, slog.New(slog.DiscardHandler))
	outside := Client{Listener: "smtp", Addr: netip.MustParseAddr("192.0.2.1")}
	inside := Client{Listener: "smtp", Addr: netip.MustParseAddr("10.1.2.3")}
	for _, to := range []string{"müller@xn--bcher-kva.example", "Müller@BÜCHER.example", "anna@bücher.example"} {
		d, e := p.CheckRcpt(outside, addr(t, to))
		if e != nil || d.Route != (queue.Route{Kind: queue.Domain, Name: "xn--bcher-kva.example"}) {
			t.Errorf("RCPT TO:<%s>: %v %v", to, d.Route, e)
		}
	}
	if _, e := p.CheckRcpt(outside, addr(t, "bob@bücher.example")); e == nil || e.Code != 550 {
		t.Errorf("an unlisted recipient of a U-label domain: %v", e)
	}
	if e := p.CheckSender(outside, addr(t, "news@bücher.example")); e != nil {
		t.Errorf("the exception in A-labels does not match its U-label spelling: %v", e)
	}
	if e := p.CheckSender(outside, addr(t, "other@xn--bcher-kva.example")); e == nil {
		t.Error("an unauthenticated sender of the managed domain in A-labels was let through")
	}
	for to, want := range map[string]queue.Route{
		"x@münchen.example":       {Kind: queue.Connector, Name: "cmg"},
		"x@straße.example":        {Kind: queue.MX, Name: "xn--strae-oqa.example"}, // the DNS form, for the MX lookup
		"x@xn--strae-oqa.example": {Kind: queue.MX, Name: "xn--strae-oqa.example"},
	} {
		if d, e := p.CheckRcpt(inside, addr(t, to)); e != nil || d.Route != want {
			t.Errorf("route of %s: %v %v, want %v", to, d.Route, e, want)
		}
	}
	for _, v := range []string{"a@xn--mnchen-3ya.example", "a@MÜNCHEN.example", "=?utf-8?q?a@m=C3=BCnchen.example?="} {
		h, _, err := mailmsg.ReadHeader(bufioReader("X-Dest: "+v+"\r\n\r\n"), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if r, ok := p.HeaderRoute(h); !ok || r.Name != "cmg" {
			t.Errorf("header rule for @münchen.example and %q: %v %v", v, r, ok)
		}
	}
}

// FuzzESMTPParams sends MAIL and RCPT with whatever parameters the fuzzer
// makes (go-smtp parses them, the session keeps them): every reply must be
// one well-formed reply, and the session must go on answering.
func FuzzESMTPParams(f *testing.F) {
	for _, seed := range [][2]string{
		{"SMTPUTF8 BODY=8BITMIME RET=HDRS ENVID=QQ+2B1", "NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+2Bb@example.test"},
		{"RET=FULL", `ORCPT=utf-8;m\x{FC}ller@example.test`},
		{"ENVID=" + strings.Repeat("x", 101), "NOTIFY=NEVER"},
		{"SMTPUTF8", `ORCPT=UTF-8;\x{1}@x`},
		{"", "ORCPT=x400;c=de"},
	} {
		f.Add(seed[0], seed[1])
	}
	addr := relay(f, "smtp", `  domains:
    - {name: example.test, next_hop: "[127.0.0.1]:1"}
`)
	f.Fuzz(func(t *testing.T, mailParams, rcptParams string) {
		if strings.ContainsAny(mailParams+rcptParams, "\r\n") {
			return // a line end starts another command, which is not this test
		}
		s := dial(t, addr)
		s.ehlo()
		for _, cmd := range []string{"MAIL FROM:<a@outside.test> " + mailParams, "RCPT TO:<u@example.test> " + rcptParams, "RSET", "NOOP"} {
			r := s.cmd(cmd)
			if strings.HasPrefix(r, "500 5.4.0") {
				return // a line over 2048 octets ends the session, as documented
			}
			if len(r) < 4 || r[0] < '2' || r[0] > '5' || (r[3] != ' ' && len(r) > 3) {
				t.Fatalf("%q: reply %q", cmd, r)
			}
			if cmd == "NOOP" && !strings.HasPrefix(r, "250") {
				t.Fatalf("the session did not go on: NOOP got %q", r)
			}
		}
	})
}
