// Package delivery is the relay's outbound side: it resolves a queue route
// to next hops (MX records, or a managed domain's next hop or a connector's
// smart host), connects with the route's TLS level — raised per server by
// DANE and MTA-STS, each session counted for TLS reports — and sends over
// sessions the queue reuses.
package delivery

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"gatehouse/config"
	"gatehouse/dnsclient"
	"gatehouse/mailmsg"
	"gatehouse/mtasts"
	"gatehouse/queue"
	"gatehouse/tlsrpt"
)

// Transport is the relay's SMTP client, the queue's transport: it
// resolves a route to next hops (MX records, or the host of a [next hop] /
// smart host), connects with the route's TLS level and sends over the
// session the queue reuses.
type Transport struct {
	Log        *slog.Logger
	ResolvConf string // the resolvers for MX lookups, read at each lookup
	// Config and Roots are the running relay section and the trusted CAs:
	// a route is resolved against the config as it is now.
	Config func() *config.SMTP
	Roots  func() *x509.CertPool
	// ReadFile reads smart host password files (os.ReadFile when nil).
	ReadFile func(name string) ([]byte, error)
	// Tokens gives the token source of a connector that logs in with
	// OAuth2, by name ("connector:NAME"); the relay keeps them.
	Tokens func(name string, c *config.OAuth2) TokenSource
	// Dial is net.Dialer.DialContext (with a 30 s timeout when nil).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// STS is the MTA-STS policy cache direct MX delivery consults (see
	// config.SMTP.MTASTSApplies); nil: no MTA-STS.
	STS *mtasts.Cache
	// Reports counts the sessions under MTA-STS and DANE policies for the
	// TLS reports; nil: none counted.
	Reports *tlsrpt.Recorder

	// wait, when set, replaces the waits for every reply (tests).
	wait replyWait
	// dnsServers, when set, replace ResolvConf's servers (tests).
	dnsServers []string
}

// hop is one server to try.
type hop struct {
	name string // host name (for TLS verification and logs)
	addr string // ip:port
}

// target is a route resolved against the running config.
type target struct {
	hops      []hop
	tlsLevel  config.TLSLevel
	matchName string // name the certificate must carry for "secure"
	auth      *config.SMTPAuth
	connector string // the connector's name, for its token source
	mx        bool
}

// Open connects to a next hop of route (queue.Transport).
func (t *Transport) Open(ctx context.Context, route queue.Route) (queue.Session, error) {
	return t.open(ctx, route)
}

func (t *Transport) open(ctx context.Context, route queue.Route) (*client, error) {
	tg, err := t.resolve(ctx, route)
	if err != nil {
		return nil, err
	}
	sts := t.mtaSTS(ctx, t.Config(), tg)
	var errs []string
	for _, h := range tg.hops {
		sec, err := t.secure(ctx, tg, h, sts)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		s, err := t.connect(ctx, tg, h, sec)
		if err == nil {
			return s, nil
		}
		var pe *permanentOpenError
		if errors.As(err, &pe) {
			return nil, err
		}
		errs = append(errs, err.Error())
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("%s: no servers to try", route)
	}
	return nil, errors.New(strings.Join(errs, "; "))
}

type permanentOpenError struct{ error }

