package command

import (
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

func cmdStatus(e *Env, args []string) error {
	var format string
	var asJSON bool
	if _, err := e.parse("status", args, func(fs *flag.FlagSet) {
		fs.StringVar(&format, "format", "text", "text or json")
		fs.BoolVar(&asJSON, "json", false, "same as --format json")
	}); err != nil {
		return err
	}
	if asJSON {
		format = "json"
	}
	if err := checkFormat(format); err != nil {
		return err
	}
	st, err := e.Appliance.Status()
	if err != nil {
		return err
	}
	if format == "json" {
		return e.writeJSON(st)
	}
	WriteStatus(e.Out, st)
	return nil
}

// logs takes the count as the CLI's -n N or the shell's second word.
func logs(e *Env, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return e.usage("logs")
	}
	var n int
	pos, err := e.parse("logs", args, func(fs *flag.FlagSet) { fs.IntVar(&n, "n", 50, "lines") })
	if err != nil {
		return err
	}
	switch len(pos) {
	case 1:
	case 2:
		v, err := strconv.Atoi(pos[1])
		if err != nil || v <= 0 {
			return fmt.Errorf("%q is not a positive number", pos[1])
		}
		n = v
	default:
		return e.usage("logs")
	}
	lines, err := e.Appliance.Logs(pos[0], n)
	if err != nil {
		return err
	}
	for _, l := range lines {
		fmt.Fprintln(e.Out, l)
	}
	return nil
}

func reload(e *Env, args []string) error {
	if _, err := e.parse("reload", args, nil); err != nil {
		return err
	}
	if err := e.Appliance.Reload(); err != nil {
		return &ExitError{2, fmt.Errorf("reload refused; the running config is unchanged:\n%w", err)}
	}
	fmt.Fprintln(e.Out, "config reloaded")
	return nil
}

// shutdown is poweroff and reboot; it returns once PID 1 has begun.
func shutdown(action string) func(e *Env, args []string) error {
	return func(e *Env, args []string) error {
		if _, err := e.parse(action, args, nil); err != nil {
			return err
		}
		if err := e.Appliance.Shutdown(action); err != nil {
			return err
		}
		fmt.Fprintf(e.Out, "%s: services are stopping\n", action)
		return nil
	}
}

// updateCmd installs a firmware bundle; with --reboot it reboots into
// the trial at once.
func updateCmd(e *Env, args []string) error {
	var reboot, downgrade bool
	pos, err := e.parse("update", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&reboot, "reboot", false, "reboot into the trial at once")
		fs.BoolVar(&downgrade, "allow-downgrade", false, "install a bundle older than the running firmware")
	})
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return e.usage("update")
	}
	file, err := filepath.Abs(pos[0]) // PID 1 reads it, from its own directory
	if err != nil {
		return err
	}
	if err := e.Appliance.Update(file, downgrade); err != nil {
		return &ExitError{2, fmt.Errorf("update refused; nothing changed:\n%w", err)}
	}
	fmt.Fprintln(e.Out, "firmware written to the other slot: it boots once on trial at the next reboot, and becomes the default when it stays healthy")
	if reboot {
		if err := e.Appliance.Shutdown("reboot"); err != nil {
			return err
		}
		fmt.Fprintln(e.Out, "reboot: services are stopping")
	}
	return nil
}
