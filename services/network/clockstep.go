package network

import (
	"context"
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// clockSteps calls stepped each time the wall clock is set (NTP's step at
// boot, by years when the RTC was lost), until ctx ends: a timerfd armed
// far in the future with TFD_TIMER_CANCEL_ON_SET is cancelled by the
// kernel whenever CLOCK_REALTIME jumps, so the lease times the status
// shows as wall time are shown anew at once, not at the next poll.
func clockSteps(ctx context.Context, stepped func()) error {
	fd, err := unix.TimerfdCreate(unix.CLOCK_REALTIME, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), "timerfd") // pollable: Close ends a Read
	go func() {
		<-ctx.Done()
		f.Close()
	}()
	arm := func() error {
		far := unix.ItimerSpec{Value: unix.Timespec{Sec: 1 << 62}}
		return unix.TimerfdSettime(fd, unix.TFD_TIMER_ABSTIME|unix.TFD_TIMER_CANCEL_ON_SET, &far, nil)
	}
	if err := arm(); err != nil {
		f.Close()
		return err
	}
	go func() {
		buf := make([]byte, 8)
		for {
			_, err := f.Read(buf)
			switch {
			case errors.Is(err, unix.ECANCELED):
				stepped()
				if arm() != nil {
					return
				}
			case err != nil:
				return // closed: ctx ended
			}
		}
	}()
	return nil
}
