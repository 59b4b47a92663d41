// Package pid1 is the appliance's init: as PID 1 it mounts, loads modules,
// finds the data disk, sets the host name and brings up loopback; in PID 1
// and in host mode alike it then loads the config, supervises the services,
// serves the control socket and the console, and shuts down in order.
package pid1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/config"
	"gatehouse/console"
	"gatehouse/control"
	"gatehouse/dnsclient"
	"gatehouse/init/kmsg"
	"gatehouse/init/logring"
	"gatehouse/init/reaper"
	"gatehouse/init/supervisor"
	"gatehouse/layout"
	"gatehouse/netcfg"
	"gatehouse/safeio"
	"gatehouse/services/firewall"
	"gatehouse/status"

	"golang.org/x/sys/unix"
)

// Options say how to run.
type Options struct {
	Version    string
	Built      int64 // the build's commit time (unix seconds): bundles older than it are downgrades
	PID1       bool
	ConfigPath string    // host mode: the config file; PID 1: found on /data or in the image
	StateDir   string    // host mode: where state and the control socket live
	Console    io.Reader // where the diagnostics shell reads; nil for none
	Out        io.Writer // the console: boot steps, the ready line, the shell
	Started    time.Time // when the process started
	// Binary is the gatehouse binary the services run from (`gatehouse
	// service NAME`); empty: run no services (tests of PID 1 itself).
	Binary      string
	ServiceArgs []string // extra arguments for every service (host-mode tests)
	// Firewall enforces the firewall in host mode too; PID 1 always does.
	// Off by default, so that `gatehouse run` on a workstation does not
	// firewall the workstation.
	Firewall bool
	// RelayID is who the relay runs as when this process is root; nil:
	// DefaultRelayID.
	RelayID *RelayID
}

// Config files PID 1 looks for, in order; the built-in default comes last.
var pid1Configs = []string{"/data/gatehouse.yaml", "/etc/gatehouse/gatehouse.yaml"}

// appliance is the running system; it is the control.Backend.
type appliance struct {
	opts  Options
	log   *slog.Logger
	out   *console.LogHandler
	paths layout.Paths // the run directory shared with the services: their config copy, sockets, network.json

	mu       sync.Mutex // guards the config: Reload replaces it
	cfg      *config.Config
	cfgFrom  string
	warnings []string

	applyMu sync.Mutex  // commit-confirm
	pending *time.Timer // the rollback of an unconfirmed apply
	// confirmBy is when the pending rollback comes (status shows it
	// without waiting for applyMu, which an apply holds through a reload).
	confirmBy atomic.Pointer[time.Time]

	data      dataDisk
	modules   *modules      // nil in host mode
	kernelLog *logring.Ring // nil in host mode
	initLog   *initLines    // PID 1's own log
	feed      *logring.Feed // every service's, PID 1's and the kernel's lines, for the syslog service
	reaper    *reaper.Reaper
	sup       *supervisor.Supervisor
	readyMS   atomic.Int64
	shutdown  chan string

	shutdownOnce sync.Once

	fw       firmware    // the A/B slots and the last update
	stopping atomic.Bool // a shutdown was asked for: a trial is not judged any more
}

