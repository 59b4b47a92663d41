// Package netnstest runs test code inside a network namespace, so that
// tests build their own networks and never touch the host's.
package netnstest

import (
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
)

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
