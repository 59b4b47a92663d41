// Package nrpe is the NRPE server that Nagios and Icinga ask with an
// unmodified check_nrpe 4.x: v2 and v4 packets, TLS and plain on one port,
// and built-in checks only: there is no shell and nothing is executed.
// Every answer is read from PID 1's status and the kernel's figures.
package nrpe

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"gatehouse/config"
	"gatehouse/dnsclient"
	"gatehouse/service"
	"gatehouse/status"
	"gatehouse/tlscert"
)

// Options configure the service.
type Options struct {
	Config     string
	TLSDir     string // where the self-signed certificate is kept
	ResolvConf string // the appliance's DNS servers, for host names on the allow lists
	Version    string // answered to _NRPE_CHECK
	Sources    Sources
	Log        *slog.Logger
	Notify     *service.Notifier
	Reload     <-chan struct{}
}

// MaxConnections bounds the connections served at once, from all sources.
const MaxConnections = 256

// Run serves until ctx ends.
func Run(ctx context.Context, o Options) error {
	// The counters reach the status at most once a second, and only
	// when they moved.
	kick := make(chan struct{}, 1)
	return service.RunServing(ctx, service.Options{Config: o.Config, Log: o.Log, Notify: o.Notify, Reload: o.Reload, Kick: kick},
		func(ctx context.Context, fail context.CancelCauseFunc) service.Reconciler {
			s := &Server{o: o, fail: fail, check: &Checker{Src: o.Sources, Version: o.Version},
				names: dnsclient.NewNames(dnsclient.New(o.ResolvConf)), perSource: map[netip.Addr]int{},
				answered: map[string]int64{}, byProto: map[string]int64{}}
			go s.kickOnEvents(ctx, kick)
			return s
		})
}

// kickOnEvents asks for a round (a status) once a second while the
// counters move.
func (s *Server) kickOnEvents(ctx context.Context, kick chan<- struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n := s.events.Load(); n != last {
			last = n
			select {
			case kick <- struct{}{}:
			default:
			}
		}
	}
}

// Server is the running service: the listener and the policy of the
// config in force, swapped on reload (a connection keeps the policy it
// was accepted under).
type Server struct {
	o      Options
	fail   context.CancelCauseFunc
	check  *Checker
	names  *dnsclient.Names
	certs  tlscert.Store
	listen string // what the listener was opened on
	l      net.Listener

	mu        sync.Mutex
	pol       *policy
	perSource map[netip.Addr]int
	total     int
	answered  map[string]int64
	st        status.NRPE

	notAllowed, overLimit, badRequests atomic.Int64
	events                             atomic.Int64 // connections handled: the status has news
	byProto                            map[string]int64
	nextLookup                         time.Time   // when a host name's answer runs out
	closed                             atomic.Bool // the listener was closed on purpose
}

// policy is what one config says: who may connect, TLS, limits.
type policy struct {
	cfg     *config.Config
	allowed config.PeerSet
	addrs   map[string][]netip.Addr
	tls     *tls.Config // nil with ssl off
}

// Reconcile opens the listener at the first round, and puts a new
// config's policy in force (see service.Reconciler). A changed listen
// address restarts the service; a removed section stops serving.
func (s *Server) Reconcile(ctx context.Context, cfg *config.Config) (time.Duration, error) {
	if cfg.NRPE == nil {
		if s.l != nil {
			s.closed.Store(true)
			s.l.Close()
			s.l = nil
			s.o.Log.Info("nrpe section removed: not serving")
		}
		s.mu.Lock()
		s.pol = nil
		s.mu.Unlock()
		return 0, nil
	}
	s.mu.Lock()
	same := s.pol != nil && s.pol.cfg == cfg
	s.mu.Unlock()
	if same && (s.nextLookup.IsZero() || time.Now().Before(s.nextLookup)) {
		return time.Minute, nil // a kick for the status: nothing to converge
	}
	if s.l != nil && cfg.NRPE.Listen != s.listen {
		return 0, service.Restart(fmt.Errorf("nrpe: listen address changed from %s to %s", s.listen, cfg.NRPE.Listen))
	}
	pol, next, err := s.newPolicy(ctx, cfg)
	if err != nil {
		return time.Minute, err
	}
	s.mu.Lock()
	s.pol = pol
	s.mu.Unlock()
	if s.l == nil {
		if err := s.start(ctx, cfg.NRPE.Listen); err != nil {
			return 0, err
		}
	}
	return next, nil
}

