// Package console is the diagnostics shell of the serial console (and later
// of the SSH shell), and the log format the console shows during boot.
package console

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"gatehouse/control"
	"gatehouse/layout"
	"gatehouse/netcfg"
	"gatehouse/queue"
	"gatehouse/services/relay"
	"gatehouse/status"

	"github.com/miekg/dns"
	"github.com/u-root/u-root/pkg/rtc"
)

// Prompt is what the shell prints when it waits for a command.
const Prompt = "gatehouse> "

// Shell reads commands from In and answers on Out.
type Shell struct {
	Backend control.Backend
	In      io.Reader
	Out     io.Writer
	// RelaySocket is the mail relay's socket, for the queue command;
	// empty: the appliance's.
	RelaySocket string
}

type command struct {
	name string
	args string
	help string
	run  func(s *Shell, args []string) error
}

// table is the whole command set, in the order help lists it. (A function,
// not a variable, because help itself reads it.)
func table() []command {
	return []command{
		{"help", "", "list the commands", (*Shell).help},
		{"status", "", "version, uptime, data disk and every service's state", (*Shell).status},
		{"logs", "SERVICE [N]", "the last N (default 50) output lines of a service (kernel: the kernel log)", (*Shell).logs},
		{"ip", "", "interfaces, addresses and routes", (*Shell).ip},
		{"dns", "NAME [TYPE]", "look NAME up (A, AAAA, MX, ...) as the relay would", (*Shell).dns},
		{"ntp", "", "time servers, offset and sync state", (*Shell).ntp},
		{"date", "", "the system clock and the RTC, in UTC", (*Shell).date},
		{"firewall", "", "the rules the firewall installed", (*Shell).firewall},
		{"queue", "[show ID|flush|hold ID|release ID|delete ID]", "the mail queue, like mailq; or act on it", (*Shell).queue},
		{"fetch", "[now [ACCOUNT]]", "the collector's accounts; or poll now", (*Shell).fetch},
		{"reload", "", "read the config again and apply it", (*Shell).reload},
		{"poweroff", "", "stop all services and power off", shutdownCmd("poweroff")},
		{"reboot", "", "stop all services and reboot", shutdownCmd("reboot")},
	}
}

// Run serves until In ends or ctx is done. Nothing is printed until the
// first line is read: pressing Enter on a busy boot console brings up the
// prompt.
func (s *Shell) Run(ctx context.Context) error {
	lines := make(chan string)
	errc := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(s.In)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
		errc <- sc.Err()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return err
		case line := <-lines:
			s.Exec(line)
			fmt.Fprint(s.Out, Prompt)
		}
	}
}

// Exec runs one command line.
func (s *Shell) Exec(line string) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return
	}
	for _, c := range table() {
		if c.name == f[0] {
			if err := c.run(s, f[1:]); err != nil {
				fmt.Fprintf(s.Out, "%s: %v\n", f[0], err)
			}
			return
		}
	}
	fmt.Fprintf(s.Out, "unknown command %q; try help\n", f[0])
}

func (s *Shell) help(_ []string) error {
	for _, c := range table() {
		fmt.Fprintf(s.Out, "  %-22s %s\n", strings.TrimSpace(c.name+" "+c.args), c.help)
	}
	return nil
}

func (s *Shell) status(_ []string) error {
	WriteStatus(s.Out, s.Backend.Status())
	return nil
}

func (s *Shell) logs(args []string) error {
	if len(args) == 0 || len(args) > 2 {
		return fmt.Errorf("usage: logs SERVICE [N]")
	}
	n := 50
	if len(args) == 2 {
		v, err := strconv.Atoi(args[1])
		if err != nil || v <= 0 {
			return fmt.Errorf("%q is not a positive number", args[1])
		}
		n = v
	}
	lines, err := s.Backend.Logs(args[0], n)
	if err != nil {
		return err
	}
	for _, l := range lines {
		fmt.Fprintln(s.Out, l)
	}
	return nil
}

func (s *Shell) ip(_ []string) error { return netcfg.Describe(s.Out) }

