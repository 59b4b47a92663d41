package command

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"gatehouse/control"
	"gatehouse/layout"
	"gatehouse/sockrpc"
	"gatehouse/status"
)

// fake is PID 1 with a firewall that reported.
type fake struct{ calls []string }

func (f *fake) Status() (control.Status, error) {
	f.calls = append(f.calls, "status")
	return control.Status{Version: "v1", Services: []status.State{{Name: "firewall", Phase: status.Running,
		Detail: []byte(`{"backend":"nftables","ruleset":"config","applied":"` + time.Now().Format(time.RFC3339Nano) + `","in":["tcp 22 from any"],"egress":"open","applies":1}`)}}}, nil
}
func (f *fake) Logs(svc string, n int) ([]string, error) {
	f.calls = append(f.calls, "logs "+svc+" "+strconv.Itoa(n))
	return []string{"line"}, nil
}
func (f *fake) Shutdown(a string) error { f.calls = append(f.calls, a); return nil }
func (f *fake) Reload() error {
	f.calls = append(f.calls, "reload")
	return errors.New("x.yaml:1:1: bad")
}

func env(t *testing.T) (*Env, *fake, *strings.Builder) {
	f := &fake{}
	var out strings.Builder
	return &Env{Appliance: f, Paths: layout.Host(t.TempDir()), Out: &out}, f, &out
}

// The shells and the CLI take the same lines: flags before or after the
// words, the shells' short forms, and the front end's own flags.
func TestArguments(t *testing.T) {
	for _, tc := range []struct {
		line  string
		calls string
		out   string
	}{
		{"logs smtp", "logs smtp 50", "line\n"},
		{"logs smtp 3", "logs smtp 3", "line\n"},
		{"logs smtp -n 7", "logs smtp 7", "line\n"},
		{"logs smtp x", "", `logs: "x" is not a positive number` + "\n"},
		{"logs -n 7 smtp", "", "logs: usage: logs SERVICE [-n N]\n"},
		{"reboot", "reboot", "reboot: services are stopping\n"},
		{"reload", "reload", "reload: reload refused; the running config is unchanged:\nx.yaml:1:1: bad\n"},
		{"status --format xml", "", `status: unknown format "xml" (text or json)` + "\n"},
		{"queue frobnicate", "", "queue: usage: queue list [--format text|json] | show ID | flush | hold ID | release ID | delete ID\n"},
		{"firewall tables", "", "firewall: usage: firewall [show]\n"},
		{"nosuch", "", `unknown command "nosuch"; try help` + "\n"},
	} {
		e, f, out := env(t)
		Exec(e, tc.line)
		if got := strings.Join(f.calls, ","); got != tc.calls {
			t.Errorf("%q: PID 1 asked %q, want %q", tc.line, got, tc.calls)
		}
		if out.String() != tc.out {
			t.Errorf("%q: printed %q, want %q", tc.line, out.String(), tc.out)
		}
	}
}

// A bad flag is the flag package's to explain; the CLI exits 2.
func TestFlagErrors(t *testing.T) {
	e, _, out := env(t)
	c, _ := Lookup("status")
	err := c.Run(e, []string{"--bogus"})
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 2 || ee.Err != nil {
		t.Errorf("bad flag: %v", err)
	}
	if !strings.Contains(out.String(), "flag provided but not defined: -bogus") {
		t.Errorf("flag error not explained: %q", out.String())
	}
	out.Reset()
	Exec(e, "status --bogus")
	if strings.Count(out.String(), "-bogus") != 1 {
		t.Errorf("the shell says it twice: %q", out.String())
	}
}

// The CLI's flags choose the instance once they are parsed, wherever they
// are on the line.
func TestFrontEndFlags(t *testing.T) {
	f := &fake{}
	var out strings.Builder
	var got string
	e := &Env{Prog: "gatehouse", Out: &out, Flags: func(fs *flag.FlagSet) func(*Env) {
		sock := fs.String("socket", "", "")
		return func(e *Env) { got, e.Appliance = *sock, f }
	}}
	c, _ := Lookup("logs")
	if err := c.Run(e, []string{"kernel", "--socket", "/x/control.sock", "-n", "2"}); err != nil {
		t.Fatal(err)
	}
	if got != "/x/control.sock" || strings.Join(f.calls, ",") != "logs kernel 2" {
		t.Errorf("socket %q, calls %v", got, f.calls)
	}
	err := c.Run(e, nil)
	if err == nil || err.Error() != "usage: gatehouse logs SERVICE [-n N]" {
		t.Errorf("usage names the program: %v", err)
	}
}

func TestHelpListsEveryCommand(t *testing.T) {
	e, _, out := env(t)
	Exec(e, "help")
	for _, c := range Commands() {
		if !strings.Contains(out.String(), "  "+c.Name) {
			t.Errorf("help lacks %s:\n%s", c.Name, out)
		}
	}
}

// `firewall` asks the firewall service for what the kernel enforces; PID 1
// runs no firewall tool itself.
func TestFirewallAsksTheFirewallService(t *testing.T) {
	e, _, out := env(t)
	l, err := sockrpc.Listen(e.Paths.FirewallSocket())
	if err != nil {
		t.Fatal(err)
	}
	asked := make(chan string, 10)
	s := sockrpc.NewServer(func(r status.FirewallRequest) status.FirewallRules {
		asked <- r.Verb
		return status.FirewallRules{Backend: "nftables", Rules: "table inet gatehouse {\n}\n"}
	}, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error)
	go func() { done <- s.Serve(ctx, l) }()
	Exec(e, "firewall show")
	want := "\ninstalled (nftables, read back from the kernel):\ntable inet gatehouse {\n}\n"
	if !strings.HasSuffix(out.String(), want) || !strings.HasPrefix(out.String(), "firewall: nftables, applied 0s ago (1 times), egress open\n") {
		t.Errorf("firewall show printed:\n%s", out)
	}
	if len(asked) != 1 || <-asked != "show" {
		t.Errorf("the firewall service was not asked for its rules once")
	}

	// A firewall service that cannot read back says why.
	cancel()
	<-done // its listener's close removes the socket file
	l, err = sockrpc.Listen(e.Paths.FirewallSocket())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	s.Answer = func(status.FirewallRequest) status.FirewallRules {
		return status.FirewallRules{Error: "nft: no such table"}
	}
	go s.Serve(ctx, l)
	out.Reset()
	Exec(e, "firewall")
	if !strings.HasSuffix(out.String(), "\ninstalled: cannot read back: firewall service: nft: no such table\n") {
		t.Errorf("firewall show printed:\n%s", out)
	}
}
