package smtpd

import (
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// limitListener enforces the connection limits go-smtp lacks: in total and
// per client address. A client over its limit gets a 421 and is closed
// before go-smtp sees it. Every accepted connection gets a per-read idle
// timeout instead of go-smtp's one deadline for a whole DATA transfer.
type limitListener struct {
	net.Listener
	lim     *connLimits
	idle    time.Duration
	session time.Duration // a whole session's bound
	tlsConf *tls.Config   // implicit TLS (port 465)
	greetN  string        // host name in the 421 line
	// pause is how long a client waits for the greeting (0: none).
	pause func(netip.Addr) time.Duration
}

// connLimits are shared by all listeners of the relay.
type connLimits struct {
	mu        sync.Mutex
	total     int
	perClient map[netip.Prefix]int // by clientKey
	maxTotal  atomic.Int64
	maxClient atomic.Int64
}

func newConnLimits(total, perClient int) *connLimits {
	l := &connLimits{perClient: map[netip.Prefix]int{}}
	l.set(total, perClient)
	return l
}

func (l *connLimits) set(total, perClient int) {
	l.maxTotal.Store(int64(total))
	l.maxClient.Store(int64(perClient))
}

func (l *connLimits) acquire(a netip.Addr) (ok bool, why string) {
	k := clientKey(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	if int64(l.total) >= l.maxTotal.Load() {
		return false, "too many connections, try again later"
	}
	if int64(l.perClient[k]) >= l.maxClient.Load() {
		return false, "too many connections from your address"
	}
	l.total++
	l.perClient[k]++
	return true, ""
}

func (l *connLimits) release(a netip.Addr) {
	k := clientKey(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perClient[k]--; l.perClient[k] <= 0 {
		delete(l.perClient, k)
	}
}

func (l *connLimits) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

func remoteAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		a, _ := netip.AddrFromSlice(ta.IP)
		return a.Unmap()
	}
	return netip.Addr{}
}

func (ln *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		a := remoteAddr(c)
		if ok, why := ln.lim.acquire(a); !ok {
			// Answer and close off the accept loop: a flood of
			// connections must not stall accepting the others.
			go func() {
				c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if ln.tlsConf == nil {
					io.WriteString(c, "421 4.7.0 "+ln.greetN+" "+why+"\r\n")
				}
				c.Close()
			}()
			continue
		}
		ic := &idleConn{Conn: c, idle: ln.idle, release: func() { ln.lim.release(a) }}
		if ln.session > 0 {
			ic.end = time.Now().Add(ln.session)
		}
		if ln.pause != nil {
			ic.pause = ln.pause(a)
		}
		if ln.tlsConf != nil {
			return tls.Server(ic, ln.tlsConf), nil
		}
		return ic, nil
	}
}

// idleConn sets a fresh read deadline before every read, so a slow but
// live client is served while a silent one is dropped after idle.
// Kill makes later reads end the session (after a protocol violation the
// reply is sent, then the connection closes).
type idleConn struct {
	net.Conn
	idle    time.Duration
	end     time.Time // no read past this: a session's length is bounded
	release func()
	once    sync.Once
	killed  atomic.Bool
	early   atomic.Bool // the client spoke before the greeting
	greeted atomic.Bool
	pause   time.Duration // waited before the greeting
	stash   []byte        // what an early talker said during the pause
}

func (c *idleConn) Read(p []byte) (int, error) {
	if c.killed.Load() {
		return 0, io.EOF
	}
	if len(c.stash) > 0 {
		n := copy(p, c.stash)
		c.stash = c.stash[n:]
		return n, nil
	}
	// One byte every few minutes would otherwise hold a slot for ever.
	deadline := time.Now().Add(c.idle)
	if !c.end.IsZero() && c.end.Before(deadline) {
		deadline = c.end
	}
	if err := c.Conn.SetReadDeadline(deadline); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	if !c.greeted.Swap(true) {
		// Before the greeting a client must wait (RFC 5321 4.3.1); one that
		// does not is a spam engine or a smuggling attempt (Postfix:
		// reject_unauth_pipelining). Look without consuming anything, or,
		// with a greet pause, wait for the pause: spam engines that do not
		// wait for the banner give themselves away.
		if c.pause > 0 {
			c.early.Store(c.talksDuring(c.pause))
		} else {
			c.early.Store(pendingInput(c.Conn))
		}
	}
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.idle)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (c *idleConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// talksDuring reads what the client sends within d (kept for the
// session's first reads) and says whether it sent anything. The wait is a
// read deadline, so a thousand paused clients hold no threads.
func (c *idleConn) talksDuring(d time.Duration) bool {
	if err := c.Conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		return false
	}
	buf := make([]byte, 1024)
	n, _ := c.Conn.Read(buf)
	c.stash = buf[:n]
	return n > 0
}

// Kill ends the session after the current reply.
func (c *idleConn) Kill() { c.killed.Store(true) }
