// Package setup is the first-boot setup: the few answers a fresh appliance
// needs (its name, network, time and name servers, the mail domains it
// guards and the internal server behind it, who may administer it), asked
// at the console (Ask) or sent to the API, and the config file they make
// (Render). Render has no side effects: `gatehouse setup` and the shells
// write, validate and apply its result; the API only shows it.
package setup

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"gatehouse/config"
)

// Answers are what the setup asks. Web password apart, each becomes a
// key of the config file.
type Answers struct {
	Hostname  string   `yaml:"hostname" json:"hostname"`
	Interface string   `yaml:"interface" json:"interface"` // default eth0
	DHCP      bool     `yaml:"dhcp" json:"dhcp"`
	Address   string   `yaml:"address" json:"address"` // CIDR, without DHCP
	Gateway   string   `yaml:"gateway" json:"gateway"` // without DHCP; optional
	DNS       []string `yaml:"dns" json:"dns"`         // none: DHCP's
	NTP       []string `yaml:"ntp" json:"ntp"`         // none: the pool servers
	// Domains are the managed mail domains (smtp.domains); their mail goes
	// to InternalServer, host[:port] (port 25 by default).
	Domains         []string `yaml:"domains" json:"domains"`
	InternalServer  string   `yaml:"internal_server" json:"internal_server"`
	TrustedNetworks []string `yaml:"trusted_networks" json:"trusted_networks"` // may relay anywhere (mynetworks)
	// AdminAllow may reach the SSH shell, the web console and the API.
	AdminAllow []string `yaml:"admin_allow" json:"admin_allow"`
	SSHKey     string   `yaml:"ssh_key" json:"ssh_key"` // an authorized_keys line
	// WebPassword is the web console's password for the user admin. It
	// never goes into the config: the setup stores its bcrypt hash.
	WebPassword string `yaml:"web_password" json:"web_password,omitempty"`
}

// PoolNTP are the time servers when none are given.
var PoolNTP = []string{"0.pool.ntp.org", "1.pool.ntp.org", "2.pool.ntp.org", "3.pool.ntp.org"}

// DefaultInterface is the interface when none is given.
const DefaultInterface = "eth0"

// Defaults are the answers a fresh appliance offers: its default
// config's (DHCP on eth0) and the pool's time servers.
func Defaults() Answers {
	return Answers{Hostname: "gatehouse", Interface: DefaultInterface, DHCP: true, NTP: append([]string(nil), PoolNTP...)}
}

// RenderName is how the rendered config names itself in its problems.
const RenderName = "setup"

