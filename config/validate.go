package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/token"
)

// problem is a finding before it is placed in the file.
type problem struct {
	path string
	msg  string
	// atOffset: the finding is about a part of a string value, offset
	// bytes into it (one option of an authorized_keys line, say).
	atOffset bool
	offset   int
	pos      *token.Position // where a value that did not decode is written
}

type checker struct {
	errs, warns []problem
}

func (c *checker) errf(path, format string, args ...any) {
	c.errs = append(c.errs, problem{path: path, msg: fmt.Sprintf(format, args...)})
}

// errAt is errf about the part of path's string value that starts offset
// bytes into it.
func (c *checker) errAt(path string, offset int, format string, args ...any) {
	c.errs = append(c.errs, problem{path: path, msg: fmt.Sprintf(format, args...), atOffset: true, offset: offset})
}

func (c *checker) warnf(path, format string, args ...any) {
	c.warns = append(c.warns, problem{path: path, msg: fmt.Sprintf(format, args...)})
}

func (c *Config) applyDefaults() {
	if c.Hostname == "" {
		c.Hostname = "gatehouse"
	}
	if c.DNS.Resolver == "" {
		c.DNS.Resolver = "system"
	}
	if c.SSH.Port == 0 {
		c.SSH.Port = 22
	}
	if c.SSH.Ban.After == 0 {
		c.SSH.Ban.After = 5
	}
	if c.SSH.Ban.For.Duration == 0 {
		c.SSH.Ban.For.Duration = 15 * time.Minute
	}
	if c.SSH.IdleTimeout.Duration == 0 {
		c.SSH.IdleTimeout.Duration = DefaultSSHIdleTimeout
	}
	if c.Firewall.Backend == "" {
		c.Firewall.Backend = "auto"
	}
	if c.Firewall.Egress == "" {
		c.Firewall.Egress = "open"
	}
	c.smtpDefaults()
	c.fetchDefaults()
	c.nrpeDefaults()
	c.snmpDefaults()
	c.syslogDefaults()
	c.adminDefaults()
	c.updateDefaults()
	c.clusterDefaults()
	if c.Shutdown.Timeout.Duration == 0 {
		c.Shutdown.Timeout.Duration = DefaultShutdownTimeout
	}
}

// validate checks what the decoder cannot: values, references and
// combinations. It returns errors and warnings as field paths.
func (c *Config) validate() (errs, warns []problem) {
	var ck checker
	if !validHostname(c.Hostname) {
		ck.errf("hostname", "%q is not a valid host name (letters, digits and '-', labels of at most 63 characters)", c.Hostname)
	}
	c.checkInterfaces(&ck)
	c.checkRoutes(&ck)
	c.checkDNS(&ck)
	c.checkFirewall(&ck)
	c.checkSSH(&ck)
	c.checkSMTP(&ck)
	c.checkFetch(&ck)
	c.checkNRPE(&ck)
	c.checkSNMP(&ck)
	c.checkSyslog(&ck)
	c.checkAdmin(&ck)
	c.checkUpdate(&ck)
	for i, s := range c.NTP.Servers {
		host := s
		if h, port, err := net.SplitHostPort(s); err == nil {
			if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
				ck.errf(fmt.Sprintf("ntp.servers[%d]", i), "%q: port out of range", s)
				continue
			}
			host = h
		}
		if !validHost(host) {
			ck.errf(fmt.Sprintf("ntp.servers[%d]", i), "%q is neither an IP address nor a host name (a port may follow: host:123)", s)
		}
	}
	if t := c.Shutdown.Timeout.Duration; t < time.Second || t > 5*time.Minute {
		ck.errf("shutdown.timeout", "%s is out of range (1s to 5m)", t)
	}

	c.checkCluster(&ck)
	return ck.errs, ck.warns
}

