// Package smtp is the mail relay: listeners on 25, 587 and 465 built on
// go-smtp with the hardening it lacks (per-read idle timeouts, connection
// limits, bare line-end rejection, pipelining before the greeting), a relay
// policy decided at MAIL and RCPT like Postfix's restrictions, the durable
// queue, and delivery by MX or next hop with per-destination TLS levels.
package relay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"gatehouse/config"
	"gatehouse/dnsclient"
	"gatehouse/mailmsg"
	"gatehouse/queue"
	"gatehouse/service"
)

// Options configure the service.
type Options struct {
	Config     string
	QueueDir   string // /data/queue on the appliance
	TLSDir     string // where a generated certificate is kept
	ResolvConf string // the resolvers for MX lookups
	Socket     string // the relay's control socket (queue commands)
	Log        *slog.Logger
	Notify     *service.Notifier
	Reload     <-chan struct{}
}

// Service is the running relay.
type Service struct {
	opts Options
	log  *slog.Logger

	mu     sync.RWMutex
	cfg    *config.SMTP
	pol    *Policy
	pool   *x509.CertPool
	store  *queue.Store
	q      *queue.Queue
	certs  certStore
	lim    *connLimits
	auth   *authGuard
	verify *verifier
	pop    *PopAuth
	count  struct {
		accepted, rejected, authFailed, errorLimit, noSpace atomic.Int64
	}
	clientTLS atomic.Pointer[tls.Config] // per handshake, from the running config
	// freeSpace says how many bytes the queue's file system has left
	// (a stand-in in tests).
	freeSpace func() (int64, error)
	servers   []*smtp.Server
	fetch     *collector
	names     *dnsclient.Names // host names in the allow lists, kept resolved
}

func (s *Service) policy() *Policy {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.pol
}

func (s *Service) config() *config.SMTP {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cfg
}

func (s *Service) roots() *x509.CertPool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.pool
}

