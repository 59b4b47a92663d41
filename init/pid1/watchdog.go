package pid1

import (
	"context"
	"log/slog"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The watchdog resets the machine when PID 1 stops answering: a firmware
// that hangs on its trial boot comes back as the old one. The image's
// kernel has no driver for QEMU's i6300esb, so the watchdog is the
// kernel's softdog, loaded with the other modules; a hardware watchdog
// behind /dev/watchdog is used the same way.
const (
	watchdogDevice  = "/dev/watchdog"
	watchdogTimeout = 30 // seconds without a keepalive until the reset
	watchdogPet     = 5 * time.Second
)

// watchdog arms the watchdog and keeps it quiet while the supervisor
// answers; when ctx ends (the shutdown is done) it disarms it with the
// magic close, so that a poweroff is not turned into a reset.
func (a *appliance) watchdog(ctx context.Context, log *slog.Logger) {
	f, err := os.OpenFile(watchdogDevice, os.O_WRONLY, 0)
	if err != nil {
		log.Warn("no watchdog: a hang would need a human", "err", err)
		return
	}
	timeout := int32(watchdogTimeout)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.WDIOC_SETTIMEOUT, uintptr(unsafe.Pointer(&timeout))); e != 0 {
		log.Warn("watchdog: set timeout", "err", e)
	}
	log.Info("watchdog armed", "device", watchdogDevice, "timeout_s", timeout)
	t := time.NewTicker(watchdogPet)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			f.Write([]byte("V"))
			f.Close()
			return
		case <-t.C:
		}
		// The supervisor answering is PID 1 working: a deadlock there
		// stops the keepalives.
		done := make(chan struct{})
		go func() { a.sup.Snapshot(); close(done) }()
		select {
		case <-done:
			f.Write([]byte{0})
		case <-time.After(watchdogTimeout * time.Second / 2):
			log.Error("PID 1's supervisor does not answer: the watchdog will reset the machine")
		}
	}
}