// resolve turns a queue route into servers and a TLS level, using the
// config as it is now (a changed next hop applies to mail already queued).
func (t *Transport) resolve(ctx context.Context, route queue.Route) (target, error) {
	cfg := t.Config()
	name := route.Name
	var tg target
	var nh config.NextHop
	switch route.Kind {
	case queue.Domain:
		found := false
		for _, d := range cfg.Domains {
			if mailmsg.ASCIIDomain(strings.TrimSuffix(d.Name, ".")) == mailmsg.ASCIIDomain(name) {
				nh = d.NextHop
				tg.tlsLevel, found = d.TLS, true
			}
		}
		if !found {
			return tg, fmt.Errorf("managed domain %s is no longer configured", name)
		}
	case queue.Connector:
		found := false
		for _, c := range cfg.Connectors {
			if c.Name == name {
				nh = c.Smarthost
				tg.tlsLevel, tg.auth, tg.connector, found = c.TLS, c.Auth, c.Name, true
			}
		}
		if !found {
			return tg, fmt.Errorf("connector %s is no longer configured", name)
		}
	case queue.MX:
		tg.tlsLevel, tg.mx, tg.matchName = cfg.OutboundTLS, true, name
		for _, p := range cfg.TLSPolicy {
			if mailmsg.ASCIIDomain(p.Destination) == mailmsg.ASCIIDomain(name) {
				tg.tlsLevel = p.Level
			}
		}
		if strings.HasPrefix(name, "[") {
			lit := strings.TrimPrefix(strings.Trim(name, "[]"), "IPv6:")
			tg.hops = []hop{{name: lit, addr: net.JoinHostPort(lit, "25")}}
			return tg, nil
		}
		hops, err := t.mxHops(ctx, name, 25)
		tg.hops = hops
		return tg, err
	default:
		return tg, fmt.Errorf("unknown route %q", route)
	}
	tg.matchName = nh.Host
	if nh.NoMX {
		hops, err := t.hostHops(ctx, nh.Host, nh.Port)
		tg.hops = hops
		return tg, err
	}
	hops, err := t.mxHops(ctx, nh.Host, nh.Port)
	tg.hops = hops
	return tg, err
}

func (t *Transport) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, int, error) {
	return dnsclient.Query(ctx, t.servers(), name, qtype, 5*time.Second)
}

// mxHops resolves MX records in preference order (RFC 5321 5.1), falling
// back to the domain's own address when there is no MX.
func (t *Transport) mxHops(ctx context.Context, domain string, port uint16) ([]hop, error) {
	ans, rcode, err := t.query(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	if rcode == dns.RcodeNameError {
		return nil, &permanentOpenError{fmt.Errorf("domain %s does not exist (NXDOMAIN)", domain)}
	}
	var mxs []*dns.MX
	for _, rr := range ans {
		if mx, ok := rr.(*dns.MX); ok {
			mxs = append(mxs, mx)
		}
	}
	if len(mxs) == 1 && mxs[0].Mx == "." {
		return nil, &permanentOpenError{fmt.Errorf("domain %s accepts no mail (null MX, RFC 7505)", domain)}
	}
	if len(mxs) == 0 {
		return t.hostHops(ctx, domain, port)
	}
	sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].Preference < mxs[j].Preference })
	var hops []hop
	var errs []string
	for _, mx := range mxs {
		h, err := t.hostHops(ctx, strings.TrimSuffix(mx.Mx, "."), port)
		if err != nil {
			errs = append(errs, err.Error())
		}
		hops = append(hops, h...)
	}
	if len(hops) == 0 {
		return nil, fmt.Errorf("no address for the MX hosts of %s: %s", domain, strings.Join(errs, "; "))
	}
	return hops, nil
}

func (t *Transport) hostHops(ctx context.Context, host string, port uint16) ([]hop, error) {
	p := strconv.Itoa(int(port))
	if ip := net.ParseIP(host); ip != nil {
		return []hop{{name: host, addr: net.JoinHostPort(host, p)}}, nil
	}
	var hops []hop
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		ans, _, err := t.query(ctx, host, qt)
		if err != nil {
			return nil, err
		}
		for _, rr := range ans {
			switch a := rr.(type) {
			case *dns.A:
				hops = append(hops, hop{name: host, addr: net.JoinHostPort(a.A.String(), p)})
			case *dns.AAAA:
				hops = append(hops, hop{name: host, addr: net.JoinHostPort(a.AAAA.String(), p)})
			}
		}
	}
	if len(hops) == 0 {
		return nil, fmt.Errorf("host %s has no address", host)
	}
	return hops, nil
}

