// Package firewall is the firewall service: it builds the appliance's
// packet filter from the communication-path table, installs it atomically,
// re-resolves host-name peers, and re-applies on SIGHUP. Stopping the
// service leaves the rules in place: a crash must never open the box.
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
	fw "gatehouse/firewall"
	"gatehouse/init/supervisor"
	"gatehouse/paths"
)

// Options configure the service.
type Options struct {
	Config     string
	ResolvConf string // the DNS servers to ask for host-name peers
	Log        *slog.Logger
	Notify     *supervisor.Notifier
	Reload     <-chan struct{}
}

// Status is what the service reports.
type Status struct {
	Backend    string    `json:"backend"`
	Applied    time.Time `json:"applied"`
	In         []string  `json:"in"`  // one line per inbound rule
	Out        []string  `json:"out"` // one line per outbound rule; empty with open egress
	Egress     string    `json:"egress"`
	LastError  string    `json:"last_error,omitempty"`
	Applies    int       `json:"applies"`
	ResolvedAt time.Time `json:"resolved_at"`
	NextLookup time.Time `json:"next_lookup,omitzero"` // when a host-name peer's DNS answer runs out
}

// Run keeps the firewall in line with the config until ctx ends.
func Run(ctx context.Context, o Options) error {
	cfg, _, err := config.Load(o.Config)
	if err != nil {
		return err
	}
	var backendErr error // the config asks for a backend this system lacks
	backend, err := fw.Select(cfg.Firewall.Backend)
	if err != nil {
		// Never no filter at all: what auto finds, and the reason in the
		// status (an appliance image has no iptables programs).
		auto, aerr := fw.Select("auto")
		if aerr != nil {
			return errors.Join(err, aerr)
		}
		backendErr = fmt.Errorf("backend %s not available, %s used: %w", cfg.Firewall.Backend, auto.Name(), err)
		o.Log.Error("firewall backend not available", "wanted", cfg.Firewall.Backend, "used", auto.Name(), "err", err)
		backend = auto
	}
	var installed *fw.Ruleset
	var resolveAgain time.Time
	st := Status{Backend: backend.Name()}
	// Names are asked of the DNS servers directly, for the answers' TTLs;
	// /etc/hosts and the like when DNS has nothing.
	resolver := fw.DNSLookup{ResolvConf: o.ResolvConf, Fallback: net.DefaultResolver}
	apply := func() {
		rs, err := fw.Build(ctx, cfg, paths.Table(cfg), resolver)
		resolveAgain = rs.ResolveAgain
		if err != nil {
			st.LastError = err.Error()
			o.Log.Error("firewall not rebuilt", "err", err)
			if installed != nil {
				return // keep what is in place
			}
			// Nothing is in place yet: install what does resolve rather
			// than leave the appliance open.
			rs = fw.BuildLenient(ctx, cfg, paths.Table(cfg), resolver)
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
			st.LastError = err.Error()
			o.Log.Error("firewall not applied", "err", err)
			return
		}
		installed = &rs
		st.Applied, st.ResolvedAt, st.Applies = time.Now(), rs.ResolvedAt, st.Applies+1
		st.In, st.Out, st.Egress = describe(rs.In), describe(rs.Out), cfg.Firewall.Egress
		o.Log.Info("firewall applied", "in", len(rs.In), "out", len(rs.Out), "egress", cfg.Firewall.Egress)
	}
	publish := func() {
		st.NextLookup = resolveAgain
		o.Notify.Detail(st)
		msg := fmt.Sprintf("%s: %d inbound paths, egress %s", st.Backend, len(st.In), st.Egress)
		if st.LastError != "" {
			msg += "; ERROR: " + st.LastError
		}
		o.Notify.Status(msg)
	}
	apply()
	if installed == nil {
		return fmt.Errorf("firewall: nothing installed: %s", st.LastError)
	}
	publish()
	o.Notify.Ready()
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
			if b, err := fw.Select(c.Firewall.Backend); err != nil {
				backendErr = fmt.Errorf("backend %s not available, %s kept: %w", c.Firewall.Backend, backend.Name(), err)
				o.Log.Error("firewall backend not changed", "err", err)
			} else if b.Name() != backend.Name() {
				// The new backend's full rules go in before the old ones
				// come out: for a moment both filter, which is only
				// narrower. A build that fails (a name does not resolve)
				// or an apply that fails keeps the old backend.
				if rs, err := fw.Build(ctx, cfg, paths.Table(cfg), resolver); err != nil {
					backendErr = fmt.Errorf("backend not switched to %s: %w", b.Name(), err)
				} else if err := b.Apply(rs); err != nil {
					backendErr = fmt.Errorf("backend not switched to %s: %w", b.Name(), err)
					b.Remove() // what of it went in
				} else {
					if err := backend.Remove(); err != nil {
						o.Log.Warn("firewall: old backend's rules not removed", "backend", backend.Name(), "err", err)
					}
					backend, installed = b, &rs
					st.Backend, st.Applied, st.Applies = backend.Name(), time.Now(), st.Applies+1
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

func sameRules(a, b fw.Ruleset) bool {
	a.ResolvedAt, b.ResolvedAt = time.Time{}, time.Time{}
	a.ResolveAgain, b.ResolveAgain = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

// describe renders rules for status and `firewall show`.
func describe(rules []fw.Rule) []string {
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
