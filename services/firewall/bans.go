package firewall

import (
	"gatehouse/config"
	"gatehouse/layout"
	"gatehouse/linuxfw"
)

// banSets are the ban sets c declares: the SSH shell's and the admin
// service's, on their ports while they run; while one does not, kept with
// its bans but dropping nothing, so that they hold again when it comes
// back.
func banSets(c *config.Config) []linuxfw.BanSet {
	ssh := linuxfw.BanSet{Name: layout.SSHBanSet, Proto: "tcp"}
	if c.SSHEnabled() {
		ssh.Ports, ssh.Timeout = []uint16{uint16(c.SSH.Port)}, c.SSH.Ban.For.Duration
	}
	// The web console's and the API's, on both their ports.
	admin := linuxfw.BanSet{Name: layout.AdminBanSet, Proto: "tcp"}
	if a := c.Admin; a != nil {
		admin.Ports, admin.Timeout = []uint16{uint16(a.WebPort), uint16(a.APIPort)}, a.Ban.For.Duration
	}
	return []linuxfw.BanSet{ssh, admin}
}
