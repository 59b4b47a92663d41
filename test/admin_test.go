//go:build e2e

package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gatehouse/control"
	"gatehouse/test/netnstest"
)

// adminAPI is curl, the API's real client, in a namespace, with the
// appliance's certificate pinned.
type adminAPI struct {
	w  *netWorld
	ns string
	ip string // the appliance's address as ns sees it
}

// call sends one request and returns the status code and the body.
func (a adminAPI) call(t *testing.T, token, method, path, body string) (int, string) {
	t.Helper()
	args := []string{"netns", "exec", a.ns, "curl", "-sS", "--max-time", "60", "-o", "-", "-w", "\n%{http_code}",
		"--cacert", filepath.Join(a.w.state(), "admin", "cert.pem"), "--resolve", "gw:8445:" + a.ip,
		"-X", method}
	if token != "" {
		args = append(args, "-H", "Authorization: Bearer "+token)
	}
	if body != "" {
		args = append(args, "-H", "Content-Type: application/yaml", "--data-binary", body)
	}
	out, err := exec.Command("ip", append(args, "https://gw:8445/api/v1"+path)...).CombinedOutput()
	s := strings.TrimRight(string(out), "\n")
	i := strings.LastIndexByte(s, '\n')
	if err != nil || i < 0 {
		return 0, s
	}
	var code int
	fmt.Sscan(s[i+1:], &code)
	return code, s[:i]
}

func (a adminAPI) must(t *testing.T, token, method, path, body string) string {
	t.Helper()
	code, out := a.call(t, token, method, path, body)
	if code != 200 {
		t.Fatalf("%s %s: %d %s", method, path, code, out)
	}
	return out
}

