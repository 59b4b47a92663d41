// Package ssh is the diagnostics shell over SSH: public-key logins only,
// from the allowlist and the monitoring hosts only (checked when a
// connection is accepted, not only by the firewall), a ban after repeated
// authentication failures, every login logged. The shell is the serial
// console's, acting on PID 1 through the control socket.
package sshd

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"gatehouse/config"
	"gatehouse/console"
	"gatehouse/control"
	"gatehouse/dnsclient"
	"gatehouse/layout"
	"gatehouse/linuxfw"
	"gatehouse/peergate"
	"gatehouse/safeio"
	"gatehouse/service"
)

// Options configure the service.
type Options struct {
	Config  string
	KeyDir  string // where the host key is kept (on /data on the appliance)
	Control string // PID 1's control socket
	// ResolvConf lists the DNS servers the allowlist's host names are
	// asked of (the dns service's).
	ResolvConf string
	Log        *slog.Logger
	Notify     *service.Notifier
	Reload     <-chan struct{}
}

// NewGate is the shell's gate under c: its allowlist, the monitoring
// hosts and the cluster's peers; addrs holds what their host names
// resolve to now (HostNames lists them).
func NewGate(c *config.Config, addrs map[string][]netip.Addr, bans *peergate.BanTable) *peergate.Gate {
	return peergate.New(c.SSHPeers(), addrs, c.SSH.Ban, bans)
}

// HostNames lists the host names on the allowlist and among the
// monitoring hosts.
func HostNames(c *config.Config) []string {
	return c.SSHPeers().Names()
}

// hostKeyFile is the host key's file in the key directory.
const hostKeyFile = "ssh_host_ed25519_key"

// hostKey loads the host key, or makes one: on first start, and when the
// file cannot be read or does not parse (cut short by a crash, say). A
// changed host key is better than no admin access, so that is an error in
// the log naming the new key's fingerprint, not a shell that never starts.
// A key that cannot be saved still serves until the shell restarts.
func hostKey(dir string, log *slog.Logger) (ssh.Signer, error) {
	file := filepath.Join(dir, hostKeyFile)
	b, err := os.ReadFile(file)
	if err == nil {
		signer, perr := ssh.ParsePrivateKey(b)
		if perr == nil {
			return signer, nil
		}
		err = perr
	}
	_, priv, gerr := ed25519.GenerateKey(rand.Reader)
	if gerr != nil {
		return nil, fmt.Errorf("ssh: make host key: %w", gerr)
	}
	signer, gerr := ssh.NewSignerFromKey(priv)
	if gerr != nil {
		return nil, fmt.Errorf("ssh: make host key: %w", gerr)
	}
	fp := ssh.FingerprintSHA256(signer.PublicKey())
	if errors.Is(err, fs.ErrNotExist) {
		log.Info("ssh host key made", "file", file, "fingerprint", fp)
	} else {
		log.Error("ssh host key unusable, replaced by a new one: clients will see a changed host key",
			"file", file, "err", err, "fingerprint", fp)
	}
	block, err := ssh.MarshalPrivateKey(priv, "gatehouse host key")
	if err == nil {
		err = os.MkdirAll(dir, 0o700)
	}
	if err == nil {
		err = safeio.WriteFile(file, pem.EncodeToMemory(block), 0o600)
	}
	if err != nil {
		log.Error("ssh host key not saved: a new one will be made when the shell restarts", "file", file, "err", err)
	}
	return signer, nil
}

// server is the running service: the host key, the ban table, and the
// policy of the config in force, swapped on reload.
type server struct {
	log     *slog.Logger
	signer  ssh.Signer
	backend control.Backend
	paths   layout.Paths // where the services' sockets are

	bans *peergate.BanTable // outlives reloads
	// kernelBan puts a ban into the firewall's SSH ban set (linuxfw.Ban;
	// the tests' own never touch the host's firewall).
	kernelBan func(netip.Addr, time.Duration) error

	// names keeps the allowlist's host names resolved with the
	// appliance's DNS servers, following their TTLs.
	names *dnsclient.Names

	pols *peergate.Policies[*policy]
}

// policy is what one config says about who gets in and for how long. A
// connection keeps the policy it was accepted under.
type policy struct {
	cfg  *config.Config
	gate *peergate.Gate
	keys map[string][]config.AuthorizedKey
	idle time.Duration // a login with no activity this long is closed
}