// newPolicy compiles cfg: the allow lists with their host names resolved
// (a name that does not resolve admits no one), and the TLS config.
func (s *Server) newPolicy(ctx context.Context, cfg *config.Config) (*policy, time.Duration, error) {
	n := cfg.NRPE
	allowed := config.JoinPeers(n.Allow, cfg.Monitoring.Hosts)
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	addrs, until := s.names.Resolve(rctx, allowed.Names())
	cancel()
	s.nextLookup = until
	for _, ns := range s.names.Status() {
		if len(ns.Addrs) == 0 {
			s.o.Log.Warn("nrpe: allowed host name has no address; it admits no one until it resolves", "host", ns.Name, "err", ns.Error)
		}
	}
	next := time.Minute
	if !until.IsZero() {
		next = min(max(time.Until(until), time.Second), time.Minute)
	}
	p := &policy{cfg: cfg, allowed: allowed, addrs: addrs}
	if n.SSL == "off" {
		return p, next, nil
	}
	cert, key := n.TLS.Cert, n.TLS.Key
	if cert == "" {
		cert, key = filepath.Join(s.o.TLSDir, "nrpe.crt"), filepath.Join(s.o.TLSDir, "nrpe.key")
		made, err := tlscert.EnsureSelfSigned(cert, key, cfg.Hostname)
		if err != nil {
			return nil, 0, fmt.Errorf("nrpe: self-signed certificate in %s: %w", s.o.TLSDir, err)
		}
		if made {
			s.o.Log.Info("nrpe: self-signed certificate made", "file", cert)
		}
	}
	if err := s.certs.SetFiles(cert, key); err != nil {
		return nil, 0, fmt.Errorf("nrpe: %w", err)
	}
	tc := &tls.Config{GetCertificate: s.certs.Get, MinVersion: tls.VersionTLS12}
	if n.TLS.ClientCA != "" {
		b, err := os.ReadFile(n.TLS.ClientCA)
		if err != nil {
			return nil, 0, fmt.Errorf("nrpe: client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, 0, fmt.Errorf("nrpe: client CA %s holds no PEM certificate", n.TLS.ClientCA)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.VerifyClientCertIfGiven
		if n.TLS.ClientCerts == "required" {
			tc.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	p.tls = tc
	s.mu.Lock()
	s.st.Certificate = cert
	s.mu.Unlock()
	return p, next, nil
}

func (s *Server) start(ctx context.Context, addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("nrpe: %w", err)
	}
	s.l, s.listen = l, addr
	s.o.Log.Info("nrpe listening", "addr", l.Addr().String())
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				if ctx.Err() == nil && !s.closed.Load() {
					s.fail(fmt.Errorf("nrpe: accept: %w", err))
				}
				return
			}
			go s.serve(ctx, c)
		}
	}()
	return nil
}

// admit takes a connection slot for src under the current policy, or
// says why not.
func (s *Server) admit(src netip.Addr) (*policy, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pol
	switch {
	case p == nil:
		return nil, "not serving"
	case !p.allowed.Contains(src, p.addrs):
		s.notAllowed.Add(1)
		return nil, "not an allowed host (monitoring.hosts, nrpe.allow)"
	case s.perSource[src] >= p.cfg.NRPE.ConnectionsPerHost:
		s.overLimit.Add(1)
		return nil, fmt.Sprintf("already %d connections from this host", s.perSource[src])
	case s.total >= MaxConnections:
		s.overLimit.Add(1)
		return nil, fmt.Sprintf("already %d connections", s.total)
	}
	s.perSource[src]++
	s.total++
	return p, ""
}

func (s *Server) release(src netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.perSource[src]--; s.perSource[src] <= 0 {
		delete(s.perSource, src)
	}
}

// peeked is a connection whose first byte was looked at. Each read asks
// the kernel to acknowledge at once (TCP_QUICKACK, which the kernel
// clears by itself): check_nrpe writes its TLS Finished and its query in
// two writes, and with Nagle on its side the query waits for the ACK of
// the Finished, which a delayed ACK holds back 40 ms.
type peeked struct {
	net.Conn
	r   *bufio.Reader
	raw syscall.RawConn // nil: not TCP
}

