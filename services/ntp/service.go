package ntp

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"gatehouse/config"
	"gatehouse/service"
	"gatehouse/services/network"
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
	cfg, _, err := config.Load(o.Config)
	if err != nil {
		return err
	}
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
	servers := func() {
		list, source := cfg.NTP.Servers, "config"
		if len(list) == 0 {
			list, source = nil, "none"
			if ns, err := network.ReadState(o.RunDir); err == nil && len(ns.NTP) > 0 {
				source = "dhcp"
				for _, a := range ns.NTP {
					list = append(list, a.String())
				}
			}
		}
		d.SetServers(list, source)
	}
	servers()
	o.Notify.Ready()
	go d.Run(ctx)
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
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
			servers()
		case <-tick.C:
			servers()
		}
	}
}