// Run boots (in PID 1) and runs the appliance until a shutdown is asked for.
// It returns the action asked for: "poweroff", "reboot" or, in host mode,
// "exit". An error means nothing could be started.
func Run(opts Options) (string, error) {
	var mountErr error
	if opts.PID1 {
		mountErr = mountAll(earlyMounts)
		if ago, ok := execOffset(); ok {
			opts.Started = time.Now().Add(-ago)
		}
	}
	h := console.NewLogHandler(opts.Out, opts.Started, slog.LevelInfo)
	feed := &logring.Feed{}
	il := newInitLines(feed)
	a := &appliance{opts: opts, out: h, log: slog.New(slog.NewMultiHandler(h, initHandler(il, slog.LevelInfo))),
		initLog: il, feed: feed, shutdown: make(chan string, 1), paths: layout.Appliance()}
	a.fw.known = make(chan struct{})
	if !opts.PID1 {
		a.fw.settled() // host mode has no slots
	}
	if !opts.PID1 {
		a.paths = layout.Host(opts.StateDir)
	}
	step := a.log.With("subsystem", "init")
	if opts.PID1 {
		if mountErr != nil {
			step.Error("mounting pseudo file systems", "err", mountErr)
		}
		step.Info("mounted /proc /sys /dev /dev/pts /run /tmp")
		protectLinks(step)
		// Ctrl-Alt-Del sends PID 1 SIGINT instead of rebooting at once.
		unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGUSR2)
	defer signal.Stop(sigs)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a.reaper = reaper.New(a.log)
	if !opts.PID1 {
		if err := reaper.BecomeSubreaper(); err != nil {
			step.Warn("orphans of services will not be reaped here", "err", err)
		}
	}
	go a.reaper.Run(ctx)
	// A service's lines are its own in the feed and in its ring: on the
	// console only, not again as PID 1's.
	sup, err := supervisor.New(supervisor.Options{Reaper: a.reaper, Log: a.log, Echo: slog.New(h), Feed: a.feed})
	if err != nil {
		return "", err
	}
	a.sup = sup
	if opts.PID1 {
		a.kernelLog = logring.New(1000)
		go guard(a.log, "kernel log", func() {
			if err := kmsg.Follow(ctx, a.kernelLog, a.feed); err != nil {
				step.Warn("kernel log", "err", err)
			}
		})
		loUp := make(chan error, 1) // loopback needs nothing else
		go func() { loUp <- netcfg.LoopbackUp() }()
		blockDrivers := make(chan struct{})
		if mods, err := openModules(); err != nil {
			step.Warn("kernel modules", "err", err)
			close(blockDrivers)
		} else {
			mods.load(step)
			a.modules = mods
			blockDrivers = mods.data
			go func() {
				<-mods.netfilter
				sup.SetCondition(NetfilterLoaded)
				<-mods.done
				sup.SetCondition(ModulesLoaded)
			}()
		}
		a.data = mountData(blockDrivers, 2*time.Second)
		a.reportData(step)
		a.rollbackAtStart()
		if err := a.loadConfig(step); err != nil {
			return "", err // not reached: PID 1 falls back to the built-in default
		}
		// After the config: a trial boot is judged by its update section.
		go guard(a.log, "firmware", func() { a.startFirmware(ctx, step) })
		if err := unix.Sethostname([]byte(a.cfg.Hostname)); err != nil {
			step.Error("set host name", "err", err)
		}
		if err := <-loUp; err != nil {
			step.Error("loopback", "err", err)
		}
		step.Info("host name set, loopback up", "hostname", a.cfg.Hostname)
	} else {
		a.rollbackAtStart()
		if err := a.loadConfig(step); err != nil {
			sup.Stop(context.Background())
			return "", err
		}
	}
	if err := sup.Add(a.services()...); err != nil {
		step.Error("services", "err", err)
	}

	go guard(a.log, "control socket", func() {
		if err := control.Serve(ctx, a.paths.ControlSocket(), a, a.log); err != nil {
			step.Error("control socket", "err", err)
		}
	})
	go guard(a.log, "ready watch", func() { a.watchReady(ctx) })
	if opts.Console != nil {
		sh := &console.Shell{Backend: a, In: opts.Console, Out: h, Paths: a.paths}
		go guard(a.log, "console", func() { sh.Run(ctx) })
	}

	action := a.waitForShutdown(sigs)
	step.Info("shutting down", "action", action)
	a.mu.Lock()
	timeout := a.cfg.Shutdown.Timeout.Duration
	a.mu.Unlock()
	stopCtx, stopCancel := context.WithTimeout(context.Background(), timeout)
	sup.Stop(stopCtx)
	stopCancel()
	if opts.PID1 {
		a.killRemaining(step)
		if a.data.mounted {
			if err := unmountData(); err != nil {
				step.Error("data disk", "err", err)
			} else {
				fmt.Fprintln(h, "gatehouse: /data unmounted cleanly")
			}
		}
		unix.Sync()
	}
	return action, nil
}

