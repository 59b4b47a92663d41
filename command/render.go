package command

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"gatehouse/control"
	"gatehouse/status"
)

// detail is the detail a service sent, if it sent one that decodes.
func detail[T any](st control.Status, service string) (T, bool) {
	v, ok, err := status.Detail[T](st.Services, service)
	return v, ok && err == nil
}

// WriteStatus prints a status for people (`status` in text).
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
	if st.ConfirmBy != nil {
		fmt.Fprintf(w, "  applied: rolled back unless confirmed within %s (by %s)\n",
			time.Until(*st.ConfirmBy).Round(time.Second), st.ConfirmBy.Format(time.RFC3339))
	}
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
	if f := st.Firmware; f != nil {
		trial := ""
		if f.Trial {
			trial = ", ON TRIAL"
		}
		def := f.DefaultSlot
		if def == "" {
			def = "not known yet"
		}
		fmt.Fprintf(w, "firmware: slot %s (%s), default slot %s%s\n", f.Slot, f.Version, def, trial)
		if f.Update != nil {
			fmt.Fprintf(w, "  %s\n", f.Update)
		}
		if f.Problem != "" {
			fmt.Fprintf(w, "  problem: %s\n", f.Problem)
		}
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
	keys := make([]string, 0, len(n.Problems))
	for k := range n.Problems {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  problem: %s: %s\n", k, n.Problems[k])
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
