// Package paths is the appliance's communication-path table: every flow it
// needs through a firewall, in the form handed to customers' network
// administrators. It is derived from the config (the paths the
// enabled services imply, plus the operator's own), and the firewall is
// built from it, so the table handed to the network team and the rules
// the appliance enforces cannot drift apart.
package paths

import (
	"fmt"
	"slices"
	"strings"

	"gatehouse/config"
)

// Path is one row.
type Path struct {
	Function    string             `json:"function"`
	Direction   string             `json:"direction"` // in | out
	Proto       string             `json:"proto"`     // tcp | udp | icmp
	Ports       []config.PortRange `json:"-"`
	PortText    string             `json:"ports"`
	Peers       config.PeerSet     `json:"peers"` // empty: anyone
	PeerText    string             `json:"-"`     // how the table names the peers
	Description string             `json:"description"`
	Required    bool               `json:"required"`
	Origin      string             `json:"origin"` // "config", or the service that needs the path
}

// Source and Target are the table's columns: the appliance on one side,
// the peers on the other.
func (p Path) Source() string {
	if p.Direction == "in" {
		return p.PeerText
	}
	return "Appliance"
}

// Target is the receiving side of the path.
func (p Path) Target() string {
	if p.Direction == "out" {
		return p.PeerText
	}
	return "Appliance"
}

// Port is the protocol and ports as the table writes them: "TCP 25".
func (p Path) Port() string {
	s := strings.ToUpper(p.Proto)
	if p.PortText != "" {
		s += " " + p.PortText
	}
	return s
}

