package smtpd

import (
	"bufio"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"gatehouse/config"
	"gatehouse/mailmsg"
	"gatehouse/queue"
)

const testConfig = `
hostname: gw
smtp:
  hostname: mx.example.com
  domains:
    - {name: example.com, next_hop: "[10.0.0.5]:25"}
    - {name: corp.example, subdomains: true, next_hop: "[10.0.0.6]:25", recipients: [alice, bob@corp.example]}
  trusted_networks: [10.0.0.0/8, 192.168.0.1-50]
  users:
    - {login: carol, password_hash: "$2a$10$w5Y5j7XPMHTKUuGMWDLN0Oy7N919.rBKI14pnF5RdkLqnSduj6WUq", addresses: [carol@example.com]}
  pop_before_smtp: {window: 10m}
  local_sender_exceptions: [newsletter@example.com]
  connectors:
    - {name: cmg, smarthost: "[cmg.example.com]:25", tls: verify}
    - {name: m365, smarthost: "[smtp.office365.com]:587", tls: secure}
  inbound_connectors:
    - {name: tenant, networks: [40.92.0.0/15], require_header: {name: X-Tenant, value: "42"}}
    - {name: partner, tls_client_subject: relay.partner.example}
  transport:
    - {domain: partner.example, subdomains: true, connector: m365}
  rules:
    - {header: X-CS-Sensitivity, contains: confidential, connector: cmg}
`

func testPolicy(t *testing.T) (*Policy, *PopAuth) {
	t.Helper()
	c, errs, err := config.Parse("t.yaml", []byte(testConfig))
	if err != nil || len(errs) > 0 {
		t.Fatalf("config: %v %v", err, errs)
	}
	pop := NewPopAuth()
	return NewPolicy(c.SMTP, nil, pop, nil, slog.New(slog.NewTextHandler(io.Discard, nil))), pop
}

