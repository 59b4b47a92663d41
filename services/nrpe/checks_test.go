package nrpe

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"gatehouse/config"
	"gatehouse/control"
	"gatehouse/paths"
	"gatehouse/queue"
	"gatehouse/status"
)

func TestParseQuery(t *testing.T) {
	for _, tt := range []struct {
		in    string
		allow bool
		want  string // command and args joined by " ", or "error: ..." substring
	}{
		{"check_load", false, "check_load"},
		{"check_load!1!2", true, "check_load 1 2"},
		{"check_load!1!2", false, "error: arguments are not allowed"},
		{"check_load!1!!2", true, "error: argument 2 is empty"},
		{"check_load!$(reboot)", true, "error: command substitution"},
		{"", true, "error: empty"},
		{"check_load!" + strings.Repeat("1!", 17), true, "error: "},
	} {
		q, err := ParseQuery(tt.in, tt.allow)
		got := strings.Join(append([]string{q.Command}, q.Args...), " ")
		if err != nil {
			got = "error: " + err.Error()
		}
		if !strings.HasPrefix(tt.want, "error: ") && got != tt.want || strings.HasPrefix(tt.want, "error: ") && !strings.Contains(got, strings.TrimPrefix(tt.want, "error: ")) {
			t.Errorf("ParseQuery(%q, %v) = %q, want %q", tt.in, tt.allow, got, tt.want)
		}
	}
	// Every one of the nrpe daemon's forbidden metacharacters.
	for _, c := range nastyMetachars {
		if _, err := ParseQuery("check_load!1"+string(c), true); err == nil {
			t.Errorf("%q accepted", c)
		}
	}
}

