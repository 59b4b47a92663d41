package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/net/idna"
)

// SMTP is the mail relay. The vocabulary follows Postfix where Postfix has
// a word for it (trusted networks = mynetworks, managed domains =
// relay_domains, transport, smarthost = relayhost, TLS security levels).
type SMTP struct {
	Hostname string `yaml:"hostname"` // banner and Received headers; default: the appliance's hostname
	// GreetPause delays the banner on port 25 for clients outside the
	// trusted networks; one that speaks first is refused at MAIL.
	GreetPause Duration  `yaml:"greet_pause"`
	Listen     Listen    `yaml:"listen"`
	TLS        SMTPFiles `yaml:"tls"`

	Domains         []MailDomain `yaml:"domains"`          // managed domains: accepted from anyone
	TrustedNetworks PeerSet      `yaml:"trusted_networks"` // may relay anywhere (Postfix mynetworks)
	Users           []MailUser   `yaml:"users"`            // AUTH users (submission)
	AuthIMAP        *AuthIMAP    `yaml:"auth_imap"`        // check other logins against the internal IMAP server
	PopBeforeSMTP   PopBefore    `yaml:"pop_before_smtp"`

	RejectUnauthenticatedLocalSenders *bool    `yaml:"reject_unauthenticated_local_senders"` // default true
	LocalSenderExceptions             []string `yaml:"local_sender_exceptions"`

	DefaultRoute      Route              `yaml:"default_route"` // mx (default) | a connector name
	Transport         []TransportEntry   `yaml:"transport"`     // routes by recipient domain
	Connectors        []Connector        `yaml:"connectors"`
	InboundConnectors []InboundConnector `yaml:"inbound_connectors"`
	Rules             []HeaderRule       `yaml:"rules"`
	TLSPolicy         []TLSPolicyEntry   `yaml:"tls_policy"`
	OutboundTLS       TLSLevel           `yaml:"outbound_tls"` // level for direct MX delivery; default may
	DKIMSigning       []DKIMKey          `yaml:"dkim_signing"` // sign mail from the inside by sender domain
	Checks            *MailChecks        `yaml:"checks"`       // nil: mail from outside is not authenticated
	MTASTS            *bool              `yaml:"mta_sts"`      // MTA-STS for direct MX delivery (transportsec.go); default true
	TLSRPT            *TLSRPT            `yaml:"tls_rpt"`      // daily TLS reports (RFC 8460); nil: none sent
	// SMTPUTF8 offers internationalised addresses (RFC 6531) on every
	// listener; default true. DSN (RFC 3461) is always offered.
	SMTPUTF8 *bool `yaml:"smtputf8"`

	Limits       MailLimits `yaml:"limits"`
	Queue        QueueConf  `yaml:"queue"`
	BareNewlines string     `yaml:"bare_newlines"` // reject (default) | normalize
}

// Listen are the relay's listeners; "off" disables one.
type Listen struct {
	SMTP       string `yaml:"smtp"`       // MX and relay, default :25
	Submission string `yaml:"submission"` // STARTTLS then AUTH, default :587
	SMTPS      string `yaml:"smtps"`      // implicit TLS, default :465
}

// SMTPFiles name the relay's certificate and extra trusted CAs.
type SMTPFiles struct {
	Cert   string `yaml:"cert"`    // PEM; generated (self-signed) when absent
	Key    string `yaml:"key"`     //
	CAFile string `yaml:"ca_file"` // extra CAs trusted for outbound verify/secure
}

// MailDomain is a managed domain and the internal server it goes to.
type MailDomain struct {
	Name       string   `yaml:"name"`
	Subdomains bool     `yaml:"subdomains"`
	NextHop    NextHop  `yaml:"next_hop"`   // "[10.0.0.5]:25" (no MX lookup) or "host" / "host:port" (MX lookup)
	TLS        TLSLevel `yaml:"tls"`        // none | may (default) | encrypt | verify | secure
	Recipients []string `yaml:"recipients"` // optional: the only valid local parts or addresses
	// Without a recipients list, ask the next hop whether it takes a
	// recipient before accepting it (Postfix's reject_unverified_recipient):
	// unknown users are refused at RCPT instead of bounced later to a
	// sender who is most often forged.
	VerifyRecipients bool `yaml:"verify_recipients"`
}

