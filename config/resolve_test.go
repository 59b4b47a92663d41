package config

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// Every firewall peer name that does not resolve is an error at its own
// line and column; names elsewhere (a smart host) are not looked up.
func TestLoadResolvedNamesUnresolvablePeers(t *testing.T) {
	yaml := `monitoring:
  hosts: [nagios.example.com, gone-monitor.example.com]
firewall:
  paths:
    - {function: Admin, direction: in, proto: tcp, ports: [8443], peers: [admin.example.com, 192.0.2.1]}
    - {function: Backup, direction: out, proto: tcp, ports: [873], peers: [gone-backup.example.com]}
`
	file := filepath.Join(t.TempDir(), "g.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	r := fakeResolver{"nagios.example.com": {netip.MustParseAddr("192.0.2.10")}, "admin.example.com": {netip.MustParseAddr("192.0.2.11")}}
	c, _, err := LoadResolved(context.Background(), file, r)
	if c != nil || err == nil {
		t.Fatalf("loaded despite unresolvable names: %v", err)
	}
	got := strings.Split(strings.ReplaceAll(err.Error(), file, "g.yaml"), "\n")
	want := []string{
		"g.yaml:2:31: monitoring.hosts[1]: host name gone-monitor.example.com does not resolve",
		"g.yaml:6:76: firewall.paths[1].peers[0]: host name gone-backup.example.com does not resolve",
	}
	if len(got) != len(want) {
		t.Fatalf("errors:\n%s", err)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error %d = %q, want %q…", i, got[i], want[i])
		}
	}
	r["gone-monitor.example.com"] = []netip.Addr{netip.MustParseAddr("192.0.2.12")}
	r["gone-backup.example.com"] = []netip.Addr{netip.MustParseAddr("192.0.2.13")}
	if _, _, err := LoadResolved(context.Background(), file, r); err != nil {
		t.Errorf("all names resolve now: %v", err)
	}
}

// The relay's allow lists are checked the same way: a trusted network or
// connector network named by a host that does not resolve is refused.
func TestLoadResolvedChecksRelayAllowLists(t *testing.T) {
	yaml := `smtp:
  hostname: mx.example.com
  domains: [{name: example.com, next_hop: "[10.0.0.5]:25"}]
  trusted_networks: [10.0.0.0/8, gone-exchange.example.com]
  inbound_connectors:
    - {name: partner, networks: [relay.partner.example, gone.partner.example]}
`
	file := filepath.Join(t.TempDir(), "g.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	r := fakeResolver{"relay.partner.example": {netip.MustParseAddr("192.0.2.20")}}
	_, _, err := LoadResolved(context.Background(), file, r)
	if err == nil {
		t.Fatal("loaded despite unresolvable relay peers")
	}
	got := strings.ReplaceAll(err.Error(), file, "g.yaml")
	for _, want := range []string{
		"g.yaml:4:34: smtp.trusted_networks[1]: host name gone-exchange.example.com does not resolve: the relay could not recognise this peer",
		"g.yaml:6:57: smtp.inbound_connectors[0].networks[1]: host name gone.partner.example does not resolve",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("errors lack %q:\n%s", want, got)
		}
	}
}

type timeoutResolver struct{}

func (timeoutResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	return nil, &net.DNSError{Err: "i/o timeout", Name: host, IsTimeout: true}
}

// When DNS cannot be asked at all, a config still loads (it may be the one
// that mends DNS), with a warning at the name's line.
func TestLoadResolvedWithoutDNSWarns(t *testing.T) {
	file := filepath.Join(t.TempDir(), "g.yaml")
	os.WriteFile(file, []byte("firewall:\n  paths:\n    - {function: Admin, direction: in, proto: tcp, ports: [8443], peers: [admin.example.com]}\n"), 0o600)
	c, warns, err := LoadResolved(context.Background(), file, timeoutResolver{})
	if c == nil || err != nil {
		t.Fatalf("refused while DNS is down: %v", err)
	}
	if len(warns) != 1 || !strings.Contains(warns[0].Error(), "3:75: firewall.paths[0].peers[0]: host name admin.example.com could not be looked up now") {
		t.Errorf("warnings: %v", warns)
	}
}
