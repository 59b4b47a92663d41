package smtpd

import (
	"context"
	"crypto/x509"
	"log/slog"
	"mime"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"gatehouse/config"
	"gatehouse/mailmsg"
	"gatehouse/queue"
)

// Policy is the relay's decision table, built from the config: who may
// relay, which domains are ours, where each recipient goes. Its decisions
// are taken at MAIL and RCPT, like Postfix's smtpd restrictions, so that
// nothing is accepted that is then refused.
type Policy struct {
	hostname         string
	domains          []managedDomain
	trusted          []config.AddrRange
	users            map[string]mailUser
	rejectLocal      bool
	exceptions       map[string]bool
	defaultRoute     config.Route
	transport        []config.TransportEntry
	rules            []config.HeaderRule
	inbound          []inboundConnector
	maxHops          int
	popWindow        time.Duration
	barenewlineFixup bool

	pop      *PopAuth
	authIMAP *config.AuthIMAP
	roots    *x509.CertPool
	log      *slog.Logger
}

type managedDomain struct {
	name       string
	sub        bool
	verify     bool            // ask the next hop about each recipient
	recipients map[string]bool // lower-cased local parts and addresses; nil: any
}

type mailUser struct {
	hash  []byte
	addrs map[string]bool
}

type inboundConnector struct {
	name       string
	restricted bool // networks were given: only clients in ranges match
	ranges     []config.AddrRange
	subject    string
	header     *config.HeaderMatcher
}

// Client is what the policy knows about the other end of a session.
type Client struct {
	Addr       netip.Addr
	Listener   string // smtp | submission | smtps
	TLS        bool
	TLSSubject string // CN of a verified client certificate
	Login      string // after AUTH
}

// NewPolicy compiles the relay section. addrs holds what the host names
// among the trusted networks and connector networks resolve to now
// (HostNames lists them); a name missing there matches no one.
func NewPolicy(c *config.SMTP, addrs map[string][]netip.Addr, pop *PopAuth, roots *x509.CertPool, log *slog.Logger) *Policy {
	p := &Policy{hostname: c.Hostname, users: map[string]mailUser{}, rejectLocal: *c.RejectUnauthenticatedLocalSenders,
		exceptions: map[string]bool{}, defaultRoute: c.DefaultRoute, transport: c.Transport, rules: c.Rules,
		maxHops: c.Limits.MaxHops, popWindow: c.PopBeforeSMTP.Window.Duration, barenewlineFixup: c.BareNewlines == "normalize", pop: pop,
		authIMAP: c.AuthIMAP, roots: roots, log: log}
	for _, d := range c.Domains {
		md := managedDomain{name: mailmsg.ASCIIDomain(strings.TrimSuffix(d.Name, ".")), sub: d.Subdomains, verify: d.VerifyRecipients}
		if len(d.Recipients) > 0 {
			md.recipients = map[string]bool{}
			for _, r := range d.Recipients {
				md.recipients[addrKey(r)] = true
			}
		}
		p.domains = append(p.domains, md)
	}
	p.trusted = c.TrustedNetworks.Ranges(addrs)
	for _, u := range c.Users {
		mu := mailUser{hash: []byte(u.PasswordHash), addrs: map[string]bool{}}
		for _, a := range u.Addresses {
			mu.addrs[addrKey(a)] = true
		}
		p.users[u.Login] = mu
	}
	for _, e := range c.LocalSenderExceptions {
		p.exceptions[addrKey(e)] = true
	}
	for _, ic := range c.InboundConnectors {
		p.inbound = append(p.inbound, inboundConnector{name: ic.Name, restricted: ic.Networks.Len() > 0,
			ranges: ic.Networks.Ranges(addrs), subject: ic.TLSClientSubject, header: ic.RequireHeader})
	}
	return p
}

