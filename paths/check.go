package paths

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/beevik/ntp"
	"github.com/miekg/dns"

	"gatehouse/config"
)

// Result is one outbound path tested against one peer.
type Result struct {
	Path    Path   `json:"path"`
	Target  string `json:"target"` // host:port tested
	Outcome string `json:"outcome"`
	Detail  string `json:"detail,omitempty"`
	Opening string `json:"missing_opening,omitempty"` // what the network team must open
}

// The outcomes of a check.
const (
	OK       = "ok"
	Blocked  = "blocked" // no answer at all: dropped on the way
	Refused  = "refused" // reached, nothing listening (or actively rejected)
	DNSError = "dns failure"
	Failed   = "failed" // reached, but the service did not speak its protocol
	Skipped  = "skipped"
)

// Resolver looks host names up: the appliance's (dnsclient.Lookup), so
// that a check asks the DNS servers the services ask.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Check tests every outbound path of t with a real exchange: a TCP connect
// with the protocol's greeting where there is one (SMTP banner, IMAP/POP3
// greeting, a TLS handshake), a DNS or NTP query for UDP.
func Check(ctx context.Context, t []Path, timeout time.Duration, r Resolver) []Result {
	var results []Result
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range t {
		if p.Direction != "out" {
			continue
		}
		if p.Peers.Len() == 0 {
			results = append(results, Result{Path: p, Target: p.PeerText, Outcome: Skipped, Detail: "no fixed peer to test"})
			continue
		}
		for _, peer := range p.Peers.Peers() {
			for _, pr := range p.Ports {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res := checkOne(ctx, p, peer, pr.From, timeout, r)
					mu.Lock()
					results = append(results, res)
					mu.Unlock()
				}()
			}
		}
	}
	wg.Wait()
	// In table order, then by target.
	order := map[string]int{}
	for i, p := range t {
		order[p.Function+p.Proto+p.PortText] = i
	}
	sortResults(results, order)
	return results
}

func checkOne(ctx context.Context, p Path, peer config.Peer, port uint16, timeout time.Duration, res Resolver) Result {
	host := peer.Host
	if len(peer.Ranges) == 1 {
		if peer.Ranges[0].From != peer.Ranges[0].To {
			return Result{Path: p, Target: peer.String(), Outcome: Skipped, Detail: "a range: test one of its hosts by hand"}
		}
		host = peer.Ranges[0].From.String()
	}
	target := net.JoinHostPort(host, fmt.Sprint(port))
	r := Result{Path: p, Target: target}
	// A name is dialled at the address the appliance's resolver gives
	// (its A records come first), so that the check reaches what the
	// services would.
	dial := target
	if peer.Host != "" {
		lctx, cancel := context.WithTimeout(ctx, timeout)
		addrs, err := res.LookupNetIP(lctx, "ip", host)
		cancel()
		if err == nil && len(addrs) == 0 {
			err = &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		if err != nil {
			r.Outcome, r.Detail = DNSError, err.Error()
			return r
		}
		dial = net.JoinHostPort(addrs[0].Unmap().String(), fmt.Sprint(port))
	}
	var err error
	switch p.Proto {
	case "tcp":
		err = checkTCP(ctx, dial, host, port, timeout)
	case "udp":
		err = checkUDP(dial, port, timeout)
	default:
		r.Outcome, r.Detail = Skipped, "ICMP is not tested"
		return r
	}
	r.Outcome, r.Detail = classify(err)
	if r.Outcome == Blocked {
		r.Opening = fmt.Sprintf("allow %s %d from this appliance to %s", strings.ToUpper(p.Proto), port, host)
	}
	return r
}

func classify(err error) (string, string) {
	var ne net.Error
	switch {
	case err == nil:
		return OK, ""
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return Refused, err.Error()
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return Blocked, "no answer (dropped on the way?)"
	}
	return Failed, err.Error()
}

// greetings: what the service on a port says first, and whether it speaks
// TLS from the start.
var greetings = map[uint16]struct {
	tls    bool
	prefix string
}{
	25: {false, "220"}, 587: {false, "220"}, 465: {true, "220"},
	143: {false, "* OK"}, 993: {true, "* OK"}, 110: {false, "+OK"}, 995: {true, "+OK"},
	443: {true, ""}, 8443: {true, ""},
}

func checkTCP(ctx context.Context, target, host string, port uint16, timeout time.Duration) error {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	g, ok := greetings[port]
	if !ok {
		return nil // connected: the path is open
	}
	var rw io.ReadWriter = c
	if g.tls {
		tc := tls.Client(c, &tls.Config{ServerName: host, InsecureSkipVerify: true}) // a path check, not a trust decision
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("TLS handshake: %w", err)
		}
		rw = tc
	}
	if g.prefix == "" {
		return nil
	}
	line, err := bufio.NewReader(rw).ReadString('\n')
	if err != nil {
		return fmt.Errorf("no greeting: %w", err)
	}
	if !strings.HasPrefix(line, g.prefix) {
		return fmt.Errorf("greeting %q, want %q", strings.TrimSpace(line), g.prefix)
	}
	return nil
}

func checkUDP(target string, port uint16, timeout time.Duration) error {
	switch port {
	case 53:
		m := new(dns.Msg)
		m.SetQuestion(".", dns.TypeNS)
		_, _, err := (&dns.Client{Timeout: timeout}).Exchange(m, target)
		return err
	case 123:
		_, err := ntp.QueryWithOptions(target, ntp.QueryOptions{Timeout: timeout})
		return err
	}
	return fmt.Errorf("no probe for UDP %d", port)
}