// Table derives the full table from c: the services' paths first, then the
// operator's.
func Table(c *config.Config) []Path {
	var t []Path
	add := func(p Path) {
		var ports []string
		for _, r := range p.Ports {
			ports = append(ports, r.String())
		}
		p.PortText = strings.Join(ports, ", ")
		if p.PeerText == "" {
			p.PeerText = p.Peers.String()
			if p.PeerText == "" {
				p.PeerText = "any"
			}
		}
		t = append(t, p)
	}
	port := func(n uint16) []config.PortRange { return []config.PortRange{{From: n, To: n}} }

	if slices.ContainsFunc(c.Interfaces, func(i config.Interface) bool {
		return i.DHCP || slices.ContainsFunc(i.VLANs, func(v config.VLAN) bool { return v.DHCP })
	}) {
		add(Path{Function: "Address configuration (DHCP)", Direction: "out", Proto: "udp", Ports: port(67),
			PeerText: "DHCP server", Description: "Obtain and renew the appliance's address by DHCP.", Required: true, Origin: "network"})
	}
	dnsText := "Name server (DHCP-provided)"
	if len(c.DNS.Servers) > 0 {
		dnsText = ""
	}
	for _, proto := range []string{"udp", "tcp"} {
		add(Path{Function: "Name resolution", Direction: "out", Proto: proto, Ports: port(53), Peers: config.PeersOf(c.DNS.Servers...),
			PeerText: dnsText, Description: "DNS lookups: MX, A and AAAA for mail delivery, and every host name in the config.",
			Required: true, Origin: "dns"})
	}
	ntpPeers, ntpText := config.PeersOf(hostsOnly(c.NTP.Servers)...), ""
	if ntpPeers.Len() == 0 {
		ntpText = "Time server (DHCP-provided)"
	}
	add(Path{Function: "Time synchronisation", Direction: "out", Proto: "udp", Ports: port(123), Peers: ntpPeers,
		PeerText: ntpText, Description: "NTP; mandatory in a cluster.", Required: c.ClusterEnabled(), Origin: "ntp"})

	if c.SSHEnabled() {
		// The monitoring hosts and the cluster's nodes are always
		// allowed in, with the administrators' addresses.
		peers := c.SSHPeers()
		if peers.Len() > 0 { // nobody listed: nobody gets through
			add(Path{Function: "Diagnostics shell (SSH)", Direction: "in", Proto: "tcp",
				Ports: port(uint16(c.SSH.Port)), Peers: peers,
				Description: "SSH for administrators and monitoring; public keys only.", Required: false, Origin: "ssh"})
		}
	}
	if c.AdminEnabled() {
		// Fail closed: nobody listed, nobody gets through.
		if peers := c.AdminPeers(); peers.Len() > 0 {
			add(Path{Function: "Administration (web console)", Direction: "in", Proto: "tcp",
				Ports: port(uint16(c.Admin.WebPort)), Peers: peers,
				Description: "HTTPS web console for administrators; password or API token.", Required: false, Origin: "admin"})
		}
		if peers := c.AdminAPIPeers(); peers.Len() > 0 {
			add(Path{Function: "Administration (REST API)", Direction: "in", Proto: "tcp",
				Ports: port(uint16(c.Admin.APIPort)), Peers: peers,
				Description: "HTTPS REST API; bearer tokens (monitoring hosts: read only) or client certificates.", Required: false, Origin: "admin"})
		}
	}
	if c.NRPE != nil {
		// Nagios and Icinga ask from the monitoring hosts and the NRPE
		// server's own allow list.
		peers := config.JoinPeers(c.NRPE.Allow, c.Monitoring.Hosts)
		if peers.Len() > 0 { // nobody listed: nobody gets through
			add(Path{Function: "System monitoring (NRPE)", Direction: "in", Proto: "tcp",
				Ports: port(uint16(c.NRPE.Port())), Peers: peers,
				Description: "check_nrpe from Nagios or Icinga; built-in checks only, TLS or plain.", Required: false, Origin: "nrpe"})
		}
	}
	if k := c.Cluster; k != nil && k.Peers.Len() > 0 {
		ap, _ := k.AddrPort()
		// The backends dial out: Raft's leader replicates to every node
		// and asks each for its status, so a frontend in the DMZ opens
		// nothing inward but its one-time join.
		add(Path{Function: "Cluster communication", Direction: "in", Proto: "tcp", Ports: port(ap.Port()), Peers: k.Peers,
			Description: "Raft replication of the config and status polls from the backends; mutual TLS with the cluster's CA.",
			Required:    true, Origin: "cluster"})
		out := Path{Function: "Cluster communication", Direction: "out", Proto: "tcp", Ports: port(ap.Port()), Peers: k.Peers,
			Description: "To the other nodes: Raft replication, status polls, forwarding to the leader.", Required: true, Origin: "cluster"}
		if k.Role == config.RoleFrontend {
			out.Description, out.Required = "Only `gatehouse cluster join`: a frontend never dials the cluster otherwise.", false
		}
		add(out)
	}
	if c.SNMPEnabled() {
		snmpPaths(c, add)
	}
	if c.SMTP != nil {
		smtpPaths(c.SMTP, add)
	}
	for _, a := range c.Fetch {
		add(Path{Function: "Mail collection " + a.Name, Direction: "out", Proto: "tcp",
			Ports: port(uint16(a.Port)), Peers: config.PeersOf(a.Server),
			Description: fmt.Sprintf("%s mailbox %s for %s.", strings.ToUpper(a.Protocol), a.User, a.DeliverTo),
			Required:    true, Origin: "fetch"})
	}
	oauthPaths(c, add)
	if c.Syslog != nil {
		for _, d := range c.Syslog.Destinations {
			proto := "tcp"
			if d.Transport == "udp" {
				proto = "udp"
			}
			add(Path{Function: "Syslog", Direction: "out", Proto: proto, Ports: port(uint16(d.Port)), Peers: config.PeersOf(d.Server),
				Description: fmt.Sprintf("Log forwarding (RFC 5424 over %s) to the syslog server.", strings.ToUpper(d.Transport)),
				Required:    false, Origin: "syslog"})
		}
	}
	for _, p := range c.Firewall.Paths {
		add(Path{Function: p.Function, Direction: p.Direction, Proto: p.Proto, Ports: p.Ports, Peers: p.Peers,
			Description: p.Description, Required: !p.Optional, Origin: "config"})
	}
	return t
}

// oauthPaths are the token endpoints of the accounts and connectors that
// log in with OAuth2 (login.microsoftonline.com, oauth2.googleapis.com):
// HTTPS out, one path per host, naming who uses it.
func oauthPaths(c *config.Config, add func(Path)) {
	var hosts []string
	users := map[string][]string{}
	note := func(who string, o *config.OAuth2) {
		if o == nil {
			return
		}
		for _, h := range o.EndpointHosts() {
			if users[h] == nil {
				hosts = append(hosts, h)
			}
			if !slices.Contains(users[h], who) {
				users[h] = append(users[h], who)
			}
		}
	}
	for _, a := range c.Fetch {
		note("fetch "+a.Name, a.OAuth2)
	}
	if c.SMTP != nil {
		for _, cn := range c.SMTP.Connectors {
			if cn.Auth != nil {
				note("connector "+cn.Name, cn.Auth.OAuth2)
			}
		}
	}
	for _, h := range hosts {
		add(Path{Function: "OAuth2 token endpoint", Direction: "out", Proto: "tcp", Ports: []config.PortRange{{From: 443, To: 443}},
			Peers: config.PeersOf(h), Description: "Access tokens (HTTPS) for " + strings.Join(users[h], ", ") + ".",
			Required: true, Origin: "oauth2"})
	}
}

// hostsOnly drops a :port from NTP server names (the table lists hosts;
// the port is the path's).
func hostsOnly(servers []string) []string {
	var out []string
	for _, s := range servers {
		if i := strings.LastIndex(s, ":"); i > 0 && !strings.Contains(s[:i], ":") {
			s = s[:i]
		}
		out = append(out, s)
	}
	return out
}

