package main

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// The floor: a server that does nothing but take a datagram and send back
// a prepared answer with the query's id, from a blocking recvfrom(2) as
// the resolver's fast path does. Its latency is the machine's own for one
// UDP round trip through the loopback and two wake-ups. It runs as this
// program started again with floorArg, so it is a process of its own as
// the two resolvers are.
const floorArg = "udp-floor"

func serveFloor(addr string) error {
	q := new(dns.Msg)
	q.SetQuestion(benchName, dns.TypeA)
	m := new(dns.Msg)
	m.SetReply(q)
	rr, err := dns.NewRR(benchName + " 3600 IN A 192.0.2.25")
	if err != nil {
		return err
	}
	m.Answer = []dns.RR{rr}
	answer, err := m.Pack()
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return fmt.Errorf("floor: %q is not an IPv4 address and port", addr)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		return fmt.Errorf("floor: bind %s: %w", addr, err)
	}
	buf := make([]byte, 65535)
	out := make([]byte, len(answer))
	yielded := time.Now()
	for {
		// As the resolver does: without a turn through the scheduler
		// every millisecond, Go's monitor thread wakes thousands of times
		// a second and the floor would not be one.
		if now := time.Now(); now.Sub(yielded) > time.Millisecond {
			yielded = now
			runtime.Gosched()
		}
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err != nil || n < 12 || from == nil {
			continue
		}
		copy(out, answer)
		copy(out[0:2], buf[0:2])
		unix.Sendto(fd, out, 0, from)
	}
}

// floorMain runs the floor server when this program was started as one.
func floorMain() bool {
	if len(os.Args) != 3 || os.Args[1] != floorArg {
		return false
	}
	if err := serveFloor(os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "netbench:", err)
		os.Exit(1)
	}
	return true
}
