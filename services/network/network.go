// Package network is the network service: it converges links, addresses
// and routes to the config, keeps a DHCP lease on every interface that asks
// for one, follows link events, and re-reads the config on SIGHUP. What DHCP
// learned (DNS and NTP servers, domain) is published in network.json for
// the dns and ntp services.
package network

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"gatehouse/config"
	"gatehouse/layout"
	"gatehouse/netcfg"
	"gatehouse/safeio"
	"gatehouse/service"
	"gatehouse/status"
)

// Options configure the service.
type Options struct {
	Config string // config file
	RunDir string // where layout.NetworkState and netcfg's records live
	Log    *slog.Logger
	Notify *service.Notifier
	Reload <-chan struct{} // a receive means: re-read the config
}

// applier converges links, addresses and routes: netcfg's Manager, or a
// test's record of what it was asked.
type applier interface {
	Apply(want netcfg.State) (netcfg.Changes, netcfg.Problems, error)
}

// netService is the service's state: the config in force, the DHCP
// clients and their leases, and what it last reported.
type netService struct {
	log    *slog.Logger
	runDir string
	mgr    applier
	kick   chan struct{} // a lease changed, a link or address event: converge now

	watching bool // link events are followed (from the first round on)

	mu       sync.Mutex
	cfg      *config.Config
	leases   map[string]netcfg.Lease
	renewals map[string]int
	clients  map[string]*dhcpRun // by link key
	changes  uint64
	probs    netcfg.Problems
	st       status.Network // what the last round reported
	summary  string
}

type dhcpRun struct {
	c      *netcfg.DHCP
	cancel context.CancelFunc
	done   chan struct{}
}

func newService(log *slog.Logger, runDir string, mgr applier) *netService {
	return &netService{log: log, runDir: runDir, mgr: mgr, kick: make(chan struct{}, 1),
		leases: map[string]netcfg.Lease{}, renewals: map[string]int{}, clients: map[string]*dhcpRun{}}
}

// Run serves until ctx ends; then it releases its DHCP leases.
func Run(ctx context.Context, o Options) error {
	s := newService(o.Log, o.RunDir, netcfg.NewManager(filepath.Join(o.RunDir, "netcfg-owned.json")))
	err := service.Run(ctx, service.Options{Config: o.Config, Log: o.Log, Notify: o.Notify, Reload: o.Reload, Kick: s.kick}, s)
	if err != nil {
		return err
	}
	s.stopDHCP()
	return nil
}

// Reconcile converges the kernel on cfg, starts and stops DHCP clients,
// and publishes the state (see service.Reconciler). It is ready from the
// first round: what a link lacks is in the status, not a failure. It runs
// again every 30 s, and at once on a link or address event or a new lease.
func (s *netService) Reconcile(ctx context.Context, cfg *config.Config) (time.Duration, error) {
	s.mu.Lock()
	s.cfg = cfg
	s.mu.Unlock()
	s.reconcile(ctx)
	if !s.watching {
		s.watching = true
		s.watch(ctx)
	}
	return 30 * time.Second, nil
}

// Status is what the last round found (see service.Reconciler).
func (s *netService) Status() service.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return service.Status{Ready: true, Summary: s.summary, Detail: s.st}
}

// watch asks for a round when links or addresses change (a burst of
// events makes one round, 100 ms after the last) and when the wall clock
// steps, until ctx ends.
func (s *netService) watch(ctx context.Context) {
	updates := make(chan netlink.LinkUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 64)
	done := make(chan struct{})
	if err := netlink.LinkSubscribe(updates, done); err != nil {
		s.log.Warn("cannot follow link events; reconciling periodically only", "err", err)
	}
	if err := netlink.AddrSubscribe(addrs, done); err != nil {
		s.log.Warn("cannot follow address events", "err", err)
	}
	// Lease times are shown as wall time; when NTP steps the clock (at
	// boot, by years), show them again on the new clock at once.
	stepped := func() {
		s.log.Info("wall clock stepped; lease times shown anew")
		s.kickNow()
	}
	if err := clockSteps(ctx, stepped); err != nil {
		s.log.Warn("cannot follow clock steps; lease times may show the old clock until the next change", "err", err)
	}
	go func() {
		defer close(done)
		var debounce <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case <-updates:
				debounce = time.After(100 * time.Millisecond)
			case <-addrs:
				debounce = time.After(100 * time.Millisecond)
			case <-debounce:
				debounce = nil
				s.kickNow()
			}
		}
	}()
}

func (s *netService) kickNow() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// reconcile converges the kernel, starts and stops DHCP clients, and
// publishes the status.
func (s *netService) reconcile(ctx context.Context) {
	s.mu.Lock()
	cfg := s.cfg
	want := netcfg.Desired(cfg, s.leases)
	s.mu.Unlock()
	ch, probs, err := s.mgr.Apply(want)
	if err != nil {
		s.log.Error("apply", "err", err)
	}
	if len(ch) > 0 {
		s.log.Info("network changed", "changes", ch.String())
	}
	s.mu.Lock()
	s.changes += uint64(len(ch))
	s.probs = probs
	s.mu.Unlock()
	s.syncDHCP(ctx, want)
	s.publish(want)
}

