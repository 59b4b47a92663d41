// Package netnstest runs test code inside a network namespace, so that
// tests build their own networks and never touch the host's.
package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"testing"

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