// tlsConfig builds the client TLS settings for a level (Postfix's names):
// may and encrypt do not authenticate the server; verify checks the chain
// and the server's name; secure additionally requires the name of the
// next hop itself (or a sub-domain of it), not just the MX host's. DANE
// and MTA-STS add their checks (sec.verify) or have theirs observed
// (sec.observe, whose verdict lands in *observed).
func (t *Transport) tlsConfig(tg target, h hop, sec security, observed *error) *tls.Config {
	c := t.levelTLSConfig(tg, h, sec.level)
	if sec.verify == nil && sec.observe == nil {
		return c
	}
	c.InsecureSkipVerify = true // every check is in VerifyConnection
	level := c.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if level != nil {
			if err := level(cs); err != nil {
				return err
			}
		}
		if sec.observe != nil {
			*observed = sec.observe(cs)
		}
		if sec.verify != nil {
			return sec.verify(cs)
		}
		return nil
	}
	return c
}

func (t *Transport) levelTLSConfig(tg target, h hop, level config.TLSLevel) *tls.Config {
	c := &tls.Config{ServerName: h.name, MinVersion: tls.VersionTLS12}
	tg.tlsLevel = level
	switch tg.tlsLevel {
	case config.TLSMay, config.TLSEncrypt:
		c.InsecureSkipVerify = true
	case config.TLSVerify, config.TLSSecure:
		roots := t.Roots()
		c.RootCAs = roots
		c.InsecureSkipVerify = true // verified below, with the name rules of the level
		want := h.name
		if tg.tlsLevel == config.TLSSecure {
			want = tg.matchName
		}
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no server certificate")
			}
			leaf := cs.PeerCertificates[0]
			inter := x509.NewCertPool()
			for _, ic := range cs.PeerCertificates[1:] {
				inter.AddCert(ic)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
				return fmt.Errorf("certificate not trusted: %w", err)
			}
			if err := leaf.VerifyHostname(want); err == nil {
				return nil
			}
			if tg.tlsLevel == config.TLSSecure {
				for _, n := range leaf.DNSNames {
					if strings.HasSuffix(strings.ToLower(n), "."+strings.ToLower(want)) {
						return nil
					}
				}
			}
			return fmt.Errorf("certificate does not match %s", want)
		}
	}
	return c
}

// client is an open session with one next hop.
type client struct {
	c      *smtpConn
	hop    hop
	tlsRes string
}

func (t *Transport) connect(ctx context.Context, tg target, h hop, sec security) (*client, error) {
	var rep session
	s, err := t.connectOnce(ctx, tg, h, sec, sec.level != config.TLSNone, &rep)
	if rep.tried {
		// The TLS report counts the attempt: a failed handshake, STARTTLS
		// missing, or a session a testing policy would have failed.
		t.record(sec.policy, h, rep.local, cmp.Or(rep.tlsErr, sec.failed, rep.observed))
	}
	if err != nil && sec.level == config.TLSMay && errors.Is(err, errTLSFailed) {
		// Opportunistic TLS falls back to plain text, as Postfix does.
		t.Log.Warn("TLS handshake failed; retrying in plain text (tls may)", "relay", h.addr, "err", err)
		s, err = t.connectOnce(ctx, tg, h, sec, false, &session{})
	}
	return s, err
}

var errTLSFailed = errors.New("TLS failed")

// session is what connectOnce tells the TLS report.
type session struct {
	tried    bool // the server greeted us: the TLS part was reached
	local    net.Addr
	tlsErr   error // the handshake failed, or STARTTLS was missing
	observed error // a testing policy's verdict on a handshake that went through
}