// syncDHCP runs a client on every present link that wants DHCP.
func (s *netService) syncDHCP(ctx context.Context, want netcfg.State) {
	wanted := map[string]string{} // key -> kernel name
	for _, l := range want.Links {
		if !l.DHCP {
			continue
		}
		if name := netcfg.KernelName(l); name != "" {
			wanted[l.Key()] = name
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, name := range wanted {
		if s.clients[key] != nil {
			continue
		}
		cctx, cancel := context.WithCancel(ctx)
		c := &netcfg.DHCP{Iface: name, Key: key, Log: s.log, Changed: s.leaseChanged}
		r := &dhcpRun{c: c, cancel: cancel, done: make(chan struct{})}
		s.clients[key] = r
		go func() {
			defer close(r.done)
			c.Run(cctx)
		}()
	}
	for key, r := range s.clients {
		if _, ok := wanted[key]; !ok {
			r.cancel()
			delete(s.clients, key)
		}
	}
}

func (s *netService) leaseChanged(key string, l *netcfg.Lease) {
	s.mu.Lock()
	if l == nil {
		delete(s.leases, key)
	} else {
		if old, ok := s.leases[key]; ok && old.Address == l.Address {
			s.renewals[key]++
		}
		s.leases[key] = *l
	}
	s.mu.Unlock()
	s.kickNow()
}

func (s *netService) stopDHCP() {
	s.mu.Lock()
	runs := make([]*dhcpRun, 0, len(s.clients))
	for _, r := range s.clients {
		r.cancel()
		runs = append(runs, r)
	}
	s.mu.Unlock()
	for _, r := range runs {
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
		}
	}
	// Leases are released; take their addresses and routes away now.
	s.mu.Lock()
	cfg := s.cfg
	s.leases = map[string]netcfg.Lease{}
	s.mu.Unlock()
	s.mgr.Apply(netcfg.Desired(cfg, nil))
}

// publish writes the state for the dns and ntp services (layout.NetworkState) and
// keeps it for the service's report.
func (s *netService) publish(want netcfg.State) {
	st := status.Network{Updated: time.Now()}
	s.mu.Lock()
	st.Changes, st.Problems = s.changes, s.probs
	for _, l := range want.Links {
		ls := status.Link{Key: l.Key(), State: "missing"}
		if name := netcfg.KernelName(l); name != "" {
			if kl, err := netlink.LinkByName(name); err == nil {
				a := kl.Attrs()
				ls.Name, ls.MTU, ls.State = a.Name, a.MTU, a.OperState.String()
				as, _ := netlink.AddrList(kl, 0)
				for _, ad := range as {
					ls.Addresses = append(ls.Addresses, ad.IPNet.String())
				}
			}
		}
		if r := s.clients[l.Key()]; r != nil {
			state, lastErr := r.c.Status()
			d := &status.DHCP{State: state, LastError: lastErr, Renewals: s.renewals[l.Key()]}
			if lease, ok := s.leases[l.Key()]; ok {
				d.Address, d.Router, d.Server = lease.Address.String(), lease.Router.String(), lease.Server.String()
				d.Obtained, d.Renew, d.Rebind, d.Expires = wall(lease.Obtained), wall(lease.Renew), wall(lease.Rebind), wall(lease.Expires)
			}
			ls.DHCP = d
		}
		st.Links = append(st.Links, ls)
	}
	keys := make([]string, 0, len(s.leases))
	for k := range s.leases {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		l := s.leases[k]
		st.DNS = append(st.DNS, l.DNS...)
		st.NTP = append(st.NTP, l.NTP...)
		if st.Domain == "" {
			st.Domain = l.Domain
		}
	}
	s.mu.Unlock()
	for _, r := range want.Routes {
		st.Routes = append(st.Routes, r.String())
	}
	if err := writeJSON(filepath.Join(s.runDir, layout.NetworkState), st); err != nil {
		s.log.Warn("publish state", "err", err)
	}
	summary := fmt.Sprintf("%d links", len(st.Links))
	if len(st.Problems) > 0 {
		summary += "; " + netcfg.Problems(st.Problems).String()
	}
	s.mu.Lock()
	s.st, s.summary = st, summary
	s.mu.Unlock()
}

// wall re-reads t on today's wall clock. Lease times run on the monotonic
// clock (a step of the wall clock, as NTP makes at boot, must not expire a
// lease); for people they are shown as wall time as of now.
func wall(t time.Time) *time.Time {
	w := time.Now().Add(time.Until(t)).Round(time.Second)
	return &w
}

// writeJSON replaces file atomically.
func writeJSON(file string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return safeio.WriteFile(file, b, 0o644)
}