func (p peeked) Read(b []byte) (int, error) {
	if p.raw != nil && p.r.Buffered() == 0 {
		p.raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1) })
	}
	return p.r.Read(b)
}

func (s *Server) serve(ctx context.Context, c net.Conn) {
	defer c.Close()
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	src := ap.Addr().Unmap()
	pol, why := s.admit(src)
	if pol == nil {
		s.events.Add(1)
		s.o.Log.Warn("nrpe connection refused", "source", src, "why", why)
		return
	}
	defer s.release(src)
	defer s.events.Add(1)
	n := pol.cfg.NRPE
	deadline := time.Now().Add(n.Timeout.Duration)
	c.SetDeadline(deadline)
	br := bufio.NewReaderSize(c, 1024)
	first, err := br.Peek(1)
	if err != nil {
		s.badRequests.Add(1)
		return
	}
	pc := peeked{Conn: c, r: br}
	if tc, ok := c.(*net.TCPConn); ok {
		pc.raw, _ = tc.SyscallConn()
	}
	var conn net.Conn = pc
	isTLS := first[0] == 0x16 // a TLS handshake record
	switch {
	case isTLS && pol.tls == nil:
		s.badRequests.Add(1)
		s.o.Log.Info("nrpe: TLS refused (ssl off)", "source", src)
		return
	case !isTLS && n.SSL == "required":
		s.badRequests.Add(1)
		s.o.Log.Info("nrpe: plain connection refused (ssl required)", "source", src)
		return
	case isTLS:
		tc := tls.Server(conn, pol.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			s.badRequests.Add(1)
			s.o.Log.Info("nrpe: TLS handshake failed", "source", src, "err", err)
			return
		}
		defer tc.Close() // close_notify
		conn = tc
	}
	pkt, err := ReadQuery(conn)
	if err != nil {
		// As the nrpe daemon: no answer to what is not a query. A client
		// that sent a version it was refused (check_nrpe's v4 to an old
		// daemon) tries again with v2.
		s.badRequests.Add(1)
		s.o.Log.Info("nrpe: no valid request", "source", src, "err", err)
		return
	}
	var res Result
	q, err := ParseQuery(pkt.Buffer, n.AllowArguments)
	if err != nil {
		s.o.Log.Warn("nrpe request refused", "source", src, "err", err)
		res = Result{Unknown, "NRPE: request refused: " + err.Error()}
	} else {
		cctx, cancel := context.WithDeadline(ctx, deadline.Add(-500*time.Millisecond))
		res = s.check.Run(cctx, pol.cfg, q)
		cancel()
	}
	proto := fmt.Sprintf("v%d", pkt.Version)
	if isTLS {
		proto += "+tls"
	} else {
		proto += "+plain"
	}
	s.mu.Lock()
	s.answered[stateNames[res.State]]++
	s.byProto[proto]++
	s.mu.Unlock()
	if _, err := conn.Write(EncodeResponse(pkt.Version, res.State, res.Text)); err != nil {
		s.o.Log.Info("nrpe: answer not sent", "source", src, "err", err)
	}
}

// Status says where the server listens and what it answered (see
// service.Reconciler).
func (s *Server) Status() service.Status {
	s.mu.Lock()
	st := s.st
	st.Answered = map[string]int64{}
	for k, v := range s.answered {
		st.Answered[k] = v
	}
	st.Protocols = map[string]int64{}
	for k, v := range s.byProto {
		st.Protocols[k] = v
	}
	if s.pol != nil {
		st.Listen, st.SSL = s.listen, s.pol.cfg.NRPE.SSL
		if s.pol.tls != nil && s.pol.cfg.NRPE.TLS.ClientCA != "" {
			st.ClientCerts = s.pol.cfg.NRPE.TLS.ClientCerts
		}
	}
	s.mu.Unlock()
	st.NotAllowed, st.OverLimit, st.BadRequests = s.notAllowed.Load(), s.overLimit.Load(), s.badRequests.Load()
	st.Names = s.names.Status()
	summary := "off"
	if st.Listen != "" {
		var total int64
		for _, v := range st.Answered {
			total += v
		}
		summary = fmt.Sprintf("listening on %s, ssl %s, %d queries answered, %d refused", st.Listen, st.SSL, total, st.NotAllowed+st.OverLimit)
	}
	return service.Status{Ready: true, Summary: summary, Detail: st}
}