// MailUser may AUTH and send as its addresses.
type MailUser struct {
	Login        string   `yaml:"login"`
	PasswordHash string   `yaml:"password_hash"` // bcrypt
	Addresses    []string `yaml:"addresses"`     // the senders this login may use
}

// AuthIMAP checks AUTH logins that have no local password against the
// internal mail server's IMAP LOGIN.
type AuthIMAP struct {
	Server string  `yaml:"server"` // host:port, e.g. 10.0.0.5:993
	TLS    IMAPTLS `yaml:"tls"`    // implicit (default, port 993) | starttls (port 143)
}

// PopBefore authorises a client address for a while after a POP/IMAP login.
type PopBefore struct {
	Window Duration `yaml:"window"` // 0: off
}

// TransportEntry routes mail for a recipient domain to a connector.
type TransportEntry struct {
	Domain     string `yaml:"domain"`
	Subdomains bool   `yaml:"subdomains"`
	Connector  Route  `yaml:"connector"` // a connector name, or "mx"
}

// Connector is an outbound route: a smart host.
type Connector struct {
	Name      string    `yaml:"name"`
	Smarthost NextHop   `yaml:"smarthost"` // "[host]:port" or "host:port"
	TLS       TLSLevel  `yaml:"tls"`       // default may
	Auth      *SMTPAuth `yaml:"auth"`
}

// SMTPAuth are credentials for a smart host: a password, or an OAuth2
// token (Exchange Online's SMTP AUTH).
type SMTPAuth struct {
	User         string  `yaml:"user"`
	PasswordFile string  `yaml:"password_file"`
	OAuth2       *OAuth2 `yaml:"oauth2"`
}

// InboundConnector names a sender that may relay: by network, by TLS
// client certificate subject, and optionally only with a header value.
type InboundConnector struct {
	Name             string         `yaml:"name"`
	Networks         PeerSet        `yaml:"networks"`
	TLSClientSubject string         `yaml:"tls_client_subject"` // CN of a verified client certificate
	RequireHeader    *HeaderMatcher `yaml:"require_header"`
}

// HeaderMatcher is a header and the value it must have.
type HeaderMatcher struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

// HeaderRule routes mail from inside (trusted, authenticated, connectors)
// whose header contains a value to a connector.
type HeaderRule struct {
	Header    string `yaml:"header"`
	Contains  string `yaml:"contains"` // case-insensitive
	Connector Route  `yaml:"connector"`
}

// TLSPolicyEntry sets the TLS level for one destination domain.
type TLSPolicyEntry struct {
	Destination string   `yaml:"destination"`
	Level       TLSLevel `yaml:"level"`
}

// MailLimits bound what one client can make the relay do.
type MailLimits struct {
	MessageSize          Size     `yaml:"message_size"`           // default 25MiB
	Recipients           int      `yaml:"recipients"`             // per message, default 100
	Connections          int      `yaml:"connections"`            // in total, default 1000
	ConnectionsPerClient int      `yaml:"connections_per_client"` // default 50 (Postfix smtpd_client_connection_count_limit)
	IdleTimeout          Duration `yaml:"idle_timeout"`           // per read, default 5m (RFC 5321 4.5.3.2)
	SessionTimeout       Duration `yaml:"session_timeout"`        // a whole session, default 1h
	MaxHops              int      `yaml:"max_hops"`               // Received headers before a loop is assumed, default 50
	HeaderSize           Size     `yaml:"header_size"`            // default 100KiB (Postfix header_size_limit)
	// Errors in one session (refused senders and recipients, failed
	// AUTH): past the soft limit each reply waits a second, at the hard
	// limit the session ends (Postfix smtpd_soft/hard_error_limit).
	SoftErrorLimit int `yaml:"soft_error_limit"` // default 10
	HardErrorLimit int `yaml:"hard_error_limit"` // default 20
	// Failed AUTHs from one client (an IPv4 address or an IPv6 /64)
	// within auth_block: at this many, AUTH from there is refused for
	// auth_block without checking the password (fail2ban's maxretry).
	AuthFailures int      `yaml:"auth_failures"` // default 5
	AuthBlock    Duration `yaml:"auth_block"`    // default 15m
	// Free space the queue's file system keeps: below it, MAIL gets 452
	// 4.3.1 (Postfix: 1.5 x message_size_limit, the default here too).
	QueueMinFree Size `yaml:"queue_min_free"`
}

