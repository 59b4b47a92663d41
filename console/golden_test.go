package console

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"gatehouse/control"
	"gatehouse/layout"
	"gatehouse/test/fakeinstance"
	"gatehouse/test/golden"
)

// What the console's (and the SSH) shell prints for each command, acting
// on an instance through its sockets as the SSH shell does.
func TestShellOutputGolden(t *testing.T) {
	defer func(l *time.Location) { time.Local = l }(time.Local)
	time.Local = time.UTC
	for _, tc := range []struct {
		file  string
		empty bool
		lines []string
	}{
		{"shell.golden", false, []string{
			"help", "status", "logs smtp 1", "logs smtp", "logs", "logs nope", "logs smtp x",
			"firewall", "ntp", "dns", "dns example.com BOGUS",
			"queue", "queue show A1B2C3D4E5F6", "queue show", "queue show NOPE", "queue flush",
			"queue hold A1B2C3D4E5F6", "queue release A1B2C3D4E5F6!", "queue delete A1B2C3D4E5F6", "queue hold NOPE", "queue bogus",
			"fetch", "fetch now", "fetch now sales", "fetch now nope", "fetch bogus",
			"reload", "bogus", "poweroff", "reboot",
		}},
		{"shell-empty.golden", true, []string{"queue", "queue flush", "fetch", "reload"}},
	} {
		in := fakeinstance.Start(t, tc.empty)
		var b strings.Builder
		for _, line := range tc.lines {
			var out strings.Builder
			sh := &Shell{Backend: control.Client{Socket: in.Control}, Out: &out, Paths: layout.Host(in.Dir)}
			sh.Exec(line)
			fmt.Fprintf(&b, "%s%s\n%s\n", Prompt, line, out.String())
		}
		golden.Check(t, tc.file, b.String())
	}
}
