package ntp

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/u-root/u-root/pkg/rtc"
	"golang.org/x/sys/unix"
)

// SystemClock is the kernel's clock, and the RTC behind it.
type SystemClock struct {
	Log *slog.Logger
}

// Slew has the kernel skew the clock gradually by offset (adjtime(3)
// semantics: at most 0.5 ms per second), so time never jumps or runs back.
func (c SystemClock) Slew(offset time.Duration) error {
	tx := unix.Timex{Modes: unix.ADJ_OFFSET_SINGLESHOT, Offset: offset.Microseconds()}
	if _, err := unix.Adjtimex(&tx); err != nil {
		return fmt.Errorf("adjtimex: %w", err)
	}
	return nil
}

// Step sets the clock at once, then the RTC, so that the next boot starts
// near the right time.
func (c SystemClock) Step(offset time.Duration) error {
	// Cancel a slew in progress: the step makes it wrong.
	tx := unix.Timex{Modes: unix.ADJ_OFFSET_SINGLESHOT}
	unix.Adjtimex(&tx)
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return fmt.Errorf("clock_gettime: %w", err)
	}
	ts = unix.NsecToTimespec(ts.Nano() + offset.Nanoseconds())
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return fmt.Errorf("clock_settime: %w", err)
	}
	r, err := rtc.OpenRTC()
	if err != nil {
		c.Log.Warn("clock stepped, RTC not written", "err", err)
		return nil
	}
	defer r.Close()
	if err := r.Set(time.Now().UTC()); err != nil {
		c.Log.Warn("clock stepped, RTC not written", "err", err)
		return nil
	}
	c.Log.Info("RTC written")
	return nil
}
