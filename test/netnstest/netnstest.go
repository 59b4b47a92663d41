// Package netnstest runs test code inside a network namespace, so that
// tests build their own networks and never touch the host's.
package netnstest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

var seq atomic.Int64

// New makes an empty namespace with a name no other test process uses, and
// deletes it when the test ends. Run code in it with In.
func New(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("ghtest%d-%d", os.Getpid(), seq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s (needs root): %v: %s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	return name
}

// In runs f on a thread switched into the named namespace (made with `ip
// netns add`): sockets f opens live in that namespace. The thread is
// thrown away afterwards, never handed back to other goroutines.
func In(t testing.TB, name string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		h, err := netns.GetFromName(name)
		if err != nil {
			t.Error(err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			t.Error(err)
			return
		}
		f()
	}()
	<-done
}

// Enter creates the named namespace and moves the calling goroutine's
// thread into it for good, for programs (the benchmarks) that run wholly
// inside one. The returned function deletes the namespace.
func Enter(name string) (remove func(), err error) {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %v: %s", name, err, out)
	}
	remove = func() { exec.Command("ip", "netns", "del", name).Run() }
	runtime.LockOSThread() // never unlocked: the thread stays in the namespace
	h, err := netns.GetFromName(name)
	if err == nil {
		err = netns.Set(h)
		h.Close()
	}
	if err != nil {
		remove()
		return nil, err
	}
	return remove, nil
}

// Reach says how a TCP connection from namespace ns to addr fares: "open",
// "blocked" (no answer: dropped) or "refused".
func Reach(t testing.TB, ns, addr string) string {
	result := ""
	In(t, ns, func() {
		c, err := net.DialTimeout("tcp", addr, 700*time.Millisecond)
		var ne net.Error
		switch {
		case err == nil:
			c.Close()
			result = "open"
		case errors.As(err, &ne) && ne.Timeout():
			result = "blocked"
		default:
			result = "refused"
		}
	})
	return result
}

// OwnTable makes an nftables table in namespace ns ("ip filter", "inet
// gatehouse") the property of another process, a long-lived nft: the
// kernel then refuses every change to it from anyone else (EPERM), the
// firewall included. release lets the table go with its owner; it runs
// when the test ends at the latest.
func OwnTable(t testing.TB, ns, table string) (release func()) {
	t.Helper()
	owner := exec.Command("ip", "netns", "exec", ns, "nft", "-i")
	stdin, err := owner.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := owner.Start(); err != nil {
		t.Fatal(err)
	}
	released := false
	release = func() {
		if !released {
			released = true
			stdin.Close()
			owner.Wait()
		}
	}
	t.Cleanup(release)
	fmt.Fprintf(stdin, "add table %s { flags owner; }\n", table)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		out, _ := exec.Command("ip", "netns", "exec", ns, "nft", "list", "tables").Output()
		if strings.Contains(string(out), "table "+table+"\n") {
			return release
		}
		if time.Now().After(deadline) {
			t.Fatalf("nft did not take table %s: %s", table, out)
		}
	}
}
