package snmp

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"gatehouse/config"
	"gatehouse/control"
	"gatehouse/snmp"
	"gatehouse/status"
)

// An inform's keys are made by gosnmp from the pass phrases and the
// receiver's engine ID: they must be the keys net-snmp makes (package
// snmp's), AES-192/256 extended as net-snmp does, or the receiver drops
// every v3 inform.
func TestInformKeysAsNetSNMP(t *testing.T) {
	engineID := []byte{0x80, 0x00, 0x1f, 0x88, 0x80, 1, 2, 3, 4, 5, 6, 7, 8}
	for auth := range authToGosnmp {
		for priv := range privToGosnmp {
			if priv == snmp.PrivNone {
				continue
			}
			authKey, privKey, err := snmp.LocalizeKeys(engineID, auth, "auth-pass-phrase", priv, "priv-pass-phrase")
			if err != nil {
				t.Fatal(err)
			}
			sp := &gosnmp.UsmSecurityParameters{AuthoritativeEngineID: string(engineID),
				AuthenticationProtocol: authToGosnmp[auth], AuthenticationPassphrase: "auth-pass-phrase",
				PrivacyProtocol: privToGosnmp[priv], PrivacyPassphrase: "priv-pass-phrase"}
			if err := sp.InitSecurityKeys(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(sp.SecretKey, authKey) || !bytes.Equal(sp.PrivacyKey, privKey) {
				t.Errorf("auth %v priv %v: gosnmp's keys\n% x\n% x\nwant\n% x\n% x", auth, priv, sp.SecretKey, sp.PrivacyKey, authKey, privKey)
			}
		}
	}
}

func svc(name string, phase status.Phase, restarts int) status.State {
	return status.State{Name: name, Phase: phase, Restarts: restarts}
}

func trapNames(ns []notification) []string {
	var out []string
	for _, n := range ns {
		name := map[string]string{oidServiceDown.String(): "down", oidServiceUp.String(): "up", oidQueueOver.String(): "queue",
			oidNTPLostSync.String(): "ntp", oidDiskLow.String(): "disk"}[n.oid.String()]
		if len(n.vbs) > 0 && n.vbs[0].Value.Type == snmp.TagOctetString {
			name += " " + string(n.vbs[0].Value.Bytes)
		}
		out = append(out, name)
	}
	return out
}

// The edges the agent reports, once each: a service leaving and reaching
// running, also when the supervisor restarted it between two checks.
func TestTrapEdges(t *testing.T) {
	c := &config.Config{SNMP: &config.SNMP{Thresholds: config.SNMPThresholds{QueueDepth: 1, DiskFreePercent: 10}}}
	relay := func(depth int) status.State {
		s := svc("smtp", status.Running, 0)
		r := status.Relay{}
		r.Queue.Depth = depth
		s.Detail, _ = json.Marshal(r)
		return s
	}
	ntp := func(synced bool) status.State {
		s := svc("ntp", status.Running, 0)
		s.Detail, _ = json.Marshal(status.NTP{Synced: synced})
		return s
	}
	steps := []struct {
		name     string
		services []status.State
		free     int
		want     string
	}{
		{"first check: only noted", []status.State{svc("dns", status.Running, 0), relay(5), ntp(true)}, 5, ""},
		{"nothing changed", []status.State{svc("dns", status.Running, 0), relay(5), ntp(true)}, 5, ""},
		{"dns down", []status.State{svc("dns", status.BackingOff, 1), relay(5), ntp(true)}, 5, "down dns"},
		{"still down", []status.State{svc("dns", status.Starting, 1), relay(5), ntp(true)}, 5, ""},
		{"dns up", []status.State{svc("dns", status.Running, 1), relay(5), ntp(true)}, 5, "up dns"},
		{"restarted between checks", []status.State{svc("dns", status.Running, 2), relay(5), ntp(true)}, 5, "down dns,up dns"},
		{"a new service", []status.State{svc("dns", status.Running, 2), svc("ssh", status.Running, 0), relay(5), ntp(true)}, 5, ""},
		{"queue and disk back, ntp lost", []status.State{svc("dns", status.Running, 2), svc("ssh", status.Running, 0), relay(1), ntp(false)}, 50, "ntp"},
		{"queue over, disk low", []status.State{svc("dns", status.Running, 2), svc("ssh", status.Running, 0), relay(2), ntp(false)}, 5, "queue,disk"},
		{"snmp itself is not reported", []status.State{svc("dns", status.Running, 2), svc("ssh", status.Running, 0), relay(2), ntp(false), svc("snmp", status.Running, 3)}, 5, ""},
	}
	// The first check sees the queue over and the disk low already: those
	// are reported at once (a level, not a service's edge).
	tr := &trapper{}
	for i, s := range steps {
		got := trapNames(tr.observe(&control.Status{Services: s.services}, c, s.free, true))
		want := s.want
		if i == 0 {
			want = "queue,disk"
		}
		if g := join(got); g != want {
			t.Errorf("%s: %q, want %q", s.name, g, want)
		}
	}
	if n := tr.observe(&control.Status{Mode: "unreachable"}, c, 5, true); n != nil {
		t.Errorf("an unreachable status gave %v", trapNames(n))
	}
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ","
		}
		out += x
	}
	return out
}

// One check's notifications reach each receiver in order: a service's
// down before its up.
func TestTrapsInOrder(t *testing.T) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	e := snmp.NewEngine([]byte{0x80, 0, 0x1f, 0x88, 5, 1, 2, 3, 4}, 1, time.Now(), 1)
	tr := newTrapper(slog.New(slog.DiscardHandler), e, newMIB(Options{}, e))
	c := &config.Config{SNMP: &config.SNMP{Traps: []config.SNMPTrap{{Host: "127.0.0.1", Port: conn.LocalAddr().(*net.UDPAddr).Port, Version: "v2c", Community: "c"}}}}
	var ns []notification
	for range 20 {
		ns = append(ns, notification{oid: oidServiceDown}, notification{oid: oidServiceUp})
	}
	tr.send(&policy{}, c, ns)
	tr.inFlight.Wait()
	buf := make([]byte, 2048)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i, n := range ns {
		k, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("notification %d: %v", i, err)
		}
		p, err := gosnmp.Default.UnmarshalTrap(buf[:k], false)
		if err != nil || len(p.Variables) < 2 {
			t.Fatalf("notification %d: %v", i, err)
		}
		if got := p.Variables[1].Value.(string); got != "."+n.oid.String() {
			t.Fatalf("notification %d is %s, want %s", i, got, n.oid)
		}
	}
	if sent, _, failed, _ := tr.stats(); sent != uint64(len(ns)) || failed != 0 {
		t.Errorf("%d sent, %d failed", sent, failed)
	}
}