// The REST API with a real client (curl) against an appliance in a
// namespace with its firewall: tokens and roles, the same answers as the
// CLI and the SSH shell, config apply with confirm and with rollback, the
// live log feed, a source not on the allow list dropped by the firewall,
// and a brute-forcing source banned in the kernel until the ban is lifted.
func TestAdminAPI(t *testing.T) {
	t.Parallel()
	w := newNetWorld(t)
	admin := addAdmin(t, w)
	key, pub := sshKeygen(t, w.dir, "id")
	cfg := func(host string) string {
		return fmt.Sprintf(`
hostname: %s
interfaces:
  - {name: a0, addresses: [10.77.0.2/24]}
  - {name: a1, addresses: [10.78.0.2/24]}
ssh:
  allow: [10.78.0.1]
  authorized_keys: [%q]
admin:
  allow: [10.78.0.1, 127.0.0.1]
  ban: {after: 3, for: 1h}
smtp:
  hostname: mx.example.test
  listen: {smtp: "127.0.0.1:2525", submission: "off", smtps: "off"}
  trusted_networks: [127.0.0.0/8]
  domains:
    - {name: example.test, next_hop: "[127.0.0.1]:2599", tls: none}
firewall:
  backend: nftables
`, host, pub)
	}
	w.gatehouse(t, cfg("gw"), "--firewall")
	token := func(name, role string) string {
		out, err := gatehouseCmd(t, w, "api", "token", "create", name, "--role", role)
		if err != nil {
			t.Fatalf("api token create: %v: %s", err, out)
		}
		return strings.SplitN(out, "\n", 2)[0]
	}
	ops, nagios := token("ops", "admin"), token("nagios", "read")
	w.waitFor(t, "admin and ssh up", 30*time.Second, func(st *control.Status) bool {
		n := 0
		for _, s := range st.Services {
			if (s.Name == "admin" || s.Name == "ssh") && s.Phase == "running" {
				n++
			}
		}
		return n == 2
	})
	api := adminAPI{w: w, ns: admin, ip: "10.78.0.2"}
	local := adminAPI{w: w, ns: w.appl, ip: "127.0.0.1"}
	for deadline := time.Now().Add(10 * time.Second); netnstest.Reach(t, admin, "10.78.0.2:8445") != "open"; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the API's port does not answer the admin host")
		}
	}

	t.Run("roles", func(t *testing.T) {
		if code, out := api.call(t, "", "GET", "/status", ""); code != 401 {
			t.Errorf("no token: %d %s", code, out)
		}
		if code, out := api.call(t, nagios, "POST", "/queue/flush", ""); code != 403 {
			t.Errorf("read token, admin action: %d %s", code, out)
		}
		var st control.Status
		if err := json.Unmarshal([]byte(api.must(t, nagios, "GET", "/status", "")), &st); err != nil || st.Hostname == "" || !st.Ready {
			t.Errorf("status: %v %+v", err, st)
		}
		if !w.logShows(`msg="admin: request" source=10.78.0.1 name=nagios via=token method=GET path=/api/v1/status status=200`) {
			t.Error("the request is not in the log with the token's name")
		}
		temp := token("temp", "admin")
		api.must(t, temp, "GET", "/queue", "")
		if out, err := gatehouseCmd(t, w, "api", "token", "revoke", "temp"); err != nil {
			t.Fatalf("revoke: %v %s", err, out)
		}
		if code, _ := api.call(t, temp, "GET", "/queue", ""); code != 401 {
			t.Errorf("revoked token: %d", code)
		}
	})

	t.Run("one command layer", func(t *testing.T) {
		mustSwaks(t, w.appl, "--server", "127.0.0.1:2525", "--from", "a@partner.test", "--to", "u@example.test")
		var id string
		for deadline := time.Now().Add(30 * time.Second); id == ""; time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("no deferred message in the queue")
			}
			var list []struct {
				ID     string   `json:"id"`
				Errors []string `json:"errors"`
			}
			json.Unmarshal([]byte(api.must(t, nagios, "GET", "/queue", "")), &list)
			if len(list) == 1 && len(list[0].Errors) > 0 && list[0].Errors[0] != "" {
				id = list[0].ID
			}
		}
		api.must(t, ops, "POST", "/queue/"+id+"/hold", "")
		fromAPI := api.must(t, nagios, "GET", "/queue/"+id, "")
		fromCLI, err := gatehouseCmd(t, w, "queue", "show", id, "--format", "json")
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("ip", "netns", "exec", admin, "ssh", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "admin@10.78.0.2", "queue", "show", id, "--format", "json").Output()
		if err != nil {
			t.Fatalf("ssh: %v %s", err, out)
		}
		norm := func(s string) string { return strings.Join(strings.Fields(s), " ") }
		if norm(fromAPI) != norm(fromCLI) || norm(fromCLI) != norm(strings.ReplaceAll(string(out), "\r", "")) {
			t.Errorf("queue show differs:\nAPI: %s\nCLI: %s\nSSH: %s", fromAPI, fromCLI, out)
		}
		if !strings.Contains(fromAPI, `"hold": true`) {
			t.Errorf("held message not shown held: %s", fromAPI)
		}
		if code, body := api.call(t, ops, "POST", "/queue/NOSUCHID/release", ""); code != 404 {
			t.Errorf("unknown id: %d %s", code, body)
		}
		api.must(t, ops, "DELETE", "/queue/"+id, "")
		if out, err := gatehouseCmd(t, w, "queue", "list", "--format", "json"); err != nil || strings.TrimSpace(out) != "[]" {
			t.Errorf("after DELETE through the API, the CLI lists: %v %s", err, out)
		}
	})

	t.Run("config apply, confirm and rollback", func(t *testing.T) {
		code, out := api.call(t, ops, "PUT", "/config", "hostname: gw\nssh:\n  port: 70000\n")
		if code != 400 || !regexp.MustCompile(`"line": 3,\s+"column": 9,\s+"field": "ssh.port"`).MatchString(out) {
			t.Errorf("bad config: %d %s", code, out)
		}
		api.must(t, ops, "PUT", "/config", cfg("gw2"))
		if out := api.must(t, ops, "POST", "/config/apply?confirm_within=120s", ""); !strings.Contains(out, `"confirm_by"`) {
			t.Errorf("apply: %s", out)
		}
		api.must(t, ops, "POST", "/config/confirm", "")
		if out := api.must(t, ops, "GET", "/config", ""); !strings.Contains(out, "hostname: gw2") || strings.Contains(out, "confirm_by") {
			t.Errorf("confirmed config: %s", out)
		}
		api.must(t, ops, "PUT", "/config", cfg("gw3"))
		api.must(t, ops, "POST", "/config/apply?confirm_within=3s", "")
		if out := api.must(t, ops, "GET", "/config", ""); !strings.Contains(out, "hostname: gw3") {
			t.Errorf("applied config: %s", out)
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(300 * time.Millisecond) {
			out := api.must(t, ops, "GET", "/config", "")
			if strings.Contains(out, "hostname: gw2") && !strings.Contains(out, "confirm_by") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not rolled back: %s", out)
			}
		}
	})

	t.Run("live log feed", func(t *testing.T) {
		cmd := exec.Command("ip", "netns", "exec", admin, "curl", "-sSN", "--max-time", "30",
			"--cacert", filepath.Join(w.state(), "admin", "cert.pem"), "--resolve", "gw:8445:10.78.0.2",
			"-H", "Authorization: Bearer "+nagios, "https://gw:8445/api/v1/services/admin/logs?follow=1")
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		// A request made now shows up in the feed.
		api.must(t, nagios, "GET", "/ntp", "")
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") && strings.Contains(sc.Text(), `path=/api/v1/ntp`) {
				return
			}
		}
		t.Error("the request never appeared in the live feed")
	})

	t.Run("firewall and bans", func(t *testing.T) {
		// The internet side is on no list: dropped by the firewall.
		if got := netnstest.Reach(t, w.router, "10.77.0.2:8445"); got != "blocked" {
			t.Errorf("API from a source not allowed: %s", got)
		}
		if got := netnstest.Reach(t, w.router, "10.77.0.2:8443"); got != "blocked" {
			t.Errorf("web console from a source not allowed: %s", got)
		}
		// ban.after is 3, and the revoked token above counted once: the
		// source is banned after at most 3 more, and asking again once it
		// is would wait for a connection the firewall drops.
		banned := func() bool {
			out, err := nsExec(w.appl, "nft", "list", "set", "inet", "gatehouse", "admin_ban4")
			return err == nil && strings.Contains(out, "10.78.0.1")
		}
		for i := 0; i < 3 && !banned(); i++ {
			api.call(t, fmt.Sprintf("ghat_wrong%d", i), "GET", "/status", "")
		}
		if !banned() {
			t.Error("not in the ban set after 3 wrong tokens")
		}
		if got := netnstest.Reach(t, admin, "10.78.0.2:8445"); got != "blocked" {
			t.Errorf("banned source: %s", got)
		}
		if out := local.must(t, ops, "GET", "/firewall/bans", ""); !strings.Contains(out, `"address": "10.78.0.1"`) {
			t.Errorf("bans: %s", out)
		}
		local.must(t, ops, "DELETE", "/firewall/bans/10.78.0.1", "")
		if got := netnstest.Reach(t, admin, "10.78.0.2:8445"); got != "open" {
			t.Errorf("after lifting the ban: %s", got)
		}
		api.must(t, ops, "GET", "/firewall", "")
	})
}
