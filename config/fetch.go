package config

import (
	"fmt"
	"strings"
	"time"
)

// FetchAccount is a remote mailbox the collector empties (or copies) into
// the relay, like a fetchmail poll entry.
type FetchAccount struct {
	Name         string   `yaml:"name"`
	Protocol     string   `yaml:"protocol"` // pop3, imap (STLS/STARTTLS required) | pop3s, imaps
	Server       string   `yaml:"server"`
	Port         int      `yaml:"port"` // default by protocol: 110, 995
	User         string   `yaml:"user"`
	PasswordFile string   `yaml:"password_file"` // the password is never in this file
	OAuth2       *OAuth2  `yaml:"oauth2"`        // instead of a password: a token (Exchange Online, Gmail)
	Folders      []string `yaml:"folders"`       // IMAP only; default INBOX
	Idle         bool     `yaml:"idle"`          // IMAP only: wait in IDLE on the first folder
	Keep         bool     `yaml:"keep"`          // leave collected mail on the server
	DeliverTo    string   `yaml:"deliver_to"`    // the local recipient
	Poll         Duration `yaml:"poll"`          // default 5m
	TLSVerify    *bool    `yaml:"tls_verify"`    // default true
	CAFile       string   `yaml:"ca_file"`       // extra CA for this server
}

func (c *Config) fetchDefaults() {
	for i := range c.Fetch {
		a := &c.Fetch[i]
		if a.Port == 0 {
			a.Port = map[string]int{"pop3": 110, "pop3s": 995, "imap": 143, "imaps": 993}[a.Protocol]
		}
		if a.Poll.Duration == 0 {
			a.Poll.Duration = 5 * time.Minute
		}
		if a.TLSVerify == nil {
			t := true
			a.TLSVerify = &t
		}
		if a.OAuth2 != nil {
			a.OAuth2.defaults()
		}
	}
}

func (c *Config) checkFetch(ck *checker) {
	if len(c.Fetch) > 0 && c.SMTP == nil {
		ck.errf("fetch", "the collector delivers through the relay: configure the smtp section too")
	}
	names := map[string]string{}
	for i, a := range c.Fetch {
		p := fmt.Sprintf("fetch[%d]", i)
		if a.Name == "" || strings.ContainsAny(a.Name, "/\\ \t\x00:") {
			ck.errf(p+".name", "%q is not an account name (no spaces, slashes or colons)", a.Name)
		} else if prev, dup := names[a.Name]; dup {
			ck.errf(p+".name", "account %s is already defined at %s", a.Name, prev)
		}
		names[a.Name] = p
		switch a.Protocol {
		case "pop3", "pop3s", "imap", "imaps":
		default:
			ck.errf(p+".protocol", "%q: pop3, pop3s, imap or imaps", a.Protocol)
		}
		if !validHost(a.Server) {
			ck.errf(p+".server", "%q is not a host name or address", a.Server)
		}
		if (a.Port != 0 || a.Protocol == "pop3" || a.Protocol == "pop3s" || a.Protocol == "imap" || a.Protocol == "imaps") && (a.Port < 1 || a.Port > 65535) {
			ck.errf(p+".port", "%d is out of range (1 to 65535)", a.Port)
		}
		if a.User == "" {
			ck.errf(p+".user", "a user is required")
		}
		switch {
		case a.OAuth2 != nil && a.PasswordFile != "":
			ck.errf(p+".password_file", "give a password file or oauth2, not both")
		case a.OAuth2 != nil:
			a.OAuth2.check(ck, p+".oauth2")
		case a.PasswordFile == "":
			ck.errf(p+".password_file", "a password file (the password is never written in this file) or oauth2 is required")
		}
		if !validMailbox(a.DeliverTo) {
			ck.errf(p+".deliver_to", "%q is not a mail address", a.DeliverTo)
		}
		if a.Poll.Duration < 10*time.Second {
			ck.errf(p+".poll", "%s is too short (at least 10s)", a.Poll.Duration)
		}
		if strings.HasPrefix(a.Protocol, "pop3") && (len(a.Folders) > 0 || a.Idle) {
			ck.errf(p+".folders", "folders and idle are IMAP settings; this account uses %s", a.Protocol)
		}
	}
}
