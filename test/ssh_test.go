//go:build e2e

package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gatehouse/control"
	"gatehouse/test/netnstest"
)

// The SSH shell with a real OpenSSH client: a key from an allowed source
// gets the diagnostics shell; another source does not get through; bad
// keys get the source banned for a while.
func TestSSHShellAllowlistAndBan(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			sshShellAllowlistAndBan(t, backend)
		})
	}
}

func sshShellAllowlistAndBan(t *testing.T, backend string) {
	w := newNetWorld(t)
	admin := addAdmin(t, w)
	key := filepath.Join(w.dir, "id")
	other := filepath.Join(w.dir, "other")
	for _, k := range []string{key, other} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v %s", err, out)
		}
	}
	pub, _ := os.ReadFile(key + ".pub")
	w.gatehouse(t, fmt.Sprintf(`
interfaces:
  - {name: a0, addresses: [10.77.0.2/24]}
  - {name: a1, addresses: [10.78.0.2/24]}
ssh:
  allow: [10.78.0.1]
  authorized_keys: [%q]
  ban: {after: 3, for: 4s}
firewall:
  backend: %s
`, strings.TrimSpace(string(pub)), backend), "--firewall")
	w.waitFor(t, "ssh up", 30*time.Second, func(st *control.Status) bool {
		for _, s := range st.Services {
			if s.Name == "ssh" && s.Phase == "running" {
				return true
			}
		}
		return false
	})
	sshTo := func(ns, k, addr string, cmd ...string) (string, error) {
		args := append([]string{"netns", "exec", ns, "ssh", "-i", k, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=3",
			"admin@" + addr}, cmd...)
		out, err := exec.Command("ip", args...).CombinedOutput()
		return string(out), err
	}
	deadline := time.Now().Add(10 * time.Second)
	out, err := sshTo(admin, key, "10.78.0.2", "status")
	for err != nil && time.Now().Before(deadline) {
		time.Sleep(300 * time.Millisecond)
		out, err = sshTo(admin, key, "10.78.0.2", "status")
	}
	if err != nil || !strings.Contains(out, "gatehouse") || !strings.Contains(out, "ssh          running") {
		t.Fatalf("allowed admin with the right key: %v\n%s", err, out)
	}
	if !w.logShows(`msg="ssh login" source=10.78.0.1 user=admin`) {
		t.Error("the login is not in the log")
	}
	// The internet side is not on the allowlist.
	if out, err := sshTo(w.router, key, "10.77.0.2", "status"); err == nil {
		t.Errorf("login from a source not on the allowlist:\n%s", out)
	}
	// Wrong keys, three times: banned; even the right key is refused now.
	for range 3 {
		sshTo(admin, other, "10.78.0.2", "status")
	}
	if out, err := sshTo(admin, key, "10.78.0.2", "status"); err == nil {
		t.Errorf("banned source got in:\n%s", out)
	}
	if !w.logShows("ssh source banned after repeated authentication failures") {
		t.Error("the ban is not in the log")
	}
	// The ban is in the kernel (nftables: the set, with its timeout;
	// iptables: the recent list), so the firewall drops the source's
	// packets before the shell sees them.
	if backend == "nftables" {
		if out, err := nsExec(w.appl, "nft", "list", "set", "inet", "gatehouse", "ssh_ban4"); err != nil || !regexp.MustCompile(`elements = \{ 10\.78\.0\.1 timeout 4s expires `).MatchString(out) {
			t.Errorf("ban set: %v\n%s", err, out)
		}
	} else if out, err := nsExec(w.appl, "cat", "/proc/net/xt_recent/GATEHOUSE-SSH-BAN"); err != nil || !strings.Contains(out, "src=10.78.0.1 ") {
		t.Errorf("ban list: %v\n%s", err, out)
	}
	if got := netnstest.Reach(t, admin, "10.78.0.2:22"); got != "blocked" {
		t.Errorf("banned source's connection: %s, want blocked (dropped by the firewall)", got)
	}
	time.Sleep(5 * time.Second) // the ban lapses, in the kernel and in the shell
	if backend == "nftables" {
		if out, err := nsExec(w.appl, "nft", "list", "set", "inet", "gatehouse", "ssh_ban4"); err != nil || strings.Contains(out, "10.78.0.1") {
			t.Errorf("ban set after the ban: %v\n%s", err, out)
		}
	}
	if out, err := sshTo(admin, key, "10.78.0.2", "ntp"); err != nil {
		t.Errorf("after the ban: %v\n%s", err, out)
	}
}

