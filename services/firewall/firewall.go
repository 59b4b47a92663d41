// Package firewall is the firewall service: it puts a default deny in place
// at once, then builds the appliance's packet filter from the
// communication-path table, installs it atomically, re-resolves host-name
// peers, and re-applies on SIGHUP. Stopping the service leaves the rules in
// place: a crash must never open the box.
package firewall

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"slices"
	"strings"
	"time"

	"gatehouse/config"
	"gatehouse/linuxfw"
	"gatehouse/paths"
	"gatehouse/service"
	"gatehouse/status"
)

// DefaultDenyCondition holds once a default-deny filter is in place in
// every family: the boot-time one (firewall.DefaultDeny) or the config's.
// The services that configure the network and ask out wait for it; those
// that listen wait for the service to be ready, which it is once the
// config's full ruleset is in.
const DefaultDenyCondition = "firewall-default-deny"

// Options configure the service.
type Options struct {
	Config     string
	ResolvConf string // the DNS servers to ask for host-name peers
	Log        *slog.Logger
	Notify     *service.Notifier
	Reload     <-chan struct{}
}

// Run keeps the firewall in line with the config until ctx ends. It is
// ready once the config's full ruleset is in, in every family; until then
// it retries every 10 s, and whatever it did put in stays.
func Run(ctx context.Context, o Options) error {
	cfg, _, err := config.Load(o.Config)
	if err != nil {
		return err
	}
	var backendErr error // the config asks for a backend this system lacks
	backend, err := linuxfw.Select(cfg.Firewall.Backend)
	if err != nil {
		// Never no filter at all: what auto finds, and the reason in the
		// status (an appliance image has no iptables programs).
		auto, aerr := linuxfw.Select("auto")
		if aerr != nil {
			return errors.Join(err, aerr)
		}
		backendErr = fmt.Errorf("backend %s not available, %s used: %w", cfg.Firewall.Backend, auto.Name(), err)
		o.Log.Error("firewall backend not available", "wanted", cfg.Firewall.Backend, "used", auto.Name(), "err", err)
		backend = auto
	}
	// The full ruleset in place in every family; nil while not, or not
	// known (an apply failed in one family and went in in another).
	var installed *linuxfw.Ruleset
	var resolveAgain time.Time
	st := status.Firewall{Backend: backend.Name()}
	denied, ready := false, false
	deny := func() { // a default deny is in, in every family
		if !denied {
			denied = true
			o.Notify.Condition(DefaultDenyCondition)
		}
	}
	// Default deny first: building the config's ruleset may wait on DNS,
	// and what was in place before (a previous run's rules, in host mode)
	// may be wider than the config now says. Every start does it, restarts
	// too; replies on established connections pass throughout.
	if err := backend.Apply(linuxfw.DefaultDeny()); err != nil {
		st.LastError = err.Error()
		o.Log.Error("firewall default deny not installed", "err", err)
	} else {
		st.Ruleset = "default-deny"
		o.Log.Info("firewall default deny installed")
		deny()
	}
	// Names are asked of the DNS servers directly, for the answers' TTLs;
	// /etc/hosts and the like when DNS has nothing.
	resolver := linuxfw.DNSLookup{ResolvConf: o.ResolvConf, Fallback: net.DefaultResolver}
	apply := func() {
		rs, err := linuxfw.Build(ctx, cfg, paths.Table(cfg), resolver)
		resolveAgain = rs.ResolveAgain
		if err != nil {
			st.LastError = err.Error()
			o.Log.Error("firewall not rebuilt", "err", err)
			if installed != nil {
				return // keep what is in place
			}
			// The full ruleset is not in place: install what does resolve
			// rather than leave the appliance on the default deny, or on
			// whatever a failed apply left.
			rs = linuxfw.BuildLenient(ctx, cfg, paths.Table(cfg), resolver)
		} else {
			st.LastError = ""
		}
		if backendErr != nil {
			st.LastError = strings.TrimSuffix(backendErr.Error()+"; "+st.LastError, "; ")
		}
		if installed != nil && sameRules(*installed, rs) {
			return // nothing changed: no write at all
		}
		if err := backend.Apply(rs); err != nil {
			// One family may have taken it and another not (iptables):
			// what is in place is no longer known, and the next round
			// applies again.
			installed = nil
			st.LastError = strings.TrimSuffix(err.Error()+"; "+st.LastError, "; ")
			o.Log.Error("firewall not applied", "err", err)
			return
		}
		installed = &rs
		st.Ruleset = "config"
		st.Applied, st.ResolvedAt, st.Applies = time.Now(), rs.ResolvedAt, st.Applies+1
		st.In, st.Out, st.Egress = describe(rs.In), describe(rs.Out), cfg.Firewall.Egress
		o.Log.Info("firewall applied", "in", len(rs.In), "out", len(rs.Out), "egress", cfg.Firewall.Egress)
	}
	publish := func() {
		st.NextLookup = resolveAgain
		o.Notify.Detail(st)
		msg := st.Summary()
		if st.LastError != "" {
			msg += "; ERROR: " + st.LastError
		}
		o.Notify.Status(msg)
		if installed != nil && !ready {
			deny() // the config's ruleset denies by default too
			ready = true
			o.Notify.Ready()
		}
	}
	apply()
	publish()
	// Host names are looked up again when their answers run out (often
	// while something is wrong); without names, every few minutes anyway.
	for {
		wait := 5 * time.Minute
		if !resolveAgain.IsZero() {
			wait = max(time.Until(resolveAgain), time.Second) // a name's answer runs out
		}
		if st.LastError != "" {
			wait = min(wait, 10*time.Second)
		}
		select {
		case <-ctx.Done():
			return nil // the rules stay
		case <-o.Reload:
			c, ok := config.Reread(o.Config, o.Log)
			if !ok {
				continue
			}
			cfg = c
			backendErr = nil
			if b, err := linuxfw.Select(c.Firewall.Backend); err != nil {
				backendErr = fmt.Errorf("backend %s not available, %s kept: %w", c.Firewall.Backend, backend.Name(), err)
				o.Log.Error("firewall backend not changed", "err", err)
			} else if b.Name() != backend.Name() {
				// The new backend's full rules go in before the old ones
				// come out: for a moment both filter, which is only
				// narrower. A build that fails (a name does not resolve)
				// or an apply that fails keeps the old backend.
				if rs, err := linuxfw.Build(ctx, cfg, paths.Table(cfg), resolver); err != nil {
					backendErr = fmt.Errorf("backend not switched to %s: %w", b.Name(), err)
				} else if err := b.Apply(rs); err != nil {
					backendErr = fmt.Errorf("backend not switched to %s: %w", b.Name(), err)
					b.Remove() // what of it went in
				} else {
					if err := backend.Remove(); err != nil {
						o.Log.Warn("firewall: old backend's rules not removed", "backend", backend.Name(), "err", err)
					}
					backend, installed = b, &rs
					st.Backend, st.Ruleset, st.Applied, st.Applies = backend.Name(), "config", time.Now(), st.Applies+1
					o.Log.Info("firewall backend switched", "backend", backend.Name())
				}
				if backendErr != nil {
					o.Log.Error("firewall backend not changed", "err", backendErr)
				}
			}
		case <-time.After(wait):
		}
		apply()
		publish()
	}
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
