package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// SNMP is the SNMP agent: v2c communities and v3 users, each with the
// sources it admits (the monitoring hosts are always admitted too) and the
// subtrees it may read, and the receivers of its traps and informs.
type SNMP struct {
	Listen      string          `yaml:"listen"` // default ":161" (every address)
	Name        string          `yaml:"name"`   // sysName; default the hostname
	Contact     string          `yaml:"contact"`
	Location    string          `yaml:"location"`
	Communities []SNMPCommunity `yaml:"communities"`
	Users       []SNMPUser      `yaml:"users"`
	Traps       []SNMPTrap      `yaml:"traps"`
	Thresholds  SNMPThresholds  `yaml:"thresholds"`
	// RatePerSource bounds the requests one source gets answered per
	// second (a burst of twice as many); default 500.
	RatePerSource int `yaml:"rate_per_source"`
}

// SNMPCommunity is a v2c community (read-only). The community travels in
// clear text, so it is written here rather than in a file.
type SNMPCommunity struct {
	Community string   `yaml:"community"`
	Allow     PeerSet  `yaml:"allow"` // beside monitoring.hosts
	View      []string `yaml:"view"`  // OID subtrees; default the whole tree (1.3.6.1)
}

// SNMPUser is a v3 USM user.
type SNMPUser struct {
	Name     string   `yaml:"name"`
	Auth     SNMPKey  `yaml:"auth"` // protocol sha | sha224 | sha256 | sha384 | sha512
	Priv     SNMPKey  `yaml:"priv"` // protocol aes (aes128) | aes192 | aes256
	MinLevel string   `yaml:"min_level"`
	Allow    PeerSet  `yaml:"allow"`
	View     []string `yaml:"view"`
}

// SNMPKey is a USM protocol and the file holding its pass phrase.
type SNMPKey struct {
	Protocol     string `yaml:"protocol"`
	PasswordFile string `yaml:"password_file"`
}

// SNMPTrap is a receiver of traps (or, with inform, of informs, which it
// acknowledges).
type SNMPTrap struct {
	Host      string `yaml:"host"`
	Port      int    `yaml:"port"`    // default 162
	Version   string `yaml:"version"` // v2c (default) | v3
	Community string `yaml:"community"`
	User      string `yaml:"user"` // v3: one of users, at its highest level
	Inform    bool   `yaml:"inform"`
}

// SNMPThresholds say when the agent sends a trap.
type SNMPThresholds struct {
	QueueDepth      int `yaml:"queue_depth"`       // messages; default 1000
	DiskFreePercent int `yaml:"disk_free_percent"` // of /data; default 10
}

// The USM security levels, in net-snmp's spelling.
const (
	NoAuthNoPriv = "noAuthNoPriv"
	AuthNoPriv   = "authNoPriv"
	AuthPriv     = "authPriv"
)

// SNMPAuthProtocols and SNMPPrivProtocols are the protocols the agent
// speaks.
var (
	SNMPAuthProtocols = []string{"sha", "sha224", "sha256", "sha384", "sha512"}
	SNMPPrivProtocols = []string{"aes", "aes128", "aes192", "aes256"}
)

// Level is the user's minimum security level: the one configured, or the
// highest its keys allow.
func (u SNMPUser) Level() string {
	if u.MinLevel != "" {
		return u.MinLevel
	}
	switch {
	case u.Priv.Protocol != "":
		return AuthPriv
	case u.Auth.Protocol != "":
		return AuthNoPriv
	}
	return NoAuthNoPriv
}

// SNMPEnabled says whether the agent runs: with a community or a user.
func (c *Config) SNMPEnabled() bool {
	return c.SNMP != nil && (len(c.SNMP.Communities) > 0 || len(c.SNMP.Users) > 0)
}

// DefaultSNMPRate is the default of snmp.rate_per_source.
const DefaultSNMPRate = 500

func (c *Config) snmpDefaults() {
	s := c.SNMP
	if s == nil {
		return
	}
	if s.Listen == "" {
		s.Listen = ":161"
	}
	if s.Name == "" {
		s.Name = c.Hostname
	}
	if s.RatePerSource == 0 {
		s.RatePerSource = DefaultSNMPRate
	}
	if s.Thresholds.QueueDepth == 0 {
		s.Thresholds.QueueDepth = 1000
	}
	if s.Thresholds.DiskFreePercent == 0 {
		s.Thresholds.DiskFreePercent = 10
	}
	for i := range s.Communities {
		if len(s.Communities[i].View) == 0 {
			s.Communities[i].View = []string{"1.3.6.1"}
		}
	}
	for i := range s.Users {
		u := &s.Users[i]
		if len(u.View) == 0 {
			u.View = []string{"1.3.6.1"}
		}
		if u.Priv.Protocol == "aes128" {
			u.Priv.Protocol = "aes"
		}
	}
	for i := range s.Traps {
		t := &s.Traps[i]
		if t.Port == 0 {
			t.Port = 162
		}
		if t.Version == "" {
			t.Version = "v2c"
		}
	}
}

