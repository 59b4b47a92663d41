package command

import (
	"errors"
	"fmt"
	"io"
	"time"

	"gatehouse/control"
	"gatehouse/layout"
	"gatehouse/sockrpc"
	"gatehouse/status"
)

func firewall(e *Env, args []string) error {
	pos, err := e.parse("firewall", args, nil)
	if err != nil {
		return err
	}
	if len(pos) > 1 || len(pos) == 1 && pos[0] != "show" {
		return e.usage("firewall")
	}
	st, err := e.Appliance.Status()
	if err != nil {
		return err
	}
	if !WriteFirewall(e.Out, st, e.Paths) {
		return errors.New("no firewall is running (host mode runs it only with --firewall)")
	}
	return nil
}

// WriteFirewall prints what the firewall service installed: what it meant
// to, from its status, then what the kernel enforces, read back. It
// reports false if the firewall service has not reported.
func WriteFirewall(w io.Writer, st control.Status, p layout.Paths) bool {
	f, ok := detail[status.Firewall](st, "firewall")
	if !ok {
		return false
	}
	if f.Ruleset == "config" {
		fmt.Fprintf(w, "firewall: %s, applied %s ago (%d times), egress %s\n", f.Backend,
			time.Since(f.Applied).Round(time.Second), f.Applies, f.Egress)
	} else {
		fmt.Fprintf(w, "firewall: %s\n", f.Summary())
	}
	if f.LastError != "" {
		fmt.Fprintf(w, "  ERROR: %s\n", f.LastError)
	}
	fmt.Fprintf(w, "  dropped: in %d packets (%d bytes), out %d packets (%d bytes)\n",
		f.Drops.In.Packets, f.Drops.In.Bytes, f.Drops.Out.Packets, f.Drops.Out.Bytes)
	if f.DropsError != "" {
		fmt.Fprintf(w, "  drop counters not read: %s\n", f.DropsError)
	}
	fmt.Fprintln(w, "  inbound (default drop; replies, loopback and essential ICMP pass):")
	for _, r := range f.In {
		fmt.Fprintf(w, "    %s\n", r)
	}
	if f.Egress == "restricted" {
		fmt.Fprintln(w, "  outbound (default drop):")
		for _, r := range f.Out {
			fmt.Fprintf(w, "    %s\n", r)
		}
	}
	if rules, err := installedRules(p, f.Backend); err != nil {
		fmt.Fprintf(w, "\ninstalled: cannot read back: %v\n", err)
	} else {
		fmt.Fprintf(w, "\ninstalled (%s, read back from the kernel):\n%s", f.Backend, rules)
	}
	return true
}

// installedRules asks the firewall service for the ruleset the kernel
// enforces. PID 1 runs no firewall tool itself: the iptables backend
// execs iptables-save, whose exit status PID 1's reaper would take from
// under exec's Wait.
func installedRules(p layout.Paths, backend string) (string, error) {
	var r status.FirewallRules
	err := sockrpc.Call(p.FirewallSocket(), 30*time.Second, status.FirewallRequest{Verb: "show"}, &r)
	if err != nil {
		return "", fmt.Errorf("firewall service: %w", err)
	}
	return r.Rules, nil
}
