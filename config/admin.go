package config

import (
	"fmt"
	"time"
)

// Admin is administration over the network: the web console and the
// REST API, HTTPS both, from the allow list only (the monitoring hosts
// may use the API with a read token too).
type Admin struct {
	Allow   PeerSet `yaml:"allow"`    // addresses, prefixes, ranges, host names
	WebPort int     `yaml:"web_port"` // default 8443
	APIPort int     `yaml:"api_port"` // default 8445
	// Cert and Key are the certificate both serve (PEM); a self-signed
	// one is made on first start when absent. A replaced file is picked
	// up without a restart.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ClientCA, when set, lets an API client in by a certificate it
	// signed as well as by a token; ClientRole is what such a client may
	// do (default read).
	ClientCA       string   `yaml:"client_ca"`
	ClientRole     string   `yaml:"client_role"`
	Ban            Ban      `yaml:"ban"`
	SessionTimeout Duration `yaml:"session_timeout"` // a web session idle this long ends; default 30m
}

// Defaults of the admin section.
const (
	DefaultAdminWebPort        = 8443
	DefaultAdminAPIPort        = 8445
	DefaultAdminSessionTimeout = 30 * time.Minute
)

// AdminEnabled says whether the web console and the API run.
func (c *Config) AdminEnabled() bool { return c.Admin != nil }

// AdminPeers are who may reach the web console: the allow list and the
// cluster's other nodes (a backend's console is where a cluster is run).
func (c *Config) AdminPeers() PeerSet {
	if c.Admin == nil {
		return PeerSet{}
	}
	if c.Cluster != nil {
		return JoinPeers(c.Admin.Allow, c.Cluster.Peers)
	}
	return c.Admin.Allow
}

// AdminAPIPeers are who may reach the API: as the web console, and the
// monitoring hosts (with read tokens, which the service enforces).
func (c *Config) AdminAPIPeers() PeerSet {
	if c.Admin == nil {
		return PeerSet{}
	}
	return JoinPeers(c.AdminPeers(), c.Monitoring.Hosts)
}

func (c *Config) adminDefaults() {
	a := c.Admin
	if a == nil {
		return
	}
	if a.WebPort == 0 {
		a.WebPort = DefaultAdminWebPort
	}
	if a.APIPort == 0 {
		a.APIPort = DefaultAdminAPIPort
	}
	if a.ClientRole == "" {
		a.ClientRole = "read"
	}
	if a.Ban.After == 0 {
		a.Ban.After = 5
	}
	if a.Ban.For.Duration == 0 {
		a.Ban.For.Duration = 15 * time.Minute
	}
	if a.SessionTimeout.Duration == 0 {
		a.SessionTimeout.Duration = DefaultAdminSessionTimeout
	}
}

func (c *Config) checkAdmin(ck *checker) {
	a := c.Admin
	if a == nil {
		return
	}
	for _, p := range []struct {
		path string
		port int
	}{{"admin.web_port", a.WebPort}, {"admin.api_port", a.APIPort}} {
		if p.port < 1 || p.port > 65535 {
			ck.errf(p.path, "%d is out of range (1 to 65535)", p.port)
		}
	}
	if a.WebPort == a.APIPort {
		ck.errf("admin.api_port", "%d is the web console's port too", a.APIPort)
	}
	if c.SSHEnabled() && (a.WebPort == c.SSH.Port || a.APIPort == c.SSH.Port) {
		ck.errf("admin", "port %d is the SSH shell's", c.SSH.Port)
	}
	if (a.Cert == "") != (a.Key == "") {
		ck.errf("admin", "give both cert and key, or neither (a self-signed certificate is made)")
	}
	if a.ClientRole != "read" && a.ClientRole != "admin" {
		ck.errf("admin.client_role", "%q: give read or admin", a.ClientRole)
	}
	if a.Ban.After < 1 {
		ck.errf("admin.ban.after", "%d: ban after at least one failure", a.Ban.After)
	}
	if t := a.Ban.For.Duration; t < time.Minute || t > 7*24*time.Hour {
		ck.errf("admin.ban.for", "%s is out of range (1m to 168h)", t)
	}
	if t := a.SessionTimeout.Duration; t < time.Minute || t > 24*time.Hour {
		ck.errf("admin.session_timeout", "%s is out of range (1m to 24h)", t)
	}
	if c.AdminAPIPeers().Len() == 0 {
		ck.warnf("admin", "%s", fmt.Sprintf("admin.allow lists no one: the web console (%d) and the API (%d) admit no one", a.WebPort, a.APIPort))
	}
}
