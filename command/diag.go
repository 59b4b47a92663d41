package command

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/u-root/u-root/pkg/rtc"

	"gatehouse/netcfg"
	"gatehouse/status"
)

func ip(e *Env, args []string) error {
	if _, err := e.parse("ip", args, nil); err != nil {
		return err
	}
	return netcfg.Describe(e.Out)
}

func ntp(e *Env, args []string) error {
	if _, err := e.parse("ntp", args, nil); err != nil {
		return err
	}
	st, err := e.Appliance.Status()
	if err != nil {
		return err
	}
	if _, ok := detail[status.NTP](st, "ntp"); !ok {
		return fmt.Errorf("the ntp service has not reported yet")
	}
	writeNTP(e.Out, st)
	return nil
}

func date(e *Env, args []string) error {
	if _, err := e.parse("date", args, nil); err != nil {
		return err
	}
	fmt.Fprintf(e.Out, "system: %s\n", time.Now().UTC().Format(time.RFC3339Nano))
	r, err := rtc.OpenRTC()
	if err != nil {
		fmt.Fprintf(e.Out, "rtc:    unavailable (%v)\n", err)
		return nil
	}
	defer r.Close()
	t, err := r.Read()
	if err != nil {
		fmt.Fprintf(e.Out, "rtc:    unreadable (%v)\n", err)
		return nil
	}
	fmt.Fprintf(e.Out, "rtc:    %s\n", t.UTC().Format(time.RFC3339))
	return nil
}

// dnsLookup asks the resolver the relay uses: the built-in one when it
// runs, else the first server the dns service found.
func dnsLookup(e *Env, args []string) error {
	pos, err := e.parse("dns", args, nil)
	if err != nil {
		return err
	}
	if len(pos) == 0 || len(pos) > 2 {
		return e.usage("dns")
	}
	qtype := dns.TypeA
	if len(pos) == 2 {
		t, ok := dns.StringToType[strings.ToUpper(pos[1])]
		if !ok {
			return fmt.Errorf("unknown record type %q", pos[1])
		}
		qtype = t
	}
	st, err := e.Appliance.Status()
	if err != nil {
		return err
	}
	d, ok := detail[status.DNS](st, "dns")
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
	m.SetQuestion(dns.Fqdn(pos[0]), qtype)
	m.SetEdns0(1232, false)
	c := &dns.Client{Timeout: 5 * time.Second}
	resp, rtt, err := c.Exchange(m, server)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Out, ";; %s from %s in %v\n", dns.RcodeToString[resp.Rcode], server, rtt.Round(time.Microsecond))
	for _, rr := range resp.Answer {
		fmt.Fprintln(e.Out, rr.String())
	}
	return nil
}
