package pid1

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/config"
	"gatehouse/control"
	"gatehouse/init/logring"
)

// Host mode end to end in one process: boot, answer on the control socket,
// stop when asked.
func TestHostModeStatusAndShutdown(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gatehouse.yaml")
	os.WriteFile(cfg, []byte("hostname: gw-host\nshutdown: {timeout: 2s}\n"), 0o644)
	type result struct {
		action string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		a, err := Run(Options{Version: "t1", ConfigPath: cfg, StateDir: dir, Out: io.Discard, Started: time.Now()})
		done <- result{a, err}
	}()
	sock := filepath.Join(dir, "control.sock")
	var st *control.Status
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := control.Call(sock, control.Request{Verb: "status"}); err == nil && resp.Status.Ready {
			st = resp.Status
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st == nil {
		t.Fatal("no ready status over the control socket")
	}
	if st.Mode != "host" || st.Version != "t1" || st.Config != cfg || len(st.Services) != 0 {
		t.Errorf("status %+v", st)
	}
	if info, err := os.Stat(sock); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode %v (%v), want 0600", info.Mode().Perm(), err)
	}
	if _, err := control.Call(sock, control.Request{Verb: "logs", Service: "nope"}); err == nil {
		t.Error("logs of an unknown service succeeded")
	}
	// PID 1's own lines: in `logs init`, and in the log feed, where a
	// subscriber that comes now still gets those of the boot.
	if resp, err := control.Call(sock, control.Request{Verb: "logs", Service: InitLog}); err != nil || len(resp.Lines) == 0 {
		t.Errorf("logs init: %v %+v", err, resp)
	} else if !strings.HasPrefix(resp.Lines[0], "level=") {
		t.Errorf("logs init: first line %q is not slog's text", resp.Lines[0])
	}
	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	var first logring.Record
	errFound := errors.New("found")
	err := control.Follow(fctx, sock, 0, func(r logring.Record) error {
		first = r
		return errFound
	})
	fcancel()
	if !errors.Is(err, errFound) || first.Service != InitLog || first.Seq != 1 || first.PID != os.Getpid() || !strings.Contains(first.Line, "msg=") {
		t.Errorf("follow since boot: %v, first record %+v", err, first)
	}
	if _, err := control.Call(sock, control.Request{Verb: "frob"}); err == nil {
		t.Error("unknown verb accepted")
	}
	if _, err := control.Call(sock, control.Request{Verb: "poweroff"}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || r.action != "exit" {
			t.Errorf("Run returned %q, %v; want exit", r.action, r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after poweroff")
	}
}

func TestHostModeInvalidConfigStartsNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(cfg, []byte("hostname: ok\nshutdown: {timeout: 1h}\n"), 0o644)
	_, err := Run(Options{ConfigPath: cfg, StateDir: dir, Out: io.Discard, Started: time.Now()})
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("err = %v, want config errors", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "control.sock")); err == nil {
		t.Error("control socket created for an invalid config")
	}
}

// Commit-confirm: an applied config comes back out unless confirmed in
// time; a confirmed one stays; an invalid one changes nothing; and an
// apply never confirmed before a restart is undone at the start.
func TestApplyConfirmRollback(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gatehouse.yaml")
	orig := "hostname: gw-a\nshutdown: {timeout: 2s}\n"
	os.WriteFile(cfg, []byte(orig), 0o644)
	next := filepath.Join(dir, "next.yaml")
	os.WriteFile(next, []byte("hostname: gw-b\n"), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("hostname: gw-c\nbogus: 1\n"), 0o644)

	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(Options{Version: "t", ConfigPath: cfg, StateDir: dir, Out: io.Discard, Started: time.Now()})
	}()
	sock := filepath.Join(dir, "control.sock")
	call := func(req control.Request) error {
		_, err := control.Call(sock, req)
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for call(control.Request{Verb: "status"}) != nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	content := func() string { b, _ := os.ReadFile(cfg); return string(b) }

	if err := call(control.Request{Verb: "apply", File: bad, Within: "1s"}); err == nil || content() != orig {
		t.Fatalf("invalid apply: err %v, config now %q", err, content())
	}
	if err := call(control.Request{Verb: "apply", File: next, Within: "300ms"}); err != nil {
		t.Fatal(err)
	}
	if content() != "hostname: gw-b\n" {
		t.Fatalf("not applied: %q", content())
	}
	if err := call(control.Request{Verb: "apply", File: next, Within: "1s"}); err == nil {
		t.Error("a second apply while one waits for confirmation was accepted")
	}
	time.Sleep(time.Second) // past the deadline: rolled back
	if content() != orig {
		t.Fatalf("not rolled back: %q", content())
	}
	if _, err := os.Stat(cfg + rollbackSuffix); err == nil {
		t.Error("rollback file left behind")
	}

	if err := call(control.Request{Verb: "apply", File: next, Within: "500ms"}); err != nil {
		t.Fatal(err)
	}
	if err := call(control.Request{Verb: "confirm"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if content() != "hostname: gw-b\n" {
		t.Fatalf("confirmed config rolled back: %q", content())
	}
	if err := call(control.Request{Verb: "confirm"}); err == nil {
		t.Error("confirm with nothing pending succeeded")
	}

	// Unconfirmed when the appliance stops: undone at the next start.
	if err := call(control.Request{Verb: "apply", File: bad, Within: "0s"}); err == nil {
		t.Error("invalid apply accepted")
	}
	os.WriteFile(next, []byte("hostname: gw-d\n"), 0o644)
	if err := call(control.Request{Verb: "apply", File: next, Within: "1h"}); err != nil {
		t.Fatal(err)
	}
	call(control.Request{Verb: "poweroff"})
	<-done
	a := &appliance{opts: Options{ConfigPath: cfg}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a.rollbackAtStart()
	if content() != "hostname: gw-b\n" {
		t.Errorf("unconfirmed apply survived a restart: %q", content())
	}
}
