package netcfg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"golang.org/x/sys/unix"
)

// DHCP runs one interface's DHCPv4 lease life cycle (RFC 2131 §4.4.5):
// obtain a lease, renew it with its server at T1, rebind with any server at
// T2, drop it at expiry, and release it on shutdown. u-root's dhclient and
// nclient4 only do the first step; the rest is here.
type DHCP struct {
	Iface   string // kernel name
	Key     string // link key, as in the config
	Log     *slog.Logger
	Changed func(key string, l *Lease) // nil lease: none (expired, released)

	// Retry bounds for an interface that gets no answer: the delay doubles
	// from MinRetry to MaxRetry, with jitter.
	MinRetry, MaxRetry time.Duration

	mu      sync.Mutex
	state   string
	lastErr string
}

// Status is the client's phase and its last error, for status.
func (d *DHCP) Status() (state, lastErr string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state, d.lastErr
}

func (d *DHCP) set(state string, err error) {
	d.mu.Lock()
	d.state = state
	if err != nil {
		d.lastErr = err.Error()
	} else if state == "bound" {
		d.lastErr = ""
	}
	d.mu.Unlock()
}

// Run keeps a lease until ctx ends, then releases it.
func (d *DHCP) Run(ctx context.Context) {
	if d.MinRetry == 0 {
		d.MinRetry = time.Second
	}
	if d.MaxRetry == 0 {
		d.MaxRetry = time.Minute
	}
	log := d.Log.With("interface", d.Iface)
	retry := d.MinRetry
	var cur *nclient4.Lease
	for ctx.Err() == nil {
		if cur == nil {
			d.set("selecting", nil)
			l, err := d.obtain(ctx)
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				d.set("selecting", err)
				log.Warn("no DHCP lease yet; retrying", "err", err, "in", retry)
				sleep(ctx, jitter(retry))
				retry = min(2*retry, d.MaxRetry)
				continue
			}
			retry = d.MinRetry
			cur = l
			d.bound(cur, log)
			continue
		}
		t := leaseTimes(cur)
		// Bound: wait for T1.
		if !sleep(ctx, time.Until(t.Renew)) {
			break
		}
		cur = d.extend(ctx, cur, t, log)
	}
	if cur != nil && time.Now().Before(leaseTimes(cur).Expires) {
		d.release(cur, log)
	}
	d.set("stopped", nil)
	d.Changed(d.Key, nil)
}

// extend renews (T1..T2, with the server) and then rebinds (T2..expiry,
// with any server); it returns the extended lease, or nil at expiry.
func (d *DHCP) extend(ctx context.Context, cur *nclient4.Lease, t Lease, log *slog.Logger) *nclient4.Lease {
	server := cur.ACK.ServerIdentifier()
	for ctx.Err() == nil {
		now := time.Now()
		var phase string
		var to *net.UDPAddr
		switch {
		case now.Before(t.Rebind):
			phase, to = "renewing", &net.UDPAddr{IP: server, Port: nclient4.ServerPort}
		case now.Before(t.Expires):
			phase, to = "rebinding", nil // broadcast
		default:
			d.set("expired", errors.New("lease expired without renewal"))
			log.Warn("DHCP lease expired", "address", t.Address)
			d.Changed(d.Key, nil)
			return nil
		}
		d.set(phase, nil)
		l, err := d.renew(ctx, cur, to)
		if err == nil {
			d.bound(l, log)
			return l
		}
		var nak *nclient4.ErrNak
		if errors.As(err, &nak) {
			d.set("selecting", err)
			log.Warn("DHCP server refused renewal; starting over", "err", err)
			d.Changed(d.Key, nil)
			return nil
		}
		d.set(phase, err)
		// RFC 2131: wait half the time left to T2 (or expiry), at least a
		// second, but never past that boundary: there the phase changes.
		next := t.Rebind
		if phase == "rebinding" {
			next = t.Expires
		}
		wait := min(max(time.Until(next)/2, time.Second), time.Until(next))
		log.Warn("DHCP "+phase+" failed", "err", err, "retry_in", wait.Round(time.Second))
		if !sleep(ctx, wait) {
			return cur
		}
	}
	return cur
}

func (d *DHCP) bound(l *nclient4.Lease, log *slog.Logger) {
	d.set("bound", nil)
	t := leaseTimes(l)
	log.Info("DHCP lease", "address", t.Address, "router", t.Router, "server", t.Server,
		"renew_in", time.Until(t.Renew).Round(time.Second), "expires_in", time.Until(t.Expires).Round(time.Second))
	d.Changed(d.Key, &t)
}

