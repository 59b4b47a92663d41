// Command gatehouse is the whole appliance in one binary. As PID 1 (/init in
// the image) it boots and runs the appliance; run by hand it is the CLI.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gatehouse/command"
	"gatehouse/config"
	"gatehouse/control"
	"gatehouse/dnsclient"
	"gatehouse/init/pid1"
	"gatehouse/layout"
	"gatehouse/paths"
	"gatehouse/services/relay"
)

// version is stamped by the Makefile.
var version = "dev"

// built is the build's commit time, unix seconds, stamped by the
// Makefile: a firmware bundle built before it is a downgrade.
var built = "0"

func builtTime() int64 {
	n, _ := strconv.ParseInt(built, 10, 64)
	return n
}

const usage = `usage: gatehouse COMMAND [ARGS]

  run --config FILE --state DIR   run the appliance as an ordinary process (host mode)
  config validate [--no-resolve] FILE
                                  check a config file (and that the firewall's host names
                                  resolve); exit status 2 if it is invalid
  config default                  print the built-in default config
  config reload                   have the running instance read its config again
  config apply FILE [--confirm-within 120s]
                                  install FILE as the config now; it is rolled back unless
  config confirm                  ... this follows in time (0s: no rollback); on a cluster
                                  node both go cluster-wide (--local: this node alone)
  cluster status [--format text|json]
                                  every node of the cluster: reachable, config version, clock
  cluster init | token [--ttl 1h] | join ADDRESS TOKEN | remove NODE | recover
                                  start a cluster on the first backend; let a node in; take
                                  one out; make this node the only voter after losing quorum
  status [--format text|json]     state of the running instance (--json = --format json)
  logs SERVICE [-n N]             a service's recent output
  paths [--config FILE] [--format text|md|csv|json]
                                  the communication-path table (firewall openings) of the
                                  running config, or of FILE
  paths check [--config FILE] [--format text|json]
                                  test every outbound path; exit 1 if a required one is closed
  queue list [--format text|json]   the mail queue, like mailq ('*' delivering, '!' held)
  queue show ID | flush | hold ID | release ID | delete ID
                                  inspect one message; retry all deferred now; hold, release
                                  or delete one (like postqueue -f, postsuper -h/-H/-d)
  fetch status [--format text|json] the collector's accounts: last poll, counts, errors
  fetch now [ACCOUNT]             poll one account, or all, at once
  smtp hash-password              read a password on stdin, print its bcrypt hash for smtp.users
  smtp pop-auth ADDRESS           authorise ADDRESS to relay for smtp.pop_before_smtp.window
  dkim keygen DOMAIN SELECTOR [--type rsa|ed25519] [--dir DIR]
                                  make a DKIM signing key (RSA 2048 bits by default) in
                                  DIR (default /data/dkim), mode 0600; print its DNS record
  bundle keygen DIR | sign --key FILE --version V --built UNIX [--cmdline ...] --out FILE
         VMLINUZ INITRAMFS | verify FILE [--pub BASE64]
                                  firmware bundles: make a signing key pair, sign a kernel
                                  and initramfs, check a bundle (default: the built-in key)
  api token create NAME --role read|admin | token list | token revoke NAME
                                  REST API tokens: the secret is shown once, stored hashed
  admin passwd                    set the web console's password for admin (from stdin)
  setup [--answers FILE] [--confirm-within 120s] [--yes]
                                  first-boot setup: ask for the network, the mail domains and
                                  the administrators; apply the config with commit-confirm
  poweroff | reboot               stop all services in order, then power off or reboot
  firewall show                   the rules the firewall installed
  ip | ntp | date | dns NAME [TYPE]
                                  as in the diagnostics shell (interfaces, time sync, clocks,
                                  a look-up as the relay would)
  version                         print the version

Commands that talk to a running instance use its control socket: --socket PATH,
or --state DIR for one in host mode (default ` + layout.RunDir + `/control.sock).
`

func main() {
	if os.Getpid() == 1 {
		pid1.Main(version, builtTime()) // never returns
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// exitError carries an exit status with its message.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(args[1:], stdout)
	case "config":
		err = cmdConfig(args[1:], stdout, stderr)
	case "paths":
		err = cmdPaths(args[1:], stdout)
	case "smtp":
		err = cmdSMTP(args[1:], os.Stdin, stdout)
	case "dkim":
		err = cmdDKIM(args[1:], stdout)
	case "bundle":
		err = cmdBundle(args[1:], stdout)
	case "api":
		err = cmdAPI(args[1:], stdout)
	case "admin":
		err = cmdAdmin(args[1:], os.Stdin, stdout)
	case "setup":
		err = cmdSetup(args[1:], os.Stdin, stdout, stderr)
	case "service": // how the supervisor starts the appliance's services
		err = cmdService(args[1:], stdout)
	case "version":
		fmt.Fprintln(stdout, "gatehouse", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		c, ok := command.Lookup(args[0])
		if !ok {
			fmt.Fprintf(stderr, "gatehouse: unknown command %q\n\n%s", args[0], usage)
			return 2
		}
		err = c.Run(commandEnv(stdout, stderr), args[1:])
	}
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, ee.err)
		}
		return ee.code
	}
	var ce *command.ExitError
	if errors.As(err, &ce) {
		if ce.Err != nil {
			fmt.Fprintln(stderr, ce.Err)
		}
		return ce.Code
	}
	fmt.Fprintln(stderr, "gatehouse:", err)
	return 1
}