func (t *Transport) connectOnce(ctx context.Context, tg target, h hop, sec security, useTLS bool, rep *session) (*client, error) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	dial := t.Dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second}).DialContext
	}
	conn, err := dial(dctx, "tcp", h.addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s[%s]: %w", h.name, h.addr, err)
	}
	c := newSMTPConn(conn)
	if dl, ok := ctx.Deadline(); ok {
		// A caller in a hurry (a recipient check while a client waits)
		// bounds every reply by its deadline; deliveries have none.
		left := time.Until(dl)
		c.wait = replyWait{idle: min(c.wait.idle, left), total: min(c.wait.total, left)}
		c.dataEnd = c.wait
	}
	if t.wait != (replyWait{}) {
		c.wait, c.dataEnd = t.wait, t.wait
	}
	fail := func(err error) (*client, error) {
		conn.Close()
		return nil, err
	}
	name := t.Config().Hostname
	if err := c.greet(name); err != nil {
		if isReply(err) {
			return fail(fmt.Errorf("%s[%s] said: %w", h.name, h.addr, err))
		}
		return fail(fmt.Errorf("%s[%s]: %w", h.name, h.addr, err))
	}
	rep.tried, rep.local = true, conn.LocalAddr()
	tlsRes := "no TLS"
	if useTLS {
		if c.has("STARTTLS") {
			if err := c.startTLS(t.tlsConfig(tg, h, sec, &rep.observed), name); err != nil {
				rep.tlsErr = err
				if isReply(err) { // STARTTLS refused
					rep.tlsErr = &tlsrpt.Error{Result: tlsrpt.StartTLSNotSupported, Err: err}
				}
				return fail(&tlsFailure{h: h, why: sec.why, err: err})
			}
			st := c.conn.(*tls.Conn).ConnectionState()
			tlsRes = tls.VersionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite)
			switch {
			case sec.verify != nil:
				tlsRes += " verified (" + sec.why + ")"
			case sec.level == config.TLSVerify || sec.level == config.TLSSecure:
				tlsRes += " verified"
			case sec.why != "":
				tlsRes += " (" + sec.why + ")"
			}
		} else {
			e := &noStartTLS{h: h, level: sec.level, why: sec.why}
			rep.tlsErr = e
			if sec.level != config.TLSMay {
				return fail(e)
			}
		}
	}
	if tg.auth != nil {
		if err := t.login(ctx, c, tg, h); err != nil {
			return fail(fmt.Errorf("AUTH at %s[%s]: %w", h.name, h.addr, err))
		}
	}
	t.Log.Debug("connected", "relay", h.addr, "tls", tlsRes)
	return &client{c: c, hop: h, tlsRes: tlsRes}, nil
}

// Probe asks route's next hop whether it takes rcpt (MAIL FROM:<>, RCPT,
// RSET), for recipient verification. refusal is the hop's refusal of the
// recipient, nil when it takes it. An error means there is no answer: the
// hop could not be reached, the connection broke, or the hop refuses the
// null sender (Exchange's "block blank senders"), which says nothing about
// the recipient.
func (t *Transport) Probe(ctx context.Context, route queue.Route, rcpt string) (refusal *ReplyError, err error) {
	c, err := t.open(ctx, route)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	mailRefusal, rcptRefusal, err := c.c.probe(rcpt)
	if err != nil {
		return nil, err
	}
	if mailRefusal != nil {
		return nil, fmt.Errorf("the next hop refuses MAIL FROM:<> for recipient checks: %w", mailRefusal)
	}
	if rcptRefusal != nil && !errors.As(rcptRefusal, &refusal) {
		return nil, rcptRefusal
	}
	return refusal, nil
}

func (c *client) Close() error {
	c.c.quit()
	return nil
}

// result turns a reply into the queue's per-recipient outcome.
func (c *client) result(err error) queue.Result {
	r := queue.Result{RemoteMTA: c.hop.name + "[" + c.hop.addr + "]", Text: err.Error(), Status: "4.4.2"}
	var re *ReplyError
	if errors.As(err, &re) {
		r.Permanent = re.Code >= 500
		r.Status = re.Enhanced
		if r.Status == "" {
			r.Status = fmt.Sprintf("%d.0.0", re.Code/100)
		}
		r.Text = fmt.Sprintf("%d %s", re.Code, re.Text)
	}
	return r
}

