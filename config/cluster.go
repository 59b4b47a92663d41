package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// Cluster makes this appliance a node of a Gatehouse cluster: backends
// are Raft voters, frontends receive the replicated config but never lead.
// The section is the node's own, like hostname, interfaces and routes:
// every other section is the cluster's, the same on every node.
type Cluster struct {
	Name string `yaml:"name"` // the node's name in the cluster; default: hostname
	Role string `yaml:"role"` // backend | frontend
	// Address is where the other nodes reach this one: an IP address,
	// port 8446 unless IP:PORT.
	Address string `yaml:"address"`
	// Peers may connect to the cluster port (the firewall's path); the
	// certificates decide who is a member.
	Peers PeerSet `yaml:"peers"`
	// MaxClockOffset refuses a node joining whose clock differs more
	// from the leader's; and marks a member "clock off" in the status.
	MaxClockOffset Duration `yaml:"max_clock_offset"`
	// ReportInterval is how often the leader asks each node for its
	// status; StaleAfter, how long without an answer makes it
	// "unreachable".
	ReportInterval Duration `yaml:"report_interval"`
	StaleAfter     Duration `yaml:"stale_after"`
}

// Cluster defaults.
const (
	DefaultClusterPort           = 8446
	DefaultClusterClockOffset    = 30 * time.Second
	DefaultClusterReportInterval = 2 * time.Second
)

// The cluster roles.
const (
	RoleBackend  = "backend"
	RoleFrontend = "frontend"
)

// NodeLocalKeys are the top-level sections each node keeps for itself in
// a cluster; the others are replicated.
var NodeLocalKeys = []string{"hostname", "interfaces", "routes", "cluster"}

// ClusterEnabled reports whether this appliance is (or may become) a
// cluster node.
func (c *Config) ClusterEnabled() bool { return c.Cluster != nil }

func (c *Config) clusterDefaults() {
	k := c.Cluster
	if k == nil {
		return
	}
	if k.Name == "" {
		k.Name = c.Hostname
	}
	if k.MaxClockOffset.Duration == 0 {
		k.MaxClockOffset.Duration = DefaultClusterClockOffset
	}
	if k.ReportInterval.Duration == 0 {
		k.ReportInterval.Duration = DefaultClusterReportInterval
	}
	if k.StaleAfter.Duration == 0 {
		k.StaleAfter.Duration = 5 * k.ReportInterval.Duration
	}
}

func (c *Config) checkCluster(ck *checker) {
	k := c.Cluster
	if k == nil {
		return
	}
	if len(c.NTP.Servers) == 0 {
		ck.errf("cluster", "a cluster needs ntp.servers: its nodes must agree on the time")
	}
	if !ValidNodeName(k.Name) {
		ck.errf("cluster.name", "%q: a node name is 1 to 63 letters, digits, '-' and '.'", k.Name)
	}
	switch k.Role {
	case RoleBackend, RoleFrontend:
	case "":
		ck.errf("cluster.role", "give backend (a Raft voter) or frontend (receives the config, never leads)")
	default:
		ck.errf("cluster.role", "%q: give backend or frontend", k.Role)
	}
	if _, err := k.AddrPort(); err != nil {
		ck.errf("cluster.address", "%v", err)
	}
	if t := k.MaxClockOffset.Duration; t < 100*time.Millisecond || t > time.Hour {
		ck.errf("cluster.max_clock_offset", "%s is out of range (100ms to 1h)", t)
	}
	if t := k.ReportInterval.Duration; t < 100*time.Millisecond || t > time.Minute {
		ck.errf("cluster.report_interval", "%s is out of range (100ms to 1m)", t)
	}
	if k.StaleAfter.Duration < 2*k.ReportInterval.Duration {
		ck.errf("cluster.stale_after", "%s is shorter than two report intervals (%s)", k.StaleAfter.Duration, 2*k.ReportInterval.Duration)
	}
	if k.Peers.Len() == 0 {
		ck.warnf("cluster.peers", "no peers listed: with the firewall on, no other node can reach this one")
	}
}

// AddrPort is the node's cluster address with its port.
func (k *Cluster) AddrPort() (netip.AddrPort, error) {
	return ParseClusterAddress(k.Address)
}

// ParseClusterAddress reads IP or IP:PORT, port 8446 by default.
func ParseClusterAddress(s string) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, DefaultClusterPort), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IP address or IP:PORT", s)
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: %q is not an IP address (the other nodes must reach this one without DNS)", s, host)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return netip.AddrPort{}, fmt.Errorf("%q: port out of range", s)
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

func ValidNodeName(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// SSHPeers are who may reach the diagnostics shell: the allow list, the
// monitoring hosts and, on a cluster node, the other nodes.
func (c *Config) SSHPeers() PeerSet {
	if c.Cluster != nil {
		return JoinPeers(c.SSH.Allow, c.Monitoring.Hosts, c.Cluster.Peers)
	}
	return JoinPeers(c.SSH.Allow, c.Monitoring.Hosts)
}
