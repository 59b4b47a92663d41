package pid1

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"gatehouse/console"
	"gatehouse/control"
	"gatehouse/layout"
	"gatehouse/safeio"

	"golang.org/x/sys/unix"
)

// Main is the life of PID 1. It never returns: it ends in reboot(2), or, if
// anything goes wrong, in the emergency shell on the console. (PID 1 exiting
// would panic the kernel.)
func Main(version string, built int64) {
	started := time.Now()
	reason := boot(func() (string, error) {
		return Run(Options{Version: version, Built: built, PID1: true, Console: os.Stdin, Out: os.Stdout, Started: started, Binary: "/init"})
	}, halt)
	trialFallback(reason, halt)
	emergency(version, started, reason)
}

// trialFallback ends a trial boot whose PID 1 failed (a panic, an error
// it could not boot past) by rebooting into the previous firmware, as a
// kernel panic would, instead of waiting in the emergency shell for a
// human: the boot loader's one-shot entry is spent.
func trialFallback(reason string, halt func(action string)) {
	slot := bootSlot()
	file := filepath.Join(layout.DataDir, updateDirName, "state.json")
	b, err := os.ReadFile(file)
	var st updateState
	if slot == "" || err != nil || json.Unmarshal(b, &st) != nil || st.To.Slot != slot || st.Phase != "trial" {
		return
	}
	st.Phase, st.Reason, st.Ended = "failed-in-trial", "PID 1 failed: "+reason, time.Now().UTC()
	if b, err := json.MarshalIndent(st, "", "  "); err == nil {
		safeio.WriteFile(file, b, 0o600)
	}
	fmt.Fprintf(os.Stdout, "gatehouse: trial of %s failed: PID 1 failed (%s); rebooting into the previous firmware in 5 s\n", st.To.Version, reason)
	time.Sleep(5 * time.Second)
	unix.Sync()
	halt("reboot")
}

// boot runs the appliance and then halts the machine as asked. It returns
// only if that failed, saying why: an error, a panic, or a halt that did not
// halt.
func boot(run func() (string, error), halt func(action string)) (reason string) {
	defer func() {
		if r := recover(); r != nil {
			reason = fmt.Sprintf("panic: %v", r)
			fmt.Fprintf(os.Stdout, "gatehouse: PID 1 %s\n%s\n", reason, debug.Stack())
		}
	}()
	action, err := run()
	if err != nil {
		return err.Error()
	}
	halt(action)
	return action + " did not happen"
}

// halt ends the machine. RB_POWER_OFF under QEMU ends QEMU.
func halt(action string) {
	cmd := unix.LINUX_REBOOT_CMD_POWER_OFF
	if action == "reboot" {
		cmd = unix.LINUX_REBOOT_CMD_RESTART
	}
	fmt.Fprintf(os.Stdout, "gatehouse: %s\n", action)
	unix.Sync()
	if err := unix.Reboot(cmd); err != nil {
		fmt.Fprintf(os.Stdout, "gatehouse: reboot(2): %v\n", err)
	}
}

// emergency is the last resort: a diagnostics shell on the console that can
// still show status and power off or reboot cleanly.
func emergency(version string, started time.Time, reason string) {
	fmt.Fprintf(os.Stdout, "gatehouse: EMERGENCY SHELL (%s); type help\n%s", reason, console.Prompt)
	b := &emergencyBackend{version: version, started: started, reason: reason}
	for {
		func() {
			defer func() { recover() }()
			sh := &console.Shell{Backend: b, In: os.Stdin, Out: os.Stdout}
			sh.Run(context.Background())
		}()
		time.Sleep(time.Second) // the console went away; never exit
	}
}

type emergencyBackend struct {
	version string
	started time.Time
	reason  string
}

func (b *emergencyBackend) Status() control.Status {
	host, _ := os.Hostname()
	return control.Status{Version: b.version, Hostname: host, Mode: "emergency", StartedAt: b.started,
		UptimeS: time.Since(b.started).Seconds(), Emergency: b.reason, Data: control.Data{Path: "/data", Mounted: isMounted("/data")}}
}

func (b *emergencyBackend) Logs(string, int) ([]string, error) {
	return nil, fmt.Errorf("no services run in the emergency shell")
}

func (b *emergencyBackend) Reload() error {
	return fmt.Errorf("the emergency shell runs no config")
}

func (b *emergencyBackend) Apply(string, time.Duration) error {
	return fmt.Errorf("the emergency shell runs no config")
}

func (b *emergencyBackend) Confirm() error { return fmt.Errorf("the emergency shell runs no config") }

func (b *emergencyBackend) Shutdown(action string) error {
	unix.Kill(-1, unix.SIGKILL)
	if isMounted("/data") {
		if err := unmountData(); err != nil {
			fmt.Fprintln(os.Stdout, "gatehouse:", err)
		}
	}
	halt(action)
	return nil
}