func cmdRun(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	cfg := fs.String("config", "", "config file")
	state := fs.String("state", "", "state directory (holds the control socket)")
	shell := fs.Bool("console", false, "serve the diagnostics shell on standard input")
	withFirewall := fs.Bool("firewall", false, "enforce the firewall in this network namespace (always on as PID 1)")
	var serviceArgs []string
	fs.Func("service-arg", "pass an argument to every service (repeatable), e.g. --service-arg=--ntp-min-poll=2s", func(s string) error {
		serviceArgs = append(serviceArgs, s)
		return nil
	})
	relayUser := fs.String("relay-user", "", "as root: the user the relay runs as, a name or UID:GID (default: the host's "+relay.RelayUser+" user, else 100:100 as on the appliance)")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: 2}
	}
	if *cfg == "" || *state == "" {
		return &exitError{2, errors.New("gatehouse run: --config and --state are required")}
	}
	var relay *pid1.RelayID
	if os.Geteuid() == 0 {
		id, warning, err := relayID(*relayUser)
		if err != nil {
			return &exitError{2, fmt.Errorf("gatehouse run: --relay-user: %w", err)}
		}
		if warning != "" {
			fmt.Fprintln(stdout, "gatehouse run: warning:", warning)
		}
		relay = &id
	}
	if err := os.MkdirAll(*state, 0o700); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	opts := pid1.Options{Version: version, Built: builtTime(), ConfigPath: *cfg, StateDir: *state, Out: stdout, Started: time.Now(),
		Binary: self, ServiceArgs: serviceArgs, Firewall: *withFirewall, RelayID: relay}
	if *shell {
		opts.Console = os.Stdin
	}
	if _, err := pid1.Run(opts); err != nil {
		var cerrs config.Errors
		if errors.As(err, &cerrs) {
			return &exitError{2, err}
		}
		return err
	}
	return nil
}

// relayID is the relay's user in host mode as root: spec is a user name
// or UID:GID; empty is the host's gatehouse-relay user if it has one, else
// the appliance's numbers, which may be another account's here (warning).
func relayID(spec string) (pid1.RelayID, string, error) {
	var id pid1.RelayID
	if _, err := fmt.Sscanf(spec, "%d:%d", &id.UID, &id.GID); err == nil && spec == fmt.Sprintf("%d:%d", id.UID, id.GID) {
		return id, "", nil
	}
	name := spec
	if name == "" {
		name = relay.RelayUser
	}
	u, err := user.Lookup(name)
	if err == nil {
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			return id, "", fmt.Errorf("user %s has ids %s:%s", name, u.Uid, u.Gid)
		}
		return pid1.RelayID{UID: uint32(uid), GID: uint32(gid)}, "", nil
	}
	if spec != "" {
		return id, "", fmt.Errorf("no user %q on this host (a name or UID:GID)", spec)
	}
	id = pid1.DefaultRelayID
	var taken []string
	if u, err := user.LookupId(strconv.Itoa(int(id.UID))); err == nil {
		taken = append(taken, fmt.Sprintf("uid %d is %s", id.UID, u.Username))
	}
	if g, err := user.LookupGroupId(strconv.Itoa(int(id.GID))); err == nil {
		taken = append(taken, fmt.Sprintf("gid %d is %s", id.GID, g.Name))
	}
	if len(taken) > 0 {
		return id, fmt.Sprintf("the relay runs as %d:%d, but on this host %s: it shares their files and processes; create a system user %s (or pass --relay-user)",
			id.UID, id.GID, strings.Join(taken, " and "), relay.RelayUser), nil
	}
	return id, "", nil
}

