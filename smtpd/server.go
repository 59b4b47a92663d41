package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"gatehouse/mailauth"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"gatehouse/mailmsg"
	"gatehouse/queue"
)

// errorSleep is how long each reply waits once a session is past its
// soft error limit (Postfix's smtpd_error_sleep_time).
const errorSleep = time.Second

// backend makes sessions for one listener.
type backend struct {
	srv      *Server
	listener string // smtp | submission | smtps
}

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s := &session{srv: b.srv, conn: c, listener: b.listener, helo: c.Hostname()}
	nc := c.Conn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	s.ic, _ = nc.(*idleConn)
	s.client.Addr = remoteAddr(nc)
	s.client.Listener = b.listener
	s.log = b.srv.log.With("client", s.client.Addr.String(), "listener", b.listener)
	if err := s.checkDNSBL(b.srv.checks(), s.refresh()); err != nil {
		return nil, err
	}
	return s, nil
}

type session struct {
	srv      *Server
	conn     *smtp.Conn
	ic       *idleConn
	listener string
	helo     string
	log      *slog.Logger

	client  Client
	errors  int // replies that refused something, since the last accepted message
	from    mailmsg.Address
	rcpts   []queue.Rcpt
	inside  []bool
	connect *inboundConnector
	// The checks of mail from outside: SPF's result at MAIL, and the
	// DNSBL's when it only tags.
	spf      *mailauth.SPFResult
	dnsblTag string
	// What MAIL FROM asked for: SMTPUTF8 (RFC 6531) and the DSN
	// parameters RET and ENVID (RFC 3461).
	utf8  bool
	ret   string
	envid string
}

// refresh updates what TLS changed since the session began (STARTTLS).
func (s *session) refresh() *Policy {
	if st, ok := s.conn.TLSConnectionState(); ok {
		s.client.TLS = true
		if len(st.VerifiedChains) > 0 {
			s.client.TLSSubject = st.VerifiedChains[0][0].Subject.CommonName
		}
	}
	return s.srv.policy()
}

