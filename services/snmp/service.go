// Package snmp is the SNMP agent service: v2c communities and v3 USM
// users answered from a snapshot of the appliance's state (the one status
// PID 1 keeps, netlink, /proc), and traps to the configured receivers.
// The wire format and the USM are package gatehouse/snmp's.
package snmp

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/config"
	"gatehouse/dnsclient"
	"gatehouse/service"
	"gatehouse/snmp"
	"gatehouse/status"
)

// Options configure the service.
type Options struct {
	Config     string
	StateDir   string // engine ID and boots: on /data on the appliance
	Control    string // PID 1's control socket: the status the MIB serves
	Cluster    string // the cluster service's socket: the cluster the MIB serves, on a node with a cluster section
	DataDir    string // the data disk, for hrStorage and the disk-low trap
	ResolvConf string
	Version    string // for sysDescr
	Log        *slog.Logger
	Notify     *service.Notifier
	Reload     <-chan struct{}
}

// Run serves until ctx ends.
func Run(ctx context.Context, o Options) error {
	return service.RunServing(ctx, service.Options{Config: o.Config, Log: o.Log, Notify: o.Notify, Reload: o.Reload},
		func(_ context.Context, fail context.CancelCauseFunc) service.Reconciler {
			return &agent{o: o, fail: fail, names: dnsclient.NewNames(dnsclient.New(o.ResolvConf)), limiter: newLimiter()}
		})
}

// agent is the service's state.
type agent struct {
	o       Options
	fail    context.CancelCauseFunc
	names   *dnsclient.Names
	limiter *limiter

	engine *snmp.Engine
	conn   *net.UDPConn
	listen string
	mib    *mib
	traps  *trapper

	pol atomic.Pointer[policy]

	requests, answered, notAllowed, badCommunity, rateLimited, parseErrors atomic.Uint64

	mu        sync.Mutex
	nameState []dnsclient.NameStatus
}

// Reconcile starts the agent at the first round and puts each config's
// policy in force (see service.Reconciler). It runs again when a host
// name's answer runs out, and every few seconds for the traps' checks.
func (a *agent) Reconcile(ctx context.Context, cfg *config.Config) (time.Duration, error) {
	if !cfg.SNMPEnabled() {
		if a.conn == nil {
			return 0, errors.New("snmp: the config has no snmp section with a community or user")
		}
		return 0, service.Restart(errors.New("snmp: the snmp section is gone"))
	}
	if a.conn != nil && cfg.SNMP.Listen != a.listen {
		return 0, service.Restart(fmt.Errorf("snmp: listen address changed from %s to %s", a.listen, cfg.SNMP.Listen))
	}
	first := a.engine == nil
	if first {
		id, boots, err := bootEngine(a.o.StateDir)
		if err != nil {
			return 0, err
		}
		var seed [8]byte
		rand.Read(seed[:])
		a.engine = snmp.NewEngine(id, boots, time.Now(), binary.BigEndian.Uint64(seed[:]))
		a.mib = newMIB(a.o, a.engine)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	names := hostNames(cfg)
	resolved, nextLookup := a.names.Resolve(rctx, names)
	cancel()
	a.mu.Lock()
	a.nameState = a.names.Status()
	a.mu.Unlock()
	pol, err := compile(cfg, a.engine.ID, resolved)
	if err != nil {
		return 0, err
	}
	a.pol.Store(pol)
	a.mib.configure(cfg)
	if first {
		if err := a.serve(ctx, cfg.SNMP.Listen); err != nil {
			return 0, err
		}
		a.traps = newTrapper(a.o.Log, a.engine, a.mib)
		a.traps.coldStart(pol, cfg)
	}
	a.traps.check(pol, cfg)
	next := 5 * time.Second
	if !nextLookup.IsZero() {
		next = min(next, max(time.Until(nextLookup), time.Second))
	}
	return next, nil
}

// hostNames are the host names the allow lists and the trap receivers
// name.
func hostNames(c *config.Config) []string {
	sets := []config.PeerSet{c.Monitoring.Hosts}
	for _, cm := range c.SNMP.Communities {
		sets = append(sets, cm.Allow)
	}
	for _, u := range c.SNMP.Users {
		sets = append(sets, u.Allow)
	}
	names := config.JoinPeers(sets...).Names()
	for _, t := range c.SNMP.Traps {
		if _, err := netip.ParseAddr(t.Host); err != nil {
			names = append(names, t.Host)
		}
	}
	return names
}

// serve opens the socket and answers on it until ctx ends.
func (a *agent) serve(ctx context.Context, listen string) error {
	addr, err := net.ResolveUDPAddr("udp", listen)
	if err != nil {
		return fmt.Errorf("snmp: listen %s: %w", listen, err)
	}
	conn, err := net.ListenUDP("udp", addr)
	if err != nil {
		return fmt.Errorf("snmp: %w", err)
	}
	a.conn, a.listen = conn, listen
	a.o.Log.Info("SNMP agent listening", "addr", conn.LocalAddr().String(), "engine_id", hex.EncodeToString(a.engine.ID), "engine_boots", a.engine.Boots)
	go func() {
		<-ctx.Done()
		conn.Close()
	}()
	go func() {
		err := a.loop(conn)
		if ctx.Err() == nil {
			a.fail(fmt.Errorf("snmp: %w", err))
		}
	}()
	return nil
}

// loop reads one datagram at a time into a fixed buffer and answers it.
func (a *agent) loop(conn *net.UDPConn) error {
	buf := make([]byte, snmp.MaxMessageSize+1)
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return err
		}
		if n > snmp.MaxMessageSize {
			a.parseErrors.Add(1)
			continue
		}
		if out := a.handle(buf[:n], src.Addr().Unmap(), time.Now()); out != nil {
			conn.WriteToUDPAddrPort(out, src)
		}
	}
}

