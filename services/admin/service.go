// Package admin is administration over the network: the REST API (8445)
// and the web console (8443), HTTPS both, from the allow list only (checked
// when a connection is accepted, not only by the firewall), with API
// tokens, a web password, roles, a ban after repeated failed logins, and
// every request logged with who made it. Both act through the same layers
// as the CLI and the shells: PID 1's control socket, the relay's socket and
// the command table, so that there is one behaviour with four faces.
package admin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"gatehouse/adminauth"
	"gatehouse/config"
	"gatehouse/dnsclient"
	"gatehouse/layout"
	"gatehouse/linuxfw"
	"gatehouse/peergate"
	"gatehouse/service"
	"gatehouse/tlscert"
)

// Options configure the service.
type Options struct {
	Config string
	Paths  layout.Paths // the instance's sockets, running config and state
	// Static is the web console's files; nil serves the API alone on the
	// web console's port too.
	Static fs.FS
	Log    *slog.Logger
	Notify *service.Notifier
	Reload <-chan struct{}
}

// Limits every peer lives with.
const (
	maxConnsPerSource = 32
	maxBody           = 1 << 20 // a config file, a login
	maxHeader         = 16 << 10
)

// Run serves until ctx ends.
func Run(ctx context.Context, o Options) error {
	return service.RunServing(ctx, service.Options{Config: o.Config, Log: o.Log, Notify: o.Notify, Reload: o.Reload},
		func(_ context.Context, fail context.CancelCauseFunc) service.Reconciler {
			return &reconciler{o: o, fail: fail}
		})
}

// reconciler starts the server at the first round and puts each new
// config's policy in force (see service.Reconciler).
type reconciler struct {
	o     Options
	fail  context.CancelCauseFunc
	s     *server
	cfg   *config.Config
	ports [2]int
}

func (r *reconciler) Reconcile(ctx context.Context, cfg *config.Config) (time.Duration, error) {
	if cfg.Admin == nil {
		return 0, errors.New("admin: no admin section in the config")
	}
	switch {
	case r.s == nil:
		s, err := newServer(ctx, cfg, r.o)
		if err != nil {
			return 0, err
		}
		if err := s.listen(ctx, cfg, r.fail); err != nil {
			return 0, err
		}
		r.s, r.ports = s, [2]int{cfg.Admin.WebPort, cfg.Admin.APIPort}
	case cfg != r.cfg:
		if [2]int{cfg.Admin.WebPort, cfg.Admin.APIPort} != r.ports {
			return 0, service.Restart(errors.New("admin: ports changed"))
		}
		if err := r.s.reload(ctx, cfg); err != nil {
			return 0, err
		}
	}
	r.cfg = cfg
	return r.s.pols.Refresh(ctx), nil
}

func (r *reconciler) Status() service.Status {
	return service.Status{Ready: true, Summary: fmt.Sprintf("web console on %d, API on %d", r.ports[0], r.ports[1])}
}

// server is the running service: credentials, ban table, sessions and
// certificate outlive reloads; the policy is each config's.
type server struct {
	o        Options
	log      *slog.Logger
	store    *adminauth.Store
	bans     *peergate.BanTable
	names    *dnsclient.Names
	certs    *tlscert.Store
	sessions *sessions
	// kernelBan puts a ban into the firewall's admin ban set (the tests'
	// own never touch the host's firewall).
	kernelBan func(netip.Addr, time.Duration) error

	pols *peergate.Policies[*policy]

	conns *connLimit
	api   http.Handler
}

// policy is what one config says about who gets in.
type policy struct {
	cfg *config.Config
	// web admits the web console's sources, api the API's (the
	// monitoring hosts too, with read rights only).
	web, api  *peergate.Gate
	clientCAs *x509.CertPool // nil: no client certificates
}

func newServer(ctx context.Context, cfg *config.Config, o Options) (*server, error) {
	dir := o.Paths.Admin()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	s := &server{o: o, log: o.Log, store: adminauth.NewStore(dir), bans: peergate.NewBanTable(),
		names: dnsclient.NewNames(dnsclient.New(o.Paths.ResolvConf())), certs: &tlscert.Store{},
		sessions:  newSessions(),
		kernelBan: func(a netip.Addr, d time.Duration) error { return linuxfw.Ban(layout.AdminBanSet, a, d) },
		conns:     newConnLimit(maxConnsPerSource)}
	if err := s.setCert(cfg); err != nil {
		return nil, err
	}
	var err error
	if s.pols, err = peergate.NewPolicies(ctx, cfg, s.newPolicy); err != nil {
		return nil, err
	}
	s.api = s.routes()
	return s, nil
}

// setCert serves the configured certificate, or the one made here.
func (s *server) setCert(cfg *config.Config) error {
	cert, key := cfg.Admin.Cert, cfg.Admin.Key
	if cert == "" {
		cert, key = filepath.Join(s.o.Paths.Admin(), "cert.pem"), filepath.Join(s.o.Paths.Admin(), "key.pem")
		made, err := tlscert.EnsureSelfSigned(cert, key, cfg.Hostname)
		if err != nil {
			return fmt.Errorf("admin: certificate: %w", err)
		}
		if made {
			s.log.Info("admin: self-signed certificate made", "file", cert)
		}
	}
	if err := s.certs.SetFiles(cert, key); err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	return nil
}

