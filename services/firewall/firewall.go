// Package firewall is the firewall service: it puts a default deny in place
// at once, then builds the appliance's packet filter from the
// communication-path table, installs it atomically, re-resolves host-name
// peers, and re-applies on SIGHUP. It answers on its socket with the rules
// as the kernel has them (QueryRules). Stopping the service leaves the
// rules in place: a crash must never open the box.
package firewall

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"gatehouse/config"
	"gatehouse/dnsclient"
	"gatehouse/linuxfw"
	"gatehouse/paths"
	"gatehouse/service"
	"gatehouse/status"
)

// DefaultDenyCondition holds once a default-deny filter is in place in
// every family: the boot-time one (linuxfw.DefaultDeny) or the config's.
// The services that configure the network and ask out wait for it; those
// that listen wait for the service to be ready, which it is once the
// config's full ruleset is in.
const DefaultDenyCondition = "firewall-default-deny"

// Options configure the service.
type Options struct {
	Config     string
	Socket     string // the service's socket (layout.Paths.FirewallSocket); "" makes none
	ResolvConf string // the DNS servers to ask for host-name peers
	Log        *slog.Logger
	Notify     *service.Notifier
	Reload     <-chan struct{}
}

// Run keeps the firewall in line with the config until ctx ends. It is
// ready once the config's full ruleset is in, in every family; until then
// it retries every 10 s, and whatever it did put in stays. Stopping leaves
// the rules in place.
func Run(ctx context.Context, o Options) error {
	// Names are asked of the DNS servers directly, for the answers' TTLs;
	// /etc/hosts and the like when DNS has nothing.
	f := newFirewall(o.Log, o.Notify.Condition, dnsclient.NewNames(dnsclient.New(o.ResolvConf)), linuxfw.Select)
	if o.Socket != "" {
		go func() {
			// Only the display of the rules depends on the socket: the
			// filter goes in without it.
			if err := f.serve(ctx, o.Socket); err != nil {
				o.Log.Error("firewall socket not served", "err", err)
			}
		}()
	}
	return service.Run(ctx, service.Options{Config: o.Config, Log: o.Log, Notify: o.Notify, Reload: o.Reload, Kick: ticks(ctx, DropsEvery)}, f)
}

// DropsEvery is how often at least a round runs, and with it the drop
// counters are read back: a round with nothing to change reads the
// counters and compares the rebuilt ruleset (its names from the
// resolver's cache) with what is in, and writes nothing.
const DropsEvery = 30 * time.Second

// ticks sends on its channel every d until ctx ends; a tick the loop has
// not taken yet is not doubled.
func ticks(ctx context.Context, d time.Duration) <-chan struct{} {
	c := make(chan struct{}, 1)
	go func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				select {
				case c <- struct{}{}:
				default:
				}
			}
		}
	}()
	return c
}

// Firewall is the service's state: the backend in use, what it installed,
// what the service reports. Its Reconcile puts a default deny in place at
// the first round, then the config's ruleset at every round; a new config
// may switch the backend.
type Firewall struct {
	log *slog.Logger
	// condition says that a condition holds (Notifier.Condition): the
	// default deny does, before the service is ready.
	condition func(name string) error
	resolver  *dnsclient.Names
	now       func() time.Time                           // the resolver's clock
	choose    func(pref string) (linuxfw.Backend, error) // linuxfw.Select

	cfg        *config.Config // the config in force
	backendErr error          // the config asks for a backend this system lacks
	// The full ruleset in place in every family; nil while not, or not
	// known (an apply failed in one family and went in in another).
	installed    *linuxfw.Ruleset
	resolveAgain time.Time
	denied       bool
	// dropsLast are the drop counters as the kernel had them at the last
	// read: what they grew by since goes into the status.
	dropsLast linuxfw.Drops

	mu      sync.Mutex // the socket reads the backend and the status
	backend linuxfw.Backend
	st      status.Firewall
}

func newFirewall(log *slog.Logger, condition func(string) error, names *dnsclient.Names, choose func(string) (linuxfw.Backend, error)) *Firewall {
	return &Firewall{log: log, condition: condition, resolver: names, choose: choose, now: time.Now}
}

// Reconcile converges the kernel's rules on cfg (see service.Reconciler).
// Only a system with no backend at all is an error: every other failure
// is in the status, and the next round, in 10 s at most, tries again.
func (f *Firewall) Reconcile(ctx context.Context, cfg *config.Config) (time.Duration, error) {
	switch {
	case f.backend == nil:
		f.cfg = cfg
		if err := f.start(); err != nil {
			return 0, err
		}
	case cfg != f.cfg:
		f.cfg = cfg
		f.switchBackend(ctx)
	}
	f.apply(ctx)
	if f.installed != nil {
		f.deny() // the config's ruleset denies by default too
	}
	f.readDrops()
	// Host names are looked up again when their answers run out (often
	// while something is wrong); without names, every few minutes anyway.
	wait := 5 * time.Minute
	if !f.resolveAgain.IsZero() {
		wait = max(f.resolveAgain.Sub(f.now()), time.Second) // a name's answer runs out
	}
	if f.status().LastError != "" {
		wait = min(wait, 10*time.Second)
	}
	return wait, nil
}

