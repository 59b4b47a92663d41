// Package relay is the mail relay service: it wires the config to the SMTP
// server (smtpd), the durable queue, delivery by MX or next hop with
// per-destination TLS levels (delivery) and the collector, and keeps them
// in step on reload. It also runs the relay's control socket, sends DSNs,
// and holds what the launcher does before the relay starts unprivileged
// (privsep).
package relay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"gatehouse/collector"
	"gatehouse/config"
	"gatehouse/delivery"
	"gatehouse/dkimsign"
	"gatehouse/dnsclient"
	"gatehouse/mailauth"
	"gatehouse/mtasts"
	"gatehouse/queue"
	"gatehouse/service"
	"gatehouse/smtpd"
	"gatehouse/status"
	"gatehouse/tlscert"
	"gatehouse/tlsrpt"
)

// Options configure the service.
type Options struct {
	Config     string
	QueueDir   string // /data/queue on the appliance
	TLSDir     string // where a generated certificate is kept
	ResolvConf string // the resolvers for MX lookups
	MTASTSDir  string // the MTA-STS policy cache (/data/mta-sts); "": no MTA-STS
	OAuthDir   string // refresh tokens as the providers rotate them (/data/oauth)
	TLSRPTDir  string // the TLS report counts (/data/tls-rpt); "": no TLS reports
	Socket     string // the relay's control socket (queue commands)
	Log        *slog.Logger
	Notify     *service.Notifier
	Reload     <-chan struct{}
}

// Service is the running relay, and its reconciler for service.Run: the
// first round starts it, a reload puts a new relay section in force (or
// ends the service when only a restart can), and rounds every 2 s keep the
// status fresh and the allow lists' host names resolved.
type Service struct {
	opts Options
	log  *slog.Logger

	mu    sync.RWMutex // over cfg, pol and pool, which sessions read
	cfg   *config.SMTP
	pol   *smtpd.Policy
	pool  *x509.CertPool
	chk   *smtpd.Checks // smtp.checks and smtp.dkim_signing
	store *queue.Store
	q     *queue.Queue
	certs tlscert.Store
	smtp  *smtpd.Server
	pop   *smtpd.PopAuth
	fetch *collector.Collector
	// tokens are the OAuth2 token sources of collector accounts and
	// connectors, and the device logins in progress.
	tokens *tokens
	names  *dnsclient.Names // host names in the allow lists, kept resolved
	// reports counts outbound TLS sessions for TLS-RPT; nil without
	// Options.TLSRPTDir.
	reports *tlsrpt.Recorder

	// Of the loop only.
	seen       *config.Config // the config of the last round; nil before the first
	off        bool           // the section was removed by a reload
	nextLookup time.Time      // when a host name's answer runs out
	stopQueue  context.CancelFunc

	kick   chan struct{} // a round now: a listener failed
	failed error         // the listener's failure, under mu
}

func (s *Service) policy() *smtpd.Policy {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.pol
}

func (s *Service) checks() *smtpd.Checks {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.chk
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

// publishEvery is how often the status goes out: the counters move
// without rounds of their own.
const publishEvery = 2 * time.Second

// Run serves until ctx ends; sessions in DATA then get to finish their
// 250. It ends with an error, for the supervisor to start it again, when
// a reload changes what only a restart applies (the listen addresses, the
// message limits, the relay turned on again) or a listener fails.
func Run(ctx context.Context, o Options) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The relay's live heap is small (a few MiB) and every message makes
	// garbage: at Go's default the collector ran every few hundred
	// messages and cost about 6 % of the relay's throughput. Five times
	// the live heap between collections instead, under a soft limit of a
	// quarter of the machine's memory (or the operator's GOMEMLIMIT): near
	// it the collector runs as often as it must to stay below.
	debug.SetGCPercent(400)
	if os.Getenv("GOMEMLIMIT") == "" {
		var si unix.Sysinfo_t
		if unix.Sysinfo(&si) == nil {
			debug.SetMemoryLimit(max(int64(si.Totalram)*int64(si.Unit)/4, 256<<20))
		}
	}
	s := &Service{opts: o, log: o.Log, pop: smtpd.NewPopAuth(), kick: make(chan struct{}, 1),
		// The allow lists' host names are asked of the appliance's DNS
		// servers, as the firewall asks them, and follow their TTLs.
		names: dnsclient.NewNames(dnsclient.New(o.ResolvConf))}
	s.certs.ReadFile = readConfigured
	err := service.Run(ctx, service.Options{Config: o.Config, Log: o.Log, Notify: o.Notify, Reload: o.Reload, Kick: s.kick}, s)
	graceful := err == nil // ctx ended
	cancel()
	s.stop(graceful)
	return err
}

