package pid1

import (
	"log/slog"
	"os"
	"testing"

	"gatehouse/init/logring"
	"gatehouse/services/syslog"
)

// PID 1's log records reach `logs init` and the feed as slog text lines
// the syslog service reads: message, level, attributes.
func TestInitLinesInRingAndFeed(t *testing.T) {
	var feed logring.Feed
	il := newInitLines(&feed)
	log := slog.New(initHandler(il, slog.LevelInfo)).With("subsystem", "supervisor")
	log.Debug("not kept")
	log.Info("service started", "service", "smtp", "pid", 42)
	log.Warn("service exited; restarting after backoff", "service", "smtp", "exit", "exit status 1\nlast words")
	sub, err := feed.Subscribe(0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	lines := il.ring.Last(0)
	if len(lines) != 2 || lines[0] != `level=INFO msg="service started" subsystem=supervisor service=smtp pid=42` {
		t.Fatalf("ring %q", lines)
	}
	for i, want := range []struct {
		sev int
		msg string
	}{{syslog.SevInfo, "service started"}, {syslog.SevWarning, "service exited; restarting after backoff"}} {
		r := <-sub.C()
		if r.Service != InitLog || r.PID != os.Getpid() || r.Line != lines[i] || r.Time.IsZero() {
			t.Errorf("record %d: %+v", i, r)
		}
		sev, msg, params := syslog.ParseLine(r.Line)
		if sev != want.sev || msg != want.msg || len(params) < 2 || params[0] != (syslog.Param{Name: "subsystem", Value: "supervisor"}) {
			t.Errorf("record %d parses as %d %q %+v", i, sev, msg, params)
		}
	}
}
