package setup

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"gatehouse/config"
	"gatehouse/test/golden"
)

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIILNx1j5XjRSQhvizLtd/NlOFArTxkVMdLx2wVLOJLwn admin@example.com"

func full() Answers {
	return Answers{
		Hostname: "gw1.example.com", Interface: "eth0",
		Address: "192.0.2.10/24", Gateway: "192.0.2.1",
		DNS: []string{"192.0.2.53", "2001:db8::53"}, NTP: []string{"ntp.example.com", "192.0.2.123:123"},
		Domains: []string{"example.com", "example.org"}, InternalServer: "mail.internal.example.com:2525",
		TrustedNetworks: []string{"10.0.0.0/8", "192.168.0.1-50"},
		AdminAllow:      []string{"192.0.2.0/24", "admin.example.net"},
		SSHKey:          testKey, WebPassword: "never-in-the-file",
	}
}

// Every combination of the answers that may be left out renders a config
// that validates and says what was answered.
func TestRenderCombinations(t *testing.T) {
	const n = 8
	for mask := 0; mask < 1<<n; mask++ {
		on := func(i int) bool { return mask&(1<<i) != 0 }
		a := full()
		if on(0) {
			a.DHCP, a.Address, a.Gateway = true, "", ""
		}
		if on(1) && !a.DHCP {
			a.Gateway = ""
		}
		if on(2) {
			a.DNS = nil
		}
		if on(3) {
			a.NTP = nil
		}
		if on(4) {
			a.Domains, a.InternalServer, a.TrustedNetworks = nil, "", nil
		}
		if on(5) {
			a.AdminAllow = nil
		}
		if on(6) {
			a.SSHKey = ""
		}
		if on(7) && !a.DHCP {
			a.Address, a.Gateway, a.DNS = "2001:db8::10/64", "2001:db8::1", []string{"2001:db8::53"}
		}
		name := fmt.Sprintf("mask %08b", mask)
		out, err := Render(a)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		c, _, err := config.Parse("rendered", out)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		if strings.Contains(string(out), a.WebPassword) {
			t.Errorf("%s: the web password is in the config", name)
		}
		if c.Hostname != a.Hostname || len(c.Interfaces) != 1 || c.Interfaces[0].Name != "eth0" || c.Interfaces[0].DHCP != a.DHCP {
			t.Errorf("%s: host or interface differ:\n%s", name, out)
		}
		if (c.SMTP != nil) != (len(a.Domains) > 0) || c.SMTP != nil && len(c.SMTP.Domains) != len(a.Domains) {
			t.Errorf("%s: relay %v for domains %v", name, c.SMTP != nil, a.Domains)
		}
		if c.AdminEnabled() != (len(a.AdminAllow) > 0) {
			t.Errorf("%s: admin section %v for allow %v", name, c.AdminEnabled(), a.AdminAllow)
		}
		if c.SSHEnabled() != (a.SSHKey != "") {
			t.Errorf("%s: ssh %v for key %q", name, c.SSHEnabled(), a.SSHKey)
		}
		wantNTP := a.NTP
		if len(wantNTP) == 0 {
			wantNTP = PoolNTP
		}
		if strings.Join(c.NTP.Servers, " ") != strings.Join(wantNTP, " ") {
			t.Errorf("%s: ntp %v, want %v", name, c.NTP.Servers, wantNTP)
		}
		if a.Gateway != "" && (len(c.Routes) != 1 || c.Routes[0].Via.String() != a.Gateway) {
			t.Errorf("%s: routes %v for gateway %s", name, c.Routes, a.Gateway)
		}
	}
}

func TestRenderGolden(t *testing.T) {
	out, err := Render(full())
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "full.yaml", string(out))
}

// Answers that do not fit together, or that the config refuses, are
// refused with the answer's or the field's name.
func TestRenderRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Answers)
		want string
	}{
		{"dhcp and address", func(a *Answers) { a.DHCP = true }, "address, gateway: with dhcp"},
		{"no address", func(a *Answers) { a.Address, a.Gateway = "", "" }, "address: give"},
		{"domains without server", func(a *Answers) { a.InternalServer = "" }, "internal_server: the managed domains"},
		{"server without domains", func(a *Answers) { a.Domains, a.TrustedNetworks = nil, nil }, "internal_server: no managed domain"},
		{"bad host name", func(a *Answers) { a.Hostname = "gw_1" }, `hostname: "gw_1" is not a valid host name`},
		{"bad address", func(a *Answers) { a.Address = "192.0.2.300/24" }, "interfaces[0].addresses[0]"},
		{"bad dns", func(a *Answers) { a.DNS = []string{"dns.example.com"} }, "dns.servers[0]"},
		{"bad domain", func(a *Answers) { a.Domains = []string{"exa mple.com"} }, "smtp.domains[0].name"},
		{"bad key", func(a *Answers) { a.SSHKey = "ssh-ed25519 AAAA" }, "ssh.authorized_keys[0]"},
		{"quotes do not escape", func(a *Answers) { a.Hostname = "gw\"\nbogus: 1" }, "hostname"},
	} {
		a := full()
		tc.edit(&a)
		_, err := Render(a)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

// The API sends the answers as JSON; the password is never sent back.
func TestAnswersJSON(t *testing.T) {
	var a Answers
	if err := json.Unmarshal([]byte(`{"hostname":"gw1","dhcp":true,"domains":["example.com"],"internal_server":"10.0.0.5","admin_allow":["192.0.2.0/24"],"web_password":"x"}`), &a); err != nil {
		t.Fatal(err)
	}
	if _, err := Render(a); err != nil {
		t.Fatal(err)
	}
	a.WebPassword = ""
	b, _ := json.Marshal(a)
	if strings.Contains(string(b), "web_password") {
		t.Errorf("empty password marshalled: %s", b)
	}
}
