package config

import (
	"strings"
	"testing"
)

func TestSyslogDefaults(t *testing.T) {
	c, _, err := Parse("f.yaml", []byte("hostname: gw1\nsyslog:\n  destinations:\n    - {server: 192.0.2.50}\n    - {server: logs.example.com, transport: tls, ca: /data/tls/ca.pem}\n    - {server: 192.0.2.51, transport: tcp, port: 10514, severity: warning, facility: local3, buffer: 64KiB}\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Syslog
	if s.Hostname != "gw1" || !*s.Kernel || !c.SyslogEnabled() {
		t.Errorf("section defaults: %+v", s)
	}
	udp, tls, tcp := s.Destinations[0], s.Destinations[1], s.Destinations[2]
	if udp.Transport != "udp" || udp.Port != 514 || udp.Severity != "info" || udp.Facility != "local0" || udp.Buffer.Bytes != DefaultSyslogBuffer || udp.MaxMessage.Bytes != 2048 {
		t.Errorf("udp defaults: %+v", udp)
	}
	if tls.Port != 6514 || tls.ServerName != "logs.example.com" || tls.MaxMessage.Bytes != 8192 {
		t.Errorf("tls defaults: %+v", tls)
	}
	if tcp.Port != 10514 || tcp.Severity != "warning" || tcp.Facility != "local3" || tcp.Buffer.Bytes != 64<<10 {
		t.Errorf("tcp as given: %+v", tcp)
	}
	if c, _, _ := Parse("f.yaml", []byte("hostname: gw1\n")); c.SyslogEnabled() {
		t.Error("no section: no forwarding")
	}
}

func TestSyslogErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"no destinations", "syslog: {kernel: false}\n",
			[]string{`f.yaml:1:1: syslog.destinations: name at least one syslog server (or remove the section)`}},
		{"values", "syslog:\n  destinations:\n    - {server: \"bad host\", transport: relp, port: 70000, severity: loud, facility: local9, buffer: 1KiB, max_message: 100}\n",
			[]string{
				`f.yaml:3:16: syslog.destinations[0].server: "bad host" is not a host name or address`,
				`f.yaml:3:39: syslog.destinations[0].transport: "relp": udp, tcp or tls`,
				`f.yaml:3:51: syslog.destinations[0].port: 70000 is out of range (1 to 65535)`,
				`f.yaml:3:68: syslog.destinations[0].severity: "loud" is not one of [emerg alert crit err warning notice info debug]`,
				`f.yaml:3:84: syslog.destinations[0].facility: "local9" is not one of [kern user mail daemon auth syslog lpr news uucp cron authpriv ftp ntp audit alert clock local0 local1 local2 local3 local4 local5 local6 local7]`,
				`f.yaml:3:100: syslog.destinations[0].buffer: 1024 bytes is out of range (64KiB to 1GiB)`,
			}},
		{"tls settings without tls, half a client certificate, a duplicate", "syslog:\n  destinations:\n    - {server: 192.0.2.1, ca: /data/ca.pem}\n    - {server: 192.0.2.1, transport: tls, cert: /data/c.pem}\n    - {server: 192.0.2.1, port: 514}\n",
			[]string{
				`f.yaml:3:31: syslog.destinations[0].ca: a TLS setting; this destination's transport is udp`,
				`f.yaml:4:49: syslog.destinations[1].cert: a client certificate needs both cert and key`,
				`f.yaml:5:7: syslog.destinations[2]: udp 192.0.2.1:514 is already a destination at syslog.destinations[0]`,
			}},
	} {
		_, _, err := Parse("f.yaml", []byte(tc.yaml))
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if got := strings.Split(err.Error(), "\n"); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, strings.Join(got, "\n     "), strings.Join(tc.want, "\n     "))
		}
	}
}
