package service

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"gatehouse/config"
)

// Reconciler is one service's state and the step that converges it on a
// config. Run calls it from one goroutine only, so its state needs no lock
// of its own for Run's sake.
type Reconciler interface {
	// Reconcile converges on cfg: the config read at start, the same
	// pointer again on a timer or a kick, a new one after a reload. ctx is
	// the service's and ends when it stops: what a round starts may live
	// on it. next is when to run again without a reload or a kick (0: not
	// before one). An error in the first round ends the service (it could
	// not start); later ones are logged and the running state stays,
	// unless they wrap ErrRestart (see Restart).
	Reconcile(ctx context.Context, cfg *config.Config) (next time.Duration, err error)
	// Status is what the service reports after a round.
	Status() Status
}

// Status is a service's report after a round.
type Status struct {
	// Ready says the service serves; the first round that says so makes
	// it ready. Readiness is never taken back.
	Ready   bool
	Summary string // the one-line status; "" sends none
	Detail  any    // the full status, as JSON; nil sends none
}

// ErrRestart marks an error of a later round that ends the service, so
// that the supervisor starts it again: the round found what the running
// service cannot take on (a listen address to change, a listener that
// failed). Make one with Restart.
var ErrRestart = errors.New("the service must restart")

// Restart wraps err so that Run ends the service with it: errors.Is(e,
// ErrRestart) and errors.Is(e, err) hold, and e reads as err.
func Restart(err error) error {
	if err == nil {
		return nil
	}
	return restartError{err}
}

type restartError struct{ err error }

func (e restartError) Error() string   { return e.err.Error() }
func (e restartError) Unwrap() []error { return []error{e.err, ErrRestart} }

// Options are what every service's loop needs.
type Options struct {
	Config string // the config file, read at start and on every reload
	Log    *slog.Logger
	Notify *Notifier
	Reload <-chan struct{} // a receive means: read the config again
	// Kick asks for a round now, with the config in force (a link went
	// down, a DHCP lease changed); nil if nothing but time and reloads
	// matter.
	Kick <-chan struct{}
}

// Run is every service's loop: read the config, converge, report, be
// ready once the reconciler says so, then converge again on a reload, a
// kick or when the reconciler asked to, until ctx ends (then it returns
// nil) or a round ends the service with an error that wraps ErrRestart.
// A config that fails to load on reload is logged and changes nothing:
// the running state stays, and so does the time of the next round.
func Run(ctx context.Context, o Options, r Reconciler) error {
	cfg, _, err := config.Load(o.Config)
	if err != nil {
		return err
	}
	next, err := r.Reconcile(ctx, cfg)
	if err != nil {
		return err
	}
	ready := false
	publish := func() {
		st := r.Status()
		if st.Detail != nil {
			o.Notify.Detail(st.Detail)
		}
		if st.Summary != "" {
			o.Notify.Status(st.Summary)
		}
		if st.Ready && !ready {
			ready = true
			o.Notify.Ready()
		}
	}
	publish()
	timer := time.NewTimer(0)
	defer timer.Stop()
	arm := func(d time.Duration) {
		timer.Stop()
		if d > 0 {
			timer.Reset(d)
		}
	}
	arm(next)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-o.Reload:
			c, ok := config.Reread(o.Config, o.Log)
			if !ok {
				continue
			}
			cfg = c
		case <-o.Kick:
		case <-timer.C:
		}
		if ctx.Err() != nil {
			return nil
		}
		next, err = r.Reconcile(ctx, cfg)
		if errors.Is(err, ErrRestart) {
			return err
		}
		if err != nil {
			o.Log.Error("not converged; the running state stays", "err", err)
		}
		publish()
		arm(next)
	}
}

// RunServing is Run for a service whose listeners serve beside its rounds
// (the SSH shell, the NRPE server, the SNMP agent, the web console and the
// API): build makes the reconciler with fail, which a listener calls when
// it can serve no more; the service then ends with that error, for the
// supervisor to start it again.
func RunServing(ctx context.Context, o Options, build func(ctx context.Context, fail context.CancelCauseFunc) Reconciler) error {
	ctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	if err := Run(ctx, o, build(ctx, fail)); err != nil {
		return err
	}
	if err := context.Cause(ctx); ctx.Err() != nil && !errors.Is(err, context.Canceled) {
		return err // a listener failed
	}
	return nil
}