// Reconcile starts the relay at the first round; a new config is a reload;
// other rounds look up the host names whose answers ran out (see
// service.Reconciler).
func (s *Service) Reconcile(ctx context.Context, cfg *config.Config) (time.Duration, error) {
	var err error
	failed := s.listenerFailed()
	switch {
	case s.seen == nil:
		err = s.start(ctx, cfg)
	case failed != nil:
		return 0, service.Restart(failed)
	case cfg != s.seen:
		err = s.reload(ctx, cfg)
	default:
		s.refresh(ctx)
	}
	s.seen = cfg
	return min(publishEvery, untilLookup(s.nextLookup)), err
}

// Status is the relay's counters, queue, collector and host names (see
// service.Reconciler).
func (s *Service) Status() service.Status {
	d := s.detail()
	line := fmt.Sprintf("queue %d (%d deferred, %d held), %d sessions; accepted %d, delivered %d, bounced %d",
		d.Queue.Depth, d.Queue.Deferred, d.Queue.Held, d.Connections, d.Accepted, d.Queue.Delivered, d.Queue.Bounced)
	for _, a := range d.Fetch {
		if a.LastError != "" {
			line += fmt.Sprintf("; fetch %s: ERROR %s", a.Name, queue.Printable(a.LastError))
		}
	}
	return service.Status{Ready: true, Summary: line, Detail: d}
}

