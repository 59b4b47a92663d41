package firewall

import (
	"gatehouse/config"
	"gatehouse/layout"
	"gatehouse/linuxfw"
)

// banSets are the ban sets c declares: the SSH shell's, on its port while
// it runs; while it does not, kept with its bans but dropping nothing, so
// that they hold again when it comes back.
func banSets(c *config.Config) []linuxfw.BanSet {
	ssh := linuxfw.BanSet{Name: layout.SSHBanSet, Proto: "tcp"}
	if c.SSHEnabled() {
		ssh.Ports, ssh.Timeout = []uint16{uint16(c.SSH.Port)}, c.SSH.Ban.For.Duration
	}
	return []linuxfw.BanSet{ssh}
}