func (s *Shell) ntp(_ []string) error {
	st := s.Backend.Status()
	if _, ok := detail[status.NTP](st, "ntp"); !ok {
		return fmt.Errorf("the ntp service has not reported yet")
	}
	writeNTP(s.Out, st)
	return nil
}

func (s *Shell) date(_ []string) error {
	fmt.Fprintf(s.Out, "system: %s\n", time.Now().UTC().Format(time.RFC3339Nano))
	r, err := rtc.OpenRTC()
	if err != nil {
		fmt.Fprintf(s.Out, "rtc:    unavailable (%v)\n", err)
		return nil
	}
	defer r.Close()
	t, err := r.Read()
	if err != nil {
		fmt.Fprintf(s.Out, "rtc:    unreadable (%v)\n", err)
		return nil
	}
	fmt.Fprintf(s.Out, "rtc:    %s\n", t.UTC().Format(time.RFC3339))
	return nil
}

func (s *Shell) firewall(_ []string) error {
	if !WriteFirewall(s.Out, s.Backend.Status()) {
		return fmt.Errorf("the firewall service has not reported (host mode runs it only with --firewall)")
	}
	return nil
}

func (s *Shell) queue(args []string) error {
	sock := s.RelaySocket
	if sock == "" {
		sock = layout.Appliance().RelaySocket()
	}
	req := relay.Request{Verb: "list"}
	if len(args) > 0 {
		req.Verb = args[0]
	}
	switch {
	case req.Verb == "list" || req.Verb == "flush":
		if len(args) > 1 {
			return fmt.Errorf("usage: queue [%s]", "show ID|flush|hold ID|release ID|delete ID")
		}
	case req.Verb == "show" || req.Verb == "hold" || req.Verb == "release" || req.Verb == "delete":
		if len(args) != 2 {
			return fmt.Errorf("usage: queue %s ID", req.Verb)
		}
		req.ID = strings.TrimRight(args[1], "*!")
	default:
		return fmt.Errorf("usage: queue [show ID|flush|hold ID|release ID|delete ID]")
	}
	resp, err := relay.Call(sock, req)
	if err != nil {
		return err
	}
	switch req.Verb {
	case "list":
		queue.WriteList(s.Out, resp.List)
	case "show":
		queue.WriteInfo(s.Out, *resp.Info)
	case "flush":
		fmt.Fprintf(s.Out, "%d deferred message(s) scheduled for delivery now\n", resp.Flushed)
	default:
		fmt.Fprintf(s.Out, "%s: done\n", req.ID)
	}
	return nil
}

func (s *Shell) fetch(args []string) error {
	sock := s.RelaySocket
	if sock == "" {
		sock = layout.Appliance().RelaySocket()
	}
	if len(args) > 0 {
		if args[0] != "now" || len(args) > 2 {
			return fmt.Errorf("usage: fetch [now [ACCOUNT]]")
		}
		req := relay.Request{Verb: "fetch-now"}
		if len(args) == 2 {
			req.ID = args[1]
		}
		if _, err := relay.Call(sock, req); err != nil {
			return err
		}
		fmt.Fprintln(s.Out, "poll requested")
		return nil
	}
	resp, err := relay.Call(sock, relay.Request{Verb: "fetch-status"})
	if err != nil {
		return err
	}
	relay.WriteFetch(s.Out, resp.Detail.Fetch)
	return nil
}

func (s *Shell) reload(_ []string) error {
	if err := s.Backend.Reload(); err != nil {
		return fmt.Errorf("refused, nothing changed:\n%w", err)
	}
	fmt.Fprintln(s.Out, "config reloaded")
	return nil
}