// Render makes the config file the answers describe, commented for the
// person who edits it next. It returns config.Errors when the config does
// not validate (each problem with its field path), or an error naming an
// answer that does not fit the others.
func Render(a Answers) ([]byte, error) {
	a = withDefaults(a)
	if err := a.consistent(); err != nil {
		return nil, err
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	w("# Gatehouse configuration, written by the first-boot setup (`gatehouse setup`).")
	w("# Every key is described in the README. Check a changed copy with")
	w("# `gatehouse config validate FILE`, install it with `gatehouse config apply")
	w("# FILE` (rolled back unless `gatehouse config confirm` follows).")
	w("")
	w("hostname: %s", q(a.Hostname))
	w("")
	w("# The network interface and how it gets its address.")
	w("interfaces:")
	w("  - name: %s", q(a.Interface))
	if a.DHCP {
		w("    dhcp: true               # address, gateway, DNS and NTP servers by DHCP")
	} else {
		w("    addresses: [%s]", q(a.Address))
		if a.Gateway != "" {
			to := "default"
			if g, err := netip.ParseAddr(a.Gateway); err == nil && g.Is6() && !g.Is4In6() {
				to = "default6"
			}
			w("routes:")
			w("  - {to: %s, via: %s}", to, q(a.Gateway))
		}
	}
	w("")
	w("# Name resolution: the built-in caching resolver on 127.0.0.1:53 asks these")
	if len(a.DNS) > 0 {
		w("# servers.")
		w("dns:")
		w("  servers: %s", list(a.DNS))
	} else {
		w("# servers, or those DHCP names.")
		w("dns:")
	}
	w("  resolver: builtin")
	w("")
	w("# Time servers (names or addresses, optionally :port).")
	w("ntp:")
	w("  servers: %s", list(a.NTP))
	w("")
	w("shutdown:")
	w("  timeout: 10s")

	if a.SSHKey != "" {
		w("")
		w("# The diagnostics shell over SSH: this key, from these sources (and the")
		w("# monitoring hosts) only.")
		w("ssh:")
		if len(a.AdminAllow) > 0 {
			w("  allow: %s", list(a.AdminAllow))
		}
		w("  authorized_keys:")
		w("    - %s", q(a.SSHKey))
	}
	if len(a.AdminAllow) > 0 {
		w("")
		w("# The web console (HTTPS, %d) and the REST API (HTTPS, %d), from these", config.DefaultAdminWebPort, config.DefaultAdminAPIPort)
		w("# sources only. The password of the user admin: `gatehouse admin passwd`.")
		w("admin:")
		w("  allow: %s", list(a.AdminAllow))
	}
	if len(a.Domains) > 0 {
		w("")
		w("# The mail relay. Mail for the managed domains is accepted from anyone and")
		w("# goes to the internal mail server (\"[host]:port\": no MX lookup); the")
		w("# trusted networks may relay to anywhere (Postfix's mynetworks).")
		w("smtp:")
		w("  domains:")
		hop := nextHop(a.InternalServer)
		for _, d := range a.Domains {
			w("    - {name: %s, next_hop: %s}", q(d), q(hop))
		}
		if len(a.TrustedNetworks) > 0 {
			w("  trusted_networks: %s", list(a.TrustedNetworks))
		}
	} else {
		w("")
		w("# No managed mail domains yet: no relay runs until an smtp section is added.")
	}
	data := []byte(b.String())
	if _, _, err := config.Parse(RenderName, data); err != nil {
		return nil, err
	}
	return data, nil
}

// withDefaults fills in what an answer left empty.
func withDefaults(a Answers) Answers {
	a.Hostname = strings.TrimSpace(a.Hostname)
	if a.Hostname == "" {
		a.Hostname = "gatehouse"
	}
	if a.Interface == "" {
		a.Interface = DefaultInterface
	}
	if len(a.NTP) == 0 {
		a.NTP = PoolNTP
	}
	return a
}

// consistent checks what no single key of the config can: answers that
// belong together.
func (a Answers) consistent() error {
	var errs []error
	if a.DHCP && (a.Address != "" || a.Gateway != "") {
		errs = append(errs, errors.New("address, gateway: with dhcp, DHCP gives them; leave them empty or turn dhcp off"))
	}
	if !a.DHCP && a.Address == "" {
		errs = append(errs, errors.New("address: give the interface's address with its prefix length (such as 192.0.2.10/24), or dhcp"))
	}
	if len(a.Domains) > 0 && a.InternalServer == "" {
		errs = append(errs, errors.New("internal_server: the managed domains' mail goes there; give its host[:port]"))
	}
	if len(a.Domains) == 0 && a.InternalServer != "" {
		errs = append(errs, errors.New("internal_server: no managed domain sends mail there; give the domains too"))
	}
	if len(a.Domains) == 0 && len(a.TrustedNetworks) > 0 {
		errs = append(errs, errors.New("trusted_networks: they relay through the mail relay, which runs with managed domains only"))
	}
	return errors.Join(errs...)
}

// nextHop is the internal server as a next hop: "[host]:port", delivered
// to that host itself, not to its domain's MX. A next hop written in
// Postfix's form already is left as it is.
func nextHop(s string) string {
	if strings.HasPrefix(s, "[") {
		return s
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil { // no port (or an IPv6 address without brackets)
		host, port = s, "25"
	}
	return "[" + host + "]:" + port
}

// list writes values as a YAML flow sequence.
func list(vs []string) string {
	qs := make([]string, len(vs))
	for i, v := range vs {
		qs[i] = q(v)
	}
	return "[" + strings.Join(qs, ", ") + "]"
}

// q writes s as a YAML scalar: plain when it reads back as the same
// string, double-quoted otherwise.
func q(s string) string {
	plain := s != ""
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || i > 0 && strings.ContainsRune(".-_/", r)
		plain = plain && ok
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		plain = false
	}
	switch strings.ToLower(s) {
	case "true", "false", "yes", "no", "on", "off", "y", "n", "null":
		plain = false
	}
	if plain {
		return s
	}
	return strconv.Quote(s) // JSON's escapes are YAML's, for the text a config holds
}
