//go:build e2e

package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gatehouse/control"
	"gatehouse/status"
)

// snmpTool runs one of net-snmp's tools in namespace ns, without MIBs
// (numeric OIDs in and out).
func snmpTool(ns, tool string, args ...string) (string, error) {
	full := append([]string{"netns", "exec", ns, tool, "-m", "", "-On"}, args...)
	out, err := exec.Command("ip", full...).CombinedOutput()
	return string(out), err
}

// The SNMP agent against net-snmp's own tools, in namespaces: the monitoring
// host 10.77.0.1 (in the community's and the users' allow lists) and an
// admin host 10.78.0.1 (in none). v2c get, walk and bulk walk of the whole
// tree; v3 authPriv with SHA-256/AES-128 and SHA-512/AES-256; the refusals
// as net-snmp's snmpd gives them; the coldStart trap at snmptrapd; a restart
// that keeps the engine ID, raises boots, and an snmpget holding the old
// boots resynchronises.
func TestSNMPAgent(t *testing.T) {
	t.Parallel()
	w := newNetWorld(t)
	admin := addAdmin(t, w)
	mon := w.router

	// The trap receiver first: the coldStart goes out as the agent starts.
	trapConf := filepath.Join(w.dir, "snmptrapd.conf")
	os.WriteFile(trapConf, []byte("authCommunity log gh-trap\n"), 0o644)
	w.start(t, mon, "snmptrapd.log", "snmptrapd", "-f", "-Lo", "-On", "-m", "", "-C", "-c", trapConf,
		"-p", filepath.Join(w.dir, "snmptrapd.pid"), "udp:10.77.0.1:162")
	trapped := func(oid string) bool {
		return strings.Contains(w.log("snmptrapd.log"), oid)
	}
	// Ask the receiver until it logs a trap of the test's own.
	for deadline := time.Now().Add(10 * time.Second); !trapped(".1.3.6.1.4.1.99999.99.1"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("snmptrapd does not log traps:\n%s", w.log("snmptrapd.log"))
		}
		snmpTool(mon, "snmptrap", "-v2c", "-c", "gh-trap", "10.77.0.1:162", "", ".1.3.6.1.4.1.99999.99.1")
	}

	pass := func(name, v string) string {
		f := filepath.Join(w.dir, name)
		os.WriteFile(f, []byte(v+"\n"), 0o600)
		return f
	}
	cfg := fmt.Sprintf(`
hostname: gw-snmp
interfaces:
  - {name: a0, addresses: [10.77.0.2/24]}
  - {name: a1, addresses: [10.78.0.2/24]}
snmp:
  contact: ops@example.test
  location: rack 7
  communities:
    - {community: gh-public, allow: [10.77.0.1]}
  users:
    - {name: mon256, auth: {protocol: sha256, password_file: %s}, priv: {protocol: aes128, password_file: %s}, allow: [10.77.0.1]}
    - {name: mon512, auth: {protocol: sha512, password_file: %s}, priv: {protocol: aes256, password_file: %s}, allow: [10.77.0.1]}
  traps:
    - {host: 10.77.0.1, community: gh-trap}
`, pass("a256", "auth-pass-256"), pass("p256", "priv-pass-256"), pass("a512", "auth-pass-512"), pass("p512", "priv-pass-512"))
	w.gatehouse(t, cfg)
	waitAgent := func() {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if out, err := snmpTool(mon, "snmpget", "-v2c", "-c", "gh-public", "-t", "1", "-r", "0", "10.77.0.2", ".1.3.6.1.2.1.1.3.0"); err == nil && strings.Contains(out, "Timeticks") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the agent does not answer")
			}
		}
	}
	waitAgent()
	v2c := []string{"-v2c", "-c", "gh-public", "-t", "2", "-r", "1", "10.77.0.2"}
	v3a := []string{"-v3", "-l", "authPriv", "-u", "mon256", "-a", "SHA-256", "-A", "auth-pass-256", "-x", "AES", "-X", "priv-pass-256", "-t", "2", "-r", "1", "10.77.0.2"}
	v3b := []string{"-v3", "-l", "authPriv", "-u", "mon512", "-a", "SHA-512", "-A", "auth-pass-512", "-x", "AES-256", "-X", "priv-pass-512", "-t", "2", "-r", "1", "10.77.0.2"}

	t.Run("v2c get", func(t *testing.T) {
		out, err := snmpTool(mon, "snmpget", append(v2c, ".1.3.6.1.2.1.1.1.0", ".1.3.6.1.2.1.1.4.0", ".1.3.6.1.2.1.1.5.0", ".1.3.6.1.2.1.1.2.0",
			".1.3.6.1.2.1.1.99.0", ".1.3.6.1.2.1.1.5.1")...)
		for _, want := range []string{`.1.3.6.1.2.1.1.1.0 = STRING: "Gatehouse email security gateway`, `.1.3.6.1.2.1.1.4.0 = STRING: "ops@example.test"`,
			`.1.3.6.1.2.1.1.5.0 = STRING: "gw-snmp"`, `.1.3.6.1.2.1.1.2.0 = OID: .1.3.6.1.4.1.99999.4.1`,
			`.1.3.6.1.2.1.1.99.0 = No Such Object`, `.1.3.6.1.2.1.1.5.1 = No Such Instance`} {
			if err != nil || !strings.Contains(out, want) {
				t.Errorf("snmpget: %v: no %q in\n%s", err, want, out)
			}
		}
	})

	var walked []string
	t.Run("v2c walk and bulkwalk of the whole tree", func(t *testing.T) {
		walk, err := snmpTool(mon, "snmpwalk", append(v2c, ".1")...)
		if err != nil {
			t.Fatalf("snmpwalk: %v\n%s", err, walk)
		}
		bulk, err := snmpTool(mon, "snmpbulkwalk", append([]string{"-Cr50"}, append(v2c, ".1")...)...)
		if err != nil {
			t.Fatalf("snmpbulkwalk: %v\n%s", err, bulk)
		}
		walked = oids(walk)
		if b := oids(bulk); strings.Join(b, " ") != strings.Join(walked, " ") {
			t.Errorf("walk and bulk walk differ: %d and %d objects", len(walked), len(b))
		}
		for _, out := range []string{walk, bulk} {
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if !strings.Contains(lines[len(lines)-1], "No more variables left in this MIB View") {
				t.Errorf("the walk does not end at the end of the view: %q", lines[len(lines)-1])
			}
		}
		for _, want := range []string{
			".1.3.6.1.2.1.2.2.1.2.1 = STRING: \"lo\"",     // ifDescr
			".1.3.6.1.2.1.31.1.1.1.6.1 = Counter64: ",     // ifHCInOctets
			".1.3.6.1.2.1.4.20.1.1.10.77.0.2 = IpAddress", // ipAdEntAddr
			".1.3.6.1.2.1.25.1.1.0 = Timeticks",           // hrSystemUptime
			".1.3.6.1.2.1.25.2.3.1.3.1 = STRING: \"Physical memory\"",
			".1.3.6.1.2.1.25.3.3.1.2.196608 = INTEGER", // hrProcessorLoad
			".1.3.6.1.4.1.2021.10.1.3.1 = STRING",      // laLoad
			".1.3.6.1.4.1.99999.1.2.1.2.1 = STRING",    // ghServiceName
			".1.3.6.1.4.1.99999.1.1.5.0 = INTEGER: 1",  // ghStatusReachable
			".1.3.6.1.6.3.10.2.1.2.0 = INTEGER: 1",     // snmpEngineBoots
		} {
			if !strings.Contains(walk, want) {
				t.Errorf("the walk has no %q", want)
			}
		}
	})

	t.Run("GATEHOUSE-MIB names every enterprise object", func(t *testing.T) {
		mibs := "testdata/mibs:" + filepath.Dir(mustAbs(t, "../GATEHOUSE-MIB.txt"))
		// -Pe: the parser reports every error in the MIB (on stderr).
		tr := exec.Command("snmptranslate", "-M", mibs, "-m", "GATEHOUSE-MIB", "-Pe", "-Tp", "GATEHOUSE-MIB::gatehouse")
		var stderr strings.Builder
		tr.Stderr = &stderr
		out, err := tr.Output()
		if err != nil || stderr.Len() > 0 || !strings.Contains(string(out), "ghServiceName(2)") {
			t.Fatalf("snmptranslate: %v\n%s\n%s", err, stderr.String(), out)
		}
		n := 0
		for _, o := range walked {
			if !strings.HasPrefix(o, ".1.3.6.1.4.1.99999.") {
				continue
			}
			n++
			name, err := exec.Command("snmptranslate", "-M", mibs, "-m", "GATEHOUSE-MIB", o).CombinedOutput()
			if err != nil || !strings.HasPrefix(string(name), "GATEHOUSE-MIB::gh") {
				t.Errorf("%s is not in GATEHOUSE-MIB: %s", o, name)
			}
		}
		if n == 0 {
			t.Error("the walk has no enterprise objects")
		}
	})

	t.Run("v3 authPriv", func(t *testing.T) {
		out, err := snmpTool(mon, "snmpget", append(v3a, ".1.3.6.1.2.1.1.5.0")...)
		if err != nil || !strings.Contains(out, `STRING: "gw-snmp"`) {
			t.Errorf("SHA-256/AES-128: %v\n%s", err, out)
		}
		out, err = snmpTool(mon, "snmpbulkwalk", append([]string{"-Cr50"}, append(v3b, ".1.3.6.1.2.1.1")...)...)
		if err != nil || strings.Count(out, "\n") != 7 || !strings.Contains(out, `.1.3.6.1.2.1.1.6.0 = STRING: "rack 7"`) {
			t.Errorf("SHA-512/AES-256 bulk walk of system: %v\n%s", err, out)
		}
	})

	t.Run("refusals as net-snmp gives them", func(t *testing.T) {
		short := []string{"-t", "1", "-r", "0"}
		cases := []struct {
			name string
			ns   string
			args []string
			want string
		}{
			{"wrong community", mon, []string{"-v2c", "-c", "gh-private"}, "Timeout: No Response"},
			{"wrong auth key", mon, []string{"-v3", "-l", "authPriv", "-u", "mon256", "-a", "SHA-256", "-A", "wrong-pass-256", "-x", "AES", "-X", "priv-pass-256"},
				"Authentication failure (incorrect password, community or key)"},
			{"wrong priv key", mon, []string{"-v3", "-l", "authPriv", "-u", "mon256", "-a", "SHA-256", "-A", "auth-pass-256", "-x", "AES", "-X", "wrong-pass-256"},
				"Timeout: No Response"},
			{"unknown user", mon, []string{"-v3", "-l", "authPriv", "-u", "nobody", "-a", "SHA-256", "-A", "auth-pass-256", "-x", "AES", "-X", "priv-pass-256"},
				"Unknown user name"},
			{"noAuth for an authPriv user", mon, []string{"-v3", "-l", "noAuthNoPriv", "-u", "mon256"}, "authorizationError"},
			{"source outside the allow list", admin, []string{"-v2c", "-c", "gh-public"}, "Timeout: No Response"},
			{"v3 from outside the allow list", admin, []string{"-v3", "-l", "authPriv", "-u", "mon256", "-a", "SHA-256", "-A", "auth-pass-256", "-x", "AES", "-X", "priv-pass-256"},
				"Timeout"},
		}
		for _, c := range cases {
			target := "10.77.0.2"
			if c.ns == admin {
				target = "10.78.0.2"
			}
			args := append(append(append([]string{}, c.args...), short...), target, ".1.3.6.1.2.1.1.5.0")
			out, err := snmpTool(c.ns, "snmpget", args...)
			if !strings.Contains(out, c.want) || strings.Contains(out, "gw-snmp") {
				t.Errorf("%s: %v: want %q, got\n%s", c.name, err, c.want, out)
			}
		}
		// The agent reports its counters every few seconds.
		w.waitFor(t, "the refusals counted", 15*time.Second, func(st *control.Status) bool {
			d, _, err := status.Detail[status.SNMP](st.Services, "snmp")
			return err == nil && d.WrongDigests > 0 && d.UnknownUserNames > 0 && d.BadCommunity > 0 && d.NotAllowed > 0
		})
	})

	t.Run("coldStart trap", func(t *testing.T) {
		for deadline := time.Now().Add(10 * time.Second); !trapped(".1.3.6.1.6.3.1.1.5.1"); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no coldStart at snmptrapd:\n%s", w.log("snmptrapd.log"))
			}
		}
	})

	t.Run("restart keeps the engine ID, raises boots, and the manager resyncs", func(t *testing.T) {
		engine := func() (string, int, int) {
			t.Helper()
			out, err := snmpTool(mon, "snmpget", append(v3a, ".1.3.6.1.6.3.10.2.1.1.0", ".1.3.6.1.6.3.10.2.1.2.0", ".1.3.6.1.6.3.10.2.1.3.0")...)
			m := regexp.MustCompile(`(?s)\.1\.0 = Hex-STRING: ([0-9A-F ]+?)\s*\n.*\.2\.0 = INTEGER: (\d+).*\.3\.0 = INTEGER: (\d+)`).FindStringSubmatch(out)
			if err != nil || m == nil {
				t.Fatalf("engine: %v\n%s", err, out)
			}
			boots, _ := strconv.Atoi(m[2])
			tm, _ := strconv.Atoi(m[3])
			return strings.ReplaceAll(m[1], " ", ""), boots, tm
		}
		id, boots, tm := engine()
		w.gatehose.Process.Signal(syscall.SIGTERM)
		w.gatehose.Wait()
		w.gatehouse(t, cfg)
		waitAgent()
		// The manager still holds the old boots and time (-e, -Z): the
		// agent's authenticated notInTimeWindows report resyncs it.
		out, err := snmpTool(mon, "snmpget", append([]string{"-e", "0x" + id, "-Z", fmt.Sprintf("%d,%d", boots, tm)}, append(v3a, ".1.3.6.1.2.1.1.5.0")...)...)
		if err != nil || !strings.Contains(out, `STRING: "gw-snmp"`) {
			t.Errorf("snmpget with the old boots: %v\n%s", err, out)
		}
		st := w.waitFor(t, "snmp detail", 10*time.Second, func(st *control.Status) bool {
			d, ok, _ := status.Detail[status.SNMP](st.Services, "snmp")
			return ok && d.NotInTimeWindows > 0
		})
		d, _, _ := status.Detail[status.SNMP](st.Services, "snmp")
		if d.NotInTimeWindows == 0 {
			t.Error("the agent sent no notInTimeWindows report")
		}
		id2, boots2, _ := engine()
		if id2 != id || boots2 != boots+1 {
			t.Errorf("after a restart: engine %s boots %d, want %s and %d", id2, boots2, id, boots+1)
		}
	})
}