// start chooses the backend and puts the default deny in place.
func (f *Firewall) start() error {
	backend, err := f.choose(f.cfg.Firewall.Backend)
	if err != nil {
		// Never no filter at all: what auto finds, and the reason in the
		// status (an appliance image has no iptables programs).
		auto, aerr := f.choose("auto")
		if aerr != nil {
			return errors.Join(err, aerr)
		}
		f.backendErr = fmt.Errorf("backend %s not available, %s used: %w", f.cfg.Firewall.Backend, auto.Name(), err)
		f.log.Error("firewall backend not available", "wanted", f.cfg.Firewall.Backend, "used", auto.Name(), "err", err)
		backend = auto
	}
	f.mu.Lock()
	f.backend = backend
	f.st = status.Firewall{Backend: backend.Name()}
	f.mu.Unlock()
	// Default deny first: building the config's ruleset may wait on DNS,
	// and what was in place before (a previous run's rules, in host mode)
	// may be wider than the config now says. Every start does it, restarts
	// too; replies on established connections pass throughout. The ban
	// sets go in with it, so that bans outlive a restart.
	if err := backend.Apply(linuxfw.DefaultDeny(banSets(f.cfg)...)); err != nil {
		f.update(func(st *status.Firewall) { st.LastError = err.Error() })
		f.log.Error("firewall default deny not installed", "err", err)
		return nil
	}
	f.update(func(st *status.Firewall) { st.Ruleset = "default-deny" })
	f.log.Info("firewall default deny installed")
	f.deny()
	return nil
}

// deny says that a default deny is in, in every family.
func (f *Firewall) deny() {
	if !f.denied {
		f.denied = true
		f.condition(DefaultDenyCondition)
	}
}

// switchBackend moves the rules to the backend a new config asks for. The
// new backend's full rules go in before the old ones come out: for a
// moment both filter, which is only narrower. A build that fails (a name
// does not resolve) or an apply that fails keeps the old backend.
func (f *Firewall) switchBackend(ctx context.Context) {
	f.backendErr = nil
	want := f.cfg.Firewall.Backend
	b, err := f.choose(want)
	if err != nil {
		f.backendErr = fmt.Errorf("backend %s not available, %s kept: %w", want, f.backend.Name(), err)
		f.log.Error("firewall backend not changed", "err", err)
		return
	}
	if b.Name() == f.backend.Name() {
		return
	}
	rs, err := build(ctx, f.cfg, f.resolver)
	if err == nil {
		if err = b.Apply(rs); err != nil {
			b.Remove() // what of it went in
		}
	}
	if err != nil {
		f.backendErr = fmt.Errorf("backend not switched to %s: %w", b.Name(), err)
		f.log.Error("firewall backend not changed", "err", f.backendErr)
		return
	}
	f.readDrops() // the old backend's last drops
	if err := f.backend.Remove(); err != nil {
		f.log.Warn("firewall: old backend's rules not removed", "backend", f.backend.Name(), "err", err)
	}
	f.installed = &rs
	f.dropsLast = linuxfw.Drops{} // the new backend's counters started with its rules
	f.mu.Lock()
	f.backend = b
	f.st.Backend, f.st.Ruleset, f.st.Applied, f.st.Applies = b.Name(), "config", time.Now(), f.st.Applies+1
	f.mu.Unlock()
	f.log.Info("firewall backend switched", "backend", b.Name())
}