// QueueConf are the retry rules of the queue.
type QueueConf struct {
	Lifetime     Duration `yaml:"lifetime"`      // default 5d
	MinBackoff   Duration `yaml:"min_backoff"`   // default 5m
	MaxBackoff   Duration `yaml:"max_backoff"`   // default 1h
	DelayWarning Duration `yaml:"delay_warning"` // 0 (default): none
	Concurrency  int      `yaml:"concurrency"`   // connections per destination, default 20
}

func (c *Config) smtpDefaults() {
	s := c.SMTP
	if s == nil {
		return
	}
	if s.Hostname == "" {
		s.Hostname = c.Hostname
	}
	s.checksDefaults()
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&s.Listen.SMTP, ":25")
	def(&s.Listen.Submission, ":587")
	def(&s.Listen.SMTPS, ":465")
	def(&s.BareNewlines, "reject")
	if s.DefaultRoute.Kind == 0 {
		s.DefaultRoute = MXRoute
	}
	defTLS := func(v *TLSLevel) {
		if *v == 0 {
			*v = TLSMay
		}
	}
	defTLS(&s.OutboundTLS)
	for i := range s.Domains {
		defTLS(&s.Domains[i].TLS)
	}
	s.transportSecDefaults()
	if s.AuthIMAP != nil && s.AuthIMAP.TLS == 0 {
		s.AuthIMAP.TLS = IMAPImplicit
	}
	for i := range s.Connectors {
		defTLS(&s.Connectors[i].TLS)
		if a := s.Connectors[i].Auth; a != nil && a.OAuth2 != nil {
			a.OAuth2.defaults()
		}
	}
	if s.RejectUnauthenticatedLocalSenders == nil {
		t := true
		s.RejectUnauthenticatedLocalSenders = &t
	}
	l := &s.Limits
	if l.MessageSize.Bytes == 0 {
		l.MessageSize.Bytes = 25 << 20
	}
	defInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defInt(&l.Recipients, 100)
	defInt(&l.Connections, 1000)
	defInt(&l.ConnectionsPerClient, 50)
	defInt(&l.MaxHops, 50)
	defInt(&l.SoftErrorLimit, 10)
	defInt(&l.HardErrorLimit, 20)
	defInt(&l.AuthFailures, 5)
	if l.HeaderSize.Bytes == 0 {
		l.HeaderSize.Bytes = 100 << 10
	}
	if l.QueueMinFree.Bytes == 0 {
		l.QueueMinFree.Bytes = l.MessageSize.Bytes * 3 / 2
	}
	defInt(&s.Queue.Concurrency, 20)
	defDur := func(v *Duration, d time.Duration) {
		if v.Duration == 0 {
			v.Duration = d
		}
	}
	defDur(&l.IdleTimeout, 5*time.Minute)
	defDur(&l.SessionTimeout, time.Hour)
	defDur(&l.AuthBlock, 15*time.Minute)
	defDur(&s.Queue.Lifetime, 5*24*time.Hour)
	defDur(&s.Queue.MinBackoff, 5*time.Minute)
	defDur(&s.Queue.MaxBackoff, time.Hour)
}