// oids are the OIDs of a walk's lines (the last, end of view, left out).
func oids(out string) []string {
	var list []string
	for _, l := range strings.Split(out, "\n") {
		if o, _, ok := strings.Cut(l, " = "); ok && !strings.Contains(l, "No more variables") {
			list = append(list, o)
		}
	}
	return list
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// The agent's notifications at net-snmp's snmptrapd, one receiver port
// each: a v2c trap, a v2c inform and a v3 authPriv trap (snmptrapd knows
// the user under the agent's engine ID, read from the agent with
// snmpget). The snmp service killed and restarted by the supervisor sends
// coldStart to all three; the inform is acknowledged once (the agent
// counts it and does not retry); another service killed gives
// ghServiceDown then ghServiceUp naming it, in each form; two messages
// held in the queue give ghQueueOverThreshold (threshold 1).
func TestSNMPTraps(t *testing.T) {
	t.Parallel()
	w := newNetWorld(t)
	mon := w.router
	pass := func(name, v string) string {
		f := filepath.Join(w.dir, name)
		os.WriteFile(f, []byte(v+"\n"), 0o600)
		return f
	}
	cfg := fmt.Sprintf(`
hostname: gw-traps
interfaces:
  - {name: a0, addresses: [10.77.0.2/24]}
snmp:
  communities:
    - {community: gh-public, allow: [10.77.0.1]}
  users:
    - {name: trapper, auth: {protocol: sha256, password_file: %s}, priv: {protocol: aes128, password_file: %s}, allow: [10.77.0.1]}
  traps:
    - {host: 10.77.0.1, port: 1162, community: gh-trap}
    - {host: 10.77.0.1, port: 1163, community: gh-trap, inform: true}
    - {host: 10.77.0.1, port: 1164, version: v3, user: trapper}
  thresholds: {queue_depth: 1}
smtp:
  hostname: gw.example.test
  listen: {smtp: "127.0.0.1:2525", submission: "off", smtps: "off"}
  trusted_networks: [127.0.0.0/8]
  domains:
    - {name: example.test, next_hop: "[10.77.0.1]:25", tls: none}
`, pass("auth", "trap-auth-pass"), pass("priv", "trap-priv-pass"))
	w.gatehouse(t, cfg)

	// The agent's engine ID, asked of the agent.
	var engineID string
	for deadline := time.Now().Add(20 * time.Second); engineID == ""; time.Sleep(100 * time.Millisecond) {
		out, _ := snmpTool(mon, "snmpget", "-v2c", "-c", "gh-public", "-t", "1", "-r", "0", "10.77.0.2", ".1.3.6.1.6.3.10.2.1.1.0")
		if m := regexp.MustCompile(`Hex-STRING: ([0-9A-F ]+)`).FindStringSubmatch(out); m != nil {
			engineID = strings.ReplaceAll(strings.TrimSpace(m[1]), " ", "")
		}
		if engineID == "" && time.Now().After(deadline) {
			t.Fatalf("no snmpEngineID from the agent: %s", out)
		}
	}

	// %s: the SNMP version (1 v2c, 3 v3), %u the community or user, %b
	// the addresses (the port says which receiver), %v the variables.
	conf := filepath.Join(w.dir, "snmptrapd.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("createUser -e 0x%s trapper SHA-256 trap-auth-pass AES trap-priv-pass\nauthUser log trapper priv\nauthCommunity log gh-trap\n", engineID)), 0o600)
	w.start(t, mon, "snmptrapd.log", "snmptrapd", "-f", "-Lo", "-On", "-m", "", "-C", "-c", conf, "-F", "TRAP v=%s u=%u %b | %v\n",
		"-p", filepath.Join(w.dir, "snmptrapd.pid"), "udp:10.77.0.1:1162,udp:10.77.0.1:1163,udp:10.77.0.1:1164")
	lines := func(port, user, oid string) int {
		n := 0
		for _, l := range strings.Split(w.log("snmptrapd.log"), "\n") {
			if strings.HasPrefix(l, "TRAP ") && strings.Contains(l, "->[10.77.0.1]:"+port+" |") && strings.Contains(l, "u="+user+" ") && strings.Contains(l, oid) {
				n++
			}
		}
		return n
	}
	waitTrap := func(what, port, user, oid string, more ...string) string {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			for _, l := range strings.Split(w.log("snmptrapd.log"), "\n") {
				ok := strings.HasPrefix(l, "TRAP ") && strings.Contains(l, "->[10.77.0.1]:"+port+" |") && strings.Contains(l, "u="+user+" ") && strings.Contains(l, oid)
				for _, m := range more {
					ok = ok && strings.Contains(l, m)
				}
				if ok {
					return l
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not at snmptrapd:\n%s", what, w.log("snmptrapd.log"))
			}
		}
	}
	// Ask the receiver until it logs a trap of the test's own.
	for deadline := time.Now().Add(10 * time.Second); lines("1162", "gh-trap", ".1.3.6.1.4.1.99999.99.1") == 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("snmptrapd does not log traps:\n%s", w.log("snmptrapd.log"))
		}
		snmpTool(mon, "snmptrap", "-v2c", "-c", "gh-trap", "10.77.0.1:1162", "", ".1.3.6.1.4.1.99999.99.1")
	}

	kill := func(name string) { t.Helper(); w.killService(t, name) }

	// The agent restarted: coldStart to every receiver, now listening.
	kill("snmp")
	coldStart := "= OID: .1.3.6.1.6.3.1.1.5.1"
	waitTrap("v2c coldStart trap", "1162", "gh-trap", coldStart)
	waitTrap("v2c coldStart inform", "1163", "gh-trap", coldStart)
	l := waitTrap("v3 coldStart trap", "1164", "trapper", coldStart)
	if !strings.HasPrefix(l, "TRAP v=3 ") { // snmptrapd's %s: 1 v2c, 3 v3
		t.Errorf("the v3 trap is logged as another version: %s", l)
	}
	// The counters follow the sends: snmptrapd can log the last trap
	// before the agent has counted it, so wait for the count too.
	st := w.waitFor(t, "the inform acknowledged and three sent", 15*time.Second, func(st *control.Status) bool {
		d, ok, _ := status.Detail[status.SNMP](st.Services, "snmp")
		return ok && d.InformsAcked >= 1 && d.TrapsSent >= 3
	})
	if d, _, _ := status.Detail[status.SNMP](st.Services, "snmp"); d.TrapErrors != 0 || d.TrapsSent < 3 {
		t.Errorf("after coldStart: %d sent, %d informs acknowledged, %d errors (%s)", d.TrapsSent, d.InformsAcked, d.TrapErrors, d.LastTrapError)
	}

	// Another service killed: down, then up, naming it.
	var victim string
	for _, s := range st.Services {
		if s.Name != "snmp" && s.PID > 0 && s.Phase == status.Running {
			victim = s.Name
			if s.Name == "ntp" || s.Name == "dns" {
				break
			}
		}
	}
	if victim == "" {
		t.Fatalf("no service to kill: %+v", st.Services)
	}
	kill(victim)
	name := `STRING: "` + victim + `"`
	for _, r := range []struct{ what, port, user string }{{"v2c trap", "1162", "gh-trap"}, {"v2c inform", "1163", "gh-trap"}, {"v3 trap", "1164", "trapper"}} {
		waitTrap(victim+" down, "+r.what, r.port, r.user, "= OID: .1.3.6.1.4.1.99999.2.0.1", name)
		waitTrap(victim+" up, "+r.what, r.port, r.user, "= OID: .1.3.6.1.4.1.99999.2.0.2", name)
	}
	// An acknowledged inform is not sent again.
	if n := lines("1163", "gh-trap", coldStart); n != 1 {
		t.Errorf("the coldStart inform reached snmptrapd %d times, want once", n)
	}
	w.waitFor(t, "the informs acknowledged", 15*time.Second, func(st *control.Status) bool {
		d, ok, _ := status.Detail[status.SNMP](st.Services, "snmp")
		return ok && d.InformsAcked >= 3 && d.TrapErrors == 0
	})

	// Two messages for a next hop that refuses connections stay in the
	// queue: its depth crosses the threshold of 1.
	inNS(t, w.appl, func() {
		for i := range 2 {
			if !sendOne("127.0.0.1:2525", i) {
				t.Fatalf("message %d not accepted", i)
			}
		}
	})
	for _, r := range []struct{ what, port, user string }{{"v2c trap", "1162", "gh-trap"}, {"v2c inform", "1163", "gh-trap"}, {"v3 trap", "1164", "trapper"}} {
		waitTrap("queue over the threshold, "+r.what, r.port, r.user, "= OID: .1.3.6.1.4.1.99999.2.0.3", ".1.3.6.1.4.1.99999.1.3.1.0 = Gauge32: 2")
	}
	if n := lines("1162", "gh-trap", "= OID: .1.3.6.1.4.1.99999.2.0.3"); n != 1 {
		t.Errorf("ghQueueOverThreshold sent %d times, want once per crossing", n)
	}
}

func serviceRunning(st *control.Status, name string) bool {
	for _, s := range st.Services {
		if s.Name == name {
			return s.Phase == status.Running
		}
	}
	return false
}
