package config

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

// Values that decode but mean nothing are each named at their own line and
// column, all in one go and among validation's findings; validation says
// nothing more about them (a connector's bad level is not also "too weak
// for AUTH").
func TestInvalidValuesNamedTogether(t *testing.T) {
	yml := `monitoring:
  hosts: [nagios.example.com, "10.0.0.1-0"]
ssh:
  allow: [10.0.0.0/8, "bad host"]
  ban: {after: -1}
smtp:
  domains: [{name: example.com, next_hop: "[10.0.0.5]:0"}]
  trusted_networks: ["10.0.0.1-2001:db8::1"]
  outbound_tls: always
  tls_policy: [{destination: example.net, level: strict}]
  auth_imap: {server: "10.0.0.5:993", tls: plain}
  connectors:
    - {name: m365, smarthost: "[smtp.office365.com]:587", tls: sure, auth: {user: relay@example.com, password_file: /data/p}}
  inbound_connectors:
    - {name: partner, networks: ["300.1.1.1"]}
`
	_, _, err := Parse("f.yaml", []byte(yml))
	if err == nil {
		t.Fatal("no error")
	}
	want := []string{
		`f.yaml:2:31: monitoring.hosts[1]: "10.0.0.1-0": the range ends before it starts`,
		`f.yaml:4:23: ssh.allow[1]: "bad host" is not an address, prefix, range or host name`,
		`f.yaml:5:16: ssh.ban.after: -1: ban after at least one failure`,
		`f.yaml:7:43: smtp.domains[0].next_hop: "[10.0.0.5]:0": the port after the host must be 1 to 65535`,
		`f.yaml:8:22: smtp.trusted_networks[0]: "10.0.0.1-2001:db8::1": the range's ends are not addresses of one family`,
		`f.yaml:9:17: smtp.outbound_tls: "always" is not a TLS level (none, may, encrypt, verify, secure, dane)`,
		`f.yaml:10:50: smtp.tls_policy[0].level: "strict" is not a TLS level (none, may, encrypt, verify, secure, dane)`,
		`f.yaml:11:44: smtp.auth_imap.tls: "plain": implicit or starttls (a password never crosses the network in clear)`,
		`f.yaml:13:64: smtp.connectors[0].tls: "sure" is not a TLS level (none, may, encrypt, verify, secure, dane)`,
		`f.yaml:15:34: smtp.inbound_connectors[0].networks[0]: "300.1.1.1" is not an address, prefix, range or host name`,
	}
	if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}

// Decoded outside the loader, a bad value ends the decoding with its error.
func TestInvalidValueOutsideLoader(t *testing.T) {
	var v struct {
		TLS TLSLevel `yaml:"tls"`
	}
	if err := yaml.Unmarshal([]byte("tls: sometimes\n"), &v); err == nil || !strings.Contains(err.Error(), "is not a TLS level") {
		t.Errorf("err = %v", err)
	}
}

func TestTypedSMTPValues(t *testing.T) {
	c, _, err := Parse("f.yaml", []byte(`smtp:
  domains: [{name: example.com, next_hop: "[10.0.0.5]:2525", tls: verify}]
  default_route: m365
  transport: [{domain: example.org, connector: mx}]
  connectors: [{name: m365, smarthost: "smtp.office365.com:587", tls: secure}]
  auth_imap: {server: "10.0.0.5:143", tls: starttls}
`))
	if err != nil {
		t.Fatal(err)
	}
	s := c.SMTP
	if nh := s.Domains[0].NextHop; nh.Host != "10.0.0.5" || nh.Port != 2525 || !nh.NoMX || nh.String() != "[10.0.0.5]:2525" {
		t.Errorf("next hop %+v", nh)
	}
	if nh := s.Connectors[0].Smarthost; nh.Host != "smtp.office365.com" || nh.Port != 587 || nh.NoMX {
		t.Errorf("smart host %+v", nh)
	}
	if s.Domains[0].TLS != TLSVerify || s.Connectors[0].TLS != TLSSecure || s.OutboundTLS != TLSMay {
		t.Errorf("TLS levels %v %v %v", s.Domains[0].TLS, s.Connectors[0].TLS, s.OutboundTLS)
	}
	if s.DefaultRoute != (Route{Kind: RouteConnector, Name: "m365"}) || s.Transport[0].Connector != MXRoute {
		t.Errorf("routes %+v %+v", s.DefaultRoute, s.Transport[0].Connector)
	}
	if s.AuthIMAP.TLS != IMAPStartTLS {
		t.Errorf("auth_imap tls %v", s.AuthIMAP.TLS)
	}
	b, _ := json.Marshal(struct {
		L TLSLevel
		R Route
		I IMAPTLS
		N NextHop
	}{s.Domains[0].TLS, s.DefaultRoute, s.AuthIMAP.TLS, s.Domains[0].NextHop})
	if got := string(b); got != `{"L":"verify","R":"m365","I":"starttls","N":"[10.0.0.5]:2525"}` {
		t.Errorf("JSON %s", got)
	}
}

