// Package fakeinstance stands in for a running appliance in tests of what
// people see: its control socket and the relay's socket, answering fixed
// requests with fixed JSON. It speaks the wire format only, so the tests
// that use it pin the output of the CLI and the shells whatever the Go types
// behind it are called.
package fakeinstance

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/layout"
	"gatehouse/test/testserver"
)

// Status is the fixed status, as PID 1 sends it. Times that the text output
// shows relative to now are a little ahead of now, so that they round to
// the same text however long the test takes (up to most of a second).
func Status() string {
	now := time.Now().Add(400 * time.Millisecond).UTC()
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339Nano) }
	return `{
 "version": "v1.2.3", "hostname": "gw1", "mode": "pid1",
 "started_at": "2024-05-01T10:00:00Z", "uptime_s": 3725.2, "ready": true, "ready_ms": 842,
 "config": "/data/gatehouse.yaml", "warnings": ["appliance.yaml:3:1: something to look at"],
 "data": {"path": "/data", "mounted": true, "device": "/dev/vda", "read_only": false},
 "orphans_reaped": 2,
 "conditions": ["clock-synced", "firewall-default-deny"],
 "services": [
  {"name": "firewall", "phase": "running", "pid": 101, "restarts": 0, "since": "` + at(0) + `", "status": "nftables, 2 inbound paths, egress open",
   "detail": {"backend": "test-backend", "ruleset": "config", "applied": "` + at(0) + `", "in": ["tcp 22 from 10.0.0.0/8", "tcp 25 from any"], "out": null, "egress": "open", "applies": 3, "resolved_at": "` + at(0) + `"}},
  {"name": "network", "phase": "running", "pid": 102, "restarts": 0, "since": "` + at(0) + `",
   "detail": {"updated": "` + at(0) + `", "changes": 7,
    "links": [{"key": "eth0", "name": "eth0", "state": "up", "mtu": 1500, "addresses": ["192.0.2.10/24"],
               "dhcp": {"state": "bound", "address": "192.0.2.10/24", "router": "192.0.2.1", "server": "192.0.2.1", "renew": "` + at(time.Hour) + `", "expires": "` + at(2*time.Hour) + `", "renewals": 4}},
              {"key": "mac:52:54:00:00:00:02", "state": "missing"}],
    "routes": ["default via 192.0.2.1 dev eth0"],
    "problems": {"mac:52:54:00:00:00:02": "no such link"}}},
  {"name": "dns", "phase": "running", "pid": 103, "restarts": 0, "since": "` + at(0) + `",
   "detail": {"mode": "builtin", "servers": ["192.0.2.1"], "source": "dhcp", "resolv_conf": "/etc/resolv.conf", "listen": "127.0.0.1:53",
    "resolver": {"upstreams": ["192.0.2.1:53"], "queries": 10, "cache_hits": 6, "cache_misses": 4, "stale_served": 1, "upstream_failures": 0, "entries": 3, "upstream_down": false}}},
  {"name": "ntp", "phase": "running", "pid": 104, "restarts": 0, "since": "` + at(0) + `",
   "detail": {"synced": true, "sets_clock": true, "server": "192.0.2.123", "stratum": 2, "offset_ns": 1234567, "rtt_ns": 2345678,
    "last_sync": "` + at(0) + `", "poll_ns": 64000000000, "steps": 1, "slews": 5, "servers": ["192.0.2.123"], "source": "config",
    "samples": [{"server": "192.0.2.123", "offset_ns": 1234567, "rtt_ns": 2345678, "stratum": 2, "root_distance_ns": 1000000}]}},
  {"name": "smtp", "phase": "backoff", "restarts": 3, "since": "` + at(0) + `", "last_exit": "exit status 1", "next_start_ns": 4000000000}
 ]
}`
}

// Arrived is when the fixed queue's messages arrived.
var Arrived = time.Date(2024, 5, 1, 9, 30, 0, 0, time.UTC)

// queueList is the relay's fixed queue.
const queueList = `[
 {"id": "A1B2C3D4E5F6", "size": 2048, "arrived": "2024-05-01T09:30:00Z", "from": "alice@example.com",
  "rcpts": ["bob@example.net", "carol@example.net"], "routes": ["mx:example.net", "mx:example.net"], "status": ["pending", "sent"],
  "active": false, "hold": false, "next_try": "2024-05-01T10:30:00Z", "attempts": 2, "last_error": "451 try later", "errors": ["451 try later", ""]},
 {"id": "0FEDCBA98765", "size": 100, "arrived": "2024-05-01T09:31:00Z", "from": "",
  "rcpts": ["dave@example.org"], "routes": ["connector:smarthost"], "status": ["pending"],
  "active": false, "hold": true, "attempts": 0, "errors": [""]}
]`

