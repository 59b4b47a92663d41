package dnscache

import (
	"context"
	"log/slog"
	"net"
	"time"

	"gatehouse/config"
	"gatehouse/service"
	"gatehouse/services/network"
	"gatehouse/status"
)

// Options configure the service.
type Options struct {
	Config     string
	RunDir     string // where the network service publishes DHCP's servers
	ResolvConf string // /etc/resolv.conf on the appliance; never the host's in host mode
	Listen     string // the built-in resolver's address, 127.0.0.1:53
	Log        *slog.Logger
	Notify     *service.Notifier
	Reload     <-chan struct{}
}

// Run keeps resolv.conf and the resolver in line with the config and DHCP.
func Run(ctx context.Context, o Options) error {
	cfg, _, err := config.Load(o.Config)
	if err != nil {
		return err
	}
	r := NewResolver(nil)
	var stopServer context.CancelFunc
	serve := func() error {
		sctx, cancel := context.WithCancel(ctx)
		ready := make(chan struct{})
		errc := make(chan error, 1)
		go func() { errc <- r.Serve(sctx, o.Listen, ready) }()
		select {
		case <-ready:
			stopServer = cancel
			o.Log.Info("caching resolver listening", "addr", o.Listen)
			return nil
		case err := <-errc:
			cancel()
			return err
		}
	}
	var last status.DNS
	converge := func() error {
		st := status.DNS{Mode: cfg.DNS.Resolver, ResolvConf: o.ResolvConf, Search: cfg.DNS.Search, Source: "config"}
		st.Servers = cfg.DNS.Servers
		if len(st.Servers) == 0 {
			st.Source = "none"
			if ns, err := network.ReadState(o.RunDir); err == nil && len(ns.DNS) > 0 {
				st.Source = "dhcp"
				for _, a := range ns.DNS {
					st.Servers = append(st.Servers, a.String())
				}
				if len(st.Search) == 0 && ns.Domain != "" {
					st.Search = []string{ns.Domain}
				}
			}
		}
		conf := st.Servers
		switch {
		case st.Mode == "builtin" && stopServer == nil:
			if err := serve(); err != nil {
				return err
			}
		case st.Mode != "builtin" && stopServer != nil:
			stopServer()
			stopServer = nil
		}
		if st.Mode == "builtin" {
			r.SetUpstreams(st.Servers)
			host, _, _ := net.SplitHostPort(o.Listen)
			conf = []string{host}
			st.Listen = o.Listen
		}
		if changed, err := writeIfChanged(o.ResolvConf, ResolvConf(conf, st.Search)); err != nil {
			return err
		} else if changed {
			o.Log.Info("resolv.conf written", "file", o.ResolvConf, "servers", conf, "source", st.Source)
		}
		last = st
		return nil
	}
	if err := converge(); err != nil {
		return err
	}
	o.Notify.Ready()
	publish := func() {
		st := last
		if stopServer != nil {
			s := r.Stats()
			st.Resolver = &s
		}
		o.Notify.Detail(st)
		summary := st.Mode + ", servers from " + st.Source
		if st.Resolver != nil && st.Resolver.UpstreamDown {
			summary += "; UPSTREAM DOWN, serving from cache"
		}
		o.Notify.Status(summary)
	}
	publish()
	tick := time.NewTicker(2 * time.Second)
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
		case <-tick.C:
		}
		if err := converge(); err != nil {
			o.Log.Error("dns", "err", err)
		}
		publish()
	}
}
