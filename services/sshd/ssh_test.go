package sshd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/config"
	"gatehouse/layout"
	"gatehouse/linuxfw"
	"gatehouse/peergate"
	"gatehouse/test/netnstest"
)

// A ban the kernel lost (the firewall's table rebuilt) is put back with
// the time it has left; one still there is left alone.
func TestBansReassertedIntoTheFirewall(t *testing.T) {
	name := fmt.Sprintf("ghssh%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", name).Run()
	netnstest.In(t, name, func() {
		if err := (linuxfw.NFT{}).Apply(linuxfw.Ruleset{BanSets: []linuxfw.BanSet{{Name: layout.SSHBanSet, Proto: "tcp", Ports: []uint16{22}}}}); err != nil {
			t.Fatal(err)
		}
		c, _, err := config.Parse("f.yaml", []byte("ssh:\n  ban: {after: 1, for: 1h}\n"))
		if err != nil {
			t.Fatal(err)
		}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		g := NewGate(c, nil, peergate.NewBanTable())
		lost, kept := netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("203.0.113.10")
		g.Failed(lost)
		g.Failed(kept)
		if err := (linuxfw.NFT{}).Ban(layout.SSHBanSet, kept, 5*time.Minute); err != nil { // the kernel's own, shorter
			t.Fatal(err)
		}
		peergate.Reassert(g.Table(), layout.SSHBanSet, log)
		bans, err := (linuxfw.NFT{}).Bans(layout.SSHBanSet)
		if err != nil {
			t.Fatal(err)
		}
		if left := bans[lost]; left < 59*time.Minute || left > time.Hour {
			t.Errorf("lost ban put back with %v left, want about 1h", left)
		}
		if left := bans[kept]; left > 5*time.Minute {
			t.Errorf("a ban still in the kernel was reset to %v", left)
		}
	})
}

// Logins fail while the config is reloaded, again and again: the gates of
// before and after a reload record into one ban table (run with -race;
// without one owner this is a concurrent map write), and no ban is lost.
func TestReloadWhileLoginsFail(t *testing.T) {
	c, _, err := config.Parse("f.yaml", []byte("ssh:\n  allow: [198.51.100.0/24]\n  ban: {after: 1, for: 1h}\n"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := newServer(context.Background(), c, nil, Options{Log: log, Control: "/nonexistent/control.sock"})
	const workers, each = 4, 2000
	var wg, reloader sync.WaitGroup
	var done atomic.Bool
	reloader.Go(func() {
		for !done.Load() {
			s.reload(context.Background(), c)
			runtime.Gosched()
		}
	})
	for w := range workers {
		wg.Go(func() {
			// A connection keeps the gate it was accepted under: its
			// failures come in after reloads too.
			g := s.current().gate
			for i := range each {
				if i%10 == 0 {
					g = s.current().gate
				}
				a := netip.AddrFrom4([4]byte{10, byte(w), byte(i >> 8), byte(i)})
				g.Failed(a)
				g.Admit(a)
				if i%100 == 0 {
					g.Bans()
				}
			}
		})
	}
	wg.Wait()
	done.Store(true)
	reloader.Wait()
	g := s.current().gate
	if n := len(g.Bans()); n != workers*each {
		t.Errorf("%d bans after the reloads, want %d", n, workers*each)
	}
}

// Host names on the allowlist admit exactly what they resolve to, and no
// one while they resolve to nothing.
func TestGateHostNames(t *testing.T) {
	c, _, err := config.Parse("f.yaml", []byte("monitoring: {hosts: [nagios.example.test]}\nssh:\n  allow: [admin.example.test]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := HostNames(c); len(got) != 2 || got[0] != "admin.example.test" || got[1] != "nagios.example.test" {
		t.Errorf("HostNames %v", got)
	}
	for _, a := range []string{"192.0.2.5", "203.0.113.1", "::1", "127.0.0.1"} {
		if ok, _ := NewGate(c, nil, peergate.NewBanTable()).Admit(netip.MustParseAddr(a)); ok {
			t.Errorf("nothing resolved, yet %s is admitted", a)
		}
	}
	g := NewGate(c, map[string][]netip.Addr{"admin.example.test": {netip.MustParseAddr("192.0.2.5")}}, peergate.NewBanTable())
	for a, want := range map[string]bool{"192.0.2.5": true, "192.0.2.6": false} {
		if ok, _ := g.Admit(netip.MustParseAddr(a)); ok != want {
			t.Errorf("%s admitted %v, want %v", a, ok, want)
		}
	}
}
