package config

import (
	"fmt"
	"slices"
)

// Syslog forwards every service's log and the kernel's, as RFC 5424
// records, to syslog servers.
type Syslog struct {
	// Hostname is the records' HOSTNAME; default: the appliance's host name.
	Hostname string `yaml:"hostname"`
	// Kernel forwards the kernel's log too; default true.
	Kernel       *bool               `yaml:"kernel"`
	Destinations []SyslogDestination `yaml:"destinations"`
}

// SyslogDestination is one syslog server and what it gets.
type SyslogDestination struct {
	Server    string `yaml:"server"`    // host name or address
	Transport string `yaml:"transport"` // udp (default) | tcp | tls
	Port      int    `yaml:"port"`      // default 514, for tls 6514
	// Severity is the least severe record sent: emerg, alert, crit, err,
	// warning, notice, info (default) or debug.
	Severity string `yaml:"severity"`
	Facility string `yaml:"facility"` // default local0
	// Buffer bounds what is kept in memory while the server is slow or
	// unreachable; beyond it records are dropped and counted. Default 4MiB.
	Buffer Size `yaml:"buffer"`
	// MaxMessage truncates longer records; default 2048 for udp (RFC 5426),
	// 8192 for tcp and tls (rsyslog's default).
	MaxMessage Size `yaml:"max_message"`
	// TLS only: the CAs that sign the server's certificate (default: the
	// system's), the name to verify in it (default: server), and a client
	// certificate for servers that ask for one.
	CA         string `yaml:"ca"`
	ServerName string `yaml:"server_name"`
	Cert       string `yaml:"cert"`
	Key        string `yaml:"key"`
}

// SyslogSeverities are the severities by name, in RFC 5424 order (0 to 7).
var SyslogSeverities = []string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

// SyslogFacilities are the facilities by name, in RFC 5424 order (0 to 23).
var SyslogFacilities = []string{"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
	"authpriv", "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"}

// Defaults of a syslog destination.
const (
	DefaultSyslogBuffer     = 4 << 20
	DefaultSyslogUDPMessage = 2048
	DefaultSyslogTCPMessage = 8192
)

func (c *Config) syslogDefaults() {
	s := c.Syslog
	if s == nil {
		return
	}
	if s.Hostname == "" {
		s.Hostname = c.Hostname
	}
	if s.Kernel == nil {
		t := true
		s.Kernel = &t
	}
	for i := range s.Destinations {
		d := &s.Destinations[i]
		if d.Transport == "" {
			d.Transport = "udp"
		}
		if d.Port == 0 {
			d.Port = 514
			if d.Transport == "tls" {
				d.Port = 6514
			}
		}
		if d.Severity == "" {
			d.Severity = "info"
		}
		if d.Facility == "" {
			d.Facility = "local0"
		}
		if d.Buffer.Bytes == 0 {
			d.Buffer.Bytes = DefaultSyslogBuffer
		}
		if d.MaxMessage.Bytes == 0 {
			d.MaxMessage.Bytes = DefaultSyslogTCPMessage
			if d.Transport == "udp" {
				d.MaxMessage.Bytes = DefaultSyslogUDPMessage
			}
		}
		if d.Transport == "tls" && d.ServerName == "" {
			d.ServerName = d.Server
		}
	}
}

func (c *Config) checkSyslog(ck *checker) {
	s := c.Syslog
	if s == nil {
		return
	}
	if !validHostname(s.Hostname) {
		ck.errf("syslog.hostname", "%q is not a valid host name", s.Hostname)
	}
	if len(s.Destinations) == 0 {
		ck.errf("syslog.destinations", "name at least one syslog server (or remove the section)")
	}
	seen := map[string]string{}
	for i, d := range s.Destinations {
		p := fmt.Sprintf("syslog.destinations[%d]", i)
		if !validHost(d.Server) {
			ck.errf(p+".server", "%q is not a host name or address", d.Server)
		}
		switch d.Transport {
		case "udp", "tcp", "tls":
		default:
			ck.errf(p+".transport", "%q: udp, tcp or tls", d.Transport)
		}
		if d.Port < 1 || d.Port > 65535 {
			ck.errf(p+".port", "%d is out of range (1 to 65535)", d.Port)
		}
		key := fmt.Sprintf("%s %s:%d", d.Transport, d.Server, d.Port)
		if prev, dup := seen[key]; dup {
			ck.errf(p, "%s is already a destination at %s", key, prev)
		}
		seen[key] = p
		if !slices.Contains(SyslogSeverities, d.Severity) {
			ck.errf(p+".severity", "%q is not one of %v", d.Severity, SyslogSeverities)
		}
		if !slices.Contains(SyslogFacilities, d.Facility) {
			ck.errf(p+".facility", "%q is not one of %v", d.Facility, SyslogFacilities)
		}
		if b := d.Buffer.Bytes; b < 64<<10 || b > 1<<30 {
			ck.errf(p+".buffer", "%d bytes is out of range (64KiB to 1GiB)", b)
		}
		maxMsg := int64(1 << 20)
		if d.Transport == "udp" {
			maxMsg = 65000 // what fits a datagram
		}
		if m := d.MaxMessage.Bytes; (m < 480 || m > maxMsg) && slices.Contains([]string{"udp", "tcp", "tls"}, d.Transport) {
			ck.errf(p+".max_message", "%d bytes is out of range (480 to %d for %s)", m, maxMsg, d.Transport)
		}
		if d.Transport != "tls" {
			for _, f := range []struct{ key, v string }{{"ca", d.CA}, {"server_name", d.ServerName}, {"cert", d.Cert}, {"key", d.Key}} {
				if f.v != "" {
					ck.errf(p+"."+f.key, "a TLS setting; this destination's transport is %s", d.Transport)
				}
			}
			continue
		}
		if (d.Cert == "") != (d.Key == "") {
			ck.errf(p+".cert", "a client certificate needs both cert and key")
		}
		if !validHost(d.ServerName) {
			ck.errf(p+".server_name", "%q is not a host name or address", d.ServerName)
		}
	}
}

// SyslogEnabled reports whether the syslog service runs.
func (c *Config) SyslogEnabled() bool { return c.Syslog != nil }
