// Package testserver is the accept loop of the tests' fake servers: a
// listener served until the test ends, each connection handled in its own
// goroutine and closed when its handler returns.
package testserver

import (
	"net"
	"testing"
	"time"
)

// Serve accepts connections on l until the test ends (then it closes l),
// and runs handle on each in a goroutine of its own, closing the
// connection when handle returns. It returns l's address.
func Serve(t testing.TB, l net.Listener, handle func(net.Conn)) string {
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return l.Addr().String()
}

// Local is Serve on a free TCP port of 127.0.0.1.
func Local(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return Serve(t, l, handle)
}

// DialFrom connects to addr over TCP from the local address from (a test
// that plays several clients gives each its own loopback address).
func DialFrom(t testing.TB, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