func cmdConfig(args []string, stdout, stderr io.Writer) error {
	switch {
	case len(args) >= 2 && args[0] == "apply":
		fs := flag.NewFlagSet("config apply", flag.ContinueOnError)
		within := fs.Duration("confirm-within", 120*time.Second, "roll back unless `gatehouse config confirm` follows in time; 0: no rollback")
		local := fs.Bool("local", false, "on a cluster node: this node alone (the cluster puts its own sections back when it can)")
		sock := socketFlags(fs)
		if err := fs.Parse(args[2:]); err != nil {
			return &exitError{code: 2}
		}
		file, err := filepath.Abs(args[1])
		if err != nil {
			return err
		}
		if _, err := control.Call(sock(), control.Request{Verb: "apply", File: file, Within: within.String(), Local: *local}); err != nil {
			return &exitError{2, fmt.Errorf("apply refused; the running config is unchanged:\n%w", err)}
		}
		if *within > 0 {
			fmt.Fprintf(stdout, "config applied; run `gatehouse config confirm` within %s or it is rolled back\n", within)
		} else {
			fmt.Fprintln(stdout, "config applied")
		}
		return nil
	case len(args) >= 1 && args[0] == "confirm":
		fs := flag.NewFlagSet("config confirm", flag.ContinueOnError)
		local := fs.Bool("local", false, "on a cluster node: confirm what `config apply --local` applied here")
		sock := socketFlags(fs)
		if err := fs.Parse(args[1:]); err != nil {
			return &exitError{code: 2}
		}
		if _, err := control.Call(sock(), control.Request{Verb: "confirm", Local: *local}); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "config confirmed")
		return nil
	case len(args) >= 1 && args[0] == "reload":
		c, _ := command.Lookup("reload")
		return c.Run(commandEnv(stdout, stderr), args[1:])
	case len(args) == 1 && args[0] == "default":
		_, err := stdout.Write(config.DefaultYAML())
		return err
	case len(args) >= 2 && args[0] == "validate":
		fs := flag.NewFlagSet("config validate", flag.ContinueOnError)
		noResolve := fs.Bool("no-resolve", false, "do not look up the firewall's host names (off the appliance's network)")
		rest, err := parseInterleaved(fs, args[1:])
		if err != nil || len(rest) != 1 {
			return &exitError{2, errors.New("usage: gatehouse config validate [--no-resolve] FILE")}
		}
		file := rest[0]
		load := config.Load
		if !*noResolve {
			load = func(path string) (*config.Config, []*config.Error, error) {
				return config.LoadResolved(context.Background(), path, dnsclient.New(""))
			}
		}
		_, warns, err := load(file)
		for _, w := range warns {
			fmt.Fprintf(stderr, "%s (warning)\n", w)
		}
		if err != nil {
			return &exitError{2, err}
		}
		fmt.Fprintf(stdout, "%s: valid\n", file)
		return nil
	}
	return &exitError{2, errors.New("usage: gatehouse config validate [--no-resolve] FILE | default | reload | apply FILE [--confirm-within D] [--local] | confirm [--local]")}
}

// commandEnv serves the command table (package command) to the CLI: it
// acts on the instance its --socket or --state name.
func commandEnv(stdout, stderr io.Writer) *command.Env {
	return &command.Env{Prog: "gatehouse", Out: stdout, FlagOutput: stderr, Flags: func(fs *flag.FlagSet) func(*command.Env) {
		sock := socketFlags(fs)
		return func(e *command.Env) {
			e.Appliance, e.Paths = command.Socket(sock()), layout.OfControlSocket(sock())
		}
	}}
}

// socketFlags adds --socket and --state to fs and returns the socket path.
func socketFlags(fs *flag.FlagSet) func() string {
	sock := fs.String("socket", "", "control socket of the instance")
	state := fs.String("state", "", "state directory of an instance in host mode")
	return func() string {
		switch {
		case *sock != "":
			return *sock
		case *state != "":
			return layout.Host(*state).ControlSocket()
		}
		return layout.Appliance().ControlSocket()
	}
}

func cmdPaths(args []string, stdout io.Writer) error {
	check := len(args) > 0 && args[0] == "check"
	if check {
		args = args[1:]
	}
	fs := flag.NewFlagSet("paths", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 3*time.Second, "paths check: how long to wait for each peer")
	file := fs.String("config", "", "config file (default: the running config)")
	format := fs.String("format", "text", "text, md, csv or json")
	state := fs.String("state", "", "state directory of an instance in host mode")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: 2}
	}
	if !slices.Contains(paths.Formats, *format) || check && *format != "text" && *format != "json" {
		return &exitError{2, fmt.Errorf("unknown format %q (text, md, csv or json; check: text or json)", *format)}
	}
	if *file == "" {
		// The running config: the copy PID 1 validated and the services use.
		*file = layout.Appliance().Config()
		if *state != "" {
			*file = layout.Host(*state).Config()
		}
	}
	cfg, _, err := config.Load(*file)
	if err != nil {
		return &exitError{2, err}
	}
	if !check {
		return paths.Write(stdout, paths.Table(cfg), *format)
	}
	// The services' resolver: host mode's dns service writes its file
	// into the state directory; /etc/resolv.conf otherwise.
	resolv := layout.SystemResolvConf
	if *state != "" {
		resolv = layout.Host(*state).ResolvConf()
	}
	results := paths.Check(context.Background(), paths.Table(cfg), *timeout, dnsclient.New(resolv))
	ok, err := paths.WriteResults(stdout, results, *format)
	if err != nil {
		return err
	}
	if !ok {
		return &exitError{1, errors.New("paths check: a required path is not open")}
	}
	return nil
}