// Send delivers one message. Refusals are per recipient; a refusal of the
// sender or of the data applies to every recipient that was accepted.
func (c *client) Send(ctx context.Context, m *queue.Outgoing) ([]queue.Result, error) {
	res := make([]queue.Result, len(m.Rcpts))
	e, refused := c.envelope(m)
	if len(e.rcpts) == 0 {
		return refused, nil
	}
	t, err := c.c.deliverWith(e.from, e.rcpts, m.Size, m.Data, e.mailExt, e.rcptExt)
	if err != nil {
		return nil, fmt.Errorf("%s[%s]: %w", c.hop.name, c.hop.addr, err)
	}
	dsn := c.c.has("DSN")
	k := 0 // index into e.rcpts, the recipients sent
	for i := range res {
		if refused[i].Status != "" {
			res[i] = refused[i]
			continue
		}
		j := k
		k++
		switch {
		case t.mail != nil:
			res[i] = c.result(t.mail)
		case t.rcpts[j] != nil:
			res[i] = c.result(t.rcpts[j])
		case t.data != nil:
			res[i] = c.result(t.data)
		default:
			res[i] = queue.Result{OK: true, RemoteMTA: c.hop.name + "[" + c.hop.addr + "]", Text: "250 " + firstLine(t.reply) + " (" + c.tlsRes + ")", DSN: dsn}
		}
	}
	return res, nil
}

// outEnvelope is a message's envelope as this next hop is sent it.
type outEnvelope struct {
	from    string
	rcpts   []string
	mailExt string
	rcptExt []string
}

// envelope fits m to what the next hop offers. With SMTPUTF8 it goes as
// it came. Without, internationalised domains go as A-labels, which
// changes nothing; but a UTF-8 local part or header has no ASCII form and
// the relay does not downgrade (RFC 6531 3.7.5): such a recipient, or all
// of them for the sender or the header, fail with 5.6.7 (refused[i] has a
// Status for each one not sent). The DSN parameters go along when the
// next hop offers DSN (RFC 3461 4): then its notifications are its duty.
func (c *client) envelope(m *queue.Outgoing) (e outEnvelope, refused []queue.Result) {
	refused = make([]queue.Result, len(m.Rcpts))
	utf8 := m.SMTPUTF8 && c.c.has("SMTPUTF8")
	no := func(what string) queue.Result {
		return queue.Result{Permanent: true, Status: "5.6.7", RemoteMTA: c.hop.name + "[" + c.hop.addr + "]",
			Text: "SMTPUTF8 is required for the " + what + ", but was not offered by host " + c.hop.name + "[" + c.hop.addr + "]"}
	}
	e.from = m.From
	if m.SMTPUTF8 && !utf8 {
		why := ""
		if m.UTF8Header {
			why = "message header"
		}
		if f, ok := asciiAddr(m.From); ok {
			e.from = f
		} else {
			why = "sender address"
		}
		if why != "" {
			for i := range refused {
				refused[i] = no(why)
			}
			return outEnvelope{}, refused
		}
	}
	dsn := c.c.has("DSN")
	if utf8 {
		e.mailExt += " SMTPUTF8"
	}
	if dsn && m.Ret != "" {
		e.mailExt += " RET=" + m.Ret
	}
	if dsn && m.EnvID != "" {
		e.mailExt += " ENVID=" + mailmsg.EncodeXtext(m.EnvID)
	}
	for i, r := range m.Rcpts {
		if m.SMTPUTF8 && !utf8 {
			a, ok := asciiAddr(r)
			if !ok {
				refused[i] = no("recipient address")
				continue
			}
			r = a
		}
		ext := ""
		if dsn && i < len(m.Params) {
			p := m.Params[i]
			if p.Notify != "" {
				ext += " NOTIFY=" + p.Notify
			}
			if !p.ORCPT.IsZero() {
				if v, err := p.ORCPT.Param(utf8); err == nil {
					ext += " ORCPT=" + v
				}
			}
		}
		e.rcpts = append(e.rcpts, r)
		e.rcptExt = append(e.rcptExt, ext)
	}
	return e, refused
}

// asciiAddr is a queued address with its domain in A-labels; false when
// its local part is UTF-8.
func asciiAddr(s string) (string, bool) {
	a, err := mailmsg.ParseAddress(s)
	if err != nil {
		return s, true // sent as queued; the next hop judges it
	}
	a, ok := a.ASCII()
	return a.String(), ok
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
