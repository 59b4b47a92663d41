package dnscache

import (
	"context"
	"log/slog"
	"net"
	"time"

	"gatehouse/config"
	"gatehouse/service"
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
	c := &dnsService{o: o, r: NewResolver(nil)}
	return service.Run(ctx, service.Options{Config: o.Config, Log: o.Log, Notify: o.Notify, Reload: o.Reload}, c)
}

// dnsService is the service's state: the built-in resolver, whether it serves,
// and what the last round wrote.
type dnsService struct {
	o          Options
	r          *Resolver
	stopServer context.CancelFunc // nil while the built-in resolver does not serve
	last       status.DNS
}

// Reconcile writes resolv.conf for cfg and DHCP's servers, and starts or
// stops the built-in resolver (see service.Reconciler). It looks again
// every 2 s: DHCP's servers arrive in the network service's state file.
func (c *dnsService) Reconcile(ctx context.Context, cfg *config.Config) (time.Duration, error) {
	const again = 2 * time.Second
	o := c.o
	st := status.DNS{Mode: cfg.DNS.Resolver, ResolvConf: o.ResolvConf, Search: cfg.DNS.Search, Source: "config"}
	st.Servers = cfg.DNS.Servers
	if len(st.Servers) == 0 {
		st.Source = "none"
		if ns, err := status.ReadNetwork(o.RunDir); err == nil && len(ns.DNS) > 0 {
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
	case st.Mode == "builtin" && c.stopServer == nil:
		if err := c.serve(ctx); err != nil {
			return again, err
		}
	case st.Mode != "builtin" && c.stopServer != nil:
		c.stopServer()
		c.stopServer = nil
	}
	if st.Mode == "builtin" {
		c.r.SetUpstreams(st.Servers)
		host, _, _ := net.SplitHostPort(o.Listen)
		conf = []string{host}
		st.Listen = o.Listen
	}
	if changed, err := writeIfChanged(o.ResolvConf, ResolvConf(conf, st.Search)); err != nil {
		return again, err
	} else if changed {
		o.Log.Info("resolv.conf written", "file", o.ResolvConf, "servers", conf, "source", st.Source)
	}
	c.last = st
	return again, nil
}

// serve starts the built-in resolver; it serves until ctx ends or
// stopServer is called.
func (c *dnsService) serve(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	ready := make(chan struct{})
	errc := make(chan error, 1)
	go func() { errc <- c.r.Serve(sctx, c.o.Listen, ready) }()
	select {
	case <-ready:
		c.stopServer = cancel
		c.o.Log.Info("caching resolver listening", "addr", c.o.Listen)
		return nil
	case err := <-errc:
		cancel()
		return err
	}
}

// Status is what the last round wrote and the resolver's counters (see
// service.Reconciler).
func (c *dnsService) Status() service.Status {
	st := c.last
	if c.stopServer != nil {
		s := c.r.Stats()
		st.Resolver = &s
	}
	summary := st.Mode + ", servers from " + st.Source
	if st.Resolver != nil && st.Resolver.UpstreamDown {
		summary += "; UPSTREAM DOWN, serving from cache"
	}
	return service.Status{Ready: true, Summary: summary, Detail: st}
}
