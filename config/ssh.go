package config

import (
	"errors"
	"fmt"
	"time"
)

func (c *Config) checkSSH(ck *checker) {
	if c.SSH.Port < 1 || c.SSH.Port > 65535 {
		ck.errf("ssh.port", "%d is out of range (1 to 65535)", c.SSH.Port)
	}
	for i, k := range c.SSH.AuthorizedKeys {
		if _, err := ParseAuthorizedKey(k); err != nil {
			var ke *KeyError
			if errors.As(err, &ke) {
				ck.errAt(fmt.Sprintf("ssh.authorized_keys[%d]", i), ke.Offset, "%v", err)
			} else {
				ck.errf(fmt.Sprintf("ssh.authorized_keys[%d]", i), "%v", err)
			}
		}
	}
	if c.SSH.Ban.After < 1 {
		ck.errf("ssh.ban.after", "%d: ban after at least one failure", c.SSH.Ban.After)
	}
	if t := c.SSH.IdleTimeout.Duration; t < time.Minute || t > 24*time.Hour {
		ck.errf("ssh.idle_timeout", "%s is out of range (1m to 24h)", t)
	}
}

// SSHEnabled says whether the SSH shell runs: only with someone to let in.
func (c *Config) SSHEnabled() bool { return len(c.SSH.AuthorizedKeys) > 0 }
