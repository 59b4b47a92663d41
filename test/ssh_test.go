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
	if !strings.Contains(w.log("gatehouse.log"), `msg="ssh login" source=10.78.0.1 user=admin`) {
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
	if !strings.Contains(w.log("gatehouse.log"), "ssh source banned after repeated authentication failures") {
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
	if got := reach(t, admin, "10.78.0.2:22"); got != "blocked" {
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
