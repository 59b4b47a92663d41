package config

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestExampleAndDefaultValidate(t *testing.T) {
	for _, f := range []string{"example.yaml", "default.yaml"} {
		c, _, err := Load(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if c.Hostname == "" {
			t.Errorf("%s: no hostname after defaults", f)
		}
	}
	if got := Default().Shutdown.Timeout.Duration; got != 10*time.Second {
		t.Errorf("default shutdown timeout = %v, want 10s", got)
	}
}

func TestExampleHasNoWarnings(t *testing.T) {
	_, warns, err := Load("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, w := range warns {
		paths = append(paths, w.Path)
	}
	if got := strings.Join(paths, ","); got != "" {
		t.Errorf("warnings for %s, want none", got)
	}
}

// Each bad file must produce exactly the listed errors, as file:line:col: path: message.
func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown top-level key", "hostname: gw1\nfoo: 1\n",
			[]string{`f.yaml:2:1: foo: unknown key "foo"`}},
		{"unknown nested key", "interfaces:\n  - name: eth0\n    adresses: [192.0.2.1/24]\n",
			[]string{`f.yaml:3:5: interfaces[0].adresses: unknown key "adresses"`}},
		{"wrong type", "interfaces:\n  - name: eth0\n    mtu: big\n",
			[]string{`f.yaml:3:10: interfaces[0].mtu: expected a whole number, got a string`}},
		{"list where mapping expected", "dns: [1.1.1.1]\n",
			[]string{`f.yaml:1:6: dns: expected a mapping, got a list`}},
		{"bad prefix", "interfaces:\n  - name: eth0\n    addresses: [192.0.2.1/24, 300.1.1.1/24]\n",
			[]string{`f.yaml:3:31: interfaces[0].addresses[1]: "300.1.1.1/24" is not an address with prefix length (like 192.0.2.10/24 or 2001:db8::10/64)`}},
		{"bad duration", "shutdown:\n  timeout: soon\n",
			[]string{`f.yaml:2:12: shutdown.timeout: "soon" is not a duration (like 90s, 15m, 1h30m or 5d)`}},
		{"duplicate key", "hostname: a\nhostname: b\n",
			[]string{`f.yaml:2:1: hostname: mapping key "hostname" already defined at [1:1]`}},
		{"syntax", "hostname: [a\n", nil},
		{"several semantic errors in file order",
			"hostname: -bad\ninterfaces:\n  - name: eth0\n    addresses: [192.0.2.1/24, 192.0.2.1/16]\n    vlans: [{id: 5000}]\nroutes:\n  - {to: default, via: \"2001:db8::1\"}\n",
			[]string{
				`f.yaml:1:11: hostname: "-bad" is not a valid host name (letters, digits and '-', labels of at most 63 characters)`,
				`f.yaml:4:31: interfaces[0].addresses[1]: address 192.0.2.1 is already given at interfaces[0].addresses[0]`,
				`f.yaml:5:18: interfaces[0].vlans[0].id: VLAN id 5000 is out of range (1 to 4094)`,
				`f.yaml:7:24: routes[0].via: gateway 2001:db8::1 is not of the same address family as default`,
			}},
		{"nrpe threshold", "nrpe:\n  checks:\n    check_queue: {depth: {warning: \"10:5\"}}\n",
			[]string{`f.yaml:3:36: nrpe.checks.check_queue.depth.warning: "10:5": the start is above the end`}},
		{"nrpe", "monitoring: {hosts: [192.0.2.9]}\nnrpe:\n  ssl: maybe\n  tls: {client_certs: required}\n  checks:\n    check_queue: {age: {critical: 1}}\n    check_foo: {}\n",
			[]string{
				`f.yaml:3:8: nrpe.ssl: "maybe": give off, on or required`,
				`f.yaml:4:23: nrpe.tls.client_certs: required client certificates need tls.client_ca`,
				`f.yaml:4:23: nrpe.tls.client_certs: required client certificates need ssl: required`,
				`f.yaml:6:19: nrpe.checks.check_queue.age: check_queue measures no age (it measures depth, deferred, oldest)`,
				`f.yaml:7:5: nrpe.checks.check_foo: no such check (the built-in checks: check_load, check_disk, check_mem, check_services, check_queue, check_ntp, check_collector, check_firewall, check_paths, check_cluster)`,
			}},
		{"name and mac", "interfaces:\n  - name: eth0\n    mac: \"52:54:00:00:00:01\"\n",
			[]string{`f.yaml:3:10: interfaces[0].mac: give either name or mac, not both`}},
		{"neither name nor mac", "interfaces:\n  - dhcp: true\n",
			[]string{`f.yaml:2:5: interfaces[0]: give the interface a name or a mac`}},
		{"duplicate interface", "interfaces:\n  - name: eth0\n  - name: eth0\n",
			[]string{`f.yaml:3:11: interfaces[1].name: interface eth0 is already configured at interfaces[0]`}},
		{"cluster errors", "hostname: gw1\ncluster: {role: leader, address: \"gw1:8446\", peers: [a], stale_after: 1s}\nntp: {servers: [pool.ntp.org]}\n",
			[]string{`f.yaml:2:17: cluster.role: "leader": give backend or frontend`,
				`f.yaml:2:34: cluster.address: "gw1:8446": "gw1" is not an IP address (the other nodes must reach this one without DNS)`,
				`f.yaml:2:71: cluster.stale_after: 1s is shorter than two report intervals (4s)`}},
		{"snmp errors", "snmp:\n  listen: \"x:99999\"\n  communities:\n    - {community: public, view: [1.3.x]}\n    - {community: public}\n  users:\n    - {name: mon, auth: {protocol: md5, password_file: /data/a}, priv: {protocol: aes256}, min_level: authpriv}\n  traps:\n    - {host: 192.0.2.9, version: v3, user: nobody}\n",
			[]string{`f.yaml:2:11: snmp.listen: "x:99999" is not host:port (":161" listens on every address)`,
				`f.yaml:4:34: snmp.communities[0].view[0]: "1.3.x" is not a numeric OID (like 1.3.6.1.2.1)`,
				`f.yaml:5:19: snmp.communities[1].community: the community is already given at snmp.communities[0]`,
				`f.yaml:7:36: snmp.users[0].auth.protocol: "md5": one of sha, sha224, sha256, sha384, sha512`,
				`f.yaml:7:66: snmp.users[0].priv.password_file: a pass phrase file is required (the pass phrase is never written in this file)`,
				`f.yaml:7:103: snmp.users[0].min_level: "authpriv": noAuthNoPriv, authNoPriv or authPriv`,
				`f.yaml:9:44: snmp.traps[0].user: "nobody" is not one of snmp.users`}},
		{"fetch without the relay", "fetch:\n  - {name: helpdesk, protocol: imap4, server: mail.example.com, user: h, password_file: /data/p, deliver_to: h@example.com}\n",
			[]string{`f.yaml:1:1: fetch: the collector delivers through the relay: configure the smtp section too`,
				`f.yaml:2:32: fetch[0].protocol: "imap4": pop3, pop3s, imap or imaps`}},
		{"smtp errors", "smtp:\n  domains:\n    - {name: example.com, next_hop: \"[10.0.0.5:25\", tls: sometimes}\n  default_route: cmg\n  users:\n    - {login: alice, password_hash: secret, addresses: [alice@example.com]}\n  connectors:\n    - {name: m365, smarthost: \"[smtp.office365.com]:587\", tls: may, auth: {user: relay@example.com, password_file: /data/secrets/m365}}\n  queue: {lifetime: 5x}\n",
			[]string{
				`f.yaml:9:21: smtp.queue.lifetime: "5x" is not a duration (like 90s, 15m, 1h30m or 5d)`,
			}},
		{"smtp semantic errors", "smtp:\n  domains:\n    - {name: example.com, next_hop: \"[10.0.0.5:25\", tls: sometimes}\n  default_route: cmg\n  users:\n    - {login: alice, password_hash: secret, addresses: [alice@example.com]}\n  connectors:\n    - {name: m365, smarthost: \"[smtp.office365.com]:587\", tls: may, auth: {user: relay@example.com, password_file: /data/secrets/m365}}\n  queue: {lifetime: 5d, min_backoff: 2h}\n",
			[]string{
				`f.yaml:3:37: smtp.domains[0].next_hop: "[10.0.0.5:25": missing ']'`,
				`f.yaml:3:58: smtp.domains[0].tls: "sometimes" is not a TLS level (none, may, encrypt, verify, secure, dane)`,
				`f.yaml:4:18: smtp.default_route: "cmg" is neither "mx" nor a connector in smtp.connectors`,
				`f.yaml:6:37: smtp.users[0].password_hash: not a bcrypt hash (create one with: gatehouse smtp hash-password): crypto/bcrypt: hashedSecret too short to be a bcrypted password`,
				`f.yaml:8:64: smtp.connectors[0].tls: AUTH to a smart host needs tls encrypt, verify or secure: the password must not cross the network in clear`,
				`f.yaml:9:38: smtp.queue.min_backoff: 2h0m0s is longer than max_backoff (1h0m0s)`,
			}},
		{"ssh idle timeout out of range", "ssh:\n  ban: {after: -1}\n  idle_timeout: 10s\n",
			[]string{`f.yaml:2:16: ssh.ban.after: -1: ban after at least one failure`,
				`f.yaml:3:17: ssh.idle_timeout: 10s is out of range (1m to 24h)`}},
		{"authorized_keys options, placed at the option (plain, single- and double-quoted YAML)",
			"ssh:\n  authorized_keys:\n" +
				"    - from=\"10.99.0.0/16\",no-X11-forwarding " + testKey + "\n" +
				"    - 'restrict,permitopen=\"10.0.0.1:25\" " + testKey + "'\n" +
				"    - \"restrict,from=\\\"10.0.0.0/8,*.example.com\\\" " + testKey + "\"\n" +
				"    - restrict,from=\"10.0.0.0/8\",command=\"status\",from=\"10.1.0.0/16\" " + testKey + "\n" +
				"    - ssh-ed25519 AAAA\n",
			[]string{
				`f.yaml:3:27: ssh.authorized_keys[0]: option "no-X11-forwarding" is not supported: the shell forwards nothing and runs no rc files, so leave it out (the shell honours from=, command=, restrict, no-pty and pty)`,
				`f.yaml:4:17: ssh.authorized_keys[1]: option "permitopen" is not supported (the shell honours from=, command=, restrict, no-pty and pty)`,
				`f.yaml:5:35: ssh.authorized_keys[2]: option "from": "*.example.com" is not an address, a CIDR prefix or an address wildcard like 10.99.*; host names are not supported (the shell does not look client names up)`,
				`f.yaml:6:51: ssh.authorized_keys[3]: option "from" is given twice`,
				`f.yaml:7:7: ssh.authorized_keys[4]: not an authorized_keys line: ssh: no key found; last parsing error for ignored line: ssh: short read`,
			}},
		{"shutdown timeout out of range", "shutdown: {timeout: 1h}\n",
			[]string{`f.yaml:1:21: shutdown.timeout: 1h0m0s is out of range (1s to 5m)`}},
		{"bad dns resolver", "dns: {resolver: bind}\n",
			[]string{`f.yaml:1:17: dns.resolver: "bind" is not one of system, builtin`}},
		{"route through an unknown interface", "interfaces: [{name: eth0}]\nroutes:\n  - {to: 10.0.0.0/8, via: 192.0.2.1, dev: eth1}\n",
			[]string{`f.yaml:3:43: routes[0].dev: "eth1" is not a configured interface or VLAN (give interfaces by name to route through them)`}},
		{"cluster without ntp", "cluster: {peers: [a]}\n",
			[]string{`f.yaml:1:1: cluster: a cluster needs ntp.servers: its nodes must agree on the time`,
				`f.yaml:1:1: cluster.role: give backend (a Raft voter) or frontend (receives the config, never leads)`,
				`f.yaml:1:1: cluster.address: "" is not an IP address or IP:PORT`}},
		{"bad port range", "firewall:\n  paths:\n    - {function: x, direction: in, proto: tcp, ports: [\"20-10\"]}\n",
			[]string{`f.yaml:3:56: firewall.paths[0].ports[0]: "20-10" is not a port (1-65535) or a range of ports like 10045-10049`}},
		{"bad peer range and icmp ports",
			"firewall:\n  paths:\n    - {function: x, direction: in, proto: icmp, ports: [1]}\n    - {function: y, direction: sideways, proto: tcp, ports: [22], peers: [192.168.0.50-1]}\n",
			[]string{`f.yaml:3:49: firewall.paths[0].ports: an icmp path has no ports`,
				`f.yaml:4:32: firewall.paths[1].direction: "sideways" is not in or out`,
				`f.yaml:4:75: firewall.paths[1].peers[0]: "192.168.0.50-1": the range ends before it starts`}},
		{"overlapping paths",
			"firewall:\n  paths:\n    - {function: Admin, direction: in, proto: tcp, ports: [8443], peers: [192.168.0.0/24]}\n    - {function: Admin2, direction: in, proto: tcp, ports: [\"8000-9000\"], peers: [192.168.0.1-50]}\n",
			[]string{`f.yaml:4:7: firewall.paths[1]: overlaps firewall.paths[0] (Admin): the same in tcp traffic is allowed twice`}},
		{"greet pause too long", "smtp: {greet_pause: 5m, domains: [{name: example.com, next_hop: \"[10.0.0.5]:25\"}]}\n",
			[]string{`f.yaml:1:21: smtp.greet_pause: 5m0s is out of range (0s to 30s)`}},
		{"unknown backend", "firewall: {backend: ipfw}\n",
			[]string{`f.yaml:1:21: firewall.backend: "ipfw" is not one of auto, nftables, iptables`}},
		{"two documents", "hostname: a\n---\nhostname: b\n",
			[]string{`f.yaml:1:1: one YAML document expected, found 2`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := Parse("f.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("no error; config %+v", c)
			}
			if c != nil {
				t.Errorf("config returned along with errors")
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, not config.Errors", err)
			}
			if tt.want == nil { // syntax errors: only the placement is ours
				if errs[0].Line == 0 || !strings.HasPrefix(errs[0].Error(), "f.yaml:1:") {
					t.Errorf("syntax error not placed: %v", err)
				}
				return
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestEmptyFileIsDefault(t *testing.T) {
	c, _, err := Parse("empty.yaml", []byte("# nothing\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Hostname != "gatehouse" {
		t.Errorf("hostname %q, want default", c.Hostname)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, _, err := Load("/nonexistent/gatehouse.yaml")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want not-exist", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"hostname: a\n", "interfaces: [{name: eth0, addresses: [1.2.3.4/8]}]\n", "dns: [1]\n", defaultYAML2()} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, _, err := Parse("fuzz.yaml", []byte(s))
		if (c == nil) == (err == nil) {
			t.Fatalf("config %v with error %v", c, err)
		}
	})
}

func defaultYAML2() string { return string(defaultYAML) }

func TestParsePeer(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":               "192.0.2.7-192.0.2.7",
		"192.0.2.0/24":            "192.0.2.0-192.0.2.255",
		"192.168.0.1-50":          "192.168.0.1-192.168.0.50",
		"192.168.0.1-192.168.1.2": "192.168.0.1-192.168.1.2",
		"2001:db8::/126":          "2001:db8::-2001:db8::3",
		"mx.example.com":          "host mx.example.com",
		"192.168.0.1-2001:db8::1": "error",
		"192.168.0.1-300":         "error",
		"not a host":              "error",
	} {
		p, err := parsePeer(in)
		got := "error"
		switch {
		case err != nil:
		case p.Host != "":
			got = "host " + p.Host
		default:
			got = p.Ranges[0].From.String() + "-" + p.Ranges[0].To.String()
		}
		if got != want {
			t.Errorf("parsePeer(%q) = %s (%v), want %s", in, got, err, want)
		}
	}
}
