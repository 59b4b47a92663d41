package pid1

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// userProcesses counts the processes other than PID 1 that are not kernel
// threads: what is left to stop before unmounting /data.
func userProcesses() int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == 1 {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 > len(b) {
			continue
		}
		f := strings.Fields(string(b[i+2:]))
		if len(f) < 7 {
			continue
		}
		const pfKthread = 0x00200000
		flags, _ := strconv.ParseUint(f[6], 10, 64)
		if flags&pfKthread == 0 && f[0] != "Z" {
			n++
		}
	}
	return n
}

// execOffset is how long ago the kernel started /init, from the kernel's
// own log line "Run /init as init process": PID 1's start counts from the
// exec, not from when Go's main began.
func execOffset() (time.Duration, bool) {
	f, err := os.OpenFile("/dev/kmsg", os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	buf := make([]byte, 8192)
	for {
		n, err := f.Read(buf)
		if err != nil {
			if err == unix.EPIPE || errorsIsEPIPE(err) {
				continue
			}
			return 0, false // EAGAIN: the end, not found
		}
		head, msg, ok := strings.Cut(string(buf[:n]), ";")
		if !ok || !strings.HasPrefix(msg, "Run /init as init process") {
			continue
		}
		fields := strings.Split(head, ",")
		if len(fields) < 3 {
			return 0, false
		}
		usec, err := strconv.ParseInt(fields[2], 10, 64)
		if err != nil {
			return 0, false
		}
		var ts unix.Timespec
		if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
			return 0, false
		}
		return time.Duration(ts.Nano()) - time.Duration(usec)*time.Microsecond, true
	}
}

func errorsIsEPIPE(err error) bool {
	pe, ok := err.(*os.PathError)
	return ok && pe.Err == unix.EPIPE
}