func (s *session) AuthMechanisms() []string {
	if !s.srv.policy().HasUsers() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	p := s.refresh()
	if !s.client.TLS {
		// go-smtp already refuses AUTH without TLS; this keeps it so.
		return nil, smtpErr(538, smtp.EnhancedCode{5, 7, 11}, "Encryption required for requested authentication mechanism")
	}
	check := func(identity, user, pass string) error {
		if s.ended() {
			return s.tooManyErrors()
		}
		// The trusted networks are not blocked: one device with a stale
		// password must not lock out a whole office behind its NAT.
		if !p.Trusted(s.client.Addr) && s.srv.auth.Blocked(s.client.Addr) {
			s.log.Warn("AUTH refused: too many failed authentications from this client", "login", user)
			return s.fail(smtpErr(454, smtp.EnhancedCode{4, 7, 0}, "Too many failed authentications from your address; try again later"))
		}
		if identity != "" && identity != user {
			return s.authFailed(user)
		}
		// A free slot within a while, or a temporary failure: password
		// checks are bounded, whatever the number of connections.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		good, err := s.srv.auth.check(ctx, func() (bool, error) { return p.Authenticate(user, pass) })
		cancel()
		if err != nil {
			return smtpErr(454, smtp.EnhancedCode{4, 7, 0}, "Temporary authentication failure")
		}
		if !good {
			return s.authFailed(user)
		}
		s.client.Login = user
		s.log.Info("authenticated", "login", user)
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(check), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// authFailed counts a wrong password for the session and the client.
func (s *session) authFailed(user string) error {
	s.log.Warn("authentication failed", "login", user)
	s.srv.count.authFailed.Add(1)
	if !s.srv.policy().Trusted(s.client.Addr) && s.srv.auth.Failed(s.client.Addr) {
		s.log.Warn("AUTH blocked for this client: too many failed authentications", "for", s.srv.config().Limits.AuthBlock.Duration)
	}
	return s.fail(smtp.ErrAuthFailed)
}

// fail counts a refusal in the session. Past the soft error limit each
// refusal waits a second; at the hard limit the reply is 421 and the
// session ends (Postfix's smtpd_soft/hard_error_limit): guessing
// passwords or harvesting addresses is slowed, then cut off.
func (s *session) fail(e *smtp.SMTPError) error {
	s.errors++
	l := s.srv.config().Limits
	if s.errors == l.HardErrorLimit {
		s.srv.count.errorLimit.Add(1)
		s.log.Warn("session ended: too many errors", "errors", s.errors)
		if s.ic != nil {
			s.ic.Kill()
		}
	}
	if s.ended() {
		return s.tooManyErrors()
	}
	if s.errors > l.SoftErrorLimit {
		time.Sleep(errorSleep)
	}
	return e
}

// ended says whether the session reached its hard error limit. Commands
// the client pipelined before the 421 are still read from go-smtp's
// buffer: they get 421 too, without any work done for them.
func (s *session) ended() bool { return s.errors >= s.srv.config().Limits.HardErrorLimit }

func (s *session) tooManyErrors() error {
	return smtpErr(421, smtp.EnhancedCode{4, 7, 0}, s.srv.config().Hostname+" Error: too many errors")
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if s.ended() {
		return s.tooManyErrors()
	}
	p := s.refresh()
	if s.ic != nil && s.ic.early.Load() {
		s.log.Warn("rejected: client spoke before the greeting")
		return s.fail(smtpErr(503, smtp.EnhancedCode{5, 5, 0}, "Error: improper use of SMTP command pipelining"))
	}
	a, err := mailmsg.ParseAddress(from)
	if err != nil {
		return s.fail(smtpErr(553, smtp.EnhancedCode{5, 1, 7}, "Bad sender address syntax"))
	}
	utf8 := opts != nil && opts.UTF8
	if !utf8 && !a.IsASCII() {
		return s.fail(needUTF8())
	}
	if e := p.CheckSender(s.client, a); e != nil {
		s.log.Warn("sender rejected", "from", from, "reply", e.Message)
		s.srv.count.rejected.Add(1)
		return s.fail(e)
	}
	if e := s.checkSPF(s.srv.checks(), p, a); e != nil {
		s.srv.count.rejected.Add(1)
		return s.fail(e)
	}
	// Keep room for the config, keys and the queue's own bookkeeping on
	// the data disk (Postfix: queue_minfree, 1.5 x the size limit).
	if free, err := s.srv.freeSpace(); err == nil {
		need := s.srv.config().Limits.QueueMinFree.Bytes
		if opts != nil && opts.Size > 0 {
			need += opts.Size
		}
		if free < need {
			s.srv.count.noSpace.Add(1)
			s.log.Error("MAIL refused: the queue's file system is short of space", "free", free, "needed", need)
			return smtpErr(452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage")
		}
	}
	s.from = a
	s.utf8 = utf8
	if opts != nil {
		if len(mailmsg.EncodeXtext(opts.EnvelopeID)) > maxEnvID { // as sent on (RFC 3461 4.4)
			return s.fail(smtpErr(501, smtp.EnhancedCode{5, 5, 4}, "ENVID longer than 100 characters"))
		}
		s.ret, s.envid = string(opts.Return), opts.EnvelopeID
	}
	return nil
}

// maxEnvID is RFC 3461 4.4's bound on ENVID, in xtext.
const maxEnvID = 100

// needUTF8 refuses a UTF-8 address in a transaction without SMTPUTF8
// (RFC 6531 3.4; Postfix's words).
func needUTF8() *smtp.SMTPError {
	return smtpErr(553, smtp.EnhancedCode{5, 6, 7}, "Must declare SMTPUTF8 to send unicode address")
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if s.ended() {
		return s.tooManyErrors()
	}
	p := s.refresh()
	a, err := mailmsg.ParseAddress(to)
	if err != nil {
		s.srv.count.rejected.Add(1)
		return s.fail(smtpErr(501, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax"))
	}
	if !s.utf8 && !a.IsASCII() {
		s.srv.count.rejected.Add(1)
		return s.fail(needUTF8())
	}
	d, e := p.CheckRcpt(s.client, a)
	if e != nil {
		s.log.Warn("recipient rejected", "from", s.from.String(), "to", to, "reply", e.Message)
		s.srv.count.rejected.Add(1)
		return s.fail(e)
	}
	if d.Verify {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		e := s.srv.verify.check(ctx, d.Route, a.String())
		cancel()
		if e != nil {
			s.log.Warn("recipient rejected", "from", s.from.String(), "to", to, "reply", e.Message)
			s.srv.count.rejected.Add(1)
			return s.fail(e)
		}
	}
	rcpt := queue.Rcpt{Addr: a.String(), Route: d.Route}
	if opts != nil {
		var notify []string
		for _, n := range opts.Notify {
			notify = append(notify, string(n))
		}
		rcpt.Notify = strings.Join(notify, ",")
		if opts.OriginalRecipient != "" {
			rcpt.ORCPT = mailmsg.OrigRcpt{Type: strings.ToLower(string(opts.OriginalRecipientType)), Addr: opts.OriginalRecipient}
			// What go-smtp decoded must be sendable on: our codec is the
			// stricter one (no control characters, 500 octets at most).
			if _, err := rcpt.ORCPT.Param(true); err != nil {
				s.log.Warn("ORCPT refused", "to", to, "err", err)
				return s.fail(smtpErr(501, smtp.EnhancedCode{5, 5, 4}, "Malformed ORCPT parameter value"))
			}
		}
	}
	s.rcpts = append(s.rcpts, rcpt)
	s.inside = append(s.inside, d.Inside)
	if d.Connector != nil {
		s.connect = d.Connector
	}
	return nil
}

func (s *session) Reset() {
	s.from, s.rcpts, s.inside, s.connect = mailmsg.Address{}, nil, nil, nil
	s.utf8, s.ret, s.envid = false, "", ""
}

func (s *session) Logout() error { return nil }

// Data receives the message into the queue. The 250 goes out only after
// the queue has it on disk.
func (s *session) Data(r io.Reader) error {
	if s.ended() {
		return s.tooManyErrors()
	}
	p := s.refresh()
	guard := mailmsg.NewNewlineGuard(r, p.barenewlineFixup)
	br := s.srv.readers.Get().(*bufio.Reader)
	br.Reset(guard)
	defer func() { br.Reset(nil); s.srv.readers.Put(br) }()
	h, raw, err := mailmsg.ReadHeader(br, int(s.srv.config().Limits.HeaderSize.Bytes))
	if err != nil {
		return s.dataError(err)
	}
	if n := h.Count("Received"); n > p.maxHops {
		s.log.Warn("rejected: mail loop", "received_headers", n)
		return s.fail(smtpErr(554, smtp.EnhancedCode{5, 4, 6}, fmt.Sprintf("Too many hops (%d Received headers): mail loop?", n)))
	}
	if c := s.connect; c != nil && c.header != nil {
		ok := false
		for _, v := range h.Values(c.header.Name) {
			ok = ok || strings.TrimSpace(v) == c.header.Value
		}
		if !ok {
			s.log.Warn("rejected: inbound connector header missing", "connector", c.name, "header", c.header.Name)
			return s.fail(smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "Relay access denied: connector "+c.name+" requires header "+c.header.Name))
		}
	}
	if strip := p.StripHeaders(s.client, h); len(strip) > 0 {
		raw = h.Without(raw, strip...)
	}
	checks := s.srv.checks()
	in := s.inspect(checks, p)
	if in != nil {
		defer in.abort()
	}
	raw = in.stripOwn(h, raw)
	sign := s.signer(checks, p, h)
	rcpts := append([]queue.Rcpt(nil), s.rcpts...)
	if hr, ok := p.HeaderRoute(h); ok {
		for i := range rcpts {
			if !s.inside[i] {
				continue // mail for the managed domains goes to its next hop
			}
			rcpts[i].Route = hr
			if hr.Kind == queue.MX {
				rcpts[i].Route.Name = mailmsg.ASCIIDomain(rcpts[i].Addr[strings.LastIndexByte(rcpts[i].Addr, '@')+1:])
			}
		}
	}

	w, err := s.srv.store.Create()
	if err != nil {
		s.log.Error("queue", "err", err)
		return smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Queue unavailable, try again later")
	}
	defer w.Abort()
	bw := s.srv.writers.Get().(*bufio.Writer)
	bw.Reset(w)
	defer func() { bw.Reset(nil); s.srv.writers.Put(bw) }()
	// What goes to the queue also goes, as it streams, to the DKIM
	// verifier (mail from outside) or signer (mail from the inside).
	var out io.Writer = bw
	switch {
	case in != nil:
		out = io.MultiWriter(bw, in.writer())
	case sign != nil:
		out = io.MultiWriter(bw, sign)
		defer sign.Close()
	}
	io.WriteString(out, s.received(w.ID(), rcpts))
	out.Write(raw)
	if _, err := io.Copy(out, br); err != nil {
		return s.dataError(err)
	}
	if err := bw.Flush(); err != nil {
		s.log.Error("queue write", "err", err)
		return smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Queue write error, try again later")
	}
	var prepend, quarantine string
	if in != nil {
		v := in.finish(s, h)
		if v.reject != nil {
			s.srv.count.rejected.Add(1)
			return s.fail(v.reject)
		}
		prepend, quarantine = v.prepend, v.quarantine
	}
	if sign != nil {
		if err := sign.Close(); err != nil {
			s.log.Warn("dkim: not signed", "err", err)
		} else {
			prepend = sign.Header()
		}
	}
	if guard.Found() {
		s.log.Info("bare line ends normalised", "id", w.ID())
	}
	env := &queue.Envelope{From: s.from.String(), Rcpts: rcpts, Arrived: time.Now(), Client: s.client.Addr.String(),
		Login: s.client.Login, Source: s.listener, Prepend: prepend, Quarantine: quarantine,
		SMTPUTF8: s.utf8, UTF8Header: s.utf8 && !(isASCII(raw) && isASCII([]byte(prepend))), Ret: s.ret, EnvID: s.envid}
	if err := w.Commit(env); err != nil {
		s.log.Error("queue commit", "err", err)
		return smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Queue write error, try again later")
	}
	s.srv.q.Add(*env)
	s.srv.count.accepted.Add(1)
	s.errors = 0 // as Postfix: the limits count errors without mail delivered
	s.log.Info("accepted", "id", env.ID, "from", env.From, "rcpts", len(rcpts), "size", env.Size,
		"message_id", h.Get("Message-ID"), "tls", s.client.TLS, "login", s.client.Login)
	return smtpErr(250, smtp.EnhancedCode{2, 0, 0}, "Ok: queued as "+env.ID)
}

// dataError turns a failure while reading DATA into the documented reply.
func (s *session) dataError(err error) error {
	var se *smtp.SMTPError
	switch {
	case errors.Is(err, mailmsg.ErrBareNewline):
		s.log.Warn("rejected: bare line end in DATA (SMTP smuggling defence)")
		s.srv.count.rejected.Add(1)
		if s.ic != nil {
			s.ic.Kill()
		}
		return smtpErr(521, smtp.EnhancedCode{5, 5, 2}, "Error: bare <LF> or <CR> received; use CRLF line ends")
	case errors.Is(err, mailmsg.ErrHeaderTooLarge):
		return smtpErr(552, smtp.EnhancedCode{5, 3, 4}, "Header too large")
	case errors.Is(err, mailmsg.ErrMalformedHeader):
		s.srv.count.rejected.Add(1)
		return smtpErr(554, smtp.EnhancedCode{5, 6, 0}, "Malformed message header")
	case errors.As(err, &se):
		return se // size limit, too long line
	case errors.Is(err, smtp.ErrTooLongLine):
		if s.ic != nil {
			s.ic.Kill()
		}
		return smtpErr(500, smtp.EnhancedCode{5, 4, 0}, "Line too long")
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return smtpErr(421, smtp.EnhancedCode{4, 4, 2}, "Idle timeout")
	}
	return smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Error while receiving the message")
}

// received is the trace header this relay adds (RFC 5321 4.4).
func (s *session) received(id string, rcpts []queue.Rcpt) string {
	proto := "ESMTP"
	if s.utf8 {
		proto = "UTF8SMTP" // RFC 6531 3.7.4
	}
	if s.client.TLS {
		proto += "S"
	}
	if s.client.Login != "" {
		proto += "A"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s (Gatehouse) with %s id %s", mailmsg.TraceWord(s.helo), s.client.Addr, s.srv.config().Hostname, proto, id)
	if st, ok := s.conn.TLSConnectionState(); ok {
		fmt.Fprintf(&b, "\r\n\t(%s %s)", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
	}
	if len(rcpts) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", traceAddr(rcpts[0].Addr))
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", time.Now().Format(time.RFC1123Z))
	return b.String()
}

// traceAddr is a recipient as the Received field names it: its domain in
// A-labels, so that the field stays ASCII unless the local part is UTF-8
// (the message needs SMTPUTF8 then anyway, RFC 6531 3.7.3).
func traceAddr(addr string) string {
	a, err := mailmsg.ParseAddress(addr)
	if err != nil {
		return mailmsg.TraceWord(addr)
	}
	if asc, ok := a.ASCII(); ok {
		return mailmsg.TraceWord(asc.String())
	}
	return strings.Map(func(r rune) rune {
		if r < 33 || r == 0x7f || r == '(' || r == ')' || r == ';' || r == '<' || r == '>' {
			return '_'
		}
		return r
	}, addr)
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// loginServer is SASL LOGIN (draft-murchison-sasl-login), which go-sasl
// only implements as a client; Outlook and many devices still use it.
type loginServer struct {
	check    func(identity, user, pass string) error
	user     string
	gotUser  bool
	finished bool
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch {
	case l.finished:
		return nil, true, errors.New("sasl: LOGIN already finished")
	case resp == nil && !l.gotUser && l.user == "":
		return []byte("Username:"), false, nil
	case !l.gotUser:
		l.user, l.gotUser = string(resp), true
		return []byte("Password:"), false, nil
	default:
		l.finished = true
		return nil, true, l.check("", l.user, string(resp))
	}
}
