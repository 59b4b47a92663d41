//go:build e2e

package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gatehouse/control"
	"gatehouse/init/logring"
	"gatehouse/services/syslog"
	"gatehouse/status"
	"gatehouse/test/syslogpeer"
)

// rsyslogPeer runs rsyslog in the router namespace on 10.77.0.1 and waits
// until it takes a probe over each transport.
func rsyslogPeer(t *testing.T, w *netWorld) *syslogpeer.Server {
	t.Helper()
	dir := filepath.Join(w.dir, "rsyslog")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := syslogpeer.New(dir, w.router, "10.77.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "rsyslogd.out"))
			t.Logf("rsyslogd:\n%s", b)
		}
	})
	if err := p.Ready(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitRecords waits until ok holds for what came over transport.
func waitRecords(t *testing.T, p *syslogpeer.Server, transport, what string, ok func([]syslogpeer.Record) bool) []syslogpeer.Record {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		recs := p.Records(transport)
		if ok(recs) {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s over %s: not within 30s; got %d records, last %+v", what, transport, len(recs), recs[max(0, len(recs)-5):])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The appliance (`gatehouse run`, firewall on, egress restricted: only the
// derived Syslog paths lead out) forwards its services' lines to rsyslog
// over UDP, TCP and TLS (verified against the test CA); rsyslog parses
// PRI, hostname, app-name, procid and the attributes as structured data.
func TestSyslogForwardsServiceLogsOverUDPTCPTLS(t *testing.T) {
	w := newNetWorld(t)
	peer := rsyslogPeer(t, w)
	cfg := func(hostname string) string {
		return fmt.Sprintf(`hostname: gw1
interfaces:
  - {name: a0, addresses: [10.77.0.2/24]}
firewall:
  egress: restricted
syslog:
  hostname: %s
  destinations:
    - {server: 10.77.0.1}
    - {server: 10.77.0.1, transport: tcp}
    - {server: 10.77.0.1, transport: tls, ca: %s, server_name: %s}
`, hostname, peer.CA, syslogpeer.ServerName)
	}
	w.gatehouse(t, cfg("gw1"), "--firewall")
	st := w.waitFor(t, "syslog following, three destinations up", 30*time.Second, func(st *control.Status) bool {
		s, ok := detailOf[status.Syslog](t, st, "syslog")
		if !ok || s.Feed != "following" || len(s.Destinations) != 3 {
			return false
		}
		for _, d := range s.Destinations {
			if d.State != "up" {
				return false
			}
		}
		return true
	})
	pids := map[string]string{}
	for _, s := range st.Services {
		pids[s.Name] = strconv.Itoa(s.PID)
	}

	// What was written before the syslog service followed the feed arrives
	// too, PID 1's own lines among it (app-name init): the first lines of
	// `gatehouse logs init` and `gatehouse logs network` (the boot), and
	// PID 1's "service started" for the syslog service itself.
	firstMsg := func(name string) string {
		out, err := gatehouseCmd(t, w, "logs", name, "-n", "1000")
		if err != nil || out == "" {
			t.Fatalf("logs %s: %v %s", name, err, out)
		}
		_, msg, _ := syslog.ParseLine(strings.SplitN(out, "\n", 2)[0])
		return msg
	}
	bootInit, bootNetwork := firstMsg("init"), firstMsg("network")
	for _, tr := range syslogpeer.Transports {
		recs := waitRecords(t, peer, tr, "lines from before the syslog service started", func(recs []syslogpeer.Record) bool {
			var init, network, started bool
			for _, r := range recs {
				init = init || r.AppName == "init" && r.Msg == bootInit
				network = network || r.AppName == "network" && r.Msg == bootNetwork
				started = started || r.AppName == "init" && r.Msg == "service started" && strings.Contains(r.SD, `service="syslog"`)
			}
			return init && network && started
		})
		for _, r := range recs {
			if r.AppName == "init" && r.Msg == "service started" && strings.Contains(r.SD, `service="syslog"`) {
				t.Logf("%s: %+v", tr, r)
				if r.PRI != "134" || r.ProcID == "" || r.ProcID == "-" || !strings.Contains(r.SD, `subsystem="supervisor"`) || !strings.Contains(r.SD, `pid="`+pids["syslog"]+`"`) {
					t.Errorf("%s: %+v", tr, r)
				}
			}
		}
	}

	// A reload: every service says "config reloaded", the syslog service
	// takes the new hostname.
	w.config(t, cfg("gw1-reloaded"))
	if out, err := gatehouseCmd(t, w, "config", "reload"); err != nil {
		t.Fatalf("reload: %v %s", err, out)
	}
	for _, tr := range syslogpeer.Transports {
		recs := waitRecords(t, peer, tr, "every service's reload line and the syslog service's new settings", func(recs []syslogpeer.Record) bool {
			var apps []string
			forwarding := false
			for _, r := range recs {
				if r.Msg == "config reloaded" {
					apps = append(apps, r.AppName)
				}
				forwarding = forwarding || r.Msg == "forwarding the log" && r.Hostname == "gw1-reloaded"
			}
			for _, svc := range []string{"network", "dns", "ntp", "firewall", "syslog"} {
				if !slices.Contains(apps, svc) {
					return false
				}
			}
			return forwarding
		})
		for _, r := range recs {
			switch {
			case r.Msg == "config reloaded":
				// local0.info; PROCID the service's process
				if r.PRI != "134" || r.ProcID != pids[r.AppName] {
					t.Errorf("%s: %+v; want PRI 134 and procid %s", tr, r, pids[r.AppName])
				}
			case r.Msg == "forwarding the log" && r.Hostname == "gw1-reloaded":
				t.Logf("%s: %+v", tr, r)
				if r.SD != `[gatehouse@32473 destinations="3" kernel="true"]` || r.AppName != "syslog" || r.PRI != "134" {
					t.Errorf("%s: %+v", tr, r)
				}
			}
		}
	}
	s, _ := detailOf[status.Syslog](t, w.waitFor(t, "status", 5*time.Second, func(*control.Status) bool { return true }), "syslog")
	for _, d := range s.Destinations {
		if d.Sent == 0 || d.Dropped != 0 {
			t.Errorf("destination %+v", d)
		}
	}
}

// The syslog service by itself (`gatehouse service syslog`), fed by the
// test standing in for PID 1: a message of several lines arrives as one
// record over each transport; with rsyslog stopped, records wait in each
// stream destination's buffer (64 KiB) and the rest are dropped; with
// rsyslog started again, what was buffered arrives, in order and without a
// gap, followed by "N messages dropped while unreachable", N being exactly
// what did not arrive.
func TestSyslogMultiLineAndServerRestart(t *testing.T) {
	w := newNetWorld(t)
	ipIn(t, w.appl, "addr", "add", "10.77.0.2/24", "dev", "a0")
	ipIn(t, w.appl, "link", "set", "a0", "up")
	peer := rsyslogPeer(t, w)

	run := filepath.Join(w.dir, "run")
	os.MkdirAll(run, 0o700)
	pid1 := &syslogpeer.PID1{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pid1.Serve(ctx, filepath.Join(run, "control.sock"))
	cfg := w.config(t, fmt.Sprintf(`hostname: gw1
syslog:
  destinations:
    - {server: 10.77.0.1}
    - {server: 10.77.0.1, transport: tcp, buffer: 64KiB}
    - {server: 10.77.0.1, transport: tls, buffer: 64KiB, ca: %s, server_name: %s}
`, peer.CA, syslogpeer.ServerName))
	svc := w.start(t, w.appl, "syslog.out", gatehouseBinary(t), "service", "syslog", "--config", cfg, "--run", run)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("syslog service:\n%s", w.log("syslog.out"))
		}
	})
	_ = svc
	if err := pid1.Subscribed(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitLog := func(what string, ok func(string) bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !ok(w.log("syslog.out")); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the syslog service never said: %s", what)
			}
		}
	}
	connected := func(log, dest string) bool {
		return strings.Count(log, `msg="syslog server connected" destination=`+dest) > 0
	}
	waitLog("all connected", func(l string) bool {
		return connected(l, "tcp://10.77.0.1:514") && connected(l, "tls://10.77.0.1:6514")
	})

	pid1.Feed.Publish(logring.Record{Service: "smtp", PID: 4242, Time: time.Now(),
		Line: `level=ERROR msg="delivery failed\nremote said: 550 no such user\n  third line" queue_id=ABC12 rcpt="a@b.example"`})
	for _, tr := range syslogpeer.Transports {
		recs := waitRecords(t, peer, tr, "the multi-line record", func(recs []syslogpeer.Record) bool {
			return slices.ContainsFunc(recs, func(r syslogpeer.Record) bool { return r.AppName == "smtp" })
		})
		var smtp []syslogpeer.Record
		for _, r := range recs {
			if r.AppName == "smtp" {
				smtp = append(smtp, r)
			}
		}
		// rsyslog escapes the line ends it receives as #012: one record.
		want := syslogpeer.Record{PRI: "131", AppName: "smtp", ProcID: "4242", MsgID: "-", Hostname: "gw1",
			SD: `[gatehouse@32473 queue_id="ABC12" rcpt="a@b.example"]`, Msg: "delivery failed#012remote said: 550 no such user#012  third line"}
		if len(smtp) != 1 || smtp[0] != want {
			t.Errorf("%s: %+v\nwant one %+v", tr, smtp, want)
		}
	}

	// rsyslog stops: both stream destinations notice.
	peer.Stop()
	waitLog("both connections lost", func(l string) bool {
		return strings.Contains(l, `msg="syslog server connection lost; buffering" destination=tcp://10.77.0.1:514`) &&
			strings.Contains(l, `msg="syslog server connection lost; buffering" destination=tls://10.77.0.1:6514`)
	})
	const n = 400
	pad := strings.Repeat("p", 900)
	for i := range n {
		pid1.Feed.Publish(logring.Record{Service: "smtp", PID: 4242, Time: time.Now(), Line: fmt.Sprintf("level=INFO msg=seq-%04d pad=%s", i, pad)})
	}
	if err := peer.Start(); err != nil {
		t.Fatal(err)
	}
	if err := peer.Ready(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	report := regexp.MustCompile(`^(\d+) messages dropped while unreachable$`)
	for _, tr := range []string{"tcp", "tls"} {
		recs := waitRecords(t, peer, tr, "the drop report", func(recs []syslogpeer.Record) bool {
			return slices.ContainsFunc(recs, func(r syslogpeer.Record) bool { return report.MatchString(r.Msg) })
		})
		next, dropped := 0, -1
		for _, r := range recs {
			if m := report.FindStringSubmatch(r.Msg); m != nil {
				dropped, _ = strconv.Atoi(m[1])
				if r.AppName != "syslog" || r.MsgID != "dropped" || r.SD != fmt.Sprintf(`[gatehouse@32473 dropped="%d"]`, dropped) || r.PRI != "132" {
					t.Errorf("%s: report %+v", tr, r)
				}
				continue
			}
			if !strings.HasPrefix(r.Msg, "seq-") {
				continue
			}
			if dropped >= 0 {
				t.Errorf("%s: %s after the report", tr, r.Msg)
			}
			if r.Msg != fmt.Sprintf("seq-%04d", next) {
				t.Fatalf("%s: %s where seq-%04d was due: a buffered record was lost or reordered", tr, r.Msg, next)
			}
			next++
		}
		t.Logf("%s: %d buffered and delivered after the restart, %d dropped and reported", tr, next, dropped)
		if next == 0 || dropped <= 0 || next+dropped != n {
			t.Errorf("%s: %d delivered + %d reported dropped, want %d in all, both > 0", tr, next, dropped, n)
		}
	}
}
