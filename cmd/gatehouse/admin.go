package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"gatehouse/adminauth"
	"gatehouse/layout"
)

// adminDir is the admin service's state directory: the appliance's, or
// that of an instance in host mode (--state DIR).
func adminDir(state string) string {
	if state != "" {
		return layout.Host(state).Admin()
	}
	return layout.Appliance().Admin()
}

// cmdAPI manages the REST API's tokens: made here, stored hashed, the
// secret shown once.
func cmdAPI(args []string, stdout io.Writer) error {
	usage := &exitError{2, errors.New("usage: gatehouse api token create NAME --role read|admin | token list | token revoke NAME  [--state DIR]")}
	if len(args) < 2 || args[0] != "token" {
		return usage
	}
	fs := flag.NewFlagSet("api token", flag.ContinueOnError)
	role := fs.String("role", "", "read (GET only) or admin")
	state := fs.String("state", "", "state directory of an instance in host mode")
	pos, err := parseInterleaved(fs, args[2:])
	if err != nil {
		return usage
	}
	dir := adminDir(*state)
	switch {
	case args[1] == "create" && len(pos) == 1:
		if *role == "" {
			return &exitError{2, errors.New("gatehouse api token create: give --role read or --role admin")}
		}
		secret, err := adminauth.CreateToken(dir, pos[0], *role)
		if err != nil {
			return &exitError{2, err}
		}
		fmt.Fprintf(stdout, "%s\n", secret)
		fmt.Fprintf(stdout, "# token %q (%s) made; it is shown this once and stored hashed in %s\n", pos[0], *role, dir)
		return nil
	case args[1] == "list" && len(pos) == 0:
		ts, err := adminauth.Tokens(dir)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROLE\tCREATED")
		for _, t := range ts {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Name, t.Role, t.Created.Format(time.RFC3339))
		}
		return tw.Flush()
	case args[1] == "revoke" && len(pos) == 1:
		if err := adminauth.RevokeToken(dir, pos[0]); err != nil {
			return &exitError{2, err}
		}
		fmt.Fprintf(stdout, "token %q revoked\n", pos[0])
		return nil
	}
	return usage
}

// cmdAdmin sets the web console's password for the user admin, read from
// standard input (typed twice at a terminal, or one line from a script).
func cmdAdmin(args []string, stdin io.Reader, stdout io.Writer) error {
	usage := &exitError{2, errors.New("usage: gatehouse admin passwd [--state DIR] (reads the password from stdin)")}
	if len(args) < 1 || args[0] != "passwd" {
		return usage
	}
	fs := flag.NewFlagSet("admin passwd", flag.ContinueOnError)
	state := fs.String("state", "", "state directory of an instance in host mode")
	if pos, err := parseInterleaved(fs, args[1:]); err != nil || len(pos) != 0 {
		return usage
	}
	in := bufio.NewReader(io.LimitReader(stdin, 1024))
	fmt.Fprint(stdout, "new web console password for admin: ")
	pw, err := in.ReadString('\n')
	pw = strings.TrimRight(pw, "\r\n")
	if err != nil && pw == "" {
		return &exitError{2, errors.New("gatehouse admin passwd: no password on stdin")}
	}
	fmt.Fprint(stdout, "\nagain (or end of input): ")
	if again, err := in.ReadString('\n'); err == nil || again != "" {
		if strings.TrimRight(again, "\r\n") != pw {
			return &exitError{2, errors.New("gatehouse admin passwd: the two passwords differ; nothing changed")}
		}
	}
	if err := adminauth.SetPassword(adminDir(*state), pw); err != nil {
		return &exitError{2, fmt.Errorf("gatehouse admin passwd: %w", err)}
	}
	fmt.Fprintln(stdout, "\nweb console password set")
	return nil
}