// handle answers one datagram from src, or returns nil.
func (a *agent) handle(pkt []byte, src netip.Addr, now time.Time) []byte {
	a.requests.Add(1)
	pol := a.pol.Load()
	if !pol.anyone.Contains(src, pol.resolved) {
		a.notAllowed.Add(1)
		return nil
	}
	if !a.limiter.allow(src, pol.rate, now) {
		a.rateLimited.Add(1)
		return nil
	}
	version, err := snmp.MessageVersion(pkt)
	if err != nil {
		a.parseErrors.Add(1)
		return nil
	}
	var out []byte
	switch version {
	case snmp.Version2c:
		out = a.handleCommunity(pkt, pol, src, now)
	case snmp.Version3:
		out = a.handleV3(pkt, pol, src, now)
	default:
		a.parseErrors.Add(1) // v1 is not served
	}
	if out != nil {
		a.answered.Add(1)
	}
	return out
}

func (a *agent) handleCommunity(pkt []byte, pol *policy, src netip.Addr, now time.Time) []byte {
	m, err := snmp.ParseCommunity(pkt)
	if err != nil {
		a.parseErrors.Add(1)
		return nil
	}
	cm := pol.communities[string(m.Community)]
	if cm == nil || !pol.admits(cm.allow, src) {
		// As net-snmp: no answer to a community it does not know.
		a.badCommunity.Add(1)
		return nil
	}
	t := a.mib.table(now)
	empty := snmp.PDU{Type: snmp.PDUResponse, RequestID: m.PDU.RequestID}
	budget := snmp.DefaultMaxSize - len(snmp.AppendCommunity(nil, m.Version, m.Community, &empty, nil)) - 8
	resp, vbs, ok := snmp.Answer(t, &m.PDU, cm.view, budget)
	if !ok {
		return nil
	}
	return snmp.AppendCommunity(make([]byte, 0, len(vbs)+64), m.Version, m.Community, &resp, vbs)
}

func (a *agent) handleV3(pkt []byte, pol *policy, src netip.Addr, now time.Time) []byte {
	users := func(name string) *snmp.User {
		u := pol.users[name]
		if u == nil || !pol.admits(u.allow, src) {
			return nil // a user the source may not be: unknown to it
		}
		return &u.usm
	}
	out, err := a.engine.Handle(pkt, now, users, snmp.DefaultMaxSize, func(req *snmp.ScopedRequest, budget int) (snmp.PDU, []byte, bool) {
		u := pol.users[req.User.Name]
		if req.Level < u.minLevel {
			// As net-snmp's access control: the request is answered,
			// with authorizationError.
			return snmp.PDU{Type: snmp.PDUResponse, RequestID: req.PDU.RequestID, ErrorStatus: snmp.AuthorizationError}, nil, true
		}
		return snmp.Answer(a.mib.table(now), &req.PDU, u.view, budget)
	})
	if err != nil {
		a.parseErrors.Add(1)
	}
	return out
}

// Status reports the agent's counters (see service.Reconciler).
func (a *agent) Status() service.Status {
	st := status.SNMP{Listen: a.listen, Requests: a.requests.Load(), Answered: a.answered.Load(),
		NotAllowed: a.notAllowed.Load(), BadCommunity: a.badCommunity.Load(), RateLimited: a.rateLimited.Load(),
		ParseErrors: a.parseErrors.Load()}
	if e := a.engine; e != nil {
		st.EngineID, st.EngineBoots = hex.EncodeToString(e.ID), int64(e.Boots)
		st.UnknownEngineIDs, st.UnknownUserNames = e.Stats.UnknownEngineIDs.Load(), e.Stats.UnknownUserNames.Load()
		st.WrongDigests, st.NotInTimeWindows = e.Stats.WrongDigests.Load(), e.Stats.NotInTimeWindows.Load()
		st.UnsupportedSecLevels, st.DecryptionErrors = e.Stats.UnsupportedSecLevels.Load(), e.Stats.DecryptionErrors.Load()
	}
	if a.mib != nil {
		st.Objects = a.mib.objects()
	}
	if a.traps != nil {
		st.TrapsSent, st.InformsAcked, st.TrapErrors, st.LastTrapError = a.traps.stats()
	}
	a.mu.Lock()
	st.Names = a.nameState
	a.mu.Unlock()
	summary := fmt.Sprintf("listening on %s, %d requests, %d answered", a.listen, st.Requests, st.Answered)
	return service.Status{Ready: a.conn != nil, Summary: summary, Detail: st}
}