// sshKeygen makes an ed25519 key pair in dir; it returns the private key's
// file and the public key's authorized_keys line.
func sshKeygen(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	file := filepath.Join(dir, name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", file).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	pub, err := os.ReadFile(file + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return file, strings.TrimSpace(string(pub))
}

// An administrator's ssh-agent holds three other keys besides the right
// one, and OpenSSH offers them first, in the agent's order: ten logins in
// a row all work, and the source is never banned.
func TestSSHAgentWithSeveralKeys(t *testing.T) {
	t.Parallel()
	w := newNetWorld(t)
	admin := addAdmin(t, w)
	sock := filepath.Join(w.dir, "agent.sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := agent.Start(); err != nil {
		t.Fatalf("ssh-agent: %v", err)
	}
	t.Cleanup(func() {
		agent.Process.Kill()
		agent.Wait()
	})
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("ssh-agent's socket: %v", err)
		}
	}
	env := append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	var right string
	for _, name := range []string{"other1", "other2", "other3", "admin"} {
		file, pub := sshKeygen(t, w.dir, name)
		add := exec.Command("ssh-add", file)
		add.Env = env
		if out, err := add.CombinedOutput(); err != nil {
			t.Fatalf("ssh-add %s: %v %s", name, err, out)
		}
		right = pub
	}
	w.gatehouse(t, fmt.Sprintf(`
interfaces:
  - {name: a1, addresses: [10.78.0.2/24]}
ssh:
  allow: [10.78.0.1]
  authorized_keys: [%q]
  ban: {after: 3, for: 1m}
firewall:
  backend: nftables
`, right), "--firewall")
	waitSSH(t, w, admin)
	for i := range 10 {
		ssh := exec.Command("ip", "netns", "exec", admin, "ssh", "-F", "/dev/null", "-o", "IdentitiesOnly=no", "-o", "BatchMode=yes",
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=3",
			"admin@10.78.0.2", "status")
		ssh.Env = env
		if out, err := ssh.CombinedOutput(); err != nil || !strings.Contains(string(out), "ssh          running") {
			t.Fatalf("login %d with the agent's keys: %v\n%s\n%s", i+1, err, out, w.log("gatehouse.log"))
		}
	}
	if log := w.log("gatehouse.log"); strings.Contains(log, "banned") {
		t.Errorf("the administrator was banned:\n%s", log)
	}
}

// waitSSH waits until the shell runs and its port answers the admin host.
func waitSSH(t *testing.T, w *netWorld, admin string) {
	t.Helper()
	w.waitFor(t, "ssh up", 30*time.Second, func(st *control.Status) bool {
		for _, s := range st.Services {
			if s.Name == "ssh" && s.Phase == "running" {
				return true
			}
		}
		return false
	})
	for deadline := time.Now().Add(10 * time.Second); netnstest.Reach(t, admin, "10.78.0.2:22") != "open"; time.Sleep(300 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the SSH port does not answer the admin host")
		}
	}
}

// authorized_keys options with a real OpenSSH client: a key with
// from="10.99.0.0/16" is refused from the admin host (10.78.0.1); a
// monitoring key with command="status" runs status whatever it asks for,
// an interactive shell included, and gets no terminal (restrict).
func TestSSHKeyOptions(t *testing.T) {
	t.Parallel()
	w := newNetWorld(t)
	admin := addAdmin(t, w)
	elsewhere, elsewherePub := sshKeygen(t, w.dir, "elsewhere")
	monitor, monitorPub := sshKeygen(t, w.dir, "monitor")
	w.gatehouse(t, fmt.Sprintf(`
interfaces:
  - {name: a1, addresses: [10.78.0.2/24]}
ssh:
  allow: [10.78.0.1]
  authorized_keys:
    - %q
    - %q
  ban: {after: 3, for: 1m}
`, `from="10.99.0.0/16" `+elsewherePub, `restrict,command="status" `+monitorPub))
	waitSSH(t, w, admin)
	sshWith := func(key, stdin string, args ...string) (string, error) {
		cmd := exec.Command("ip", append([]string{"netns", "exec", admin, "ssh", "-F", "/dev/null", "-i", key, "-o", "IdentitiesOnly=yes",
			"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=3"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := sshWith(elsewhere, "", "admin@10.78.0.2", "status"); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("key with from=\"10.99.0.0/16\" from 10.78.0.1: %v\n%s", err, out)
	}
	if !w.logShows(`msg="ssh key refused from this source by its from= option" source=10.78.0.1`) {
		t.Error("the refusal is not in the log")
	}
	for _, tc := range []struct {
		name, stdin string
		args        []string
	}{
		{"exec poweroff", "", []string{"admin@10.78.0.2", "poweroff"}},
		{"exec queue delete", "", []string{"admin@10.78.0.2", "queue", "delete", "X"}},
		{"interactive shell", "reboot\n", []string{"-T", "admin@10.78.0.2"}},
	} {
		out, err := sshWith(monitor, tc.stdin, tc.args...)
		if err != nil || !strings.Contains(out, "ssh          running") || strings.Contains(out, "gatehouse> ") {
			t.Errorf("%s with the status key: %v\n%s", tc.name, err, out)
		}
	}
	// A terminal forced with -tt: refused, and OpenSSH gives up (as it
	// does with an OpenSSH server and restrict).
	if out, _ := sshWith(monitor, "reboot\n", "-tt", "admin@10.78.0.2"); !strings.Contains(out, "PTY allocation request failed") {
		t.Errorf("the restricted key got a terminal:\n%s", out)
	}
	if st, err := w.status(t); err != nil || !st.Ready {
		t.Errorf("gatehouse after the status key's sessions: %v %+v", err, st)
	}
	if !w.logShows(`msg="ssh forced command runs instead of the client's" source=10.78.0.1 command=status asked=poweroff`) {
		t.Error("the forced command is not in the log")
	}
}