func addr(t *testing.T, s string) mailmsg.Address {
	t.Helper()
	a, err := mailmsg.ParseAddress(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return a
}

func TestRelayDecisions(t *testing.T) {
	p, pop := testPolicy(t)
	stranger := Client{Addr: netip.MustParseAddr("203.0.113.9"), Listener: "smtp"}
	trusted := Client{Addr: netip.MustParseAddr("10.1.2.3"), Listener: "smtp"}
	ranged := Client{Addr: netip.MustParseAddr("192.168.0.50"), Listener: "smtp"}
	outOfRange := Client{Addr: netip.MustParseAddr("192.168.0.51"), Listener: "smtp"}
	authed := Client{Addr: netip.MustParseAddr("203.0.113.10"), Listener: "submission", TLS: true, Login: "carol"}
	tenant := Client{Addr: netip.MustParseAddr("40.93.1.1"), Listener: "smtp"}
	popper := Client{Addr: netip.MustParseAddr("198.51.100.4"), Listener: "smtp"}
	pop.Add(popper.Addr)
	certified := Client{Addr: netip.MustParseAddr("198.51.100.99"), Listener: "smtp", TLS: true, TLSSubject: "relay.partner.example"}
	otherCert := Client{Addr: netip.MustParseAddr("198.51.100.99"), Listener: "smtp", TLS: true, TLSSubject: "mallory.example"}

	cases := []struct {
		name   string
		c      Client
		to     string
		code   int // 0: accepted
		route  string
		inside bool
	}{
		{"managed from anyone", stranger, "someone@example.com", 0, "domain:example.com", false},
		{"managed, case folded", stranger, "Someone@EXAMPLE.com", 0, "domain:example.com", false},
		{"sub-domain not managed without the option", stranger, "x@sub.example.com", 554, "", false},
		{"sub-domain managed with the option", stranger, "alice@eu.corp.example", 0, "domain:corp.example", false},
		{"recipient list: listed local part", stranger, "alice@corp.example", 0, "domain:corp.example", false},
		{"recipient list: listed address", stranger, "bob@corp.example", 0, "domain:corp.example", false},
		{"recipient list: unknown user", stranger, "mallory@corp.example", 550, "", false},
		{"relay denied to a stranger", stranger, "x@elsewhere.example", 554, "", false},
		{"percent hack", stranger, "x%elsewhere.example@example.com", 554, "", false},
		{"bang path", stranger, "elsewhere.example!x@example.com", 554, "", false},
		{"quoted embedded address", stranger, "x@elsewhere.example@example.com", 554, "", false},
		{"address literal", stranger, "x@[192.0.2.1]", 554, "", false},
		{"trusted network relays by MX", trusted, "x@elsewhere.example", 0, "mx:elsewhere.example", true},
		{"range start..50 trusted", ranged, "x@elsewhere.example", 0, "mx:elsewhere.example", true},
		{"outside the range", outOfRange, "x@elsewhere.example", 554, "", false},
		{"transport table", trusted, "x@eu.partner.example", 0, "connector:m365", true},
		{"authenticated user relays", authed, "x@elsewhere.example", 0, "mx:elsewhere.example", true},
		{"POP-before-SMTP", popper, "x@elsewhere.example", 0, "mx:elsewhere.example", true},
		{"inbound connector (header checked at DATA)", tenant, "x@elsewhere.example", 0, "mx:elsewhere.example", true},
		{"connector by verified client certificate", certified, "x@elsewhere.example", 0, "mx:elsewhere.example", true},
		{"another client certificate", otherCert, "x@elsewhere.example", 554, "", false},
		{"trusted may use odd local parts", trusted, "x%y@elsewhere.example", 0, "mx:elsewhere.example", true},
	}
	for _, c := range cases {
		d, err := p.CheckRcpt(c.c, addr(t, c.to))
		switch {
		case c.code == 0 && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.code != 0 && (err == nil || err.Code != c.code):
			t.Errorf("%s: got %v, want %d", c.name, err, c.code)
		case c.code == 0 && (d.Route.String() != c.route || d.Inside != c.inside):
			t.Errorf("%s: route %q inside %v, want %q %v", c.name, d.Route.String(), d.Inside, c.route, c.inside)
		}
	}
	if d, _ := p.CheckRcpt(tenant, addr(t, "x@elsewhere.example")); d.Connector == nil || d.Connector.name != "tenant" {
		t.Error("the tenant connector's header requirement is not carried to DATA")
	}

	pop.now = func() time.Time { return time.Now().Add(11 * time.Minute) }
	if _, err := p.CheckRcpt(popper, addr(t, "x@elsewhere.example")); err == nil {
		t.Error("POP-before-SMTP authorisation outlived its window")
	}
}

// Allow lists fail closed: a host name that resolved to nothing (DNS down
// at boot, a name that does not exist) matches no one. A connector whose
// networks are all such names once matched every client.
func TestUnresolvedNamesMatchNoOne(t *testing.T) {
	c, errs, err := config.Parse("t.yaml", []byte(`
smtp:
  hostname: mx.example.com
  domains: [{name: example.com, next_hop: "[10.0.0.5]:25"}]
  trusted_networks: [exchange.example.com]
  inbound_connectors:
    - {name: partner, networks: [gone.example, relay.partner.example]}
`))
	if err != nil || len(errs) > 0 {
		t.Fatalf("config: %v %v", err, errs)
	}
	if got, want := HostNames(c.SMTP), []string{"exchange.example.com", "gone.example", "relay.partner.example"}; !slices.Equal(got, want) {
		t.Errorf("HostNames %v, want %v", got, want)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	foreign := addr(t, "x@elsewhere.example")
	for _, a := range []string{"203.0.113.9", "10.0.0.7", "::1", "127.0.0.1"} {
		cl := Client{Addr: netip.MustParseAddr(a), Listener: "smtp"}
		if d, err := NewPolicy(c.SMTP, nil, nil, nil, log).CheckRcpt(cl, foreign); err == nil || err.Code != 554 {
			t.Errorf("nothing resolved: %s relays (route %q)", a, d.Route)
		}
	}
	// Resolved: exactly the addresses the names have.
	p := NewPolicy(c.SMTP, map[string][]netip.Addr{
		"exchange.example.com":  {netip.MustParseAddr("10.0.0.7")},
		"relay.partner.example": {netip.MustParseAddr("198.51.100.20")},
	}, nil, nil, log)
	for a, want := range map[string]string{"10.0.0.7": "trusted", "198.51.100.20": "connector:partner", "203.0.113.9": ""} {
		if got, _ := p.relayReason(Client{Addr: netip.MustParseAddr(a)}); got != want {
			t.Errorf("%s: relay reason %q, want %q", a, got, want)
		}
	}
}

func TestSenderChecks(t *testing.T) {
	p, _ := testPolicy(t)
	stranger := Client{Addr: netip.MustParseAddr("203.0.113.9"), Listener: "smtp"}
	trusted := Client{Addr: netip.MustParseAddr("10.1.2.3"), Listener: "smtp"}
	sub := Client{Addr: netip.MustParseAddr("203.0.113.9"), Listener: "submission", TLS: true}
	carol := Client{Addr: netip.MustParseAddr("203.0.113.9"), Listener: "submission", TLS: true, Login: "carol"}
	cases := []struct {
		name string
		c    Client
		from string
		code int
	}{
		{"stranger with a foreign sender", stranger, "x@elsewhere.example", 0},
		{"stranger with the null sender", stranger, "", 0},
		{"stranger claiming a local sender", stranger, "ceo@example.com", 550},
		{"stranger claiming a local sub-domain sender", stranger, "ceo@eu.corp.example", 550},
		{"local sender exception", stranger, "newsletter@example.com", 0},
		{"trusted network sends as local", trusted, "ceo@example.com", 0},
		{"submission without AUTH", sub, "carol@example.com", 530},
		{"user sends as herself", carol, "Carol@Example.com", 0},
		{"user sends as someone else", carol, "ceo@example.com", 553},
		{"user sends with the null sender", carol, "", 553},
	}
	for _, c := range cases {
		err := p.CheckSender(c.c, addr(t, c.from))
		if (c.code == 0) != (err == nil) || err != nil && err.Code != c.code {
			t.Errorf("%s: got %v, want %d", c.name, err, c.code)
		}
	}
}

func TestHeaderRules(t *testing.T) {
	p, _ := testPolicy(t)
	raw := "X-CS-Sensitivity: Strictly CONFIDENTIAL\r\nSubject: x\r\n\r\n"
	h, _, err := mailmsg.ReadHeader(bufioReader(raw), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := p.HeaderRoute(h); !ok || r != (queue.Route{Kind: queue.Connector, Name: "cmg"}) {
		t.Errorf("route %v %v", r, ok)
	}
	h, _, _ = mailmsg.ReadHeader(bufioReader("X-CS-Sensitivity: public\r\n\r\n"), 1<<20)
	if r, ok := p.HeaderRoute(h); ok {
		t.Errorf("route %v for a non-matching header", r)
	}
}

func TestAuthenticate(t *testing.T) {
	p, _ := testPolicy(t)
	ok := func(u, pw string) bool { good, err := p.Authenticate(u, pw); return good && err == nil }
	if !ok("carol", "secret") || ok("carol", "Secret") || ok("nobody", "secret") {
		t.Error("bcrypt check wrong")
	}
}

func TestLoginServer(t *testing.T) {
	var got []string
	l := &loginServer{check: func(id, u, pw string) error { got = []string{u, pw}; return nil }}
	ch, done, _ := l.Next(nil)
	if string(ch) != "Username:" || done {
		t.Fatalf("first challenge %q", ch)
	}
	ch, done, _ = l.Next([]byte("carol"))
	if string(ch) != "Password:" || done {
		t.Fatalf("second challenge %q", ch)
	}
	if _, done, err := l.Next([]byte("secret")); !done || err != nil || strings.Join(got, " ") != "carol secret" {
		t.Fatalf("done %v err %v got %v", done, err, got)
	}
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

// The written-out dummy hash costs what a real one does, so a login to an
// unknown user takes as long as a wrong password.
func TestDummyHashCost(t *testing.T) {
	if c, err := bcrypt.Cost(dummyHash); err != nil || c != bcrypt.DefaultCost {
		t.Errorf("dummy hash cost %d (%v), want %d", c, err, bcrypt.DefaultCost)
	}
}