// fetchList is the collector's fixed accounts.
const fetchList = `[
 {"name": "sales", "protocol": "pop3", "server": "pop.example.com:995", "last_poll": "2024-05-01T09:59:00Z", "last_ok": "2024-05-01T09:59:00Z",
  "collected": 12, "deleted": 12, "on_server": 0, "next_poll": "2024-05-01T10:04:00Z"},
 {"name": "support", "protocol": "imap", "server": "imap.example.com:993", "last_poll": "2024-05-01T09:58:00Z",
  "collected": 0, "deleted": 0, "on_server": 3, "too_large": ["17", "18"], "last_error": "dial tcp: connection refused", "failures": 2}
]`

// Instance is a fake appliance's sockets in a directory.
type Instance struct {
	Dir     string // the run directory (layout.Host)
	Control string // the control socket
	// Requests received on either socket, in order, as the JSON sent.
	Requests chan string
}

// Start serves the fake sockets until the test ends. With empty, the relay's
// queue and accounts are empty.
func Start(t *testing.T, empty bool) *Instance {
	t.Helper()
	dir, err := os.MkdirTemp("", "fakeinstance")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	paths := layout.Host(dir)
	in := &Instance{Dir: dir, Control: paths.ControlSocket(), Requests: make(chan string, 100)}
	status := Status()
	serve(t, in.Control, in.Requests, func(req map[string]any) string {
		switch req["verb"] {
		case "status":
			return `{"status": ` + status + `}`
		case "logs":
			if req["service"] != "smtp" {
				return errorJSON(fmt.Sprintf("no service %v", req["service"]))
			}
			lines := []string{"one", "two"}
			if n, _ := req["lines"].(float64); n > 0 && int(n) < len(lines) {
				lines = lines[len(lines)-int(n):]
			}
			b, _ := json.Marshal(map[string]any{"lines": lines})
			return string(b)
		case "reload":
			if empty {
				return `{"error": "appliance.yaml:1:1: bad"}`
			}
			return `{}`
		case "poweroff", "reboot", "confirm", "apply":
			return `{}`
		}
		return errorJSON(fmt.Sprintf("unknown verb %q", req["verb"]))
	})
	os.Mkdir(filepath.Dir(paths.RelaySocket()), 0o700)
	serve(t, paths.RelaySocket(), in.Requests, func(req map[string]any) string {
		id, _ := req["id"].(string)
		switch req["verb"] {
		case "list":
			if empty {
				return `{}`
			}
			return `{"list": ` + queueList + `}`
		case "show":
			var list []json.RawMessage
			json.Unmarshal([]byte(queueList), &list)
			for _, m := range list {
				if strings.Contains(string(m), `"id": "`+id+`"`) {
					return `{"info": ` + string(m) + `}`
				}
			}
			return errorJSON("queue: no message " + id)
		case "flush":
			if empty {
				return `{}`
			}
			return `{"flushed": 1}`
		case "hold", "release", "delete":
			if id != "A1B2C3D4E5F6" {
				return errorJSON("queue: no message " + id)
			}
			return `{}`
		case "pop-auth":
			return `{}`
		case "fetch-now":
			if id != "" && id != "sales" {
				return errorJSON(fmt.Sprintf("no fetch account %q", id))
			}
			return `{}`
		case "fetch-status":
			if empty {
				return `{"detail": {"queue": {}, "accepted": 0, "rejected": 0, "auth_failed": 0, "auth_guard": {}, "error_limit_disconnects": 0, "refused_no_space": 0, "connections": 0}}`
			}
			return `{"detail": {"queue": {}, "accepted": 0, "rejected": 0, "auth_failed": 0, "auth_guard": {}, "error_limit_disconnects": 0, "refused_no_space": 0, "connections": 0, "fetch": ` + fetchList + `}}`
		}
		return errorJSON(fmt.Sprintf("unknown verb %q", req["verb"]))
	})
	os.Mkdir(filepath.Dir(paths.FirewallSocket()), 0o700)
	serve(t, paths.FirewallSocket(), in.Requests, func(req map[string]any) string {
		if req["verb"] != "show" {
			return errorJSON(fmt.Sprintf("unknown verb %q", req["verb"]))
		}
		if empty {
			return `{"error": "firewall: no backend chosen yet"}`
		}
		return `{"backend": "nftables", "rules": "table inet gatehouse {\n\tchain input {\n\t}\n}\n"}`
	})
	return in
}

// serve answers one JSON request per connection on a Unix socket at path.
func serve(t *testing.T, path string, seen chan<- string, answer func(map[string]any) string) {
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	testserver.Serve(t, l, func(c net.Conn) {
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return
		}
		select {
		case seen <- strings.TrimSpace(line):
		default:
		}
		var req map[string]any
		if err := json.Unmarshal([]byte(line), &req); err != nil {
			fmt.Fprintf(c, `{"error": %q}`+"\n", err.Error())
			return
		}
		// Compact, as the real sockets answer.
		var v any
		if err := json.Unmarshal([]byte(answer(req)), &v); err != nil {
			panic(err)
		}
		json.NewEncoder(c).Encode(v)
	})
}

func errorJSON(msg string) string {
	b, _ := json.Marshal(map[string]string{"error": msg})
	return string(b)
}
