package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"gatehouse/dnsclient"
	"gatehouse/layout"
	"gatehouse/service"
	"gatehouse/services/admin"
	"gatehouse/services/admin/web"
	clustersvc "gatehouse/services/cluster"
	"gatehouse/services/dnscache"
	"gatehouse/services/firewall"
	"gatehouse/services/network"
	"gatehouse/services/nrpe"
	"gatehouse/services/ntp"
	"gatehouse/services/relay"
	snmpsvc "gatehouse/services/snmp"
	"gatehouse/services/sshd"
	"gatehouse/services/syslog"

	"golang.org/x/sys/unix"
)

// cmdService runs one of the appliance's services. The supervisor starts
// them as `gatehouse service NAME --config FILE --run DIR`; SIGTERM stops
// one, SIGHUP has it re-read the config.
func cmdService(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return &exitError{2, errors.New("usage: gatehouse service network|dns|ntp|firewall|ssh|smtp|nrpe|snmp|syslog|admin|cluster --config FILE --run DIR")}
	}
	name := args[0]
	fs := flag.NewFlagSet("service "+name, flag.ContinueOnError)
	cfg := fs.String("config", "", "config file")
	run := fs.String("run", "", "run directory shared by the services")
	onAppliance := fs.Bool("appliance", false, "running under PID 1: own /etc/resolv.conf and the clock")
	dnsListen := fs.String("dns-listen", "127.0.0.1:53", "address of the built-in resolver")
	ntpPoll := fs.Duration("ntp-min-poll", ntp.MinPoll, "shortest NTP poll interval")
	clusterSkew := fs.Duration("cluster-clock-skew", 0, "tests only: the cluster node shows others its clock shifted by this")
	if err := fs.Parse(args[1:]); err != nil {
		return &exitError{code: 2}
	}
	if *cfg == "" || *run == "" {
		return &exitError{2, errors.New("gatehouse service: --config and --run are required")}
	}
	// A reload (SIGHUP) may come while the service waits at its gate: it
	// must not end it (the default), and is taken once through.
	reload := make(chan struct{}, 1)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, unix.SIGHUP)
	// Started early by the supervisor: wait here until what the service
	// needs is there (the firewall's default deny, netfilter).
	if err := service.AwaitGate(); errors.Is(err, service.ErrNotReleased) {
		return nil
	} else if err != nil {
		return err
	}
	// The supervisor timestamps and labels each line; the service adds
	// only level, message and attributes.
	log := slog.New(slog.NewTextHandler(stdout, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM, unix.SIGINT)
	defer stop()
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	n := service.NewNotifier()
	paths := layout.For(*run, *onAppliance)
	switch name {
	case "network":
		return network.Run(ctx, network.Options{Config: *cfg, RunDir: *run, Log: log, Notify: n, Reload: reload})
	case "dns":
		return dnscache.Run(ctx, dnscache.Options{Config: *cfg, RunDir: *run, ResolvConf: paths.ResolvConf(), Listen: *dnsListen, Log: log, Notify: n, Reload: reload})
	case "ssh":
		return sshd.Run(ctx, sshd.Options{Config: *cfg, KeyDir: paths.SSHKeys(), Control: paths.ControlSocket(), ResolvConf: paths.ResolvConf(),
			Log: log, Notify: n, Reload: reload})
	case "smtp":
		if err := noNewPrivs(); err != nil {
			return fmt.Errorf("smtp: %w", err)
		}
		if os.Geteuid() == 0 {
			log.Warn("the relay runs as root: started through `gatehouse run` as root or by PID 1 it runs as " + relay.RelayUser)
		}
		p := relay.PathsFor(*run, *onAppliance)
		return relay.Run(ctx, relay.Options{Config: *cfg, QueueDir: p.Queue, TLSDir: p.TLS, ResolvConf: p.ResolvConf, MTASTSDir: p.MTASTS, TLSRPTDir: p.TLSRPT, OAuthDir: p.OAuth,
			Socket: p.Socket, Log: log, Notify: n, Reload: reload})
	case "firewall":
		return firewall.Run(ctx, firewall.Options{Config: *cfg, Socket: paths.FirewallSocket(), ResolvConf: paths.ResolvConf(), Log: log, Notify: n, Reload: reload})
	case "nrpe":
		// Root, for PID 1's control socket (root's only), where every
		// answer is read; it executes nothing, and nothing it could exec
		// gains privileges.
		if err := noNewPrivs(); err != nil {
			return fmt.Errorf("nrpe: %w", err)
		}
		src := nrpe.HostSources(paths.ControlSocket(), paths.RelaySocket(), paths.ClusterSocket(), dnsclient.New(paths.ResolvConf()))
		return nrpe.Run(ctx, nrpe.Options{Config: *cfg, TLSDir: paths.NRPE(), ResolvConf: paths.ResolvConf(), Version: version,
			Sources: src, Log: log, Notify: n, Reload: reload})
	case "snmp":
		if err := noNewPrivs(); err != nil {
			return fmt.Errorf("snmp: %w", err)
		}
		return snmpsvc.Run(ctx, snmpsvc.Options{Config: *cfg, StateDir: paths.SNMP(), Control: paths.ControlSocket(), Cluster: paths.ClusterSocket(), DataDir: paths.Data(),
			ResolvConf: paths.ResolvConf(), Version: version, Log: log, Notify: n, Reload: reload})
	case "syslog":
		if err := noNewPrivs(); err != nil {
			return fmt.Errorf("syslog: %w", err)
		}
		return syslog.Run(ctx, syslog.Options{Config: *cfg, Control: paths.ControlSocket(), Log: log, Notify: n, Reload: reload})
	case "admin":
		// Root, for PID 1's control socket; it executes nothing.
		if err := noNewPrivs(); err != nil {
			return fmt.Errorf("admin: %w", err)
		}
		return admin.Run(ctx, admin.Options{Config: *cfg, Paths: paths, Static: web.Static(), Log: log, Notify: n, Reload: reload})
	case "cluster":
		if err := noNewPrivs(); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		return clustersvc.Run(ctx, clustersvc.Options{Config: *cfg, Dir: paths.Cluster(), DataDir: paths.Data(), Socket: paths.ClusterSocket(),
			Control: paths.ControlSocket(), Version: version, ClockSkew: *clusterSkew, Log: log, Notify: n, Reload: reload})
	case "ntp":
		return ntp.Run(ctx, ntp.Options{Config: *cfg, RunDir: *run, SetClock: *onAppliance, MinPoll: max(*ntpPoll, time.Second), Log: log, Notify: n, Reload: reload})
	}
	return &exitError{2, fmt.Errorf("unknown service %q", name)}
}

// noNewPrivs makes sure that nothing the service might exec gains
// privileges (set-user-ID files, file capabilities). The flag is a
// thread's: it is set on every thread of the process.
func noNewPrivs() error {
	if _, _, e := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		return fmt.Errorf("set no_new_privs: %w", e)
	}
	return nil
}