func (a *appliance) reportData(log *slog.Logger) {
	d := a.data
	switch {
	case d.mounted && !d.readOnly:
		log.Info("data disk mounted on /data", "device", d.device)
	default:
		// Loud: an appliance without its data disk keeps no queue, no keys
		// and no config across a reboot.
		banner := strings.Repeat("!", 72)
		fmt.Fprintf(a.out, "%s\nWARNING: /data is READ-ONLY: %s\nNothing will be kept across a reboot. Attach a disk labelled %s.\n%s\n",
			banner, d.problem, DataLabel, banner)
	}
}

// loadConfig reads the config. In PID 1 an invalid file is reported and the
// next candidate is used, so the appliance always boots to a console; in host
// mode an invalid file is an error.
func (a *appliance) loadConfig(log *slog.Logger) error {
	var warnings []string
	for _, path := range a.candidates() {
		cfg, warns, err := config.Load(path)
		if errors.Is(err, os.ErrNotExist) && a.opts.PID1 {
			continue
		}
		if err != nil {
			if !a.opts.PID1 {
				return err
			}
			log.Error("config is invalid; ignoring it", "file", path)
			for _, line := range strings.Split(err.Error(), "\n") {
				fmt.Fprintf(a.out, "  %s\n", line)
			}
			warnings = append(warnings, path+" is invalid and was ignored")
			continue
		}
		return a.useConfig(cfg, path, warns, warnings, log)
	}
	return a.useConfig(config.Default(), config.DefaultName, nil, warnings, log)
}

func (a *appliance) candidates() []string {
	if a.opts.PID1 {
		return pid1Configs
	}
	return []string{a.opts.ConfigPath}
}

// useConfig makes cfg the running config, and copies it to the run
// directory, where the services read it: they always see the one that
// PID 1 validated.
func (a *appliance) useConfig(cfg *config.Config, from string, warns []*config.Error, warnings []string, log *slog.Logger) error {
	data := config.DefaultYAML()
	if from != config.DefaultName {
		var err error
		if data, err = os.ReadFile(from); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(a.paths.Run, 0o755); err != nil {
		return err
	}
	if err := safeio.WriteFile(a.runtimeConfig(), data, 0o600); err != nil {
		return fmt.Errorf("runtime config: %w", err)
	}
	for _, w := range warns {
		warnings = append(warnings, w.Error())
		log.Warn(w.Error())
	}
	a.mu.Lock()
	a.cfg, a.cfgFrom, a.warnings = cfg, from, warnings
	a.mu.Unlock()
	log.Info("config loaded", "file", from)
	return nil
}

func (a *appliance) runtimeConfig() string { return a.paths.Config() }

// resolver looks host names up as the firewall service does: the dns
// service's servers, then /etc/hosts and the system's way.
func (a *appliance) resolver() config.Resolver {
	return dnsclient.New(a.paths.ResolvConf())
}

// Reload implements control.Backend: it reads the config again and, if it
// is valid, has every service converge to it. An invalid file changes
// nothing.
func (a *appliance) Reload() error { return a.reload(true) }

// reload re-reads the config file and hands it to the services. With
// resolve, the firewall's host names must resolve, as for an apply.
func (a *appliance) reload(resolve bool) error {
	log := a.log.With("subsystem", "init")
	path := ""
	for _, p := range a.candidates() {
		if _, err := os.Stat(p); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		return fmt.Errorf("no config file to reload (looked for %s)", strings.Join(a.candidates(), ", "))
	}
	load := config.Load
	if resolve {
		load = func(path string) (*config.Config, []*config.Error, error) {
			return config.LoadResolved(context.Background(), path, a.resolver())
		}
	}
	cfg, warns, err := load(path)
	if err != nil {
		return err
	}
	if err := a.useConfig(cfg, path, warns, nil, log); err != nil {
		return err
	}
	if a.opts.PID1 {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			log.Error("set host name", "err", err)
		}
	}
	a.grantRelay(log)
	a.sup.SignalAll(unix.SIGHUP)
	// A section turned on (ssh, smtp) starts its service now; one turned
	// off is the service's to handle (it stops serving).
	have := map[string]bool{}
	for _, st := range a.sup.Snapshot() {
		have[st.Name] = true
	}
	var added []supervisor.Service
	for _, svc := range a.services() {
		if !have[svc.Name] {
			added = append(added, svc)
		}
	}
	if len(added) > 0 {
		if err := a.sup.Add(added...); err != nil {
			log.Error("start services the new config asks for", "err", err)
		}
		for _, svc := range added {
			log.Info("service started by the new config", "service", svc.Name)
		}
	}
	log.Info("config reloaded; services told", "file", path)
	return nil
}