func (c *Config) checkSMTP(ck *checker) {
	s := c.SMTP
	if s == nil {
		return
	}
	if !validHostname(s.Hostname) {
		ck.errf("smtp.hostname", "%q is not a valid host name", s.Hostname)
	}
	s.checkDKIM(ck)
	s.checkChecks(ck)
	s.checkTransportSec(ck)
	for key, v := range map[string]string{"smtp": s.Listen.SMTP, "submission": s.Listen.Submission, "smtps": s.Listen.SMTPS} {
		if v == "off" {
			continue
		}
		if _, err := ParseListen(v); err != nil {
			ck.errf("smtp.listen."+key, "%v", err)
		}
	}
	if (s.TLS.Cert == "") != (s.TLS.Key == "") {
		ck.errf("smtp.tls", "give both cert and key, or neither (a self-signed certificate is generated)")
	}
	domains := map[string]string{}
	for i, d := range s.Domains {
		p := fmt.Sprintf("smtp.domains[%d]", i)
		name := strings.ToLower(strings.TrimSuffix(d.Name, "."))
		if a, err := idna.Lookup.ToASCII(name); err == nil {
			name = a // one domain in either spelling is one domain
		}
		if !validDomain(name) {
			ck.errf(p+".name", "%q is not a domain name", d.Name)
		} else if prev, dup := domains[name]; dup {
			ck.errf(p+".name", "domain %s is already managed at %s", name, prev)
		}
		domains[name] = p
		if d.NextHop.Given == "" {
			ck.errf(p+".next_hop", "a managed domain needs the next hop its mail goes to, like \"[10.0.0.5]:25\"")
		}
		for j, r := range d.Recipients {
			if r == "" || strings.ContainsAny(r, " \t<>") || strings.Count(r, "@") > 1 {
				ck.errf(fmt.Sprintf("%s.recipients[%d]", p, j), "%q is not a local part or address", r)
			}
		}
	}
	logins := map[string]string{}
	for i, u := range s.Users {
		p := fmt.Sprintf("smtp.users[%d]", i)
		if u.Login == "" || strings.ContainsAny(u.Login, " \t\x00") {
			ck.errf(p+".login", "%q is not a login name", u.Login)
		} else if prev, dup := logins[u.Login]; dup {
			ck.errf(p+".login", "login %s is already given at %s", u.Login, prev)
		}
		logins[u.Login] = p
		if u.PasswordHash == "" && s.AuthIMAP != nil {
			// checked against the internal IMAP server
		} else if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			ck.errf(p+".password_hash", "not a bcrypt hash (create one with: gatehouse smtp hash-password): %v", err)
		}
		if len(u.Addresses) == 0 {
			ck.errf(p+".addresses", "list the sender addresses this login may use")
		}
		for j, a := range u.Addresses {
			if !validMailbox(a) {
				ck.errf(fmt.Sprintf("%s.addresses[%d]", p, j), "%q is not a mail address", a)
			}
		}
	}
	if a := s.AuthIMAP; a != nil {
		host, port, err := net.SplitHostPort(a.Server)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 1 || n > 65535 || !validHost(host) {
			ck.errf("smtp.auth_imap.server", "%q is not host:port (like 10.0.0.5:993)", a.Server)
		}
	}
	for i, a := range s.LocalSenderExceptions {
		if !validMailbox(a) {
			ck.errf(fmt.Sprintf("smtp.local_sender_exceptions[%d]", i), "%q is not a mail address", a)
		}
	}
	connectors := map[string]string{}
	for i, cn := range s.Connectors {
		p := fmt.Sprintf("smtp.connectors[%d]", i)
		switch {
		case cn.Name == "" || strings.ContainsAny(cn.Name, " \t:[]"):
			ck.errf(p+".name", "%q is not a connector name", cn.Name)
		case cn.Name == "mx":
			ck.errf(p+".name", "\"mx\" is reserved for direct delivery")
		case connectors[cn.Name] != "":
			ck.errf(p+".name", "connector %s is already defined at %s", cn.Name, connectors[cn.Name])
		}
		connectors[cn.Name] = p
		if cn.Smarthost.Given == "" {
			_, err := ParseNextHop("")
			ck.errf(p+".smarthost", "%v", err)
		}
		if cn.Auth != nil {
			if cn.Auth.User == "" {
				ck.errf(p+".auth.user", "a user is required")
			}
			switch {
			case cn.Auth.OAuth2 != nil && cn.Auth.PasswordFile != "":
				ck.errf(p+".auth.password_file", "give a password file or oauth2, not both")
			case cn.Auth.OAuth2 != nil:
				cn.Auth.OAuth2.check(ck, p+".auth.oauth2")
			case cn.Auth.PasswordFile == "":
				ck.errf(p+".auth.password_file", "a password file (the password is never written in this file) or oauth2 is required")
			}
			if cn.TLS == TLSNone || cn.TLS == TLSMay {
				ck.errf(p+".tls", "AUTH to a smart host needs tls encrypt, verify or secure: the password must not cross the network in clear")
			}
		}
	}
	route := func(path string, r Route) {
		if r.Kind != RouteMX && connectors[r.Name] == "" {
			ck.errf(path, "%q is neither \"mx\" nor a connector in smtp.connectors", r.Name)
		}
	}
	route("smtp.default_route", s.DefaultRoute)
	for i, t := range s.Transport {
		p := fmt.Sprintf("smtp.transport[%d]", i)
		if !validDomain(strings.ToLower(t.Domain)) {
			ck.errf(p+".domain", "%q is not a domain name", t.Domain)
		}
		route(p+".connector", t.Connector)
	}
	for i, r := range s.Rules {
		p := fmt.Sprintf("smtp.rules[%d]", i)
		if !validFieldName(r.Header) {
			ck.errf(p+".header", "%q is not a header field name", r.Header)
		}
		if r.Contains == "" {
			ck.errf(p+".contains", "give the text the header must contain")
		}
		route(p+".connector", r.Connector)
	}
	for i, ic := range s.InboundConnectors {
		p := fmt.Sprintf("smtp.inbound_connectors[%d]", i)
		if ic.Name == "" {
			ck.errf(p+".name", "a name is required")
		}
		if ic.Networks.Len() == 0 && !ic.Networks.invalid && ic.TLSClientSubject == "" {
			ck.errf(p, "give networks, tls_client_subject or both: who may use this connector")
		}
		if h := ic.RequireHeader; h != nil {
			if !validFieldName(h.Name) {
				ck.errf(p+".require_header.name", "%q is not a header field name", h.Name)
			}
			if h.Value == "" {
				ck.errf(p+".require_header.value", "give the value the header must have")
			}
		}
	}
	for i, t := range s.TLSPolicy {
		p := fmt.Sprintf("smtp.tls_policy[%d]", i)
		if !validDomain(strings.ToLower(t.Destination)) {
			ck.errf(p+".destination", "%q is not a domain name", t.Destination)
		}
		if t.Level == 0 {
			ck.errf(p+".level", "%q is not a TLS level ("+tlsLevelList+")", "")
		}
	}
	l := s.Limits
	if l.MessageSize.Bytes < 1024 {
		ck.errf("smtp.limits.message_size", "%d bytes is too small (at least 1KiB)", l.MessageSize.Bytes)
	}
	for key, v := range map[string]int{"recipients": l.Recipients, "connections": l.Connections, "connections_per_client": l.ConnectionsPerClient,
		"max_hops": l.MaxHops, "soft_error_limit": l.SoftErrorLimit, "hard_error_limit": l.HardErrorLimit, "auth_failures": l.AuthFailures} {
		if v < 1 {
			ck.errf("smtp.limits."+key, "%d: must be at least 1", v)
		}
	}
	if l.ConnectionsPerClient > l.Connections {
		ck.errf("smtp.limits.connections_per_client", "%d is more than connections (%d)", l.ConnectionsPerClient, l.Connections)
	}
	if l.IdleTimeout.Duration < time.Second {
		ck.errf("smtp.limits.idle_timeout", "%s is too short (at least 1s)", l.IdleTimeout.Duration)
	}
	if l.SessionTimeout.Duration < l.IdleTimeout.Duration {
		ck.errf("smtp.limits.session_timeout", "%s is shorter than idle_timeout (%s)", l.SessionTimeout.Duration, l.IdleTimeout.Duration)
	}
	if l.SoftErrorLimit > l.HardErrorLimit {
		ck.errf("smtp.limits.soft_error_limit", "%d is more than hard_error_limit (%d)", l.SoftErrorLimit, l.HardErrorLimit)
	}
	if l.AuthBlock.Duration < time.Second {
		ck.errf("smtp.limits.auth_block", "%s is too short (at least 1s)", l.AuthBlock.Duration)
	}
	if l.HeaderSize.Bytes < 1024 || l.HeaderSize.Bytes > l.MessageSize.Bytes {
		ck.errf("smtp.limits.header_size", "%d bytes is out of range (1KiB to message_size)", l.HeaderSize.Bytes)
	}
	// RFC 5321 4.5.3.2.1: clients wait 5 minutes for the greeting; a long
	// pause loses real mail from impatient ones (Postfix's postscreen
	// waits 6 s).
	if g := s.GreetPause.Duration; g < 0 || g > 30*time.Second {
		ck.errf("smtp.greet_pause", "%s is out of range (0s to 30s)", g)
	}
	q := s.Queue
	if q.MinBackoff.Duration > q.MaxBackoff.Duration {
		ck.errf("smtp.queue.min_backoff", "%s is longer than max_backoff (%s)", q.MinBackoff.Duration, q.MaxBackoff.Duration)
	}
	if q.Lifetime.Duration < time.Second {
		ck.errf("smtp.queue.lifetime", "%s is too short", q.Lifetime.Duration)
	}
	if q.Concurrency < 1 || q.Concurrency > 1000 {
		ck.errf("smtp.queue.concurrency", "%d is out of range (1 to 1000)", q.Concurrency)
	}
	if s.BareNewlines != "reject" && s.BareNewlines != "normalize" {
		ck.errf("smtp.bare_newlines", "%q: reject or normalize", s.BareNewlines)
	}
}