// trustPool is the system roots plus the configured extra CAs.
func trustPool(caFile string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile != "" {
		b, err := readConfigured(caFile)
		if err != nil {
			return nil, fmt.Errorf("smtp: tls.ca_file: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("smtp: tls.ca_file %s holds no PEM certificate", caFile)
		}
	}
	return pool, nil
}

func queuePolicy(c *config.SMTP) queue.Policy {
	return queue.Policy{Lifetime: c.Queue.Lifetime.Duration, MinBackoff: c.Queue.MinBackoff.Duration,
		MaxBackoff: c.Queue.MaxBackoff.Duration, DelayWarning: c.Queue.DelayWarning.Duration, Concurrency: c.Queue.Concurrency}
}

// Run serves until ctx ends.
func Run(ctx context.Context, o Options) error {
	full, _, err := config.Load(o.Config)
	if err != nil {
		return err
	}
	if full.SMTP == nil {
		return errors.New("smtp: no smtp section in the config")
	}
	c := full.SMTP
	s := &Service{opts: o, log: o.Log, cfg: c, pop: NewPopAuth()}
	if s.pool, err = trustPool(c.TLS.CAFile); err != nil {
		return err
	}
	// The allow lists' host names are asked of the appliance's DNS
	// servers, as the firewall asks them, and follow their TTLs.
	s.names = dnsclient.NewNames(dnsclient.Lookup{ResolvConf: o.ResolvConf, Fallback: net.DefaultResolver})
	var nextLookup time.Time
	s.pol, nextLookup = s.buildPolicy(ctx, c, s.pool, true)
	if err := s.loadCert(c); err != nil {
		return err
	}
	s.setServerTLS(c)

	store, loaded, problems := queue.OpenStore(o.QueueDir)
	if store == nil {
		return problems[0]
	}
	defer store.Close()
	for _, p := range problems {
		o.Log.Error("queue", "err", p)
	}
	s.store = store
	tr := &transport{svc: s, log: o.Log, dial: (&net.Dialer{Timeout: 30 * time.Second}).DialContext}
	s.verify = newVerifier(tr)
	qctx, qcancel := context.WithCancel(context.Background())
	s.q = queue.New(qctx, store, loaded, tr, queuePolicy(c), s.notice, o.Log)
	defer func() { qcancel(); s.q.Wait() }()
	o.Log.Info("queue opened", "dir", o.QueueDir, "messages", len(loaded))

	s.lim = newConnLimits(c.Limits.Connections, c.Limits.ConnectionsPerClient)
	s.auth = newAuthGuard(c.Limits.AuthFailures, c.Limits.AuthBlock.Duration)
	s.freeSpace = func() (int64, error) { return freeBytes(o.QueueDir) }
	listen := map[string]string{"smtp": c.Listen.SMTP, "submission": c.Listen.Submission, "smtps": c.Listen.SMTPS}
	errc := make(chan error, 4)
	for _, name := range []string{"smtp", "submission", "smtps"} {
		addr := listen[name]
		if addr == "off" {
			continue
		}
		srv, err := s.serve(name, addr, c, errc)
		if err != nil {
			for _, sv := range s.servers {
				sv.Close()
			}
			return err
		}
		s.servers = append(s.servers, srv)
	}
	defer func() {
		for _, sv := range s.servers {
			sv.Close()
		}
	}()
	s.fetch = newCollector(s)
	fctx, fcancel := context.WithCancel(ctx)
	defer func() { fcancel(); s.fetch.wg.Wait() }()
	s.fetch.apply(fctx, full.Fetch)
	go func() {
		if err := serveControl(ctx, o.Socket, s); err != nil {
			o.Log.Error("control socket", "err", err)
		}
	}()
	s.publish()
	o.Notify.Ready()

	off := false // the section was removed by a reload
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	refresh := time.NewTimer(untilLookup(nextLookup))
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			// Stop accepting; sessions in DATA get to finish their 250
			// (bounded by the supervisor's stop timeout).
			for _, sv := range s.servers {
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				sv.Shutdown(sctx)
				cancel()
			}
			return nil
		case err := <-errc:
			return err
		case <-o.Reload:
			nc, ok := config.Reread(o.Config, o.Log)
			if !ok {
				continue
			}
			if nc.SMTP == nil {
				// Turned off: accept nothing more, but deliver what was
				// accepted (a 250 is a promise).
				for _, sv := range s.servers {
					sv.Close()
				}
				s.servers, off = nil, true
				o.Log.Warn("the smtp section was removed: listeners closed; the queue is still delivered")
				continue
			}
			if off || nc.SMTP.Listen != c.Listen {
				return errors.New("smtp: listen addresses changed (or the relay was turned on again); restarting to apply them")
			}
			// go-smtp reads these of its server in every session without
			// a lock: they change only with a new server.
			if nc.SMTP.Limits.MessageSize != c.Limits.MessageSize || nc.SMTP.Limits.Recipients != c.Limits.Recipients {
				return errors.New("smtp: limits.message_size or limits.recipients changed; restarting to apply them")
			}
			next, err := s.apply(ctx, nc.SMTP)
			if err != nil {
				o.Log.Error("reload: kept the running relay settings", "err", err)
				continue
			}
			refresh.Reset(untilLookup(next))
			s.fetch.apply(fctx, nc.Fetch)
			c = nc.SMTP
			o.Log.Info("reloaded")
		case <-refresh.C:
			// A host name's answer ran out: only the policy is rebuilt.
			s.mu.RLock()
			c, pool := s.cfg, s.pool
			s.mu.RUnlock()
			pol, next := s.buildPolicy(ctx, c, pool, false)
			s.mu.Lock()
			if s.cfg == c {
				s.pol = pol
			}
			s.mu.Unlock()
			refresh.Reset(untilLookup(next))
		case <-tick.C:
			s.publish()
		}
	}
}

// buildPolicy compiles the relay section with its host names resolved
// (those whose answers ran out asked again) and says when the first answer
// runs out. A name without addresses matches no one.
func (s *Service) buildPolicy(ctx context.Context, c *config.SMTP, pool *x509.CertPool, announce bool) (*Policy, time.Time) {
	names := HostNames(c)
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	addrs, next := s.names.Resolve(rctx, names)
	cancel()
	if announce {
		for _, n := range s.names.Status() {
			if len(n.Addrs) == 0 {
				s.log.Warn("host name in the relay's allow lists has no address; it matches no one until it resolves",
					"host", n.Name, "err", n.Error, "next_lookup", n.NextLookup.Format(time.RFC3339))
			}
		}
	}
	return NewPolicy(c, addrs, s.pop, pool, s.log), next
}

// untilLookup is how long to wait for the next host name lookup; an hour
// when there are no names.
func untilLookup(next time.Time) time.Duration {
	if next.IsZero() {
		return time.Hour
	}
	return max(time.Until(next), time.Second)
}

// apply installs a new relay section (reload) without dropping sessions,
// and says when its host names are to be looked up again.
func (s *Service) apply(ctx context.Context, c *config.SMTP) (time.Time, error) {
	pool, err := trustPool(c.TLS.CAFile)
	if err != nil {
		return time.Time{}, err
	}
	if err := s.loadCert(c); err != nil {
		return time.Time{}, err
	}
	pol, next := s.buildPolicy(ctx, c, pool, true)
	s.setServerTLS(c)
	s.mu.Lock()
	s.cfg, s.pol, s.pool = c, pol, pool
	s.mu.Unlock()
	s.q.SetPolicy(queuePolicy(c))
	s.lim.set(c.Limits.Connections, c.Limits.ConnectionsPerClient)
	s.auth.set(c.Limits.AuthFailures, c.Limits.AuthBlock.Duration)
	return next, nil
}