func TestPeerSet(t *testing.T) {
	c, _, err := Parse("f.yaml", []byte(`ssh:
  allow: [192.0.2.0/30, "192.168.0.1-50", admin.example.com, "2001:db8::/126", admin.example.com]
`))
	if err != nil {
		t.Fatal(err)
	}
	s := c.SSH.Allow
	if got := s.String(); got != "192.0.2.0/30, 192.168.0.1-50, admin.example.com, 2001:db8::/126, admin.example.com" {
		t.Errorf("String = %q", got)
	}
	if got := s.Names(); !slices.Equal(got, []string{"admin.example.com"}) {
		t.Errorf("Names = %v", got)
	}
	resolved := map[string][]netip.Addr{"admin.example.com": {netip.MustParseAddr("::ffff:198.51.100.7")}}
	for a, want := range map[string]bool{
		"192.0.2.3": true, "192.0.2.4": false, "192.168.0.50": true, "192.168.0.51": false,
		"198.51.100.7": true, "::ffff:192.0.2.1": true, "2001:db8::3": true, "2001:db8::4": false,
	} {
		if got := s.Contains(netip.MustParseAddr(a), resolved); got != want {
			t.Errorf("Contains(%s) = %v", a, got)
		}
	}
	// A name without an answer matches no one.
	if s.Contains(netip.MustParseAddr("198.51.100.7"), nil) {
		t.Error("an unresolved name admitted its old address")
	}
	if got := len(s.Ranges(nil)); got != 3 {
		t.Errorf("%d ranges without names, want 3", got)
	}
	if got := s.Ranges(resolved); len(got) != 5 || got[2].From != netip.MustParseAddr("198.51.100.7") {
		t.Errorf("ranges in written order, names resolved: %v", got)
	}
	for _, tc := range []struct {
		set  PeerSet
		want string
	}{{PeerSet{}, "null"}, {PeersOf("192.0.2.53", "ntp.example.com", "not a host"), `["192.0.2.53","ntp.example.com"]`}} {
		if b, _ := json.Marshal(tc.set); string(b) != tc.want {
			t.Errorf("JSON %s, want %s", b, tc.want)
		}
	}
}

func TestStaticRouteValues(t *testing.T) {
	_, _, err := Parse("f.yaml", []byte("routes:\n  - {to: 10.0.0.0/33, via: gw}\n  - {via: 192.0.2.1}\n"))
	want := []string{
		`f.yaml:2:10: routes[0].to: "10.0.0.0/33" is not a prefix (like 10.0.0.0/8) or "default" / "default6"`,
		`f.yaml:2:28: routes[0].via: "gw" is not an IP address`,
		`f.yaml:3:5: routes[1].to: "" is not a prefix (like 10.0.0.0/8) or "default" / "default6"`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("errors:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
	c, _, err := Parse("f.yaml", []byte("routes:\n  - {to: 10.1.2.3/8, via: 192.0.2.1}\n  - {to: default6, via: \"2001:db8::1\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Routes[0]; r.To.Prefix != netip.MustParsePrefix("10.0.0.0/8") || r.To.String() != "10.1.2.3/8" || r.Via.Addr != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("route %+v", r)
	}
	if r := c.Routes[1]; r.To.Prefix != netip.MustParsePrefix("::/0") {
		t.Errorf("default6 is %v", r.To.Prefix)
	}
}
