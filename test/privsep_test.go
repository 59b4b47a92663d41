//go:build e2e

package test

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"gatehouse/config"
	"gatehouse/layout"
	"gatehouse/queue"
	"gatehouse/services/relay"
)

// The relay, started by `gatehouse run` as root, runs as its own user with
// no capability but CAP_NET_BIND_SERVICE and no_new_privs; it still binds
// ports 25, 587 and 465, accepts mail and queues it, and everything it
// writes is its own. A queue left by a version that ran it as root, and a
// CA file only root could read, are given to it before it starts.
func TestSMTPRelayRunsUnprivileged(t *testing.T) {
	w := newNetWorld(t)
	// The older version's queue, root's, with one message in it.
	qdir := filepath.Join(w.state(), "queue")
	store, _, problems := queue.OpenStore(qdir)
	if store == nil {
		t.Fatal(problems)
	}
	wr, err := store.Create()
	if err != nil {
		t.Fatal(err)
	}
	wr.Write([]byte("Message-ID: <old@test>\r\nSubject: from before\r\n\r\nbody\r\n"))
	if err := wr.Commit(&queue.Envelope{From: "old@example.test", Rcpts: []queue.Rcpt{{Addr: "u@example.test", Route: queue.Route{Kind: queue.Domain, Name: "example.test"}}},
		Arrived: time.Now(), Source: "smtp"}); err != nil {
		t.Fatal(err)
	}
	store.Close()
	ca, _, _, _ := writeCA(t, w.dir)
	if err := os.Chmod(ca, 0o600); err != nil { // as an operator copies a file as root
		t.Fatal(err)
	}
	w.gatehouse(t, fmt.Sprintf(`
hostname: gw
smtp:
  hostname: mx.example.test
  listen: {smtp: "127.0.0.1:25", submission: "127.0.0.1:587", smtps: "127.0.0.1:465"}
  tls: {ca_file: %s}
  domains:
    - {name: example.test, next_hop: "[127.0.0.1]:2526", tls: none}
  trusted_networks: [127.0.0.0/8]
  queue: {min_backoff: 1h, max_backoff: 1h}
`, ca))
	st, err := w.status(t)
	if err != nil {
		t.Fatal(err)
	}
	pid := 0
	for _, s := range st.Services {
		if s.Name == "smtp" {
			pid = s.PID
		}
	}
	if pid == 0 {
		t.Fatalf("no smtp service: %+v", st.Services)
	}

	const netBindService = "0000000000000400" // 1 << CAP_NET_BIND_SERVICE
	relayIDs := fmt.Sprintf("%d\t%d\t%d\t%d", relay.RelayUID, relay.RelayUID, relay.RelayUID, relay.RelayUID)
	relayGIDs := fmt.Sprintf("%d\t%d\t%d\t%d", relay.RelayGID, relay.RelayGID, relay.RelayGID, relay.RelayGID)
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if len(tasks) == 0 {
		t.Fatalf("no threads of pid %d", pid)
	}
	for _, f := range tasks { // credentials and no_new_privs are each thread's
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fields := map[string]string{}
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok {
				fields[k] = strings.TrimSpace(v)
			}
		}
		var bad []string
		for _, k := range []string{"Uid", "Gid", "Groups", "CapPrm", "CapEff", "CapAmb", "NoNewPrivs"} {
			want := map[string]string{"Uid": relayIDs, "Gid": relayGIDs, "Groups": "",
				"CapPrm": netBindService, "CapEff": netBindService, "CapAmb": netBindService, "NoNewPrivs": "1"}[k]
			if fields[k] != want {
				bad = append(bad, fmt.Sprintf("%s %q, want %q", k, fields[k], want))
			}
		}
		if len(bad) > 0 {
			t.Errorf("%s (one of %d threads):\n%s", f, len(tasks), strings.Join(bad, "\n"))
			break
		}
	}

	for _, port := range []string{"587", "465"} {
		waitGreeting(t, w.appl, "127.0.0.1", port)
	}
	mustSwaks(t, w.appl, "--server", "127.0.0.1:25", "--from", "a@example.test", "--to", "u@example.test",
		"--header", "Message-ID: <new@test>")
	out, err := gatehouseCmd(t, w, "queue", "list")
	if err != nil || strings.Count(out, "u@example.test") != 2 {
		t.Errorf("queue list: want the old and the new message: %v\n%s", err, out)
	}

	// Everything the relay keeps is its own.
	owner := [2]uint32{relay.RelayUID, relay.RelayGID}
	n := 0
	for _, dir := range []string{qdir, filepath.Join(w.state(), "tls"), filepath.Dir(layout.Host(w.state()).RelaySocket())} {
		filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				t.Error(err)
				return nil
			}
			info, _ := d.Info()
			s := info.Sys().(*syscall.Stat_t)
			if [2]uint32{s.Uid, s.Gid} != owner {
				t.Errorf("%s is %d:%d, want the relay's %d:%d", path, s.Uid, s.Gid, owner[0], owner[1])
			}
			n++
			return nil
		})
	}
	if msgs, _ := filepath.Glob(filepath.Join(qdir, "msg", "*")); len(msgs) != 2 {
		t.Errorf("queue files %v, want 2", msgs)
	}
	if _, err := os.Stat(filepath.Join(w.state(), "tls", "smtp.key")); err != nil {
		t.Errorf("no generated key: %v", err)
	}
	if _, err := os.Stat(layout.Host(w.state()).RelaySocket()); err != nil {
		t.Errorf("no relay socket: %v", err)
	}
	if info, err := os.Stat(ca); err != nil {
		t.Error(err)
	} else if s := info.Sys().(*syscall.Stat_t); s.Uid != 0 || s.Gid != relay.RelayGID || info.Mode().Perm() != 0o640 {
		t.Errorf("CA file: %v %d:%d; want root's, group-readable for the relay", info.Mode().Perm(), s.Uid, s.Gid)
	}
	if !t.Failed() {
		t.Logf("smtp pid %d: %d threads as %d:%d with CAP_NET_BIND_SERVICE only; %d entries under its directories, all its own",
			pid, len(tasks), owner[0], owner[1], n)
	}
}

// startRelay starts `gatehouse service smtp` in namespace ns the way PID 1
// and `gatehouse run` do: its directories and files given to it by
// relay.Prepare, then as its own user with only CAP_NET_BIND_SERVICE.
// The tests that kill the relay run it so, not as root, to test what ships.
func startRelay(t *testing.T, ns, cfg, runDir, logFile string) *exec.Cmd {
	t.Helper()
	full, _, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(runDir, 0o700); err != nil { // the launcher's
		t.Fatal(err)
	}
	if err := relay.Prepare(relay.PathsFor(runDir, false), full, cfg, relay.RelayUID, relay.RelayGID, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gatehouseBinary(t), "service", "smtp", "--config", cfg, "--run", runDir)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: relay.RelayUID, Gid: relay.RelayGID, Groups: []uint32{}},
		AmbientCaps: []uintptr{unix.CAP_NET_BIND_SERVICE},
	}
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	// Started from a thread in the namespace, the relay is born there.
	inNS(t, ns, func() { err = cmd.Start() })
	if err != nil {
		t.Fatal(err)
	}
	return cmd
}