// start opens the trust pool, the policy, the certificate, the queue, the
// listeners, the collector and the control socket. What it started lives
// on ctx; stop ends the rest, also after a failed start.
func (s *Service) start(ctx context.Context, full *config.Config) error {
	if full.SMTP == nil {
		return errors.New("smtp: no smtp section in the config")
	}
	o, c := s.opts, full.SMTP
	s.cfg = c
	var err error
	if s.pool, err = trustPool(c.TLS.CAFile); err != nil {
		return err
	}
	s.pol, s.nextLookup = s.buildPolicy(ctx, c, s.pool, true)
	s.chk = smtpd.NewChecks(c, mailauth.DNSClient{ResolvConf: o.ResolvConf}, s.keyring(c), nil)
	if err := s.loadCert(c); err != nil {
		return err
	}

	store, loaded, problems := queue.OpenStore(o.QueueDir)
	if store == nil {
		return problems[0]
	}
	s.store = store
	for _, p := range problems {
		o.Log.Error("queue", "err", p)
	}
	if o.OAuthDir != "" {
		// PID 1 makes it, the relay's own; run as a user, it is ours.
		if err := os.MkdirAll(o.OAuthDir, 0o700); err != nil {
			return fmt.Errorf("smtp: %w", err)
		}
	}
	s.tokens = newTokens(o.OAuthDir, o.Log)
	tr := &delivery.Transport{Log: o.Log, ResolvConf: o.ResolvConf, Config: s.config, Roots: s.roots, ReadFile: readConfigured,
		Tokens: func(name string, c *config.OAuth2) delivery.TokenSource { return s.tokens.source(name, c) }}
	if o.MTASTSDir != "" {
		// Policies are fetched through the appliance's resolver and
		// verified against the same CAs as delivery.
		f := &mtasts.Fetcher{Resolver: mtasts.DNS{Lookup: dnsclient.New(o.ResolvConf)}, Roots: s.roots}
		if tr.STS, err = mtasts.Open(o.MTASTSDir, f, o.Log); err != nil {
			return fmt.Errorf("smtp: %w", err)
		}
	}
	if o.TLSRPTDir != "" {
		if s.reports, err = tlsrpt.Open(o.TLSRPTDir, tlsrpt.Options{Submitter: c.Hostname, Log: o.Log}); err != nil {
			return fmt.Errorf("smtp: %w", err)
		}
		tr.Reports = s.reports
		go s.reportLoop(ctx)
	}
	// The queue outlives ctx: it stops after the listeners (stop).
	qctx, qcancel := context.WithCancel(context.Background())
	s.q, s.stopQueue = queue.New(qctx, store, loaded, tr, queuePolicy(c), s.notice, o.Log), qcancel
	o.Log.Info("queue opened", "dir", o.QueueDir, "messages", len(loaded))

	s.smtp = smtpd.New(smtpd.Options{Log: o.Log, Store: store, Queue: s.q, Transport: tr, Config: s.config, Policy: s.policy, Checks: s.checks,
		FreeSpace: func() (int64, error) { return smtpd.FreeBytes(o.QueueDir) }})
	s.setServerTLS(c)
	listen := map[string]string{"smtp": c.Listen.SMTP, "submission": c.Listen.Submission, "smtps": c.Listen.SMTPS}
	errc := make(chan error, 3)
	for _, name := range []string{"smtp", "submission", "smtps"} {
		addr := listen[name]
		if addr == "off" {
			continue
		}
		// No TCP keep-alive: every read has a deadline (limits.idle_timeout)
		// that ends a dead session sooner, and the four setsockopt calls
		// per connection are measurable at relay rates.
		ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("smtp: listen %s on %s: %w", name, addr, err)
		}
		s.smtp.Serve(name, ln, errc)
	}
	go func() {
		select {
		case err := <-errc:
			s.mu.Lock()
			s.failed = err
			s.mu.Unlock()
			select {
			case s.kick <- struct{}{}:
			default:
			}
		case <-ctx.Done():
		}
	}()
	s.fetch = collector.New(collector.Options{Sink: sink{s}, Settings: s.collectorSettings, ReadFile: readConfigured, Log: o.Log,
		Tokens: func(name string, c *config.OAuth2) collector.TokenSource { return s.tokens.source(name, c) }})
	s.fetch.Apply(ctx, full.Fetch)
	s.tokens.prune(full)
	go func() {
		if err := serveControl(ctx, o.Socket, s); err != nil {
			o.Log.Error("control socket", "err", err)
		}
	}()
	return nil
}

func (s *Service) listenerFailed() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.failed
}

// reload puts a new config in force. A removed section closes the
// listeners and keeps delivering the queue (a 250 is a promise); what
// only a restart applies ends the service (service.Restart); a section
// that cannot be applied leaves the running settings.
func (s *Service) reload(ctx context.Context, full *config.Config) error {
	nc, c := full.SMTP, s.cfg
	if nc == nil {
		s.smtp.Close()
		s.off = true
		s.log.Warn("the smtp section was removed: listeners closed; the queue is still delivered")
		return nil
	}
	if s.off || nc.Listen != c.Listen {
		return service.Restart(errors.New("smtp: listen addresses changed (or the relay was turned on again); restarting to apply them"))
	}
	// go-smtp reads these of its server in every session without a lock:
	// they change only with a new server.
	if nc.Limits.MessageSize != c.Limits.MessageSize || nc.Limits.Recipients != c.Limits.Recipients || nc.SMTPUTF8Enabled() != c.SMTPUTF8Enabled() {
		return service.Restart(errors.New("smtp: limits.message_size, limits.recipients or smtputf8 changed; restarting to apply them"))
	}
	next, err := s.apply(ctx, nc)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	s.nextLookup = next
	s.fetch.Apply(ctx, full.Fetch)
	s.tokens.prune(full)
	s.log.Info("reloaded")
	return nil
}

// refresh rebuilds the policy, and only it, when a host name's answer has
// run out.
func (s *Service) refresh(ctx context.Context) {
	if s.nextLookup.IsZero() || time.Now().Before(s.nextLookup) {
		return
	}
	pol, next := s.buildPolicy(ctx, s.cfg, s.pool, false)
	s.mu.Lock()
	s.pol = pol
	s.mu.Unlock()
	s.nextLookup = next
}