// services are what the config asks for. Each subsystem that runs as a
// service (network, dns, ntp, firewall, ssh, smtp, nrpe, snmp) is listed here, as
// this binary started with its own verb, so that a crash in one never
// takes down PID 1 or the others.
func (a *appliance) services() []supervisor.Service {
	if a.opts.Binary == "" {
		return nil
	}
	svc := func(name string) supervisor.Service {
		args := []string{a.opts.Binary, "service", name, "--config", a.runtimeConfig(), "--run", a.paths.Run}
		if a.opts.PID1 {
			args = append(args, "--appliance")
		}
		return supervisor.Service{Name: name, Command: append(args, a.opts.ServiceArgs...), Notify: true, Gated: true}
	}
	netsvc := svc("network")
	a.mu.Lock()
	vlans := slices.ContainsFunc(a.cfg.Interfaces, func(i config.Interface) bool { return len(i.VLANs) > 0 })
	a.mu.Unlock()
	if a.modules != nil && vlans {
		// VLANs need 8021q: configure links once the modules are in.
		netsvc.After = []string{ModulesLoaded}
	}
	// dns and ntp follow what network publishes whenever it comes: they
	// need not wait for it, and all three start at once.
	svcs := []supervisor.Service{netsvc, svc("dns"), svc("ntp")}
	a.mu.Lock()
	cfg := a.cfg
	a.mu.Unlock()
	// The services a section of the config turns on. The relay runs as
	// its own user; nrpe, snmp, syslog, admin and cluster as root because PID 1's
	// status and log feed are on the control socket, which answers root
	// only (each sets no_new_privs and executes nothing).
	for _, o := range []struct {
		name string
		on   bool
	}{
		{"ssh", cfg.SSHEnabled()}, {"smtp", cfg.SMTPEnabled()},
		{"nrpe", cfg.NRPEEnabled()}, {"snmp", cfg.SNMPEnabled()}, {"syslog", cfg.SyslogEnabled()},
		{"admin", cfg.AdminEnabled()}, {"cluster", cfg.ClusterEnabled()},
	} {
		switch {
		case !o.on:
		case o.name == "smtp":
			svcs = append(svcs, a.withRelayUser(svc(o.name)))
		default:
			svcs = append(svcs, svc(o.name))
		}
	}
	if a.opts.PID1 || a.opts.Firewall {
		// Nothing faces the network before the firewall's default deny is
		// in, and nothing listens on it before the config's full ruleset
		// is. Should the firewall never get that far, what it did put in
		// stays, and the services wait: closed, with the console usable.
		for i := range svcs {
			if slices.Contains(underDefaultDeny, svcs[i].Name) {
				svcs[i].After = append(svcs[i].After, firewall.DefaultDenyCondition)
			} else {
				svcs[i].Needs = append(svcs[i].Needs, "firewall")
			}
		}
		fw := svc("firewall")
		if a.modules != nil {
			fw.After = []string{NetfilterLoaded}
		}
		svcs = append([]supervisor.Service{fw}, svcs...)
	}
	return svcs
}

// The services that start under the firewall's boot-time default deny: they
// configure the links or only ask out (dns listens on loopback alone), and
// the config's ruleset may need them (DHCP, host names to look up). Every
// other service waits for the config's full ruleset, a service added later
// included, so that nothing listens on the network unfiltered.
var underDefaultDeny = []string{"network", "dns", "ntp"}

// watchReady prints the ready line once every service is up, and says what
// it is waiting for if that takes long.
func (a *appliance) watchReady(ctx context.Context) {
	slow := time.NewTimer(30 * time.Second)
	defer slow.Stop()
	for {
		select {
		case <-a.sup.Ready():
			ms := a.sinceStart().Milliseconds()
			a.readyMS.Store(ms)
			fmt.Fprintf(a.out, "gatehouse: ready in %d ms\n", ms)
			return
		case <-slow.C:
			var waiting []string
			for _, s := range a.sup.Snapshot() {
				if s.Phase != status.Running {
					waiting = append(waiting, s.Name+" ("+string(s.Phase)+")")
				}
			}
			a.log.Warn("not ready after 30s", "subsystem", "init", "waiting_for", strings.Join(waiting, ", "))
		case <-ctx.Done():
			return
		}
	}
}

