package config

import "time"

// Update is how a firmware update's trial boot is judged: the new
// firmware must be ready within ReadyTimeout and then stay healthy for
// TrialPeriod before it becomes the default; otherwise the appliance
// reboots into the firmware it came from.
type Update struct {
	ReadyTimeout Duration `yaml:"ready_timeout"` // default 5m
	TrialPeriod  Duration `yaml:"trial_period"`  // default 60s
}

// Defaults of the update section.
const (
	DefaultUpdateReadyTimeout = 5 * time.Minute
	DefaultUpdateTrialPeriod  = time.Minute
)

func (c *Config) updateDefaults() {
	if c.Update.ReadyTimeout.Duration == 0 {
		c.Update.ReadyTimeout.Duration = DefaultUpdateReadyTimeout
	}
	if c.Update.TrialPeriod.Duration == 0 {
		c.Update.TrialPeriod.Duration = DefaultUpdateTrialPeriod
	}
}

func (c *Config) checkUpdate(ck *checker) {
	if t := c.Update.ReadyTimeout.Duration; t < 30*time.Second || t > time.Hour {
		ck.errf("update.ready_timeout", "%s is out of range (30s to 1h)", t)
	}
	if t := c.Update.TrialPeriod.Duration; t < 5*time.Second || t > 24*time.Hour {
		ck.errf("update.trial_period", "%s is out of range (5s to 24h)", t)
	}
}