// newPolicy compiles c with its host names resolved (those whose answers
// ran out asked again) and says when the first answer runs out.
func (s *server) newPolicy(ctx context.Context, c *config.Config) (*policy, time.Time, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	addrs, next := s.names.Resolve(rctx, HostNames(c))
	cancel()
	for _, n := range s.names.Status() {
		if len(n.Addrs) == 0 {
			s.log.Warn("ssh: allowlist host name has no address; it admits no one until it resolves", "host", n.Name, "err", n.Error)
		}
	}
	return &policy{gate: NewGate(c, addrs, s.bans), keys: authorized(c), idle: c.SSH.IdleTimeout.Duration, cfg: c}, next, nil
}

func newServer(ctx context.Context, c *config.Config, signer ssh.Signer, o Options) *server {
	s := &server{log: o.Log, signer: signer, backend: control.Client{Socket: o.Control},
		paths: layout.OfControlSocket(o.Control), bans: peergate.NewBanTable(),
		kernelBan: func(a netip.Addr, d time.Duration) error { return linuxfw.Ban(layout.SSHBanSet, a, d) },
		names:     dnsclient.NewNames(dnsclient.New(o.ResolvConf))}
	s.pols, _ = peergate.NewPolicies(ctx, c, s.newPolicy) // newPolicy never fails
	return s
}

// reload puts a new config's policy in force for the connections
// accepted from now on.
func (s *server) reload(ctx context.Context, c *config.Config) { s.pols.Set(ctx, c) }

// current is the policy a new connection is judged by.
func (s *server) current() *policy { return s.pols.Current() }

// Run serves until ctx ends.
func Run(ctx context.Context, o Options) error {
	return service.RunServing(ctx, service.Options{Config: o.Config, Log: o.Log, Notify: o.Notify, Reload: o.Reload},
		func(_ context.Context, fail context.CancelCauseFunc) service.Reconciler {
			return &shell{o: o, fail: fail}
		})
}

// shell is the service's state for service.Run: the server, once the
// first round made it, and the config it was last given.
type shell struct {
	o    Options
	fail context.CancelCauseFunc // ends the service with an error
	s    *server
	cfg  *config.Config
	port int // the port listened on, from the config at start
}

// Reconcile starts the server at the first round; a new config puts its
// policy in force for the connections accepted from then on; and host
// names on the allowlist follow DNS without a reload (see
// service.Reconciler).
func (sh *shell) Reconcile(ctx context.Context, cfg *config.Config) (time.Duration, error) {
	switch {
	case sh.s == nil:
		if err := sh.start(ctx, cfg); err != nil {
			return 0, err
		}
	case cfg != sh.cfg:
		sh.s.reload(ctx, cfg)
	}
	sh.cfg = cfg
	return sh.s.pols.Refresh(ctx), nil
}

// Status says where the shell listens (see service.Reconciler).
func (sh *shell) Status() service.Status {
	return service.Status{Ready: true, Summary: fmt.Sprintf("listening on port %d", sh.port)}
}

// start makes the host key, the server and its listener, and serves.
func (sh *shell) start(ctx context.Context, cfg *config.Config) error {
	o := sh.o
	signer, err := hostKey(o.KeyDir, o.Log)
	if err != nil {
		return fmt.Errorf("ssh: host key: %w", err)
	}
	o.Log.Info("ssh host key", "fingerprint", ssh.FingerprintSHA256(signer.PublicKey()))
	s := newServer(ctx, cfg, signer, o)
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", cfg.SSH.Port))
	if err != nil {
		return fmt.Errorf("ssh: %w", err)
	}
	sh.s, sh.port = s, cfg.SSH.Port
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				if ctx.Err() == nil {
					sh.fail(fmt.Errorf("ssh: accept: %w", err))
				}
				return
			}
			go s.serve(c)
		}
	}()
	go func() {
		// The firewall's table is replaced now and then, carrying the bans
		// it read just before; one added in between, or a table rebuilt
		// after a restart, would lose it. Put back what is missing, with
		// the time it has left.
		t := time.NewTicker(15 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			peergate.Reassert(s.bans, layout.SSHBanSet, o.Log)
		}
	}()
	return nil
}

// authorized indexes the config's keys by their wire form; a key may be
// listed more than once (with different from= options, say).
func authorized(c *config.Config) map[string][]config.AuthorizedKey {
	keys := map[string][]config.AuthorizedKey{}
	for _, line := range c.SSH.AuthorizedKeys {
		k, err := config.ParseAuthorizedKey(line)
		if err == nil { // validated: an error here is a line the config refused
			keys[string(k.Key.Marshal())] = append(keys[string(k.Key.Marshal())], k)
		}
	}
	return keys
}

