// Package ssh is the diagnostics shell over SSH: public-key logins only,
// from the allowlist and the monitoring hosts only (checked when a
// connection is accepted, not only by the firewall), a ban after repeated
// authentication failures, every login logged. The shell is the serial
// console's, acting on PID 1 through the control socket.
package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"gatehouse/config"
	"gatehouse/console"
	"gatehouse/control"
	fw "gatehouse/firewall"
	"gatehouse/init/supervisor"
	smtpsvc "gatehouse/services/smtp"
)

// Options configure the service.
type Options struct {
	Config  string
	KeyDir  string // where the host key is kept (on /data on the appliance)
	Control string // PID 1's control socket
	Log     *slog.Logger
	Notify  *supervisor.Notifier
	Reload  <-chan struct{}
}

// Gate decides who may connect: the allowlist, the monitoring hosts, and
// no one banned.
type Gate struct {
	mu      sync.Mutex
	allowed []config.AddrRange
	after   int
	banFor  time.Duration
	fails   map[netip.Addr][]time.Time
	banned  map[netip.Addr]time.Time
	now     func() time.Time
}

// NewGate resolves the allowlist (host names once, now) into ranges.
func NewGate(ctx context.Context, c *config.Config, log *slog.Logger) *Gate {
	g := &Gate{after: c.SSH.Ban.After, banFor: c.SSH.Ban.For.Duration, fails: map[netip.Addr][]time.Time{},
		banned: map[netip.Addr]time.Time{}, now: time.Now}
	for _, s := range append(append([]string(nil), c.SSH.Allow...), c.Monitoring.Hosts...) {
		p, err := config.ParsePeer(s)
		if err != nil {
			continue
		}
		if p.Host != "" {
			addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", p.Host)
			if err != nil {
				log.Warn("ssh: allowlist host name does not resolve", "host", p.Host, "err", err)
			}
			for _, a := range addrs {
				p.Ranges = append(p.Ranges, config.AddrRange{From: a.Unmap(), To: a.Unmap()})
			}
		}
		g.allowed = append(g.allowed, p.Ranges...)
	}
	return g
}

// Admit says whether a connection from a may proceed, and if not, why.
func (g *Gate) Admit(a netip.Addr) (bool, string) {
	a = a.Unmap()
	g.mu.Lock()
	defer g.mu.Unlock()
	if until, ok := g.banned[a]; ok {
		if g.now().Before(until) {
			return false, "banned until " + until.Format(time.RFC3339)
		}
		delete(g.banned, a)
	}
	for _, r := range g.allowed {
		if r.From.Is4() == a.Is4() && !a.Less(r.From) && !r.To.Less(a) {
			return true, ""
		}
	}
	return false, "not on the allowlist"
}

// Bans lists the sources banned now and the time each has left.
func (g *Gate) Bans() map[netip.Addr]time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	out := map[netip.Addr]time.Duration{}
	for a, until := range g.banned {
		if left := until.Sub(now); left > 0 {
			out[a] = left
		}
	}
	return out
}

// Failed records an authentication failure; it reports whether the source
// is banned now.
func (g *Gate) Failed(a netip.Addr) bool {
	a = a.Unmap()
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	recent := g.fails[a][:0]
	for _, t := range g.fails[a] {
		if now.Sub(t) < g.banFor {
			recent = append(recent, t)
		}
	}
	recent = append(recent, now)
	g.fails[a] = recent
	if len(recent) >= g.after {
		g.banned[a] = now.Add(g.banFor)
		delete(g.fails, a)
		return true
	}
	return false
}

// hostKey loads the host key, or makes one on first start.
func hostKey(dir string) (gossh.Signer, error) {
	file := filepath.Join(dir, "ssh_host_ed25519_key")
	if b, err := os.ReadFile(file); err == nil {
		return gossh.ParsePrivateKey(b)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := gossh.MarshalPrivateKey(priv, "gatehouse host key")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	return gossh.NewSignerFromKey(priv)
}

// Run serves until ctx ends.
func Run(ctx context.Context, o Options) error {
	cfg, _, err := config.Load(o.Config)
	if err != nil {
		return err
	}
	signer, err := hostKey(o.KeyDir)
	if err != nil {
		return fmt.Errorf("ssh: host key: %w", err)
	}
	o.Log.Info("ssh host key", "fingerprint", gossh.FingerprintSHA256(signer.PublicKey()))
	var mu sync.Mutex
	gate := NewGate(ctx, cfg, o.Log)
	keys := authorized(cfg)
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", cfg.SSH.Port))
	if err != nil {
		return fmt.Errorf("ssh: %w", err)
	}
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	go func() {
		for range o.Reload {
			c, ok := config.Reread(o.Config, o.Log)
			if !ok {
				continue
			}
			g := NewGate(ctx, c, o.Log)
			mu.Lock()
			gate.mu.Lock()
			g.banned = gate.banned // bans outlive a reload
			gate.mu.Unlock()
			gate, keys = g, authorized(c)
			mu.Unlock()
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
			mu.Lock()
			g := gate
			mu.Unlock()
			reassertBans(g, o.Log)
		}
	}()
	o.Notify.Status(fmt.Sprintf("listening on port %d", cfg.SSH.Port))
	o.Notify.Ready()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("ssh: accept: %w", err)
		}
		mu.Lock()
		g, k := gate, keys
		mu.Unlock()
		go serve(c, g, k, signer, o)
	}
}