// newPolicy compiles cfg with its host names resolved, and says when the
// first answer runs out. A name that does not resolve admits no one.
func (s *server) newPolicy(ctx context.Context, cfg *config.Config) (*policy, time.Time, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	addrs, next := s.names.Resolve(rctx, cfg.AdminAPIPeers().Names())
	cancel()
	for _, n := range s.names.Status() {
		if len(n.Addrs) == 0 {
			s.log.Warn("admin: allow-list host name has no address; it admits no one until it resolves", "host", n.Name, "err", n.Error)
		}
	}
	p := &policy{cfg: cfg, web: peergate.New(cfg.AdminPeers(), addrs, cfg.Admin.Ban, s.bans),
		api: peergate.New(cfg.AdminAPIPeers(), addrs, cfg.Admin.Ban, s.bans)}
	if f := cfg.Admin.ClientCA; f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("admin: client_ca: %w", err)
		}
		p.clientCAs = x509.NewCertPool()
		if !p.clientCAs.AppendCertsFromPEM(pem) {
			return nil, time.Time{}, fmt.Errorf("admin: client_ca %s: no certificate in it", f)
		}
	}
	return p, next, nil
}

func (s *server) reload(ctx context.Context, cfg *config.Config) error {
	if err := s.setCert(cfg); err != nil {
		return err
	}
	return s.pols.Set(ctx, cfg)
}

func (s *server) current() *policy { return s.pols.Current() }

// listen serves the web console and the API on their ports.
func (s *server) listen(ctx context.Context, cfg *config.Config, fail context.CancelCauseFunc) error {
	for _, l := range []struct {
		port int
		api  bool
	}{{cfg.Admin.WebPort, false}, {cfg.Admin.APIPort, true}} {
		ln, err := net.Listen("tcp", fmt.Sprintf(":%d", l.port))
		if err != nil {
			return fmt.Errorf("admin: %w", err)
		}
		srv := s.httpServer(l.api)
		tl := tls.NewListener(&gatedListener{Listener: ln, s: s, api: l.api}, srv.TLSConfig)
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
		}()
		go func() {
			if err := srv.Serve(tl); err != nil && !errors.Is(err, http.ErrServerClosed) && ctx.Err() == nil {
				fail(fmt.Errorf("admin: port %d: %w", l.port, err))
			}
		}()
	}
	go func() {
		t := time.NewTicker(15 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				peergate.Reassert(s.bans, layout.AdminBanSet, s.log)
				s.sessions.expire(s.current().cfg.Admin.SessionTimeout.Duration)
			}
		}
	}()
	return nil
}

// httpServer is one port's server: TLS 1.2 and later, the appliance's
// certificate, client certificates on the API's port, deadlines for slow
// peers.
func (s *server) httpServer(api bool) *http.Server {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.certs.Get, NextProtos: []string{"h2", "http/1.1"}}
	if api {
		tc.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			p := s.current()
			if p.clientCAs == nil {
				return nil, nil
			}
			c := tc.Clone()
			c.GetConfigForClient = nil
			c.ClientAuth, c.ClientCAs = tls.VerifyClientCertIfGiven, p.clientCAs
			return c, nil
		}
	}
	var h http.Handler = s.apiHandler(api)
	if !api {
		h = s.webHandler()
	}
	return &http.Server{Handler: h, TLSConfig: tc,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: maxHeader, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
}

// gatedListener refuses a connection from a source the allow list does
// not name, or one banned, before TLS, and bounds the connections one
// source holds.
type gatedListener struct {
	net.Listener
	s   *server
	api bool
}

func (l *gatedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := remoteAddr(c.RemoteAddr())
		p := l.s.current()
		g := p.web
		if l.api {
			g = p.api
		}
		if ok, why := g.Admit(src); !ok {
			l.s.log.Warn("admin: connection refused", "source", src, "why", why, "api", l.api)
			c.Close()
			continue
		}
		release, ok := l.s.conns.take(src)
		if !ok {
			l.s.log.Warn("admin: connection refused", "source", src, "why", "too many connections from this source")
			c.Close()
			continue
		}
		return &releasingConn{Conn: c, release: release}, nil
	}
}

func remoteAddr(a net.Addr) netip.Addr {
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap()
}

// connLimit counts the connections each source holds.
type connLimit struct {
	mu  sync.Mutex
	max int
	n   map[netip.Addr]int
}

func newConnLimit(max int) *connLimit { return &connLimit{max: max, n: map[netip.Addr]int{}} }

func (c *connLimit) take(a netip.Addr) (func(), bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[a] >= c.max {
		return nil, false
	}
	c.n[a]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.n[a]--; c.n[a] <= 0 {
				delete(c.n, a)
			}
		})
	}, true
}

type releasingConn struct {
	net.Conn
	release func()
}

func (c *releasingConn) Close() error {
	c.release()
	return c.Conn.Close()
}
