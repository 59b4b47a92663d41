// Package smtpd is the relay's SMTP server: listeners on 25, 587 and 465
// built on go-smtp with the hardening it lacks (per-read idle timeouts,
// connection limits, bare line-end rejection, pipelining before the
// greeting), a relay policy decided at MAIL and RCPT like Postfix's
// restrictions, an AUTH guard, recipient verification with the next hop,
// and sessions that say 250 only once the queue has the message on disk.
package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"gatehouse/config"
	"gatehouse/delivery"
	"gatehouse/queue"
	"gatehouse/status"
)

// Options are what a Server is built from.
type Options struct {
	Log   *slog.Logger
	Store *queue.Store
	Queue *queue.Queue
	// Transport asks next hops whether they take a recipient
	// (verify_recipients).
	Transport *delivery.Transport
	// Config and Policy are the running relay section and its policy;
	// the relay replaces them on reload, sessions read them per command.
	Config func() *config.SMTP
	Policy func() *Policy
	// FreeSpace says how many bytes the queue's file system has left.
	FreeSpace func() (int64, error)
	// Checks are the running mail checks and DKIM keys; nil or a nil
	// result: none.
	Checks func() *Checks
}

// Server is what the relay's listeners share: the running settings, the
// queue, the connection limits, the AUTH guard and the counters.
type Server struct {
	log       *slog.Logger
	store     *queue.Store
	q         *queue.Queue
	config    func() *config.SMTP
	policy    func() *Policy
	freeSpace func() (int64, error)
	checksFn  func() *Checks
	verify    *verifier
	lim       *connLimits
	auth      *authGuard
	count     struct {
		accepted, rejected, authFailed, errorLimit, noSpace atomic.Int64
	}
	tls     atomic.Pointer[tls.Config] // per handshake, from the running config
	servers []*smtp.Server
	// readers and writers are the DATA buffers, 32 KiB each way, kept
	// from message to message: allocating and clearing them for every
	// message was a tenth of the relay's garbage.
	readers, writers sync.Pool
}

// New returns a server with no listener yet.
func New(o Options) *Server {
	c := o.Config()
	return &Server{log: o.Log, store: o.Store, q: o.Queue, config: o.Config, policy: o.Policy, freeSpace: o.FreeSpace, checksFn: o.Checks,
		verify: newVerifier(o.Transport, o.Log), lim: newConnLimits(c.Limits.Connections, c.Limits.ConnectionsPerClient),
		auth:    newAuthGuard(c.Limits.AuthFailures, c.Limits.AuthBlock.Duration),
		readers: sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32<<10) }},
		writers: sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}}
}

// checks are the running checks; nil for none.
func (s *Server) checks() *Checks {
	if s.checksFn == nil {
		return nil
	}
	return s.checksFn()
}

// Apply takes the limits of a reloaded relay section; sessions under way
// keep going.
func (s *Server) Apply(c *config.SMTP) {
	s.lim.set(c.Limits.Connections, c.Limits.ConnectionsPerClient)
	s.auth.set(c.Limits.AuthFailures, c.Limits.AuthBlock.Duration)
}

// SetTLS installs the listeners' TLS settings for the next handshakes
// (STARTTLS, and port 465's): a reload's certificate, CA file and
// connectors apply to the next client, not only after a restart.
func (s *Server) SetTLS(tc *tls.Config) { s.tls.Store(tc) }

// serverTLS chooses the TLS settings per handshake.
func (s *Server) serverTLS() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return s.tls.Load(), nil
	}}
}

// Serve serves the listener name (smtp, submission or smtps) on ln until
// Close or Shutdown; a failure of the listener is sent to errc.
func (s *Server) Serve(name string, ln net.Listener, errc chan<- error) {
	c := s.config()
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
	srv := smtp.NewServer(&backend{srv: s, listener: name})
	srv.Domain = c.Hostname
	srv.MaxMessageBytes = c.Limits.MessageSize.Bytes
	srv.MaxRecipients = c.Limits.Recipients
	srv.MaxLineLength = 2048 // as Postfix's line_length_limit; RFC 5321 asks for 1000
	// Exchange Online, Gmail and Postfix send both; without SMTPUTF8 a
	// message to or from an internationalised address is refused at MAIL
	// (504 5.5.4), as the operator may choose.
	srv.EnableSMTPUTF8 = c.SMTPUTF8Enabled()
	srv.EnableDSN = true
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
	s.servers = append(s.servers, srv)
}

// Close stops every listener and ends the sessions.
func (s *Server) Close() {
	for _, sv := range s.servers {
		sv.Close()
	}
	s.servers = nil
}

// Shutdown stops accepting; sessions in DATA get to finish their 250
// within timeout each.
func (s *Server) Shutdown(timeout time.Duration) {
	for _, sv := range s.servers {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		sv.Shutdown(ctx)
		cancel()
	}
}

// Status fills in the SMTP side of the relay's status: counters, the AUTH
// guard, connections.
func (s *Server) Status() status.Relay {
	st := status.Relay{Accepted: s.count.accepted.Load(), Rejected: s.count.rejected.Load(),
		AuthFailed: s.count.authFailed.Load(), Auth: s.auth.stats(), ErrorLimit: s.count.errorLimit.Load(),
		NoSpace: s.count.noSpace.Load(), Connections: s.lim.count()}
	if d, ok := s.checks().DNSBLStats(); ok {
		st.DNSBL = &status.DNSBL{Queries: d.Queries, Cached: d.Cached, Listed: d.Listed, Errors: d.Errors}
	}
	return st
}

// slogWriter carries go-smtp's log lines (mostly clients that vanish
// mid-session) into the service log at debug level.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug(strings.TrimSpace(string(p)))
	return len(p), nil
}