// stop ends what start started, once ctx has ended (the collector, the
// control socket): with graceful, sessions in DATA first get to finish
// their 250 (bounded by the supervisor's stop timeout); then the
// listeners close, the queue's workers stop, and the store closes.
func (s *Service) stop(graceful bool) {
	if s.smtp != nil && graceful {
		s.smtp.Shutdown(5 * time.Second)
	}
	if s.fetch != nil {
		s.fetch.Wait()
	}
	if s.smtp != nil {
		s.smtp.Close()
	}
	if s.q != nil {
		s.stopQueue()
		s.q.Wait()
	}
	if s.reports != nil {
		if err := s.reports.Flush(); err != nil {
			s.log.Error("TLS report counts not saved", "err", err)
		}
	}
	if s.store != nil {
		s.store.Close()
	}
}

// buildPolicy compiles the relay section with its host names resolved
// (those whose answers ran out asked again) and says when the first answer
// runs out. A name without addresses matches no one.
func (s *Service) buildPolicy(ctx context.Context, c *config.SMTP, pool *x509.CertPool, announce bool) (*smtpd.Policy, time.Time) {
	names := smtpd.HostNames(c)
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
	return smtpd.NewPolicy(c, addrs, s.pop, pool, s.log), next
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
	chk := smtpd.NewChecks(c, mailauth.DNSClient{ResolvConf: s.opts.ResolvConf}, s.keyring(c), s.checks())
	s.setServerTLS(c)
	s.mu.Lock()
	s.cfg, s.pol, s.pool, s.chk = c, pol, pool, chk
	s.mu.Unlock()
	s.q.SetPolicy(queuePolicy(c))
	s.smtp.Apply(c)
	return next, nil
}

// keyring loads the DKIM keys. A key that does not load signs nothing
// (said in the log), and the rest still sign: the relay never stops
// relaying for want of a signature.
func (s *Service) keyring(c *config.SMTP) *dkimsign.Keyring {
	kr := &dkimsign.Keyring{}
	for i, k := range c.DKIMSigning {
		kc := dkimsign.Config{Domain: k.Domain, Selector: k.Selector, KeyFile: k.KeyFile, Headers: k.Headers, Subdomains: k.Subdomains}
		if err := kr.Add(kc); err != nil {
			s.log.Error("dkim: key not loaded; this domain's mail goes out unsigned", "setting", fmt.Sprintf("smtp.dkim_signing[%d]", i), "err", err)
		}
	}
	if kr.Len() == 0 {
		return nil
	}
	return kr
}

func (s *Service) loadCert(c *config.SMTP) error {
	cert, key := c.TLS.Cert, c.TLS.Key
	if cert == "" {
		cert, key = filepath.Join(s.opts.TLSDir, "smtp.crt"), filepath.Join(s.opts.TLSDir, "smtp.key")
		made, err := tlscert.EnsureSelfSigned(cert, key, c.Hostname)
		if err != nil {
			return fmt.Errorf("smtp: generate certificate: %w", err)
		}
		if made {
			s.log.Info("generated a self-signed certificate; configure smtp.tls.cert and key for a trusted one", "cert", cert)
		}
	}
	if err := s.certs.SetFiles(cert, key); err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	return nil
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

// setServerTLS installs the TLS settings of c for the listeners' next
// handshakes.
func (s *Service) setServerTLS(c *config.SMTP) {
	tc := &tls.Config{GetCertificate: s.certs.Get, MinVersion: tls.VersionTLS12}
	if pool := clientCAs(c); pool != nil {
		tc.ClientAuth, tc.ClientCAs = tls.VerifyClientCertIfGiven, pool
	}
	s.smtp.SetTLS(tc)
}

func (s *Service) detail() status.Relay {
	d := s.smtp.Status()
	d.Queue, d.Fetch, d.Names, d.OAuth = s.q.Stats(), s.fetch.Status(), s.names.Status(), s.tokens.status()
	return d
}
