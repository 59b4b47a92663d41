package console

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"gatehouse/control"
	"gatehouse/status"
)

type fake struct{ shutdown []string }

func (f *fake) Status() control.Status {
	return control.Status{Version: "v1", Hostname: "gw1", Mode: "pid1", Ready: true, ReadyMS: 42,
		Config: "/data/gatehouse.yaml", Data: control.Data{Path: "/data", Mounted: true, Device: "/dev/vda"},
		Services: []status.State{{Name: "smtp", Phase: status.BackingOff, Restarts: 3, Since: time.Now(), LastExit: "exit status 1"}}}
}

func (f *fake) Logs(svc string, n int) ([]string, error) {
	if svc != "smtp" {
		return nil, errors.New("no service " + svc)
	}
	return []string{"one", "two"}[2-min(n, 2):], nil
}

func (f *fake) Shutdown(a string) error { f.shutdown = append(f.shutdown, a); return nil }

func (f *fake) Reload() error { return errors.New("reload: not here") }

func (f *fake) Apply(string, time.Duration) error { return errors.New("apply: not here") }

func (f *fake) Confirm() error { return errors.New("confirm: not here") }

func TestShell(t *testing.T) {
	b := &fake{}
	var out strings.Builder
	in := strings.NewReader("\nstatus\nlogs smtp 1\nlogs\nlogs nope\nlogs smtp x\nbogus\nhelp\npoweroff\n")
	sh := &Shell{Backend: b, In: in, Out: &out}
	if err := sh.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"gatehouse v1 on gw1 (pid1), up 0s, ready in 42 ms",
		"data:     /dev/vda on /data, read-write",
		"smtp         backoff         -        3",
		"last: exit status 1",
		Prompt + "two\n",
		"logs: usage: logs SERVICE [-n N]",
		"logs: no service nope",
		`logs: "x" is not a positive number`,
		`unknown command "bogus"; try help`,
		"  logs SERVICE [-n N]",
		"poweroff: services are stopping",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Count(got, Prompt) != 9 {
		t.Errorf("%d prompts for 9 lines", strings.Count(got, Prompt))
	}
	if len(b.shutdown) != 1 || b.shutdown[0] != "poweroff" {
		t.Errorf("shutdown calls %v", b.shutdown)
	}
}
