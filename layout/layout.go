// Package layout is the one place that knows where the appliance keeps
// things: the run directory PID 1 shares with the services, the sockets in
// it, the state on the data disk, and which resolv.conf is the appliance's.
// An instance in host mode (`gatehouse run --state DIR`) keeps all of it in
// its state directory and leaves the host's files alone.
package layout

import "path/filepath"

// On the appliance.
const (
	RunDir  = "/run/gatehouse" // PID 1's run directory, on a tmpfs
	DataDir = "/data"          // the data disk: what survives a reboot
	// SystemResolvConf is the C library's list of DNS servers: on the
	// appliance the dns service writes it; in host mode it is the host's,
	// which an instance never touches.
	SystemResolvConf = "/etc/resolv.conf"
)

// NetworkState is the file in the run directory where the network
// service publishes its state (status.Network): the DNS and NTP servers
// DHCP named are read from it by the dns and ntp services.
const NetworkState = "network.json"

// SSHBanSet is the firewall's ban set the SSH shell puts sources in that
// failed too often (linuxfw.Ban): the firewall service declares it at the
// shell's port, the shell fills it.
const SSHBanSet = "ssh"

// AdminBanSet is the web console's and the API's ban set: the admin
// service bans a source there after repeated failed logins.
const AdminBanSet = "admin"

// Paths are one instance's paths.
type Paths struct {
	Run       string // the run directory: config copy, sockets, what services publish
	Appliance bool   // state on DataDir, SystemResolvConf the appliance's own
}

// Appliance is the layout of the appliance (PID 1 and its services).
func Appliance() Paths { return Paths{Run: RunDir, Appliance: true} }

// Host is the layout of an instance in host mode, all in its state
// directory.
func Host(stateDir string) Paths { return Paths{Run: stateDir} }

// For is Appliance() or Host(runDir): what a service started with
// `--run DIR [--appliance]` is given.
func For(runDir string, appliance bool) Paths {
	if appliance {
		return Paths{Run: runDir, Appliance: true}
	}
	return Host(runDir)
}

// OfControlSocket is the layout of the instance whose control socket is
// sock: the other sockets are beside it.
func OfControlSocket(sock string) Paths {
	run := filepath.Dir(sock)
	return Paths{Run: run, Appliance: run == RunDir}
}

// ControlSocket is PID 1's control socket (package control).
func (p Paths) ControlSocket() string { return filepath.Join(p.Run, "control.sock") }

// RelaySocket is the relay's socket (queue, fetch and pop-auth commands).
// It lives in a directory of the relay's own: the run directory is
// root's, and a relay that could write there could plant files PID 1 then
// writes through.
func (p Paths) RelaySocket() string { return filepath.Join(p.Run, "smtp", "smtp.sock") }

// FirewallSocket is the firewall service's socket, which answers
// status.FirewallRequest (the rules the kernel enforces, read back).
func (p Paths) FirewallSocket() string { return filepath.Join(p.Run, "firewall", "firewall.sock") }

// Config is the running config: the copy PID 1 validated, which the
// services read.
func (p Paths) Config() string { return filepath.Join(p.Run, "config.yaml") }

// ResolvConf lists the DNS servers the appliance asks: the file the dns
// service writes (SystemResolvConf on the appliance), which every service
// that looks names up reads.
func (p Paths) ResolvConf() string {
	if p.Appliance {
		return SystemResolvConf
	}
	return filepath.Join(p.Run, "resolv.conf")
}

// Queue is the relay's queue directory.
func (p Paths) Queue() string { return p.state("queue") }

// TLS holds the relay's generated certificate.
func (p Paths) TLS() string { return p.state("tls") }

// MTASTS holds the relay's cache of MTA-STS policies (RFC 8461): kept
// across restarts, so that a blocked policy host cannot downgrade a domain.
func (p Paths) MTASTS() string { return p.state("mta-sts") }

// TLSRPT holds the relay's counts of TLS sessions per day for the TLS
// reports (RFC 8460) until they are sent.
func (p Paths) TLSRPT() string { return p.state("tls-rpt") }

// OAuth holds the relay's OAuth2 refresh tokens as the providers rotate
// them (the config's refresh_token_file is where they start).
func (p Paths) OAuth() string { return p.state("oauth") }

// DKIM holds the DKIM signing keys `gatehouse dkim keygen` makes.
func (p Paths) DKIM() string { return p.state("dkim") }

// Admin holds the web console's and the API's state: the generated
// certificate, the API tokens (hashed) and the web password (bcrypt).
func (p Paths) Admin() string { return p.state("admin") }

// SSHKeys holds the SSH shell's host key.
func (p Paths) SSHKeys() string { return p.state("ssh") }

// NRPE holds the NRPE server's generated certificate.
func (p Paths) NRPE() string { return p.state("nrpe") }

// SNMP holds the SNMP agent's engine ID and boots.
func (p Paths) SNMP() string { return p.state("snmp") }

// Cluster holds the node's cluster identity, key and Raft log.
func (p Paths) Cluster() string { return p.state("cluster") }

// ClusterSocket is the cluster service's socket (`gatehouse cluster`,
// and PID 1 forwarding `config apply` on a cluster node).
func (p Paths) ClusterSocket() string { return filepath.Join(p.Run, "cluster", "cluster.sock") }

// Data is the data disk (the state directory in host mode).
func (p Paths) Data() string {
	if p.Appliance {
		return DataDir
	}
	return p.Run
}

// state is name on the data disk, or in the state directory.
func (p Paths) state(name string) string {
	if p.Appliance {
		return filepath.Join(DataDir, name)
	}
	return filepath.Join(p.Run, name)
}
