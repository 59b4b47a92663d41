package console

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"gatehouse/control"
	"gatehouse/linuxfw"
	"gatehouse/status"
)

// detail decodes the DETAIL a service sent, if it is there.
func detail[T any](st control.Status, service string) (T, bool) {
	var v T
	for _, s := range st.Services {
		if s.Name == service && len(s.Detail) > 0 {
			return v, json.Unmarshal(s.Detail, &v) == nil
		}
	}
	return v, false
}

// writeNetwork prints links, addresses, DHCP leases and routes.
func writeNetwork(w io.Writer, st control.Status) {
	n, ok := detail[status.Network](st, "network")
	if !ok {
		return
	}
	fmt.Fprintln(w, "network:")
	for _, l := range n.Links {
		name := l.Name
		if name == "" {
			name = "-"
		}
		fmt.Fprintf(w, "  %-18s %-8s %-7s %s\n", l.Key, name, l.State, strings.Join(l.Addresses, " "))
		if d := l.DHCP; d != nil {
			line := "    dhcp " + d.State
			if d.Address != "" {
				line += fmt.Sprintf(" %s from %s, router %s, renew in %s, expires in %s, %d renewals",
					d.Address, d.Server, d.Router, until(d.Renew), until(d.Expires), d.Renewals)
			}
			if d.LastError != "" {
				line += "; last error: " + d.LastError
			}
			fmt.Fprintln(w, line)
		}
	}
	for _, r := range n.Routes {
		fmt.Fprintf(w, "  route %s\n", r)
	}
	for k, p := range n.Problems {
		fmt.Fprintf(w, "  problem: %s: %s\n", k, p)
	}
}

func until(t *time.Time) string {
	if t == nil {
		return "-"
	}
	d := time.Until(*t).Round(time.Second)
	if d < 0 {
		return "overdue"
	}
	return d.String()
}

func writeDNS(w io.Writer, st control.Status) {
	d, ok := detail[status.DNS](st, "dns")
	if !ok {
		return
	}
	fmt.Fprintf(w, "dns: %s, servers %s (from %s), resolv.conf %s\n", d.Mode, strings.Join(d.Servers, " "), d.Source, d.ResolvConf)
	if r := d.Resolver; r != nil {
		down := ""
		if r.UpstreamDown {
			down = ", UPSTREAM DOWN: answering from cache"
		}
		fmt.Fprintf(w, "  resolver %s: %d queries, %d cache hits, %d misses, %d stale answers, %d upstream failures, %d entries%s\n",
			d.Listen, r.Queries, r.CacheHits, r.CacheMisses, r.StaleServed, r.Failures, r.Entries, down)
	}
}

func writeNTP(w io.Writer, st control.Status) {
	n, ok := detail[status.NTP](st, "ntp")
	if !ok {
		return
	}
	state := "NOT SYNCED"
	if n.Synced {
		state = fmt.Sprintf("synced to %s, stratum %d, offset %v, delay %v, last sync %s ago",
			n.Server, n.Stratum, n.Offset.Round(time.Microsecond), n.RTT.Round(time.Microsecond), time.Since(n.LastSync).Round(time.Second))
	}
	sets := "sets the clock"
	if !n.SetsClock {
		sets = "measures only"
	}
	fmt.Fprintf(w, "ntp: %s; %s; poll %v; %d steps, %d slews; servers %s (from %s)\n",
		state, sets, n.Poll, n.Steps, n.Slews, strings.Join(n.Servers, " "), n.Source)
	if n.LastError != "" {
		fmt.Fprintf(w, "  last error: %s\n", n.LastError)
	}
}

// WriteFirewall prints what the firewall service installed.
func WriteFirewall(w io.Writer, st control.Status) bool {
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
	// What the kernel enforces, read back: the summary above is what the
	// service meant to install.
	b, err := linuxfw.ByName(f.Backend)
	if err == nil {
		var ruleset string
		if ruleset, err = b.Show(); err == nil {
			fmt.Fprintf(w, "\ninstalled (%s, read back from the kernel):\n%s", f.Backend, ruleset)
		}
	}
	if err != nil {
		fmt.Fprintf(w, "\ninstalled: cannot read back: %v\n", err)
	}
	return true
}