// reassertBans puts the gate's current bans missing from the kernel's set
// back, for the time each has left.
func reassertBans(g *Gate, log *slog.Logger) {
	inKernel, err := (fw.NFT{}).Bans()
	if err != nil {
		return // no nftables firewall: the gate alone enforces
	}
	for a, left := range g.Bans() {
		if _, ok := inKernel[a]; ok || left < time.Second {
			continue
		}
		if err := (fw.NFT{}).Ban(a, left); err == nil {
			log.Info("ssh ban put back into the firewall", "source", a, "left", left.Round(time.Second))
		}
	}
}

func authorized(c *config.Config) map[string]string {
	keys := map[string]string{} // marshalled key -> comment
	for _, line := range c.SSH.AuthorizedKeys {
		pk, comment, _, _, err := gossh.ParseAuthorizedKey([]byte(line))
		if err == nil {
			keys[string(pk.Marshal())] = comment
		}
	}
	return keys
}

func serve(c net.Conn, gate *Gate, keys map[string]string, signer gossh.Signer, o Options) {
	defer c.Close()
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	src := ap.Addr()
	if ok, why := gate.Admit(src); !ok {
		o.Log.Warn("ssh connection refused", "source", src, "why", why)
		return
	}
	conf := &gossh.ServerConfig{
		MaxAuthTries: 3,
		PublicKeyCallback: func(meta gossh.ConnMetadata, key gossh.PublicKey) (*gossh.Permissions, error) {
			if comment, ok := keys[string(key.Marshal())]; ok {
				return &gossh.Permissions{Extensions: map[string]string{"key": gossh.FingerprintSHA256(key) + " " + comment}}, nil
			}
			return nil, errors.New("unknown key")
		},
		AuthLogCallback: func(meta gossh.ConnMetadata, method string, err error) {
			if err == nil || method == "none" {
				return
			}
			if gate.Failed(src) {
				o.Log.Warn("ssh source banned after repeated authentication failures", "source", src, "for", gate.banFor)
				// In the kernel too, so the banned source's packets stop
				// at the firewall; the gate still refuses it without one.
				if err := fw.Ban(src, gate.banFor); err != nil {
					o.Log.Info("ssh ban enforced by the shell only", "source", src, "err", err)
				}
			}
		},
		ServerVersion: "SSH-2.0-gatehouse",
	}
	conf.AddHostKey(signer)
	c.SetDeadline(time.Now().Add(30 * time.Second)) // for the handshake
	sc, chans, reqs, err := gossh.NewServerConn(c, conf)
	if err != nil {
		o.Log.Info("ssh handshake failed", "source", src, "err", err)
		return
	}
	c.SetDeadline(time.Time{})
	defer sc.Close()
	o.Log.Info("ssh login", "source", src, "user", sc.User(), "key", sc.Permissions.Extensions["key"])
	go gossh.DiscardRequests(reqs)
	backend := control.Client{Socket: o.Control}
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(gossh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go session(ch, creqs, backend, smtpsvc.SocketPath(filepath.Dir(o.Control)))
	}
}

// session runs one command (exec) or the interactive shell.
func session(ch gossh.Channel, reqs <-chan *gossh.Request, b control.Backend, relaySock string) {
	defer ch.Close()
	pty := false
	for req := range reqs {
		switch req.Type {
		case "pty-req":
			pty = true
			req.Reply(true, nil)
		case "env":
			req.Reply(true, nil)
		case "exec":
			req.Reply(true, nil)
			var cmd struct{ Command string }
			gossh.Unmarshal(req.Payload, &cmd)
			sh := &console.Shell{Backend: b, Out: crlf{ch}, RelaySocket: relaySock}
			sh.Exec(cmd.Command)
			ch.SendRequest("exit-status", false, gossh.Marshal(struct{ Status uint32 }{0}))
			return
		case "shell":
			req.Reply(true, nil)
			fmt.Fprint(crlf{ch}, "gatehouse diagnostics shell; type help\n"+console.Prompt)
			var in io.Reader = ch
			if pty {
				in = &terminal{ch: ch}
			}
			sh := &console.Shell{Backend: b, In: in, Out: crlf{ch}, RelaySocket: relaySock}
			sh.Run(context.Background())
			ch.SendRequest("exit-status", false, gossh.Marshal(struct{ Status uint32 }{0}))
			return
		default:
			req.Reply(false, nil)
		}
	}
}

// terminal is the little a line discipline does, for a client's pty:
// echo what is typed, Enter ends a line, backspace erases, Ctrl-D ends.
type terminal struct {
	ch   gossh.Channel
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
