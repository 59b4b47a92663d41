//go:build e2e

package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"gatehouse/control"
	"gatehouse/status"
)

// An inbound connector whose networks are host names relays for no one
// while they do not resolve: at boot with DNS down, and after DNS answers
// that the name does not exist. A connector whose name does resolve then
// admits exactly that address, without a reload.
func TestSMTPUnresolvedConnectorRelaysNothing(t *testing.T) {
	t.Parallel()
	w := newNetWorld(t)
	sink := applianceSink(t, w)
	// DNS is down: nothing answers on 10.77.0.1:53 yet.
	w.gatehouse(t, `
hostname: gw
interfaces:
  - {name: a0, addresses: [10.77.0.2/24]}
dns:
  servers: [10.77.0.1]
smtp:
  hostname: mx.example.test
  listen: {smtp: "10.77.0.2:25", submission: "off", smtps: "off"}
  domains:
    - {name: example.test, next_hop: "[127.0.0.1]:2526", tls: none}
  connectors:
    - {name: out, smarthost: "[127.0.0.1]:2526", tls: none}
  default_route: out
  inbound_connectors:
    - {name: partner, networks: [relay.gone.invalid]}
    - {name: tenant, networks: [relay.tenant.test]}
`)
	try := func(ns, tag string) (string, error) {
		return swaks(t, ns, "--server", "10.77.0.2:25", "--from", "someone@outside.test", "--to", "x@elsewhere.test",
			"--header", "Subject: relay "+tag)
	}
	refused := func(ns, tag string) {
		t.Helper()
		if out, err := try(ns, tag); err == nil || !strings.Contains(out, "<** 554 5.7.1") {
			t.Errorf("%s: relayed from %s, want 554 5.7.1:\n%s", tag, ns, out)
		}
	}
	refused(w.router, "dns-down-outside")
	refused(w.appl, "dns-down-itself")

	// DNS comes back: .invalid does not exist, relay.tenant.test is the
	// router. The relay asks again within its retry interval.
	w.dnsmasq(t, "--address=/invalid/", "--address=/relay.tenant.test/10.77.0.1")
	w.waitFor(t, "the relay looked both names up again", 60*time.Second, func(st *control.Status) bool {
		d, ok := detailOf[status.Relay](t, st, "smtp")
		if !ok {
			return false
		}
		gone, tenant := false, false
		for _, n := range d.Names {
			gone = gone || n.Name == "relay.gone.invalid" && strings.Contains(n.Error, "no such host")
			tenant = tenant || n.Name == "relay.tenant.test" && len(n.Addrs) == 1 && n.Addrs[0].String() == "10.77.0.1"
		}
		return gone && tenant
	})
	if out, err := try(w.router, "tenant"); err != nil {
		t.Errorf("the tenant's address, now resolved, was refused:\n%s", out)
	}
	refused(w.appl, "dns-up-itself")
	waitDump(t, sink, 30*time.Second, "Subject: relay tenant")
	for _, tag := range []string{"dns-down-outside", "dns-down-itself", "dns-up-itself"} {
		noDump(t, sink, "relay "+tag)
	}
}

// Password guessing and address harvesting with a real client (swaks):
// 60 wrong passwords from one address are not all checked (after
// limits.auth_failures the answer is 454 without a check), the right
// password from another address works meanwhile, and 100 unknown
// recipients on one connection end in a disconnect at the hard error limit.
func TestSMTPAuthGuessingAndHarvesting(t *testing.T) {
	t.Parallel()
	w := newNetWorld(t)
	sink := applianceSink(t, w)
	w.gatehouse(t, `
hostname: gw
interfaces:
  - {name: a0, addresses: [10.77.0.2/24]}
smtp:
  hostname: mx.example.test
  listen: {smtp: "10.77.0.2:25", submission: "10.77.0.2:587", smtps: "off"}
  domains:
    - {name: example.test, next_hop: "[127.0.0.1]:2526", tls: none, recipients: [alice]}
  connectors:
    - {name: out, smarthost: "[127.0.0.1]:2526", tls: none}
  default_route: out
  users:
    - {login: alice, password_hash: "`+aliceHash+`", addresses: [alice@example.test]}
`)
	auth := func(ns, pass, tag string) (string, error) {
		return swaks(t, ns, "--server", "10.77.0.2:587", "--tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", pass,
			"--from", "alice@example.test", "--to", "x@elsewhere.test", "--header", "Subject: auth "+tag)
	}
	replies := map[string]int{}
	for i := range 60 {
		out, err := auth(w.router, "guess", "guess")
		if err == nil {
			t.Fatalf("guess %d accepted:\n%s", i, out)
		}
		switch {
		case strings.Contains(out, " 535 "):
			replies["535"]++
		case strings.Contains(out, " 454 4.7.0 Too many failed authentications"):
			replies["454"]++
		default:
			t.Errorf("guess %d: unexpected reply:\n%s", i, out)
		}
		if i == 30 {
			// The owner, from another address, in the middle of it.
			if out, err := auth(w.appl, "secret", "owner"); err != nil {
				t.Errorf("the right password from another address was refused:\n%s", out)
			}
		}
	}
	if replies["535"] != 5 || replies["454"] != 55 {
		t.Errorf("60 guesses answered %v; want 5 checked (535), the other 55 refused unchecked (454)", replies)
	}
	waitDump(t, sink, 30*time.Second, "Subject: auth owner")

	var rcpts []string
	for i := range 100 {
		rcpts = append(rcpts, fmt.Sprintf("user%d@example.test", i))
	}
	out, _ := swaks(t, w.router, "--server", "10.77.0.2:25", "--from", "harvester@outside.test", "--to", strings.Join(rcpts, ","))
	if n := strings.Count(out, " 550 5.1.1"); n != 19 || !strings.Contains(out, " 421 4.7.0 ") {
		t.Errorf("100 unknown recipients: %d refused with 550 before the end; want 19, then 421 4.7.0 and the disconnect:\n%s", n, out)
	}
	// The relay publishes its counters every two seconds.
	w.waitFor(t, "the counters in the status", 30*time.Second, func(st *control.Status) bool {
		d, _ := detailOf[status.Relay](t, st, "smtp")
		return d.ErrorLimit == 1 && d.Auth.BlockedClients == 1 && d.Auth.Refused == 55 && d.AuthFailed == 5
	})
}
