// Package command is the appliance's one command set: the CLI (`gatehouse
// status`), the serial console's shell and the SSH shell all serve this
// table, by the same names, with the same output and the same
// `--format json`. A command acts on the appliance (PID 1 itself, or PID 1
// over its control socket) and on the services' sockets, which layout
// locates.
package command

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"gatehouse/control"
	"gatehouse/layout"
)

// Command is one entry of the table.
type Command struct {
	Name string
	Args string // as help and usage messages show them
	Help string
	Run  func(e *Env, args []string) error
}

// Commands is the whole table, in the order help lists it. (A function,
// not a variable, because help itself reads it.)
func Commands() []Command {
	return []Command{
		{"help", "", "list the commands", help},
		{"status", "[--format text|json]", "version, uptime, data disk and every service's state", cmdStatus},
		{"logs", "SERVICE [-n N]", "the last N (default 50) output lines of a service (kernel: the kernel log; init: PID 1's own)", logs},
		{"ip", "", "interfaces, addresses and routes", ip},
		{"dns", "NAME [TYPE]", "look NAME up (A, AAAA, MX, ...) as the relay would", dnsLookup},
		{"ntp", "", "time servers, offset and sync state", ntp},
		{"date", "", "the system clock and the RTC, in UTC", date},
		{"firewall", "[show]", "the rules the firewall installed", firewall},
		{"queue", "list [--format text|json] | show ID | flush | hold ID | release ID | delete ID", "the mail queue, like mailq ('*' delivering, '!' held); or act on it", queueCmd},
		{"fetch", "status [--format text|json] | now [ACCOUNT] | oauth2-login ACCOUNT|connector:NAME", "the collector's accounts; or poll now; or sign an OAuth2 account in as a user", fetch},
		{"cluster", "status [--format text|json] | init | token [--ttl D] | join ADDRESS TOKEN | remove NODE | recover", "the cluster's nodes and config version; or build and repair it", clusterCmd},
		{"reload", "", "read the config again and apply it", reload},
		{"update", "FILE [--reboot] [--allow-downgrade]", "install a signed firmware bundle in the other slot; it boots once on trial and becomes the default when healthy", updateCmd},
		{"setup", "[--answers FILE] [--confirm-within 120s] [--yes]", "first-boot setup: ask for the network, mail domains and administrators, apply the config with commit-confirm", setupCmd},
		{"poweroff", "", "stop all services and power off", shutdown("poweroff")},
		{"reboot", "", "stop all services and reboot", shutdown("reboot")},
	}
}

// Lookup finds a command by name.
func Lookup(name string) (Command, bool) {
	for _, c := range Commands() {
		if c.Name == name {
			return c, true
		}
	}
	return Command{}, false
}

// Env is what a command acts on and writes to.
type Env struct {
	// Prog names the program in usage messages: "gatehouse" in the CLI,
	// empty in the shells.
	Prog      string
	Appliance Appliance
	Paths     layout.Paths // where the services' sockets are
	Out       io.Writer
	// ReadLine reads what the person at the front end types, a line at a
	// time (setup asks questions); nil where nobody can answer.
	ReadLine func() (string, error)
	// FlagOutput is where the flag package says what is wrong with a
	// flag; Out when nil.
	FlagOutput io.Writer
	// Flags, when set, adds the front end's own flags to every command's
	// (the CLI's --socket and --state) and returns what sets the Env up
	// once they are parsed.
	Flags func(*flag.FlagSet) func(*Env)
}

// ExitError is a failure with the CLI's exit status: 2 for a command line
// a command does not take, or a change the appliance refused. A nil Err
// has been told already (the flag package's complaint).
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// Exec runs one line typed into a shell, and prints what went wrong after
// the command's name.
func Exec(e *Env, line string) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return
	}
	c, ok := Lookup(f[0])
	if !ok {
		fmt.Fprintf(e.Out, "unknown command %q; try help\n", f[0])
		return
	}
	err := c.Run(e, f[1:])
	var ee *ExitError
	if errors.As(err, &ee) && ee.Err == nil {
		return
	}
	if err != nil {
		fmt.Fprintf(e.Out, "%s: %v\n", f[0], err)
	}
}

// usage is the refusal of a command line c does not take.
func (e *Env) usage(c string) error {
	cmd, _ := Lookup(c)
	return &ExitError{2, errors.New("usage: " + strings.TrimSpace(e.Prog+" "+c+" "+cmd.Args))}
}

