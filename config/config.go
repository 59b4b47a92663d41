// Package config is the appliance's one configuration file: its typed model,
// the strict loader and the validation that names file:line:column and the
// field path of every problem.
//
// A top-level key whose subsystem this build does not provide (the
// cluster) is recognised but rejected, so an operator is never led
// to believe a feature is running when it is not.
package config

import (
	"net/netip"
	"time"
)

// Config describes the whole appliance.
type Config struct {
	Hostname   string        `yaml:"hostname"`
	Interfaces []Interface   `yaml:"interfaces"`
	Routes     []StaticRoute `yaml:"routes"`
	DNS        DNS           `yaml:"dns"`
	NTP        NTP           `yaml:"ntp"`
	Monitoring Monitoring    `yaml:"monitoring"`
	Shutdown   Shutdown      `yaml:"shutdown"`
	Firewall   Firewall      `yaml:"firewall"`
	SSH        SSH           `yaml:"ssh"`

	SMTP  *SMTP          `yaml:"smtp"`  // nil: no relay
	Fetch []FetchAccount `yaml:"fetch"` // the mailboxes the collector empties

	SNMP   *SNMP   `yaml:"snmp"`   // nil: no SNMP agent
	NRPE   *NRPE   `yaml:"nrpe"`   // nil: no NRPE server
	Syslog *Syslog `yaml:"syslog"` // nil: no forwarding

	Admin *Admin `yaml:"admin"` // nil: no web console or API

	Update Update `yaml:"update"` // how a firmware update's trial boot is judged

	// A section this build does not provide, part of the file's shape so
	// that its errors read like every other, and rejected when set.
	Cluster *Cluster `yaml:"cluster"` // nil: not a cluster node
}

// Interface is one network interface, matched by name or MAC address.
type Interface struct {
	Name      string   `yaml:"name"`
	MAC       string   `yaml:"mac"`
	DHCP      bool     `yaml:"dhcp"`
	Addresses []Prefix `yaml:"addresses"`
	MTU       int      `yaml:"mtu"`
	AcceptRA  bool     `yaml:"accept_ra"` // accept IPv6 router advertisements
	VLANs     []VLAN   `yaml:"vlans"`
}

// VLAN is an 802.1Q sub-interface of its parent Interface, named
// <parent>.<id>.
type VLAN struct {
	ID        int      `yaml:"id"`
	DHCP      bool     `yaml:"dhcp"`
	Addresses []Prefix `yaml:"addresses"`
	MTU       int      `yaml:"mtu"`
}

// StaticRoute is a static route.
type StaticRoute struct {
	To     Destination `yaml:"to"`
	Via    Addr        `yaml:"via"`
	Dev    string      `yaml:"dev"`    // optional: a configured interface or VLAN
	Metric int         `yaml:"metric"` // optional
}

// DNS is the resolver configuration.
type DNS struct {
	Servers  []string `yaml:"servers"` // none: the servers DHCP names
	Search   []string `yaml:"search"`
	Resolver string   `yaml:"resolver"` // system (default) | builtin
}

// NTP lists the time servers.
type NTP struct {
	Servers []string `yaml:"servers"` // none: the servers DHCP names, if any
}

// Monitoring names the hosts that watch the appliance: the SSH shell, when
// it is on, lets them in beside its allowlist.
type Monitoring struct {
	Hosts PeerSet `yaml:"hosts"`
}

// Firewall is the appliance's own packet filter: default deny inbound,
// open for the declared communication paths.
type Firewall struct {
	Backend string `yaml:"backend"` // auto (default) | nftables | iptables
	Egress  string `yaml:"egress"`  // open (default) | restricted: only declared outbound paths
	Paths   []Path `yaml:"paths"`   // beyond those the enabled services imply
}

// SSH is the diagnostics shell over SSH: public keys only, from the
// allowlist and the monitoring hosts only.
type SSH struct {
	Port           int      `yaml:"port"`            // default 22
	Allow          PeerSet  `yaml:"allow"`           // addresses, prefixes, ranges, host names
	AuthorizedKeys []string `yaml:"authorized_keys"` // authorized_keys lines; none: the shell is off
	Ban            Ban      `yaml:"ban"`
	IdleTimeout    Duration `yaml:"idle_timeout"` // a login with nothing typed this long is closed; default 15m
}

// Ban bans a source after repeated authentication failures.
type Ban struct {
	After int      `yaml:"after"` // failures; default 5
	For   Duration `yaml:"for"`   // default 15m
}

// Path is one communication path, a row of the table handed to the
// customer's network administrators.
type Path struct {
	Function    string      `yaml:"function"`
	Direction   string      `yaml:"direction"` // in | out
	Proto       string      `yaml:"proto"`     // tcp | udp | icmp
	Ports       []PortRange `yaml:"ports"`     // 25 or "10045-10049"; none for icmp
	Peers       PeerSet     `yaml:"peers"`     // addresses, prefixes, ranges (192.168.0.1-50), host names; none: anyone
	Description string      `yaml:"description"`
	Optional    bool        `yaml:"optional"` // the table's "(optional)"; paths are required unless marked
}

// PortRange is a port or an inclusive range of ports.
type PortRange struct{ From, To uint16 }

// Shutdown bounds how long services get to stop before they are killed.
type Shutdown struct {
	Timeout Duration `yaml:"timeout"`
}

// Defaults that apply when a key is absent.
const (
	DefaultShutdownTimeout = 10 * time.Second
	DefaultSSHIdleTimeout  = 15 * time.Minute
)

// Prefix is an address with its prefix length, such as 192.0.2.10/24.
type Prefix struct{ netip.Prefix }

// Duration is a Go duration string such as 90s or 15m.
type Duration struct{ time.Duration }

// Size is a number of bytes, written as 25MiB, 10MB or 1000000.
type Size struct{ Bytes int64 }
