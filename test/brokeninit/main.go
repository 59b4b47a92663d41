// Command brokeninit is a deliberately broken /init for the firmware
// update tests (test/update_test.go): built with -X main.mode=panic it
// panics at once as PID 1, as a firmware whose PID 1 dies at start; with
// -X main.mode=hang it arms the watchdog and hangs, as a firmware that
// stops answering. Run as anything but PID 1 (the old firmware checking
// the config with it) it says the config is valid. Never shipped.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

var mode = "panic"

func main() {
	if os.Getpid() != 1 {
		// Run by the old firmware to check the config (`config validate`):
		// the breakage shows only as PID 1, where a test wants it.
		fmt.Println("brokeninit: valid (not PID 1)")
		return
	}
	fmt.Println("brokeninit: mode", mode)
	if mode == "panic" {
		panic("brokeninit: a firmware that dies at start")
	}
	unix.Mount("proc", "/proc", "proc", 0, "")
	unix.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	// The watchdog core, then softdog, from the image's modules.
	for _, name := range []string{"watchdog.ko", "softdog.ko"} {
		matches, _ := filepath.Glob("/lib/modules/*/kernel/drivers/watchdog/" + name)
		for _, m := range matches {
			f, err := os.Open(m)
			if err != nil {
				continue
			}
			if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && err != unix.EEXIST {
				fmt.Println("brokeninit: load", m, err)
			}
			f.Close()
		}
	}
	var f *os.File
	var err error
	for range 100 { // devtmpfs makes the node as the driver registers
		if f, err = os.OpenFile("/dev/watchdog", os.O_WRONLY, 0); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		fmt.Println("brokeninit: no watchdog:", err)
	} else {
		timeout := int32(10)
		unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.WDIOC_SETTIMEOUT, uintptr(unsafe.Pointer(&timeout)))
		fmt.Println("brokeninit: watchdog armed for", timeout, "s; hanging")
	}
	b, _ := os.ReadFile("/proc/cmdline")
	fmt.Println("brokeninit: cmdline", strings.TrimSpace(string(b)))
	for { // the hang (an empty select would be a deadlock the runtime ends)
		time.Sleep(time.Hour)
	}
}