// parse parses args with the command's own flags (define adds them) and
// the front end's, flags before or after the positional arguments
// (`queue hold ID --state DIR`); it returns the positional ones.
func (e *Env) parse(name string, args []string, define func(*flag.FlagSet)) ([]string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.Out)
	if e.FlagOutput != nil {
		fs.SetOutput(e.FlagOutput)
	}
	if define != nil {
		define(fs)
	}
	var setup func(*Env)
	if e.Flags != nil {
		setup = e.Flags(fs)
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, &ExitError{Code: 2}
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if setup != nil {
		setup(e)
	}
	return pos, nil
}

// checkFormat refuses an output format other than text and json.
func checkFormat(format string) error {
	if format != "text" && format != "json" {
		return &ExitError{2, fmt.Errorf("unknown format %q (text or json)", format)}
	}
	return nil
}

// writeJSON prints v as `--format json` does everywhere.
func (e *Env) writeJSON(v any) error {
	enc := json.NewEncoder(e.Out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func help(e *Env, _ []string) error {
	for _, c := range Commands() {
		fmt.Fprintf(e.Out, "  %-22s %s\n", strings.TrimSpace(c.Name+" "+c.Args), c.Help)
	}
	return nil
}

// Appliance is what the commands act on: PID 1.
type Appliance interface {
	Status() (control.Status, error)
	Logs(service string, lines int) ([]string, error)
	Shutdown(action string) error // "poweroff" or "reboot"
	Reload() error
	// Apply installs a config file on the appliance; unless confirmWithin
	// is 0, the previous one comes back if Confirm does not follow in time.
	Apply(file string, confirmWithin time.Duration) error
	Confirm() error
	// Update installs a firmware bundle (a file on the appliance) in the
	// inactive slot and arms its trial boot.
	Update(file string, allowDowngrade bool) error
}

// Backend is the appliance as a control.Backend serves it: PID 1 itself
// on the serial console, or control.Client in the SSH shell, whose status
// of an appliance it cannot reach says so instead of failing.
func Backend(b control.Backend) Appliance { return backend{b} }

type backend struct{ b control.Backend }

func (b backend) Status() (control.Status, error)          { return b.b.Status(), nil }
func (b backend) Logs(svc string, n int) ([]string, error) { return b.b.Logs(svc, n) }
func (b backend) Shutdown(action string) error             { return b.b.Shutdown(action) }
func (b backend) Reload() error                            { return b.b.Reload() }
func (b backend) Apply(file string, within time.Duration) error {
	return b.b.Apply(file, within)
}
func (b backend) Confirm() error { return b.b.Confirm() }
func (b backend) Update(file string, allowDowngrade bool) error {
	u, ok := b.b.(control.Updater)
	if !ok {
		return errors.New("this appliance does not install firmware updates")
	}
	return u.Update(file, allowDowngrade)
}

// Socket is the appliance behind the control socket at path, for the
// CLI: one it cannot reach is an error.
func Socket(path string) Appliance { return socket(path) }

type socket string

func (s socket) Status() (control.Status, error) {
	resp, err := control.Call(string(s), control.Request{Verb: "status"})
	if err != nil {
		return control.Status{}, err
	}
	if resp.Status == nil {
		return control.Status{}, errors.New("control: the answer holds no status")
	}
	return *resp.Status, nil
}

func (s socket) Logs(svc string, n int) ([]string, error) {
	resp, err := control.Call(string(s), control.Request{Verb: "logs", Service: svc, Lines: n})
	if err != nil {
		return nil, err
	}
	return resp.Lines, nil
}

func (s socket) Shutdown(action string) error {
	_, err := control.Call(string(s), control.Request{Verb: action})
	return err
}

func (s socket) Reload() error {
	_, err := control.Call(string(s), control.Request{Verb: "reload"})
	return err
}

func (s socket) Apply(file string, within time.Duration) error {
	_, err := control.Call(string(s), control.Request{Verb: "apply", File: file, Within: within.String()})
	return err
}

func (s socket) Update(file string, allowDowngrade bool) error {
	return control.Client{Socket: string(s)}.Update(file, allowDowngrade)
}

func (s socket) Confirm() error {
	_, err := control.Call(string(s), control.Request{Verb: "confirm"})
	return err
}
