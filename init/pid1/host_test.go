package pid1

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gatehouse/config"
	"gatehouse/control"
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
	os.WriteFile(cfg, []byte("hostname: ok\nsmtp: {}\n"), 0o644)
	_, err := Run(Options{ConfigPath: cfg, StateDir: dir, Out: io.Discard, Started: time.Now()})
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("err = %v, want config errors", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "control.sock")); err == nil {
		t.Error("control socket created for an invalid config")
	}
}