func (c *Config) checkInterfaces(ck *checker) {
	names := map[string]string{}
	macs := map[string]string{}
	addrs := map[netip.Addr]string{}
	checkAddrs := func(path string, list []Prefix) {
		for j, a := range list {
			p := fmt.Sprintf("%s.addresses[%d]", path, j)
			if prev, dup := addrs[a.Addr()]; dup {
				ck.errf(p, "address %s is already given at %s", a.Addr(), prev)
				continue
			}
			addrs[a.Addr()] = p
		}
	}
	checkMTU := func(path string, mtu int) {
		if mtu != 0 && (mtu < 68 || mtu > 65535) {
			ck.errf(path+".mtu", "%d is out of range (68 to 65535)", mtu)
		}
	}
	for i, ifc := range c.Interfaces {
		path := fmt.Sprintf("interfaces[%d]", i)
		switch {
		case ifc.Name == "" && ifc.MAC == "":
			ck.errf(path, "give the interface a name or a mac")
		case ifc.Name != "" && ifc.MAC != "":
			ck.errf(path+".mac", "give either name or mac, not both")
		case ifc.Name != "":
			if len(ifc.Name) > 15 || strings.ContainsAny(ifc.Name, "/: \t") {
				ck.errf(path+".name", "%q is not a valid interface name (at most 15 characters, no '/', ':' or spaces)", ifc.Name)
			} else if prev, dup := names[ifc.Name]; dup {
				ck.errf(path+".name", "interface %s is already configured at %s", ifc.Name, prev)
			}
			names[ifc.Name] = path
		default:
			hw, err := net.ParseMAC(ifc.MAC)
			if err != nil || len(hw) != 6 {
				ck.errf(path+".mac", "%q is not an Ethernet MAC address (like 52:54:00:12:34:56)", ifc.MAC)
			} else if prev, dup := macs[hw.String()]; dup {
				ck.errf(path+".mac", "MAC %s is already configured at %s", hw, prev)
			} else {
				macs[hw.String()] = path
			}
		}
		checkAddrs(path, ifc.Addresses)
		checkMTU(path, ifc.MTU)
		ids := map[int]bool{}
		for j, v := range ifc.VLANs {
			vp := fmt.Sprintf("%s.vlans[%d]", path, j)
			if v.ID < 1 || v.ID > 4094 {
				ck.errf(vp+".id", "VLAN id %d is out of range (1 to 4094)", v.ID)
			} else if ids[v.ID] {
				ck.errf(vp+".id", "VLAN id %d is configured twice on this interface", v.ID)
			}
			ids[v.ID] = true
			checkAddrs(vp, v.Addresses)
			checkMTU(vp, v.MTU)
		}
	}
}

// LinkNames are the names of the configured links that have names: the
// interfaces given by name and their VLANs (<parent>.<id>).
func (c *Config) LinkNames() map[string]bool {
	names := map[string]bool{}
	for _, ifc := range c.Interfaces {
		if ifc.Name == "" {
			continue
		}
		names[ifc.Name] = true
		for _, v := range ifc.VLANs {
			names[fmt.Sprintf("%s.%d", ifc.Name, v.ID)] = true
		}
	}
	return names
}

func (c *Config) checkRoutes(ck *checker) {
	links := c.LinkNames()
	for i, r := range c.Routes {
		path := fmt.Sprintf("routes[%d]", i)
		if r.Dev != "" && !links[r.Dev] {
			ck.errf(path+".dev", "%q is not a configured interface or VLAN (give interfaces by name to route through them)", r.Dev)
		}
		if r.Metric < 0 {
			ck.errf(path+".metric", "%d is negative", r.Metric)
		}
		// Not written at all: as if written empty (a value written
		// wrong is named where it is decoded).
		if !r.To.IsValid() {
			ck.errf(path+".to", "%q is not a prefix (like 10.0.0.0/8) or \"default\" / \"default6\"", "")
			continue
		}
		if !r.Via.IsValid() {
			ck.errf(path+".via", "%q is not an IP address", "")
			continue
		}
		if r.Via.Is4() != r.To.Addr().Is4() {
			ck.errf(path+".via", "gateway %s is not of the same address family as %s", r.Via, r.To)
		}
	}
}

func (c *Config) checkDNS(ck *checker) {
	for i, s := range c.DNS.Servers {
		if _, err := netip.ParseAddr(s); err != nil {
			ck.errf(fmt.Sprintf("dns.servers[%d]", i), "%q is not an IP address", s)
		}
	}
	for i, s := range c.DNS.Search {
		if !validHostname(s) {
			ck.errf(fmt.Sprintf("dns.search[%d]", i), "%q is not a domain name", s)
		}
	}
	switch c.DNS.Resolver {
	case "builtin", "system":
	default:
		ck.errf("dns.resolver", "%q is not one of system, builtin", c.DNS.Resolver)
	}
}

func validHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

func validHost(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	return validHostname(s) && strings.ContainsAny(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
}