// addrKey is an address of the config (or a bare local part) in the form
// addresses are compared in (Address.Key): either spelling of a domain,
// U-labels or A-labels, matches mail in either.
func addrKey(s string) string {
	if !strings.Contains(s, "@") {
		return strings.ToLower(s)
	}
	a, err := mailmsg.ParseAddress(s)
	if err != nil {
		return strings.ToLower(s) // validated at load; matches nothing odd
	}
	return a.Key()
}

// HostNames lists the host names among the trusted networks and the
// inbound connectors' networks: what NewPolicy needs resolved.
func HostNames(c *config.SMTP) []string {
	sets := []config.PeerSet{c.TrustedNetworks}
	for _, ic := range c.InboundConnectors {
		sets = append(sets, ic.Networks)
	}
	return config.JoinPeers(sets...).Names()
}

func inRanges(rs []config.AddrRange, a netip.Addr) bool {
	for _, r := range rs {
		if r.Contains(a) {
			return true
		}
	}
	return false
}

// Authenticate checks a login and password against the configured users,
// and logins without a local password against the internal IMAP server.
// An error means the login could not be checked (the IMAP server is
// down): the client should try again later, not be told it is wrong.
func (p *Policy) Authenticate(login, password string) (bool, error) {
	u, ok := p.users[login]
	if p.authIMAP != nil && (!ok || len(u.hash) == 0) {
		good, err := imapLogin(context.Background(), p.authIMAP, p.roots, login, password)
		if err != nil {
			p.log.Error("AUTH could not be checked with the internal IMAP server", "login", login, "err", err)
		}
		return good, err
	}
	if !ok || len(u.hash) == 0 {
		// Spend the same time as a real check, so logins cannot be probed.
		bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return false, nil
	}
	return bcrypt.CompareHashAndPassword(u.hash, []byte(password)) == nil, nil
}

// dummyHash is a bcrypt hash at the default cost, written out: computing
// it at start-up cost 57 ms of CPU in every process of the binary, PID 1
// included (over a second of boot under emulation).
var dummyHash = []byte("$2a$10$NjLDop2FbGqreoAoMkAwk.O6TETpNQm8/izRvEUocAxYrWDb0Lite")

// HasUsers says whether AUTH is offered at all.
func (p *Policy) HasUsers() bool { return len(p.users) > 0 || p.authIMAP != nil }

// Trusted says whether a is in the trusted networks.
func (p *Policy) Trusted(a netip.Addr) bool { return inRanges(p.trusted, a) }

// relayReason says why a client may relay to any destination: "trusted",
// "authenticated", "pop-before-smtp", "connector:<name>"; "" if it may not.
// A connector that requires a header is only provisional until DATA.
func (p *Policy) relayReason(c Client) (string, *inboundConnector) {
	switch {
	case c.Login != "":
		return "authenticated", nil
	case inRanges(p.trusted, c.Addr):
		return "trusted", nil
	case p.pop != nil && p.popWindow > 0 && p.pop.Authorized(c.Addr, p.popWindow):
		return "pop-before-smtp", nil
	}
	for i := range p.inbound {
		ic := &p.inbound[i]
		// Networks given but none resolved (DNS down at boot, a name
		// gone) is an empty list that admits no one, never "anyone".
		if ic.restricted && !inRanges(ic.ranges, c.Addr) {
			continue
		}
		if ic.subject != "" && c.TLSSubject != ic.subject {
			continue
		}
		return "connector:" + ic.name, ic
	}
	return "", nil
}

func smtpErr(code int, ec smtp.EnhancedCode, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: msg}
}