// ParseListen checks a listen address such as ":25" or "192.0.2.1:25".
func ParseListen(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not a listen address like \":25\" or \"192.0.2.1:25\" (or \"off\")", s)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return netip.AddrPort{}, fmt.Errorf("%q: port out of range", s)
	}
	a := netip.IPv6Unspecified()
	if host != "" {
		if a, err = netip.ParseAddr(host); err != nil {
			return netip.AddrPort{}, fmt.Errorf("%q: the host must be an IP address or empty", s)
		}
	}
	return netip.AddrPortFrom(a, uint16(n)), nil
}

// validDomain accepts a host name, in A-labels or U-labels ("bücher.example",
// RFC 5890): the relay compares domains on their A-labels.
func validDomain(s string) bool {
	if strings.ContainsFunc(s, func(r rune) bool { return r >= 0x80 }) {
		a, err := idna.Lookup.ToASCII(s)
		if err != nil {
			return false
		}
		s = a
	}
	return strings.Contains(s, ".") && validHostname(s) || s == "localhost"
}

// SMTPUTF8Enabled says whether the relay offers SMTPUTF8.
func (s *SMTP) SMTPUTF8Enabled() bool { return s.SMTPUTF8 == nil || *s.SMTPUTF8 }

func validMailbox(s string) bool {
	i := strings.LastIndexByte(s, '@')
	return i > 0 && !strings.ContainsAny(s, " \t<>\r\n") && validDomain(strings.ToLower(s[i+1:]))
}

func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 || s[i] == ':' {
			return false
		}
	}
	return true
}

// SMTPEnabled reports whether the relay runs.
func (c *Config) SMTPEnabled() bool { return c.SMTP != nil }
