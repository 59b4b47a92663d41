package pid1

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"gatehouse/control"
	"gatehouse/service"
	"gatehouse/services/firewall"
	"gatehouse/status"
)

// The test binary doubles as the gatehouse binary the services run from:
// `service NAME ... --fake-journal=FILE` plays service NAME. The fake
// firewall puts its default deny in at once, and its full ruleset only once
// the file "full" appears next to the journal; the others are ready at once.
// Each records what it does in the journal.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "service" {
		for _, a := range os.Args {
			if j, ok := strings.CutPrefix(a, "--fake-journal="); ok {
				fakeService(os.Args[2], j)
				return
			}
		}
	}
	os.Exit(m.Run())
}

func fakeService(name, journal string) {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	record := func(event string) {
		f, err := os.OpenFile(journal, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(f, "%s %s\n", event, name)
		f.Close()
	}
	// As cmdService: started early, let through once its needs hold.
	if err := service.AwaitGate(); err != nil {
		return
	}
	n := service.NewNotifier()
	record("start")
	if name == "firewall" {
		record("deny")
		n.Condition(firewall.DefaultDenyCondition)
		for {
			if _, err := os.Stat(filepath.Join(filepath.Dir(journal), "full")); err == nil {
				break
			}
			select {
			case <-term:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
		record("full")
	}
	n.Ready()
	<-term
}

// With the firewall enforced, the services that configure the network and
// ask out start once the firewall's default deny is in, and those that
// listen (ssh, smtp) only once its full ruleset is: never before, however
// long that takes.
func TestListenersStartAfterTheFullRuleset(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gatehouse.yaml")
	os.WriteFile(cfg, []byte(`hostname: gw-order
shutdown: {timeout: 2s}
ssh:
  authorized_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIILNx1j5XjRSQhvizLtd/NlOFArTxkVMdLx2wVLOJLwn admin@example.com"]
smtp:
  domains:
    - {name: example.test, next_hop: "[192.0.2.25]:25"}
`), 0o644)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	journal := filepath.Join(dir, "journal")
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := Run(Options{Version: "t", ConfigPath: cfg, StateDir: dir, Out: io.Discard, Started: time.Now(),
			Binary: exe, ServiceArgs: []string{"--fake-journal=" + journal}, Firewall: true,
			// The fake relay writes the journal in this root-only
			// directory: it keeps root's uid (and only CAP_NET_BIND_SERVICE).
			RelayID: &RelayID{UID: 0, GID: 0}}); err != nil {
			t.Error(err)
		}
	}()
	sock := filepath.Join(dir, "control.sock")
	t.Cleanup(func() {
		control.Call(sock, control.Request{Verb: "poweroff"})
		<-done
	})
	events := func() []string {
		b, _ := os.ReadFile(journal)
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	phases := func() map[string]status.Phase {
		out := map[string]status.Phase{}
		if resp, err := control.Call(sock, control.Request{Verb: "status"}); err == nil {
			for _, s := range resp.Status.Services {
				out[s.Name] = s.Phase
			}
		}
		return out
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 20 s; events %q, phases %v", what, events(), phases())
			}
		}
	}
	under := []string{"network", "dns", "ntp"}
	waitFor("network, dns and ntp running", func() bool {
		p := phases()
		return !slices.ContainsFunc(under, func(n string) bool { return p[n] != status.Running })
	})
	p := phases()
	for _, name := range []string{"ssh", "smtp"} {
		if p[name] != status.Waiting {
			t.Errorf("%s is %s while the firewall has only its default deny in, want waiting", name, p[name])
		}
	}
	evs := events()
	for _, name := range under {
		if i := slices.Index(evs, "start "+name); i < slices.Index(evs, "deny firewall") {
			t.Errorf("%s started before the default deny was in: %q", name, evs)
		}
	}

	os.WriteFile(filepath.Join(dir, "full"), nil, 0o644)
	waitFor("ssh and smtp running", func() bool {
		p := phases()
		return p["ssh"] == status.Running && p["smtp"] == status.Running
	})
	evs = events()
	for _, name := range []string{"ssh", "smtp"} {
		if i := slices.Index(evs, "start "+name); i < slices.Index(evs, "full firewall") {
			t.Errorf("%s started before the full ruleset was in: %q", name, evs)
		}
	}
}