func (c *Config) checkSNMP(ck *checker) {
	s := c.SNMP
	if s == nil {
		return
	}
	if len(s.Communities) == 0 && len(s.Users) == 0 {
		ck.errf("snmp", "give at least one community or user")
	}
	host, port, err := net.SplitHostPort(s.Listen)
	if p, perr := strconv.Atoi(port); err != nil || perr != nil || p < 1 || p > 65535 {
		ck.errf("snmp.listen", "%q is not host:port (\":161\" listens on every address)", s.Listen)
	} else if host != "" && net.ParseIP(host) == nil {
		ck.errf("snmp.listen", "%q: the host is not an IP address", s.Listen)
	}
	for _, f := range []struct{ key, v string }{{"name", s.Name}, {"contact", s.Contact}, {"location", s.Location}} {
		if len(f.v) > 255 {
			ck.errf("snmp."+f.key, "at most 255 characters")
		}
	}
	if s.RatePerSource < 1 || s.RatePerSource > 100000 {
		ck.errf("snmp.rate_per_source", "%d is out of range (1 to 100000)", s.RatePerSource)
	}
	if t := s.Thresholds.DiskFreePercent; t < 1 || t > 99 {
		ck.errf("snmp.thresholds.disk_free_percent", "%d is out of range (1 to 99)", t)
	}
	if s.Thresholds.QueueDepth < 1 {
		ck.errf("snmp.thresholds.queue_depth", "%d: at least 1", s.Thresholds.QueueDepth)
	}
	comms := map[string]string{}
	for i, cm := range s.Communities {
		p := fmt.Sprintf("snmp.communities[%d]", i)
		if cm.Community == "" || len(cm.Community) > 255 {
			ck.errf(p+".community", "a community of 1 to 255 characters is required")
		} else if prev, dup := comms[cm.Community]; dup {
			ck.errf(p+".community", "the community is already given at %s", prev)
		}
		comms[cm.Community] = p
		checkView(ck, p+".view", cm.View)
	}
	users := map[string]SNMPUser{}
	where := map[string]string{}
	for i, u := range s.Users {
		p := fmt.Sprintf("snmp.users[%d]", i)
		if u.Name == "" || len(u.Name) > 32 {
			ck.errf(p+".name", "a user name of 1 to 32 characters is required")
		} else if prev, dup := where[u.Name]; dup {
			ck.errf(p+".name", "user %s is already defined at %s", u.Name, prev)
		}
		where[u.Name] = p
		users[u.Name] = u
		if u.Auth.Protocol != "" && !contains(SNMPAuthProtocols, u.Auth.Protocol) {
			ck.errf(p+".auth.protocol", "%q: one of %s", u.Auth.Protocol, strings.Join(SNMPAuthProtocols, ", "))
		}
		if u.Priv.Protocol != "" && !contains(SNMPPrivProtocols, u.Priv.Protocol) {
			ck.errf(p+".priv.protocol", "%q: one of %s", u.Priv.Protocol, strings.Join(SNMPPrivProtocols, ", "))
		}
		if u.Priv.Protocol != "" && u.Auth.Protocol == "" {
			ck.errf(p+".priv", "privacy needs authentication: give auth too")
		}
		for _, k := range []struct {
			key string
			k   SNMPKey
		}{{"auth", u.Auth}, {"priv", u.Priv}} {
			if k.k.Protocol != "" && k.k.PasswordFile == "" {
				ck.errf(p+"."+k.key+".password_file", "a pass phrase file is required (the pass phrase is never written in this file)")
			}
			if k.k.Protocol == "" && k.k.PasswordFile != "" {
				ck.errf(p+"."+k.key+".protocol", "a protocol is required with a pass phrase")
			}
		}
		switch u.MinLevel {
		case "":
		case NoAuthNoPriv, AuthNoPriv, AuthPriv:
			if levelRank(u.MinLevel) > levelRank(u.Level0()) {
				ck.errf(p+".min_level", "%s needs keys the user does not have", u.MinLevel)
			}
		default:
			ck.errf(p+".min_level", "%q: noAuthNoPriv, authNoPriv or authPriv", u.MinLevel)
		}
		checkView(ck, p+".view", u.View)
	}
	for i, t := range s.Traps {
		p := fmt.Sprintf("snmp.traps[%d]", i)
		if !validHost(t.Host) {
			ck.errf(p+".host", "%q is not a host name or address", t.Host)
		}
		if t.Port < 1 || t.Port > 65535 {
			ck.errf(p+".port", "%d is out of range (1 to 65535)", t.Port)
		}
		switch t.Version {
		case "v2c":
			if t.Community == "" {
				ck.errf(p+".community", "a v2c receiver needs a community")
			}
		case "v3":
			if u, ok := users[t.User]; !ok {
				ck.errf(p+".user", "%q is not one of snmp.users", t.User)
			} else if u.Auth.Protocol == "" {
				ck.errf(p+".user", "user %s has no authentication key: traps are sent authenticated", t.User)
			}
		default:
			ck.errf(p+".version", "%q: v2c or v3", t.Version)
		}
	}
}

// Level0 is the highest level the user's keys allow.
func (u SNMPUser) Level0() string {
	v := u
	v.MinLevel = ""
	return v.Level()
}

func levelRank(l string) int {
	switch l {
	case AuthNoPriv:
		return 1
	case AuthPriv:
		return 2
	}
	return 0
}

func checkView(ck *checker, path string, view []string) {
	for j, o := range view {
		if !validOID(o) {
			ck.errf(fmt.Sprintf("%s[%d]", path, j), "%q is not a numeric OID (like 1.3.6.1.2.1)", o)
		}
	}
}

// validOID says whether s is a dotted numeric OID of 2 to 128 arcs.
func validOID(s string) bool {
	parts := strings.Split(strings.TrimPrefix(s, "."), ".")
	if len(parts) < 2 || len(parts) > 128 {
		return false
	}
	for _, p := range parts {
		if _, err := strconv.ParseUint(p, 10, 32); err != nil {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