// dns asks the resolver the relay uses: the built-in one when it runs,
// else the first server in resolv.conf.
func (s *Shell) dns(args []string) error {
	if len(args) == 0 || len(args) > 2 {
		return fmt.Errorf("usage: dns NAME [TYPE]")
	}
	qtype := dns.TypeA
	if len(args) == 2 {
		t, ok := dns.StringToType[strings.ToUpper(args[1])]
		if !ok {
			return fmt.Errorf("unknown record type %q", args[1])
		}
		qtype = t
	}
	d, ok := detail[status.DNS](s.Backend.Status(), "dns")
	if !ok {
		return fmt.Errorf("the dns service has not reported yet")
	}
	server := d.Listen
	if server == "" {
		if len(d.Servers) == 0 {
			return fmt.Errorf("no DNS servers known")
		}
		server = net.JoinHostPort(d.Servers[0], "53")
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(args[0]), qtype)
	m.SetEdns0(1232, false)
	c := &dns.Client{Timeout: 5 * time.Second}
	resp, rtt, err := c.Exchange(m, server)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.Out, ";; %s from %s in %v\n", dns.RcodeToString[resp.Rcode], server, rtt.Round(time.Microsecond))
	for _, rr := range resp.Answer {
		fmt.Fprintln(s.Out, rr.String())
	}
	return nil
}

func shutdownCmd(action string) func(*Shell, []string) error {
	return func(s *Shell, _ []string) error {
		fmt.Fprintf(s.Out, "%s: stopping services\n", action)
		return s.Backend.Shutdown(action)
	}
}

// WriteStatus prints a status for people: the console's and the CLI's
// `status` share it.
func WriteStatus(w io.Writer, st control.Status) {
	if st.Emergency != "" {
		fmt.Fprintf(w, "EMERGENCY SHELL: %s\n", st.Emergency)
	}
	ready := "not ready"
	if st.Ready {
		ready = fmt.Sprintf("ready in %d ms", st.ReadyMS)
	}
	fmt.Fprintf(w, "gatehouse %s on %s (%s), up %s, %s\n", st.Version, st.Hostname, st.Mode,
		(time.Duration(st.UptimeS * float64(time.Second))).Round(time.Second), ready)
	fmt.Fprintf(w, "config:   %s\n", st.Config)
	for _, warn := range st.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", warn)
	}
	switch {
	case st.Data.Device == "" && st.Data.Mounted: // host mode
		fmt.Fprintf(w, "data:     %s (state directory)\n", st.Data.Path)
	case st.Data.Mounted && !st.Data.ReadOnly:
		fmt.Fprintf(w, "data:     %s on %s, read-write\n", st.Data.Device, st.Data.Path)
	case st.Data.Mounted:
		fmt.Fprintf(w, "data:     %s on %s, READ-ONLY\n", st.Data.Device, st.Data.Path)
	default:
		fmt.Fprintf(w, "data:     NOT MOUNTED\n")
	}
	if st.Data.Problem != "" {
		fmt.Fprintf(w, "  problem: %s\n", st.Data.Problem)
	}
	fmt.Fprintf(w, "orphans reaped: %d\n", st.Orphans)
	if len(st.Services) == 0 {
		fmt.Fprintln(w, "services: none configured")
		return
	}
	fmt.Fprintf(w, "%-12s %-9s %7s %8s %9s  %s\n", "SERVICE", "STATE", "PID", "RESTARTS", "SINCE", "LAST EXIT / STATUS")
	for _, sv := range st.Services {
		pid := "-"
		if sv.PID != 0 {
			pid = strconv.Itoa(sv.PID)
		}
		note := sv.Status
		if sv.LastExit != "" {
			note = strings.TrimSpace("last: " + sv.LastExit + "  " + note)
		}
		fmt.Fprintf(w, "%-12s %-9s %7s %8d %9s  %s\n", sv.Name, sv.Phase, pid, sv.Restarts,
			time.Since(sv.Since).Round(time.Second), note)
	}
	if len(st.Conditions) > 0 {
		fmt.Fprintf(w, "conditions: %s\n", strings.Join(st.Conditions, " "))
	}
	writeNetwork(w, st)
	writeDNS(w, st)
	writeNTP(w, st)
	if f, ok := detail[status.Firewall](st, "firewall"); ok {
		fmt.Fprintf(w, "firewall: %s", f.Summary())
		if f.LastError != "" {
			fmt.Fprintf(w, "; ERROR: %s", f.LastError)
		}
		fmt.Fprintln(w)
	}
}