// keyEntry is where a login's authorized_keys line is in its Permissions.
type keyEntry struct{}

// loginAttempt follows one connection's authentication for the ban count,
// counted as OpenSSH logs it and fail2ban's sshd filter reads it: a key a
// client offers and the shell refuses is how a client with several keys
// finds its own, so refused keys are no failure one by one; a connection
// that tried keys and ends without logging in is one failure, however many
// it offered or signed; every password or keyboard-interactive attempt
// (the shell takes neither) is one. A login clears the source's count.
type loginAttempt struct {
	s        *server
	gate     *peergate.Gate
	src      netip.Addr
	triedKey bool     // a public key was offered or signed
	refused  []string // fingerprints of keys not authorised
}

// logged is the AuthLogCallback: every attempt but a public key accepted
// when offered.
func (l *loginAttempt) logged(meta ssh.ConnMetadata, method string, err error) {
	switch {
	case err == nil, method == "none", method == "publickey":
		// publickey: counted when the connection ends.
	default:
		l.s.log.Info("ssh authentication failed", "source", l.src, "user", meta.User(), "method", method)
		l.s.failed(l.gate, l.src)
	}
}

// ended counts a connection that tried keys and never logged in.
func (l *loginAttempt) ended() {
	if !l.triedKey {
		return
	}
	l.s.log.Info("ssh authentication failed", "source", l.src, "method", "publickey", "refused_keys", strings.Join(l.refused, " "))
	l.s.failed(l.gate, l.src)
}

// failed records a failure of src, and bans it after too many.
func (s *server) failed(gate *peergate.Gate, src netip.Addr) {
	if !gate.Failed(src) {
		return
	}
	s.log.Warn("ssh source banned after repeated authentication failures", "source", src, "for", gate.BanFor())
	// In the kernel too, so the banned source's packets stop at the
	// firewall; the gate still refuses it without one.
	if err := s.kernelBan(src, gate.BanFor()); err != nil {
		s.log.Info("ssh ban enforced by the shell only", "source", src, "err", err)
	}
}

func (s *server) serve(c net.Conn) {
	defer c.Close()
	pol := s.current()
	gate, keys := pol.gate, pol.keys
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	src := ap.Addr()
	if ok, why := gate.Admit(src); !ok {
		s.log.Warn("ssh connection refused", "source", src, "why", why)
		return
	}
	l := &loginAttempt{s: s, gate: gate, src: src}
	conf := &ssh.ServerConfig{
		// OpenSSH's default: room for a client whose agent offers a few
		// other keys before the right one.
		MaxAuthTries: 6,
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			l.triedKey = true
			if _, banned := gate.Table().BannedUntil(src); banned {
				return nil, errors.New("source banned")
			}
			fp := ssh.FingerprintSHA256(key)
			entries := keys[string(key.Marshal())]
			for _, k := range entries {
				if k.FromAllows(src) {
					return &ssh.Permissions{Extensions: map[string]string{"key": fp + " " + k.Comment},
						ExtraData: map[any]any{keyEntry{}: k}}, nil
				}
			}
			l.refused = append(l.refused, fp)
			if len(entries) > 0 {
				s.log.Warn("ssh key refused from this source by its from= option", "source", src, "key", fp)
				return nil, errors.New("key not allowed from this source")
			}
			return nil, errors.New("unknown key")
		},
		AuthLogCallback: l.logged,
		ServerVersion:   "SSH-2.0-gatehouse",
	}
	conf.AddHostKey(s.signer)
	c.SetDeadline(time.Now().Add(30 * time.Second)) // for the handshake
	sc, chans, reqs, err := ssh.NewServerConn(c, conf)
	if err != nil {
		s.log.Info("ssh handshake failed", "source", src, "err", err)
		l.ended()
		return
	}
	gate.Succeeded(src)
	c.SetDeadline(time.Time{})
	defer sc.Close()
	key, _ := sc.Permissions.ExtraData[keyEntry{}].(config.AuthorizedKey)
	attrs := []any{"source", src, "user", sc.User(), "key", sc.Permissions.Extensions["key"]}
	if key.Command != "" {
		attrs = append(attrs, "forced_command", key.Command)
	}
	s.log.Info("ssh login", attrs...)
	go ssh.DiscardRequests(reqs)
	act := &activity{}
	act.touch()
	done := make(chan struct{})
	defer close(done)
	go act.watch(pol.idle, done, func() {
		s.log.Info("ssh login closed after idle timeout", "source", src, "user", sc.User(), "idle", pol.idle)
		sc.Close()
	})
	for nc := range chans {
		act.touch()
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go s.session(activeChannel{ch, act}, creqs, act, key, src)
	}
}