func TestRanges(t *testing.T) {
	for _, tt := range []struct {
		r      string
		alerts []float64
		quiet  []float64
	}{
		{"10", []float64{-1, 10.5}, []float64{0, 10}},
		{"10:", []float64{9.9}, []float64{10, 1e9}},
		{"~:10", []float64{11}, []float64{-1e9, 10}},
		{"10:20", []float64{9, 21}, []float64{10, 20}},
		{"@10:20", []float64{10, 15, 20}, []float64{9, 21}},
		{"~:", nil, []float64{-1e9, 0, 1e9}},
	} {
		r, err := config.ParseRange(tt.r)
		if err != nil {
			t.Fatalf("%s: %v", tt.r, err)
		}
		for _, v := range tt.alerts {
			if !r.Alerts(v) {
				t.Errorf("%s: %v does not alert", tt.r, v)
			}
		}
		for _, v := range tt.quiet {
			if r.Alerts(v) {
				t.Errorf("%s: %v alerts", tt.r, v)
			}
		}
	}
	for _, bad := range []string{"", "@", "x", "1:x", ":5", "5:1", "NaN", "Inf"} {
		if _, err := config.ParseRange(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	// The table's defaults all parse.
	for _, c := range config.NRPEChecks {
		for _, m := range c.Metrics {
			for _, s := range []string{m.Warning, m.Critical} {
				if _, err := config.ParseRange(s); s != "" && err != nil {
					t.Errorf("%s %s: %v", c.Name, m.Name, err)
				}
			}
		}
	}
}

func detail(t *testing.T, v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fakeSources(t *testing.T) Sources {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	st := control.Status{Mode: "host", Data: control.Data{Path: "/data"}, Services: []status.State{
		{Name: "network", Phase: status.Running},
		{Name: "smtp", Phase: status.Running, Restarts: 2, Detail: detail(t, status.Relay{
			Queue: queue.Stats{Depth: 120, Deferred: 3},
			Fetch: []status.FetchAccount{{Name: "helpdesk", LastError: "login refused", Failures: 4}, {Name: "sales"}}})},
		{Name: "ntp", Phase: status.Running, Detail: detail(t, status.NTP{Synced: true, Server: "10.0.0.1", Offset: -700 * time.Millisecond})},
		{Name: "firewall", Phase: status.Running, Detail: detail(t, status.Firewall{Backend: "nftables", Ruleset: "config", In: []string{"a", "b"},
			Drops: status.FirewallDrops{In: status.DropCount{Packets: 12, Bytes: 720}, Out: status.DropCount{Packets: 3, Bytes: 180}}})},
		{Name: "nrpe", Phase: status.BackingOff, Restarts: 1},
	}}
	return Sources{
		Status:      func() control.Status { return st },
		LoadAvg:     func() ([3]float64, error) { return [3]float64{9, 1, 0.5}, nil },
		Memory:      func() (uint64, uint64, error) { return 1000 << 20, 80 << 20, nil },
		DiskFree:    func(string) (uint64, uint64, error) { return 100 << 30, 50 << 30, nil },
		QueueOldest: func() (time.Time, error) { return now.Add(-2 * time.Hour), nil },
		Paths: func(context.Context, *config.Config) []paths.Result {
			return []paths.Result{{Outcome: paths.OK}, {Outcome: paths.Blocked, Target: "192.0.2.1:25", Path: paths.Path{Function: "Mail delivery"}}, {Outcome: paths.Skipped}}
		},
		Now: func() time.Time { return now },
	}
}

func TestChecks(t *testing.T) {
	cfg := &config.Config{NRPE: &config.NRPE{AllowArguments: true, Checks: map[string]map[string]config.NRPEThreshold{}}}
	r, _ := config.ParseRange("50")
	cfg.NRPE.Checks["check_queue"] = map[string]config.NRPEThreshold{"depth": {Warning: &r}}
	k := &Checker{Src: fakeSources(t), Version: "1.2"}
	for _, tt := range []struct {
		query string
		state int
		text  string
	}{
		{"_NRPE_CHECK", OK, "NRPE v1.2"},
		{"check_nope", Unknown, "NRPE: Command 'check_nope' not defined"},
		{"check_load", Warning, "WARNING - load average: 9.00, 1.00, 0.50 | load1=9.000;8;16;0 load5=1.000;6;12;0 load15=0.500;4;8;0"},
		{"check_load!~:!~:", OK, "OK - load average: 9.00, 1.00, 0.50 | load1=9.000;~:;~:;0 load5=1.000;6;12;0 load15=0.500;4;8;0"},
		{"check_load!1!2!3", Critical, "CRITICAL - "},
		{"check_load!x", Unknown, "UNKNOWN - argument 1 (load1 warning): \"x\" is not a threshold range"},
		{"check_load!1!2!3!4!5!6!7", Unknown, "UNKNOWN - check_load takes at most 6 arguments"},
		{"check_mem", Warning, "WARNING - memory 8.0% available (80 MiB of 1000 MiB) | available=8%;10:;5:;0"},
		{"check_disk", OK, "OK - /data 50.0% free (51200 MiB of 102400 MiB) | free=50%;20:;10:;0"},
		{"check_disk!60:!55:", Critical, "CRITICAL - /data 50.0% free"},
		// The config's warning (50) replaces the default (100).
		{"check_queue", Warning, "WARNING - queue 120 messages, 3 deferred, 0 held, oldest 2h0m0s | depth=120;50;500;0 deferred=3;50;200;0 oldest=7200s;3600;14400;0"},
		{"check_queue!~:!~:!~:!~:!~:!7000", Critical, "CRITICAL - queue 120"},
		{"check_services", Critical, "CRITICAL - 4 services running; not running: nrpe backoff, 3 restarts | down=1;;0;0 restarts=3;;;0"},
		{"check_service_smtp", OK, "OK - service smtp running, 2 restarts | down=0;;0;0 restarts=2;;;0"},
		{"check_service_nope", Unknown, "UNKNOWN - no service nope runs"},
		{"check_ntp", Warning, "WARNING - offset -700ms from 10.0.0.1, stratum 0 | offset=-0.700s;0.5;1;"},
		{"check_ntp!0.1!0.6", Critical, "CRITICAL - offset -700ms"},
		{"check_collector", Critical, "CRITICAL - 2 fetch accounts, 1 failing: helpdesk failing (4 in a row) | failing=1;;0;0"},
		{"check_firewall", OK, "OK - nftables, 2 inbound paths, egress  | rules_in=2;;;0 drops_in=12;;;0 drops_out=3;;;0"},
		{"check_firewall!~:!~:!10", Warning, "WARNING - nftables, 2 inbound paths, egress  | rules_in=2;~:;~:;0 drops_in=12;10;;0 drops_out=3;;;0"},
		{"check_firewall!~:!~:!~:!~:!~:!2", Critical, "CRITICAL - nftables"},
		{"check_firewall!3:", Warning, "WARNING - nftables"},
		{"check_paths", Critical, "CRITICAL - 2 outbound paths tested, 1 failed: Mail delivery 192.0.2.1:25 blocked | failed=1;;0;0"},
	} {
		q, err := ParseQuery(tt.query, true)
		if err != nil {
			t.Fatalf("%s: %v", tt.query, err)
		}
		res := k.Run(context.Background(), cfg, q)
		if res.State != tt.state || !strings.HasPrefix(res.Text, tt.text) {
			t.Errorf("%s: %d %q\nwant %d %q", tt.query, res.State, res.Text, tt.state, tt.text)
		}
	}
	// Without the control socket, nothing that needs it claims OK.
	k.Src.Status = func() control.Status { return control.Status{Mode: "unreachable", Emergency: "control socket: gone"} }
	if res := k.Run(context.Background(), cfg, Query{Command: "check_services"}); res.State != Unknown {
		t.Errorf("unreachable: %+v", res)
	}
	k.Src = fakeSources(t)
	k.Src.QueueOldest = func() (time.Time, error) { return time.Time{}, errors.New("no socket") }
	if res := k.Run(context.Background(), cfg, Query{Command: "check_queue"}); res.State != Unknown {
		t.Errorf("no queue listing: %+v", res)
	}
}