// smtpPaths are the relay's openings: its listeners from anyone, its next
// hops and smart hosts, port 25 to any MX when it delivers directly, and
// 443 to any web server for MTA-STS and TLS reports.
func smtpPaths(s *config.SMTP, add func(Path)) {
	listener := func(addr, function, desc string) {
		if addr == "off" {
			return
		}
		ap, err := config.ParseListen(addr)
		if err != nil {
			return
		}
		add(Path{Function: function, Direction: "in", Proto: "tcp", Ports: []config.PortRange{{From: ap.Port(), To: ap.Port()}},
			Description: desc, Required: function == "Inbound mail (SMTP)", Origin: "smtp"})
	}
	listener(s.Listen.SMTP, "Inbound mail (SMTP)", "MX for the managed domains and relay for the trusted networks; STARTTLS offered.")
	listener(s.Listen.Submission, "Mail submission", "Submission (RFC 6409): STARTTLS, then AUTH.")
	listener(s.Listen.SMTPS, "Mail submission (implicit TLS)", "SMTPS: TLS from the first byte, then AUTH.")
	hop := func(function string, nh config.NextHop, desc string, required bool) {
		p := Path{Function: function, Direction: "out", Proto: "tcp", Ports: []config.PortRange{{From: nh.Port, To: nh.Port}},
			Description: desc, Required: required, Origin: "smtp"}
		if nh.NoMX {
			p.Peers = config.PeersOf(nh.Host)
		} else {
			p.PeerText = "MX hosts of " + nh.Host
		}
		add(p)
	}
	for _, d := range s.Domains {
		hop("Delivery to the internal mail server", d.NextHop, "Mail for "+d.Name+" to its next hop.", true)
	}
	for _, c := range s.Connectors {
		hop("Smart host "+c.Name, c.Smarthost, "Outbound connector "+c.Name+" (TLS "+c.TLS.String()+").", true)
	}
	direct := s.DefaultRoute.Kind == config.RouteMX
	for _, t := range s.Transport {
		direct = direct || t.Connector.Kind == config.RouteMX
	}
	if direct {
		add(Path{Function: "Mail delivery by MX", Direction: "out", Proto: "tcp", Ports: []config.PortRange{{From: 25, To: 25}},
			PeerText: "MX hosts of the recipients' domains", Description: "Direct delivery to the recipients' mail servers.",
			Required: true, Origin: "smtp"})
	}
	// MTA-STS policies are fetched from https://mta-sts.<domain>/, and TLS
	// reports may go to https: addresses: any web server, port 443.
	if direct && s.MTASTSEnabled() || s.TLSRPT != nil {
		add(Path{Function: "MTA-STS policies and TLS reports", Direction: "out", Proto: "tcp", Ports: []config.PortRange{{From: 443, To: 443}},
			PeerText:    "mta-sts.<domain> of the recipients' domains; https: report addresses",
			Description: "MTA-STS policies (RFC 8461) fetched over HTTPS for direct delivery; TLS reports (RFC 8460) posted to https: addresses.",
			Origin:      "smtp"})
	}
}

// snmpPaths are the SNMP agent's: 161/udp in from the monitoring hosts and
// every community's and user's allow list, and 162/udp out to each trap
// receiver.
func snmpPaths(c *config.Config, add func(Path)) {
	s := c.SNMP
	sets := []config.PeerSet{c.Monitoring.Hosts}
	for _, cm := range s.Communities {
		sets = append(sets, cm.Allow)
	}
	for _, u := range s.Users {
		sets = append(sets, u.Allow)
	}
	peers := config.JoinPeers(sets...)
	port := func(n uint16) []config.PortRange { return []config.PortRange{{From: n, To: n}} }
	var p uint16
	if i := strings.LastIndex(s.Listen, ":"); i >= 0 {
		fmt.Sscan(s.Listen[i+1:], &p)
	}
	if peers.Len() > 0 { // nobody listed: nobody gets through
		add(Path{Function: "System monitoring (SNMP)", Direction: "in", Proto: "udp", Ports: port(p), Peers: peers,
			Description: "SNMP v2c/v3 queries from the monitoring hosts and the communities' and users' allow lists.",
			Required:    false, Origin: "snmp"})
	}
	for _, t := range s.Traps {
		kind := "traps"
		if t.Inform {
			kind = "informs"
		}
		add(Path{Function: "System monitoring (SNMP " + kind + ")", Direction: "out", Proto: "udp", Ports: port(uint16(t.Port)),
			Peers: config.PeersOf(t.Host), Description: "SNMP " + t.Version + " " + kind + " to a receiver.", Required: false, Origin: "snmp"})
	}
}
