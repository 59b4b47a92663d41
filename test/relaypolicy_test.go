//go:build e2e

package test

import (
	"strings"
	"testing"
	"time"

	"gatehouse/control"
	smtpsvc "gatehouse/services/smtp"
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
		d, ok := detailOf[smtpsvc.Detail](t, st, "smtp")
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