func (s *Service) loadCert(c *config.SMTP) error {
	cert, key := c.TLS.Cert, c.TLS.Key
	if cert == "" {
		cert, key = filepath.Join(s.opts.TLSDir, "smtp.crt"), filepath.Join(s.opts.TLSDir, "smtp.key")
		made, err := ensureSelfSigned(cert, key, c.Hostname)
		if err != nil {
			return fmt.Errorf("smtp: generate certificate: %w", err)
		}
		if made {
			s.log.Info("generated a self-signed certificate; configure smtp.tls.cert and key for a trusted one", "cert", cert)
		}
	}
	return s.certs.setFiles(cert, key)
}

// clientCAs is the pool client certificates are verified against for
// the inbound connectors matched by certificate subject: the configured
// CAs only (a connector by subject needs a verified chain), nil when no
// connector asks for one.
func clientCAs(c *config.SMTP) *x509.CertPool {
	for _, ic := range c.InboundConnectors {
		if ic.TLSClientSubject != "" && c.TLS.CAFile != "" {
			pool := x509.NewCertPool()
			if b, err := readConfigured(c.TLS.CAFile); err == nil {
				pool.AppendCertsFromPEM(b)
			}
			return pool
		}
	}
	return nil
}

// serverTLS is the listeners' TLS settings. They are chosen per
// handshake from the running config, so that a reload's CA file and
// connectors apply to the next client, not only after a restart.
func (s *Service) serverTLS() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return s.clientTLS.Load(), nil
	}}
}

// setServerTLS installs the TLS settings of c for the next handshakes.
func (s *Service) setServerTLS(c *config.SMTP) {
	tc := &tls.Config{GetCertificate: s.certs.get, MinVersion: tls.VersionTLS12}
	if pool := clientCAs(c); pool != nil {
		tc.ClientAuth, tc.ClientCAs = tls.VerifyClientCertIfGiven, pool
	}
	s.clientTLS.Store(tc)
}

func (s *Service) serve(name, addr string, c *config.SMTP, errc chan<- error) (*smtp.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("smtp: listen %s on %s: %w", name, addr, err)
	}
	tc := s.serverTLS()
	ll := &limitListener{Listener: ln, lim: s.lim, idle: c.Limits.IdleTimeout.Duration, session: c.Limits.SessionTimeout.Duration, greetN: c.Hostname}
	if name == "smtps" {
		ll.tlsConf = tc
	}
	if name == "smtp" && c.GreetPause.Duration > 0 {
		// Only on port 25, and not for the trusted networks: submission
		// clients are people's mail programs.
		ll.pause = func(a netip.Addr) time.Duration {
			if s.policy().Trusted(a) {
				return 0
			}
			return s.config().GreetPause.Duration
		}
	}
	srv := smtp.NewServer(&backend{svc: s, listener: name})
	srv.Domain = c.Hostname
	srv.MaxMessageBytes = c.Limits.MessageSize.Bytes
	srv.MaxRecipients = c.Limits.Recipients
	srv.MaxLineLength = 2048 // as Postfix's line_length_limit; RFC 5321 asks for 1000
	srv.ErrorLog = log.New(slogWriter{s.log.With("listener", name)}, "", 0)
	if name != "smtps" {
		srv.TLSConfig = tc
	}
	s.log.Info("listening", "listener", name, "addr", ln.Addr().String())
	go func() {
		if err := srv.Serve(ll); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			errc <- fmt.Errorf("smtp: %s: %w", name, err)
		}
	}()
	return srv, nil
}

// slogWriter carries go-smtp's log lines (mostly clients that vanish
// mid-session) into the service log at debug level.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Detail is what `gatehouse status` shows for the relay.
type Detail struct {
	Queue      queue.Stats `json:"queue"`
	Accepted   int64       `json:"accepted"`
	Rejected   int64       `json:"rejected"`
	AuthFailed int64       `json:"auth_failed"`
	Auth       AuthStats   `json:"auth_guard"`
	// Sessions ended at the hard error limit; MAILs refused for want of
	// queue space.
	ErrorLimit  int64           `json:"error_limit_disconnects"`
	NoSpace     int64           `json:"refused_no_space"`
	Connections int             `json:"connections"`
	Fetch       []AccountStatus `json:"fetch,omitempty"`
	// Host names in trusted_networks and the inbound connectors' networks.
	Names []dnsclient.NameStatus `json:"names,omitempty"`
}