// CheckSender decides MAIL FROM.
func (p *Policy) CheckSender(c Client, from mailmsg.Address) *smtp.SMTPError {
	if c.Listener != "smtp" && c.Login == "" {
		return smtpErr(530, smtp.EnhancedCode{5, 7, 0}, "Authentication required")
	}
	if c.Login != "" {
		// A user sends as its configured addresses; a login known only
		// to the IMAP server, as itself when it is an address.
		owned := strings.Contains(c.Login, "@") && addrKey(c.Login) == from.Key()
		if u, ok := p.users[c.Login]; ok {
			owned = u.addrs[from.Key()]
		}
		if !owned {
			return smtpErr(553, smtp.EnhancedCode{5, 7, 1}, "Sender address rejected: not owned by user "+c.Login)
		}
		return nil
	}
	if from.IsNull() || !p.rejectLocal || p.exceptions[from.Key()] {
		return nil
	}
	if reason, _ := p.relayReason(c); reason != "" {
		return nil
	}
	if _, ok := p.managed(from); ok {
		return smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "Sender address rejected: unauthenticated use of a local domain")
	}
	return nil
}

func (p *Policy) managed(a mailmsg.Address) (*managedDomain, bool) {
	for i := range p.domains {
		if a.InDomain(p.domains[i].name, p.domains[i].sub) {
			return &p.domains[i], true
		}
	}
	return nil, false
}

// Decision is the outcome of RCPT TO for an accepted recipient.
type Decision struct {
	Route     queue.Route
	Inside    bool              // relayed for a client inside (header rules apply)
	Connector *inboundConnector // a connector whose header requirement is checked at DATA
	Verify    bool              // ask the next hop whether it takes the recipient
}

// CheckRcpt decides RCPT TO: a managed domain from anyone, anything else
// only for clients that may relay.
func (p *Policy) CheckRcpt(c Client, to mailmsg.Address) (Decision, *smtp.SMTPError) {
	reason, ic := p.relayReason(c)
	if to.IsNull() {
		return Decision{}, smtpErr(501, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax")
	}
	if reason == "" {
		if why := to.RelayTrick(); why != "" {
			return Decision{}, smtpErr(554, smtp.EnhancedCode{5, 7, 1}, "Relay access denied: "+why)
		}
	}
	if d, ok := p.managed(to); ok {
		if d.recipients != nil && !d.recipients[strings.ToLower(to.Local)] && !d.recipients[to.Key()] {
			return Decision{}, smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "Recipient address rejected: user unknown")
		}
		return Decision{Route: queue.Route{Kind: queue.Domain, Name: d.name}, Verify: d.verify && d.recipients == nil}, nil
	}
	if reason == "" {
		return Decision{}, smtpErr(554, smtp.EnhancedCode{5, 7, 1}, "Relay access denied")
	}
	dec := Decision{Route: p.route(to), Inside: true}
	if ic != nil && ic.header != nil {
		dec.Connector = ic
	}
	return dec, nil
}

// RouteFor is the route of mail for to that the relay makes itself (DSNs,
// collected mail): a managed domain's next hop, else as relayed mail.
func (p *Policy) RouteFor(to mailmsg.Address) queue.Route {
	if md, ok := p.managed(to); ok {
		return queue.Route{Kind: queue.Domain, Name: md.name}
	}
	return p.route(to)
}

// route picks the route of a recipient outside the managed domains: the
// transport table, then the default route.
func (p *Policy) route(to mailmsg.Address) queue.Route {
	r := p.defaultRoute
	for _, t := range p.transport {
		if to.InDomain(t.Domain, t.Subdomains) {
			r = t.Connector
			break
		}
	}
	if r.Kind == config.RouteMX {
		// The DNS knows the domain by its A-labels (RFC 5891 5).
		return queue.Route{Kind: queue.MX, Name: mailmsg.ASCIIDomain(to.Domain)}
	}
	return queue.Route{Kind: queue.Connector, Name: r.Name}
}

// fromInside says whether the client may relay (trusted, authenticated,
// POP-before-SMTP, or an inbound connector's) with the message header h:
// a connector that requires a header admits only messages that carry it,
// since its networks are shared (one provider's, all its tenants). Mail
// from anyone else is from outside.
func (p *Policy) fromInside(c Client, h mailmsg.Header) bool {
	r, ic := p.relayReason(c)
	if r == "" {
		return false
	}
	if ic == nil || ic.header == nil {
		return true
	}
	for _, v := range h.Values(ic.header.Name) {
		if strings.TrimSpace(v) == ic.header.Value {
			return true
		}
	}
	return false
}