// apply builds the config's ruleset and installs it unless it is in place.
func (f *Firewall) apply(ctx context.Context) {
	rs, err := build(ctx, f.cfg, f.resolver)
	f.resolveAgain = rs.ResolveAgain
	if err != nil {
		f.update(func(st *status.Firewall) { st.LastError = err.Error() })
		f.log.Error("firewall not rebuilt", "err", err)
		// Install what does resolve: a name DNS says has no address
		// matches no one (the resolver keeps the last good answer when
		// DNS merely fails to answer), and the rules are never wider
		// than the config. On a first install this also beats staying
		// on the default deny.
		rs = linuxfw.BuildLenient(ctx, f.cfg, paths.Table(f.cfg), f.resolver)
		rs.BanSets = banSets(f.cfg)
	} else {
		f.update(func(st *status.Firewall) { st.LastError = "" })
	}
	if f.backendErr != nil {
		f.update(func(st *status.Firewall) {
			st.LastError = strings.TrimSuffix(f.backendErr.Error()+"; "+st.LastError, "; ")
		})
	}
	if f.installed != nil && sameRules(*f.installed, rs) {
		return // nothing changed: no write at all
	}
	// A replacement starts the counters at zero: what they grew by
	// until now is counted first.
	f.readDrops()
	a, err := update(f.backend, rs)
	if err != nil {
		// One family may have taken it and another not (iptables):
		// what is in place is no longer known, and the next round
		// applies again.
		f.installed = nil
		f.update(func(st *status.Firewall) { st.LastError = strings.TrimSuffix(err.Error()+"; "+st.LastError, "; ") })
		f.log.Error("firewall not applied", "err", err)
		return
	}
	f.installed = &rs
	if a.Replaced {
		f.dropsLast = linuxfw.Drops{}
	}
	f.update(func(st *status.Firewall) {
		st.Ruleset = "config"
		st.Applied, st.ResolvedAt, st.Applies = time.Now(), rs.ResolvedAt, st.Applies+1
		st.In, st.Out, st.Egress = describe(rs.In), describe(rs.Out), f.cfg.Firewall.Egress
	})
	if a.Retried != nil {
		f.log.Warn("firewall rules not changed in place, replaced whole", "err", a.Retried)
	}
	if !a.Replaced {
		f.log.Info("firewall peers updated", "sets", a.Sets, "added", a.Added, "removed", a.Removed)
		return
	}
	f.log.Info("firewall applied", "in", len(rs.In), "out", len(rs.Out), "egress", f.cfg.Firewall.Egress)
}

// update applies rs with b, and says whether the rules were replaced (and
// their counters started at zero) or only their peer sets changed.
func update(b linuxfw.Backend, rs linuxfw.Ruleset) (linuxfw.Applied, error) {
	if u, ok := b.(linuxfw.Updater); ok {
		return u.Update(rs)
	}
	return linuxfw.Applied{Replaced: true}, b.Apply(rs)
}

// readDrops reads the backend's drop counters and adds what they grew
// by since the last read to the status. A counter lower than at the last
// read started again at zero (rules replaced, one family of them, or by
// someone else): all of it is new. A failed read keeps the last figures
// and says why.
func (f *Firewall) readDrops() {
	dr, ok := f.backend.(linuxfw.DropReader)
	if !ok {
		return
	}
	d, err := dr.Drops()
	if err != nil {
		if prev := f.status().DropsError; prev != err.Error() {
			f.log.Warn("firewall drop counters not read", "err", err)
		}
		f.update(func(st *status.Firewall) { st.DropsError = err.Error() })
		return
	}
	last := f.dropsLast
	f.dropsLast = d
	f.update(func(st *status.Firewall) {
		st.DropsError, st.DropsRead = "", f.now()
		st.Drops.In.Packets += grown(d.InPackets, last.InPackets)
		st.Drops.In.Bytes += grown(d.InBytes, last.InBytes)
		st.Drops.Out.Packets += grown(d.OutPackets, last.OutPackets)
		st.Drops.Out.Bytes += grown(d.OutBytes, last.OutBytes)
	})
}

// grown is what a counter grew by from last to now; all of now when it
// is lower (it started again at zero).
func grown(now, last uint64) uint64 {
	if now >= last {
		return now - last
	}
	return now
}

func (f *Firewall) update(change func(*status.Firewall)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(&f.st)
}

func (f *Firewall) status() status.Firewall {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.st
	st.NextLookup = f.resolveAgain
	return st
}

// Status reports what is in place (see service.Reconciler): ready once
// the config's full ruleset is.
func (f *Firewall) Status() service.Status {
	st := f.status()
	msg := st.Summary()
	if st.LastError != "" {
		msg += "; ERROR: " + st.LastError
	}
	return service.Status{Ready: f.installed != nil, Summary: msg, Detail: st}
}

// build is the config's full ruleset, its ban sets included.
func build(ctx context.Context, cfg *config.Config, r *dnsclient.Names) (linuxfw.Ruleset, error) {
	rs, err := linuxfw.Build(ctx, cfg, paths.Table(cfg), r)
	if err != nil {
		return rs, err
	}
	rs.BanSets = banSets(cfg)
	return rs, nil
}

func sameRules(a, b linuxfw.Ruleset) bool {
	a.ResolvedAt, b.ResolvedAt = time.Time{}, time.Time{}
	a.ResolveAgain, b.ResolveAgain = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

// describe renders rules for status and `firewall show`.
func describe(rules []linuxfw.Rule) []string {
	var out []string
	for _, r := range rules {
		peers := "any"
		if !r.Any {
			peers = ""
			for _, a := range slices.Concat(r.V4, r.V6) {
				if peers != "" {
					peers += ", "
				}
				if a.From == a.To {
					peers += a.From.String()
				} else {
					peers += a.From.String() + "-" + a.To.String()
				}
			}
		}
		ports := ""
		for i, p := range r.Ports {
			if i > 0 {
				ports += ","
			}
			ports += p.String()
		}
		out = append(out, fmt.Sprintf("%s %s from/to %s accept  # %s", r.Proto, ports, peers, r.Function))
	}
	return out
}