// sinceStart is the time since the process started (for PID 1: since the
// kernel ran /init).
func (a *appliance) sinceStart() time.Duration { return time.Since(a.opts.Started) }

func (a *appliance) waitForShutdown(sigs <-chan os.Signal) string {
	for {
		select {
		case action := <-a.shutdown:
			return action
		case sig := <-sigs:
			if !a.opts.PID1 {
				return "exit"
			}
			// busybox init's conventions: TERM reboots, USR2 powers off,
			// INT is Ctrl-Alt-Del.
			switch sig {
			case unix.SIGUSR2:
				return "poweroff"
			case unix.SIGTERM, unix.SIGINT:
				return "reboot"
			}
		}
	}
}

// killRemaining ends whatever is left once the services have stopped.
// kill(-1) spares PID 1 itself; it is only ever called as PID 1.
func (a *appliance) killRemaining(log *slog.Logger) {
	if userProcesses() == 0 {
		return
	}
	unix.Kill(-1, unix.SIGTERM)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if userProcesses() == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	log.Warn("processes left after SIGTERM; killing them", "count", userProcesses())
	unix.Kill(-1, unix.SIGKILL)
	for range 50 {
		if userProcesses() == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Status implements control.Backend.
func (a *appliance) Status() control.Status {
	host, _ := os.Hostname()
	mode := "host"
	if a.opts.PID1 {
		mode = "pid1"
	}
	a.mu.Lock()
	from, warnings := a.cfgFrom, a.warnings
	a.mu.Unlock()
	st := control.Status{
		Version: a.opts.Version, Hostname: host, Mode: mode,
		StartedAt: a.opts.Started, UptimeS: a.sinceStart().Seconds(),
		ReadyMS: a.readyMS.Load(), Config: from, Warnings: warnings, Conditions: a.sup.Conditions(),
		Data:     control.Data{Path: "/data", Mounted: a.data.mounted, Device: a.data.device, ReadOnly: a.data.readOnly, Problem: a.data.problem},
		Orphans:  a.reaper.Orphans(),
		Services: a.sup.Snapshot(),
	}
	st.Ready = st.ReadyMS > 0
	st.ConfirmBy = a.confirmBy.Load()
	st.Firmware = a.firmwareStatus()
	if !a.opts.PID1 {
		st.Data = control.Data{Path: a.opts.StateDir, Mounted: true}
	}
	return st
}

// Conditions PID 1 sets as the image's kernel modules load: netfilter's
// first (the firewall waits for them), then all.
const (
	NetfilterLoaded = "netfilter-loaded"
	ModulesLoaded   = "modules-loaded"
)

// KernelLog is the name under which Logs serves the kernel's log.
const KernelLog = "kernel"

// Logs implements control.Backend.
func (a *appliance) Logs(service string, n int) ([]string, error) {
	if service == KernelLog && a.kernelLog != nil {
		return a.kernelLog.Last(n), nil
	}
	if service == InitLog {
		return a.initLog.ring.Last(n), nil
	}
	return a.sup.Logs(service, n)
}

// Follow implements control.Follower: the log feed the syslog service
// forwards.
func (a *appliance) Follow(since uint64) (*logring.Subscription, error) {
	return a.feed.Subscribe(since)
}

// Shutdown implements control.Backend: it asks for the shutdown and returns;
// the main loop carries it out.
func (a *appliance) Shutdown(action string) error {
	if action != "poweroff" && action != "reboot" {
		return fmt.Errorf("unknown shutdown action %q", action)
	}
	if !a.opts.PID1 {
		action = "exit"
	}
	a.stopping.Store(true)
	a.shutdownOnce.Do(func() { a.shutdown <- action })
	return nil
}

// guard runs f, turning a panic into a log line: no goroutine of PID 1 may
// take the process (and with it the kernel) down.
func guard(log *slog.Logger, what string, f func()) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("recovered from panic", "subsystem", "init", "in", what, "panic", fmt.Sprint(r))
		}
	}()
	f()
}