// StripHeaders names the fields removed from a message before it is
// queued: every inbound connector's required header (a shared secret
// between the sender's tenant and this gateway, of no use further on),
// and, from outside, the fields the header rules route by, so that no
// outsider steers mail that the inside later sends on.
func (p *Policy) StripHeaders(c Client, h mailmsg.Header) []string {
	var names []string
	for _, ic := range p.inbound {
		if ic.header != nil {
			names = append(names, ic.header.Name)
		}
	}
	if !p.fromInside(c, h) {
		for _, r := range p.rules {
			names = append(names, r.Header)
		}
	}
	return names
}

// HeaderRoute applies the header rules: the route the first matching rule
// names, false when none matches. A rule that sends by MX gives an MX
// route without a name: each recipient's own domain.
func (p *Policy) HeaderRoute(h mailmsg.Header) (queue.Route, bool) {
	for _, r := range p.rules {
		for _, v := range h.Values(r.Header) {
			if ruleMatches(v, r.Contains) {
				if r.Connector.Kind == config.RouteMX {
					return queue.Route{Kind: queue.MX}, true
				}
				return queue.Route{Kind: queue.Connector, Name: r.Connector.Name}, true
			}
		}
	}
	return queue.Route{}, false
}

// ruleMatches says whether a header value contains a rule's text, case
// folded, in the value as written or with its MIME encoded-words decoded
// (RFC 2047), and with a domain in the text in either spelling: a rule for
// "@bücher.example" matches "@xn--bcher-kva.example" and the other way
// round.
func ruleMatches(v, contains string) bool {
	vs := []string{strings.ToLower(v)}
	if d, err := wordDecoder.DecodeHeader(v); err == nil && d != v {
		vs = append(vs, strings.ToLower(d))
	}
	want := strings.ToLower(contains)
	at := strings.LastIndexByte(want, '@')
	local, domain := want[:at+1], want[at+1:]
	for _, w := range []string{want, local + mailmsg.ASCIIDomain(domain), local + mailmsg.UnicodeDomain(domain)} {
		for _, v := range vs {
			if strings.Contains(v, w) {
				return true
			}
		}
	}
	return false
}

// wordDecoder decodes RFC 2047 words in any charset Go knows (UTF-8,
// ISO-8859-1, US-ASCII); a word in another one is left encoded.
var wordDecoder = &mime.WordDecoder{}

// PopAuth remembers the client addresses that logged in to the internal
// POP/IMAP server recently (POP-before-SMTP).
type PopAuth struct {
	mu   sync.Mutex
	seen map[netip.Addr]time.Time
	now  func() time.Time
}

// NewPopAuth returns an empty table.
func NewPopAuth() *PopAuth { return &PopAuth{seen: map[netip.Addr]time.Time{}, now: time.Now} }

// Add records a successful POP/IMAP login from a.
func (pa *PopAuth) Add(a netip.Addr) {
	pa.mu.Lock()
	defer pa.mu.Unlock()
	pa.seen[a.Unmap()] = pa.now()
	// Forget old entries now and then, so the table cannot grow without end.
	if len(pa.seen) > 10000 {
		for k, t := range pa.seen {
			if pa.now().Sub(t) > 24*time.Hour {
				delete(pa.seen, k)
			}
		}
	}
}

// Authorized says whether a logged in within the window.
func (pa *PopAuth) Authorized(a netip.Addr, window time.Duration) bool {
	pa.mu.Lock()
	defer pa.mu.Unlock()
	t, ok := pa.seen[a.Unmap()]
	return ok && pa.now().Sub(t) <= window
}