// activity is when a login last did something: data on a session either
// way, a new session, a request on one. Keepalives are not activity, or a
// client that sends them would never be idle; output is, so a long
// command is not cut short.
type activity struct{ last atomic.Int64 }

func (a *activity) touch() { a.last.Store(time.Now().UnixNano()) }

// watch calls expire once the login has been idle for d, unless done
// closes first.
func (a *activity) watch(d time.Duration, done <-chan struct{}, expire func()) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		if left := d - time.Since(time.Unix(0, a.last.Load())); left > 0 {
			t.Reset(left)
			continue
		}
		expire()
		return
	}
}

// activeChannel marks the login active when data crosses the session.
type activeChannel struct {
	ssh.Channel
	act *activity
}

func (c activeChannel) Read(p []byte) (int, error) {
	n, err := c.Channel.Read(p)
	if n > 0 {
		c.act.touch()
	}
	return n, err
}

func (c activeChannel) Write(p []byte) (int, error) {
	c.act.touch()
	return c.Channel.Write(p)
}

// session runs one command (exec) or the interactive shell. A key's
// forced command (command=) runs instead of either, whatever the client
// asked, as OpenSSH's does; restrict and no-pty refuse a terminal.
func (s *server) session(ch ssh.Channel, reqs <-chan *ssh.Request, act *activity, key config.AuthorizedKey, src netip.Addr) {
	defer ch.Close()
	exit := func() { ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0})) }
	pty := false
	for req := range reqs {
		act.touch()
		switch req.Type {
		case "pty-req":
			pty = !key.NoPTY
			req.Reply(pty, nil)
		case "env":
			req.Reply(true, nil)
		case "exec", "shell":
			req.Reply(true, nil)
			var cmd struct{ Command string }
			if req.Type == "exec" {
				ssh.Unmarshal(req.Payload, &cmd)
			}
			if key.Command != "" {
				if req.Type == "shell" || cmd.Command != key.Command {
					s.log.Info("ssh forced command runs instead of the client's", "source", src,
						"command", key.Command, "asked", cmd.Command, "request", req.Type)
				}
				cmd.Command, req.Type = key.Command, "exec"
			}
			if req.Type == "exec" {
				sh := &console.Shell{Backend: s.backend, Out: crlf{ch}, Paths: s.paths}
				sh.Exec(cmd.Command)
				exit()
				return
			}
			fmt.Fprint(crlf{ch}, "gatehouse diagnostics shell; type help\n"+console.Prompt)
			var in io.Reader = ch
			if pty {
				in = &terminal{ch: ch}
			}
			sh := &console.Shell{Backend: s.backend, In: in, Out: crlf{ch}, Paths: s.paths}
			sh.Run(context.Background())
			exit()
			return
		default:
			req.Reply(false, nil)
		}
	}
}

// terminal is the little a line discipline does, for a client's pty:
// echo what is typed, Enter ends a line, backspace erases, Ctrl-D ends.
type terminal struct {
	ch   ssh.Channel
	line []byte
	buf  []byte // complete lines not yet read
}

func (t *terminal) Read(p []byte) (int, error) {
	for len(t.buf) == 0 {
		var b [256]byte
		n, err := t.ch.Read(b[:])
		if err != nil {
			return 0, err
		}
		for _, c := range b[:n] {
			switch c {
			case '\r', '\n':
				t.ch.Write([]byte("\r\n"))
				t.buf = append(append(t.buf, t.line...), '\n')
				t.line = t.line[:0]
			case 127, 8:
				if len(t.line) > 0 {
					t.line = t.line[:len(t.line)-1]
					t.ch.Write([]byte("\b \b"))
				}
			case 4:
				return 0, io.EOF
			case 3:
				t.line = t.line[:0]
				t.ch.Write([]byte("^C\r\n"))
				t.buf = append(t.buf, '\n')
			default:
				if c >= 32 {
					t.line = append(t.line, c)
					t.ch.Write([]byte{c})
				}
			}
		}
	}
	n := copy(p, t.buf)
	t.buf = t.buf[n:]
	return n, nil
}

// crlf turns \n into \r\n for a terminal without a line discipline.
type crlf struct {
	w interface{ Write([]byte) (int, error) }
}

func (c crlf) Write(p []byte) (int, error) {
	_, err := c.w.Write([]byte(strings.ReplaceAll(string(p), "\n", "\r\n")))
	return len(p), err
}
