package ntp

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"gatehouse/config"
	"gatehouse/service"
	"gatehouse/status"
)

// SyncedCondition is the supervisor condition set at the first sync; TLS
// and the cluster wait for it.
const SyncedCondition = "clock-synced"

// Options configure the service.
type Options struct {
	Config   string
	RunDir   string // where the network service publishes DHCP's NTP servers
	SetClock bool   // only PID 1 on the appliance sets the clock
	MinPoll  time.Duration
	Log      *slog.Logger
	Notify   *service.Notifier
	Reload   <-chan struct{}
}

// Run keeps the clock in time until ctx ends.
func Run(ctx context.Context, o Options) error {
	var clock Clock = Observer{}
	if o.SetClock {
		clock = SystemClock{Log: o.Log}
	}
	d := &Discipline{Clock: clock, Log: o.Log, MinPoll: o.MinPoll,
		OnStatus: func(st status.NTP) {
			o.Notify.Detail(st)
			if st.Synced {
				o.Notify.Status(fmt.Sprintf("synced to %s (stratum %d), offset %v", st.Server, st.Stratum, st.Offset.Round(time.Microsecond)))
			} else {
				o.Notify.Status("not synced: " + st.LastError)
			}
		},
		OnSynced: func() { o.Notify.Condition(SyncedCondition) },
	}
	return service.Run(ctx, service.Options{Config: o.Config, Log: o.Log, Notify: o.Notify, Reload: o.Reload},
		&servers{d: d, runDir: o.RunDir})
}

// servers hands the discipline the servers to ask: the config's, else
// DHCP's. The discipline reports its state itself, as it polls.
type servers struct {
	d       *Discipline
	runDir  string
	running bool
}

// Reconcile sets the servers of cfg, or DHCP's, and starts the discipline
// at the first round (see service.Reconciler). DHCP's servers arrive in
// the network service's state file: it looks again every 5 s.
func (s *servers) Reconcile(ctx context.Context, cfg *config.Config) (time.Duration, error) {
	list, source := cfg.NTP.Servers, "config"
	if len(list) == 0 {
		list, source = nil, "none"
		if ns, err := status.ReadNetwork(s.runDir); err == nil && len(ns.NTP) > 0 {
			source = "dhcp"
			for _, a := range ns.NTP {
				list = append(list, a.String())
			}
		}
	}
	s.d.SetServers(list, source)
	if !s.running {
		s.running = true
		go s.d.Run(ctx)
	}
	return 5 * time.Second, nil
}

// Status says the service is ready; the discipline reports the rest.
func (s *servers) Status() service.Status { return service.Status{Ready: true} }
