package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"gatehouse/test/fakeinstance"
	"gatehouse/test/golden"
)

// timestamps in JSON output change from run to run.
var timestamps = regexp.MustCompile(`"\d{4}-\d\d-\d\dT[0-9:.]+Z"`)

// What the CLI prints for each command that talks to a running instance,
// text and JSON, answers and refusals: the contract scripts rely on.
func TestCLIOutputGolden(t *testing.T) {
	defer func(l *time.Location) { time.Local = l }(time.Local)
	time.Local = time.UTC
	for _, tc := range []struct {
		file  string
		empty bool
		cmds  [][]string
	}{
		{"cli.golden", false, [][]string{
			{"status"},
			{"status", "--format", "json"},
			{"status", "--json"},
			{"logs", "smtp", "-n", "1"},
			{"logs", "smtp"},
			{"logs", "nope"},
			{"logs"},
			{"firewall", "show"},
			{"firewall"},
			{"config", "reload"},
			{"config", "confirm"},
			{"config", "apply", "/data/new.yaml", "--confirm-within", "0s"},
			{"config", "apply", "/data/new.yaml"},
			{"poweroff"},
			{"reboot"},
			{"queue", "list"},
			{"queue", "list", "--format", "json"},
			{"queue", "show", "A1B2C3D4E5F6"},
			{"queue", "show", "A1B2C3D4E5F6*", "--format", "json"},
			{"queue", "show", "NOPE"},
			{"queue", "flush"},
			{"queue", "flush", "--format", "json"},
			{"queue", "hold", "A1B2C3D4E5F6"},
			{"queue", "release", "A1B2C3D4E5F6!"},
			{"queue", "delete", "A1B2C3D4E5F6"},
			{"queue", "delete", "A1B2C3D4E5F6", "--format", "json"},
			{"queue", "hold", "NOPE"},
			{"queue"},
			{"queue", "bogus"},
			{"queue", "show"},
			{"queue", "list", "--format", "xml"},
			{"fetch", "status"},
			{"fetch", "status", "--format", "json"},
			{"fetch", "now"},
			{"fetch", "now", "sales"},
			{"fetch", "now", "nope"},
			{"fetch"},
			{"fetch", "bogus"},
			{"smtp", "pop-auth", "192.0.2.7"},
			{"dkim"},
			{"dkim", "keygen", "example.com"},
			{"dkim", "keygen", "example.com", "s1", "--type", "dsa"},
			{"dkim", "keygen", "example.com", "s1", "--bits", "1024"},
			{"dkim", "keygen", "../etc", "s1"},
		}},
		{"cli-empty.golden", true, [][]string{
			{"config", "reload"},
			{"queue", "list"},
			{"queue", "list", "--format", "json"},
			{"queue", "flush"},
			{"queue", "flush", "--format", "json"},
			{"fetch", "status"},
			{"fetch", "status", "--format", "json"},
		}},
	} {
		in := fakeinstance.Start(t, tc.empty)
		var b strings.Builder
		for _, args := range tc.cmds {
			code, out, errOut := call(append(args, "--state", in.Dir)...)
			out = timestamps.ReplaceAllString(out, `"TIME"`)
			fmt.Fprintf(&b, "$ gatehouse %s\nexit %d\n%s", strings.Join(args, " "), code, out)
			if errOut != "" {
				fmt.Fprintf(&b, "[stderr]\n%s", strings.ReplaceAll(errOut, in.Dir, "DIR"))
			}
			b.WriteString("\n")
		}
		golden.Check(t, tc.file, b.String())
	}
}
