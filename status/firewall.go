package status

import (
	"fmt"
	"time"
)

// Firewall is what the firewall service reports.
type Firewall struct {
	Backend string `json:"backend"`
	// Ruleset is what is in place in every family: "config" once a full
	// ruleset of the config's went in, "default-deny" while only the
	// boot-time one did, "" while not even that (LastError says what
	// failed; a family that took the rules is filtered by them).
	Ruleset    string    `json:"ruleset"`
	Applied    time.Time `json:"applied"`
	In         []string  `json:"in"`  // one line per inbound rule
	Out        []string  `json:"out"` // one line per outbound rule; empty with open egress
	Egress     string    `json:"egress"`
	LastError  string    `json:"last_error,omitempty"`
	Applies    int       `json:"applies"`
	ResolvedAt time.Time `json:"resolved_at"`
	NextLookup time.Time `json:"next_lookup,omitzero"` // when a host-name peer's DNS answer runs out
	// Drops are what the default drop rules dropped (the traffic no path
	// allows; invalid packets and banned sources aside), both families,
	// read back from the kernel every round (every 30 s at most). They
	// only grow while the service runs: the counters a ruleset's
	// replacement starts at zero again are carried over.
	Drops FirewallDrops `json:"drops"`
	// DropsError is why the counters could not be read at the last try;
	// Drops are then the last ones read.
	DropsError string    `json:"drops_error,omitempty"`
	DropsRead  time.Time `json:"drops_read,omitzero"` // when they were last read
}

// FirewallDrops are the dropped traffic, inbound and outbound.
type FirewallDrops struct {
	In  DropCount `json:"in"`
	Out DropCount `json:"out"`
}

// DropCount is a count of dropped packets and their bytes.
type DropCount struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Summary says in one line what is in place (the error aside), for the
// service's status line and the console.
func (s Firewall) Summary() string {
	switch s.Ruleset {
	case "config":
		return fmt.Sprintf("%s, %d inbound paths, egress %s", s.Backend, len(s.In), s.Egress)
	case "default-deny":
		return s.Backend + ", the boot-time default deny: the config's rules are not in everywhere"
	}
	return s.Backend + ", neither the default deny nor the config's rules are in everywhere"
}

// FirewallRequest is a call on the firewall service's socket
// (layout.Paths.FirewallSocket). Its one verb is "show".
type FirewallRequest struct {
	Verb string `json:"verb"`
}

// FirewallRules answers "show": the ruleset the kernel enforces, read
// back by the firewall service (PID 1 runs no firewall tool itself: its
// reaper would race the tool's exit status).
type FirewallRules struct {
	Error   string `json:"error,omitempty"`
	Backend string `json:"backend,omitempty"`
	Rules   string `json:"rules,omitempty"` // as the backend lists it (nft list ruleset, iptables-save)
}