func (s *Service) detail() Detail {
	return Detail{Queue: s.q.Stats(), Accepted: s.count.accepted.Load(), Rejected: s.count.rejected.Load(),
		AuthFailed: s.count.authFailed.Load(), Auth: s.auth.stats(), ErrorLimit: s.count.errorLimit.Load(),
		NoSpace: s.count.noSpace.Load(), Connections: s.lim.count(), Fetch: s.fetch.status(), Names: s.names.Status()}
}

func (s *Service) publish() {
	d := s.detail()
	s.opts.Notify.Detail(d)
	line := fmt.Sprintf("queue %d (%d deferred, %d held), %d sessions; accepted %d, delivered %d, bounced %d",
		d.Queue.Depth, d.Queue.Deferred, d.Queue.Held, d.Connections, d.Accepted, d.Queue.Delivered, d.Queue.Bounced)
	for _, a := range d.Fetch {
		if a.LastError != "" {
			line += fmt.Sprintf("; fetch %s: ERROR %s", a.Name, queue.Printable(a.LastError))
		}
	}
	s.opts.Notify.Status(line)
}

// dsnQuoteMax bounds the original header a DSN quotes: whoever made the
// message chose its header, and a DSN may go to a forged sender.
const dsnQuoteMax = 16 << 10

// quoteForDSN is the original header cut, at a line end, to dsnQuoteMax.
func quoteForDSN(raw []byte) []byte {
	if len(raw) <= dsnQuoteMax {
		return raw
	}
	cut := bytes.LastIndexByte(raw[:dsnQuoteMax], '\n')
	return raw[:cut+1]
}

// notice queues a DSN to the sender of a message (RFC 3464).
func (s *Service) notice(n queue.Notice) error {
	c := s.config()
	pol := s.policy()
	var orig []byte
	if f, err := s.store.Open(n.Envelope.ID, n.Envelope.Size); err == nil {
		if _, raw, err := mailmsg.ReadHeader(bufio.NewReader(f), maxHeader); err == nil {
			orig = quoteForDSN(raw)
		}
		f.Close()
	}
	w, err := s.store.Create()
	if err != nil {
		return err
	}
	defer w.Abort()
	d := mailmsg.DSN{ReportingMTA: c.Hostname, From: "MAILER-DAEMON@" + c.Hostname, To: n.Envelope.From,
		Arrival: n.Envelope.Arrived, EnvelopeID: n.Envelope.ID, OriginalHeader: orig, Date: time.Now(),
		MessageID: "dsn." + w.ID() + "@" + c.Hostname}
	for _, i := range n.Rcpts {
		rs := n.State.Rcpts[i]
		action, status := "failed", "5.0.0"
		if n.Delayed {
			action, status = "delayed", "4.0.0"
		}
		if f := strings.Fields(rs.LastError); len(f) > 0 && len(f[0]) >= 5 && (f[0][0] == '4' || f[0][0] == '5') && f[0][1] == '.' {
			status = f[0]
			if !n.Delayed && status[0] == '4' {
				status = "5" + status[1:] // given up: a permanent failure now
			}
		}
		diag := ""
		if rs.LastError != "" {
			diag = "smtp; " + rs.LastError
		}
		remote := ""
		if rs.RemoteMTA != "" {
			remote = "dns; " + rs.RemoteMTA
		}
		d.Recipients = append(d.Recipients, mailmsg.DSNRecipient{Address: n.Envelope.Rcpts[i].Addr, Action: action,
			Status: status, Diagnostic: diag, RemoteMTA: remote, LastAttempt: rs.LastTry})
	}
	if _, err := w.Write(d.Bytes()); err != nil {
		return err
	}
	to, err := mailmsg.ParseAddress(n.Envelope.From)
	if err != nil {
		return fmt.Errorf("DSN to unparseable sender %q: %w", n.Envelope.From, err)
	}
	route := pol.route(to)
	if md, ok := pol.managed(to); ok {
		route = "domain:" + md.name
	}
	env := &queue.Envelope{From: "", Rcpts: []queue.Rcpt{{Addr: to.String(), Route: route}}, Arrived: time.Now(), DSN: true, Source: "dsn"}
	if err := w.Commit(env); err != nil {
		return err
	}
	s.q.Add(*env)
	kind := "bounce"
	if n.Delayed {
		kind = "delay warning"
	}
	s.log.Info("DSN queued", "kind", kind, "id", env.ID, "about", n.Envelope.ID, "to", env.Rcpts[0].Addr)
	return nil
}