// client is a raw-socket client, broadcasting: for an interface with no
// address yet, and for rebinding.
func (d *DHCP) client(to *net.UDPAddr) (*nclient4.Client, error) {
	opts := []nclient4.ClientOpt{nclient4.WithTimeout(3 * time.Second), nclient4.WithRetry(2)}
	if to != nil {
		opts = append(opts, nclient4.WithServerAddr(to))
	}
	c, err := nclient4.New(d.Iface, opts...)
	if err != nil {
		return nil, fmt.Errorf("dhcp %s: %w", d.Iface, err)
	}
	return c, nil
}

func (d *DHCP) obtain(ctx context.Context) (*nclient4.Lease, error) {
	c, err := d.client(nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Request(ctx, wanted)
}

// wanted are the options a server sends only when asked: the servers the
// dns and ntp services use.
var wanted = dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter,
	dhcpv4.OptionDomainNameServer, dhcpv4.OptionDomainName, dhcpv4.OptionNTPServers,
	dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionRenewTimeValue, dhcpv4.OptionRebindingTimeValue)

// renew asks to extend the lease: at T1 unicast to its server from the
// leased address (an ordinary UDP socket: a raw one would send from
// 0.0.0.0, which the server's kernel drops as a martian), at T2 broadcast
// to any server.
func (d *DHCP) renew(ctx context.Context, cur *nclient4.Lease, to *net.UDPAddr) (*nclient4.Lease, error) {
	var c *nclient4.Client
	var err error
	if to != nil {
		c, err = d.unicastClient(ctx, cur.ACK.YourIPAddr, to)
	} else {
		c, err = d.client(nil)
	}
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Renew(ctx, cur, wanted)
}

func (d *DHCP) unicastClient(ctx context.Context, leased net.IP, server *net.UDPAddr) (*nclient4.Client, error) {
	ifc, err := net.InterfaceByName(d.Iface)
	if err != nil {
		return nil, fmt.Errorf("dhcp %s: %w", d.Iface, err)
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, d.Iface)
			if serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			}
		})
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", net.JoinHostPort(leased.String(), fmt.Sprint(nclient4.ClientPort)))
	if err != nil {
		return nil, fmt.Errorf("dhcp %s: renewal socket: %w", d.Iface, err)
	}
	c, err := nclient4.NewWithConn(pc, ifc.HardwareAddr, nclient4.WithServerAddr(server),
		nclient4.WithTimeout(3*time.Second), nclient4.WithRetry(2))
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("dhcp %s: %w", d.Iface, err)
	}
	return c, nil
}

// release tells the server the address is free again, unicast from the
// leased address (RFC 2131 §4.4.6).
func (d *DHCP) release(cur *nclient4.Lease, log *slog.Logger) {
	server := &net.UDPAddr{IP: cur.ACK.ServerIdentifier(), Port: nclient4.ServerPort}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := d.unicastClient(ctx, cur.ACK.YourIPAddr, server)
	if err != nil {
		log.Warn("DHCP release", "err", err)
		return
	}
	defer c.Close()
	if err := c.Release(cur); err != nil {
		log.Warn("DHCP release", "err", err)
		return
	}
	log.Info("DHCP lease released", "address", cur.ACK.YourIPAddr)
}

// leaseTimes reads a lease: address, router, servers and its T1, T2 and
// expiry (defaults 0.5 and 0.875 of the lease time, RFC 2131 §4.4.5).
func leaseTimes(l *nclient4.Lease) Lease {
	ack := l.ACK
	lt := ack.IPAddressLeaseTime(time.Hour)
	t1 := ack.IPAddressRenewalTime(lt / 2)
	t2 := ack.IPAddressRebindingTime(lt * 7 / 8)
	if t1 <= 0 || t1 > lt {
		t1 = lt / 2
	}
	if t2 <= t1 || t2 > lt {
		t2 = lt * 7 / 8
	}
	start := l.CreationTime
	out := Lease{Obtained: start, Renew: start.Add(t1), Rebind: start.Add(t2), Expires: start.Add(lt)}
	ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
	ones := 24
	if m := ack.SubnetMask(); m != nil {
		ones, _ = m.Size()
	}
	out.Address = netip.PrefixFrom(ip, ones)
	if rs := ack.Router(); len(rs) > 0 {
		out.Router, _ = netip.AddrFromSlice(rs[0].To4())
	}
	out.Server, _ = netip.AddrFromSlice(ack.ServerIdentifier().To4())
	for _, s := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(s.To4()); ok {
			out.DNS = append(out.DNS, a)
		}
	}
	for _, s := range ack.NTPServers() {
		if a, ok := netip.AddrFromSlice(s.To4()); ok {
			out.NTP = append(out.NTP, a)
		}
	}
	out.Domain = ack.DomainName()
	return out
}

func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends; it reports whether the time passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
