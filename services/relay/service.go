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
	"path/filepath"
	"sync"
	"time"

	"gatehouse/collector"
	"gatehouse/config"
	"gatehouse/delivery"
	"gatehouse/dnsclient"
	"gatehouse/queue"
	"gatehouse/service"
	"gatehouse/smtpd"
	"gatehouse/status"
	"gatehouse/tlscert"
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

	mu    sync.RWMutex
	cfg   *config.SMTP
	pol   *smtpd.Policy
	pool  *x509.CertPool
	store *queue.Store
	q     *queue.Queue
	certs tlscert.Store
	smtp  *smtpd.Server
	pop   *smtpd.PopAuth
	fetch *collector.Collector
	names *dnsclient.Names // host names in the allow lists, kept resolved
}

func (s *Service) policy() *smtpd.Policy {
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
	s := &Service{opts: o, log: o.Log, cfg: c, pop: smtpd.NewPopAuth()}
	s.certs.ReadFile = readConfigured
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

	store, loaded, problems := queue.OpenStore(o.QueueDir)
	if store == nil {
		return problems[0]
	}
	defer store.Close()
	for _, p := range problems {
		o.Log.Error("queue", "err", p)
	}
	s.store = store
	tr := &delivery.Transport{Log: o.Log, ResolvConf: o.ResolvConf, Config: s.config, Roots: s.roots, ReadFile: readConfigured}
	qctx, qcancel := context.WithCancel(context.Background())
	s.q = queue.New(qctx, store, loaded, tr, queuePolicy(c), s.notice, o.Log)
	defer func() { qcancel(); s.q.Wait() }()
	o.Log.Info("queue opened", "dir", o.QueueDir, "messages", len(loaded))

	s.smtp = smtpd.New(smtpd.Options{Log: o.Log, Store: store, Queue: s.q, Transport: tr, Config: s.config, Policy: s.policy,
		FreeSpace: func() (int64, error) { return smtpd.FreeBytes(o.QueueDir) }})
	s.setServerTLS(c)
	listen := map[string]string{"smtp": c.Listen.SMTP, "submission": c.Listen.Submission, "smtps": c.Listen.SMTPS}
	errc := make(chan error, 4)
	for _, name := range []string{"smtp", "submission", "smtps"} {
		addr := listen[name]
		if addr == "off" {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			s.smtp.Close()
			return fmt.Errorf("smtp: listen %s on %s: %w", name, addr, err)
		}
		s.smtp.Serve(name, ln, errc)
	}
	defer s.smtp.Close()
	s.fetch = collector.New(collector.Options{Sink: sink{s}, Settings: s.collectorSettings, ReadFile: readConfigured, Log: o.Log})
	fctx, fcancel := context.WithCancel(ctx)
	defer func() { fcancel(); s.fetch.Wait() }()
	s.fetch.Apply(fctx, full.Fetch)
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
			s.smtp.Shutdown(5 * time.Second)
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
				s.smtp.Close()
				off = true
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
			s.fetch.Apply(fctx, nc.Fetch)
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
	s.setServerTLS(c)
	s.mu.Lock()
	s.cfg, s.pol, s.pool = c, pol, pool
	s.mu.Unlock()
	s.q.SetPolicy(queuePolicy(c))
	s.smtp.Apply(c)
	return next, nil
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
	d.Queue, d.Fetch, d.Names = s.q.Stats(), s.fetch.Status(), s.names.Status()
	return d
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
