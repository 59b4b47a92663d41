package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"gatehouse/layout"
	"gatehouse/queue"
	"gatehouse/services/relay"
)

// relaySocket is the relay's own socket, beside the control socket.
func relaySocket(controlSock string) string {
	return layout.OfControlSocket(controlSock).RelaySocket()
}

// cmdQueue is mailq and postsuper: list, show, flush, hold, release, delete.
func cmdQueue(args []string, stdout io.Writer) error {
	usage := &exitError{2, errors.New("usage: gatehouse queue list [--format text|json] | show ID | flush | hold ID | release ID | delete ID")}
	if len(args) == 0 {
		return usage
	}
	verb := args[0]
	fs := flag.NewFlagSet("queue "+verb, flag.ContinueOnError)
	format := fs.String("format", "text", "text or json")
	sock := socketFlags(fs)
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return &exitError{code: 2}
	}
	req := relay.Request{Verb: verb}
	switch verb {
	case "list", "flush":
		if len(pos) != 0 {
			return usage
		}
	case "show", "hold", "release", "delete":
		if len(pos) != 1 {
			return usage
		}
		req.ID = strings.TrimRight(pos[0], "*!")
	default:
		return usage
	}
	if *format != "text" && *format != "json" {
		return &exitError{2, fmt.Errorf("unknown format %q (text or json)", *format)}
	}
	resp, err := relay.Call(relaySocket(sock()), req)
	if err != nil {
		return err
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		switch verb {
		case "list":
			if resp.List == nil {
				resp.List = []queue.Info{}
			}
			return enc.Encode(resp.List)
		case "show":
			return enc.Encode(resp.Info)
		}
		return enc.Encode(resp)
	}
	switch verb {
	case "list":
		queue.WriteList(stdout, resp.List)
	case "show":
		queue.WriteInfo(stdout, *resp.Info)
	case "flush":
		fmt.Fprintf(stdout, "%d deferred message(s) scheduled for delivery now\n", resp.Flushed)
	default:
		fmt.Fprintf(stdout, "%s: %s\n", req.ID, map[string]string{"hold": "on hold", "release": "released", "delete": "deleted"}[verb])
	}
	return nil
}

// cmdSMTP holds the relay's helper commands.
func cmdSMTP(args []string, stdin io.Reader, stdout io.Writer) error {
	usage := &exitError{2, errors.New("usage: gatehouse smtp hash-password (reads the password from stdin) | pop-auth ADDRESS")}
	if len(args) == 0 {
		return usage
	}
	switch args[0] {
	case "hash-password":
		b, err := io.ReadAll(io.LimitReader(stdin, 1024))
		if err != nil {
			return err
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			return &exitError{2, errors.New("gatehouse smtp hash-password: no password on stdin")}
		}
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, string(h))
		return nil
	case "pop-auth":
		// Called by (or for) the internal POP/IMAP server after a
		// successful login: the address may relay for smtp.pop_before_smtp.window.
		fs := flag.NewFlagSet("smtp pop-auth", flag.ContinueOnError)
		sock := socketFlags(fs)
		pos, err := parseInterleaved(fs, args[1:])
		if err != nil || len(pos) != 1 {
			return usage
		}
		_, err = relay.Call(relaySocket(sock()), relay.Request{Verb: "pop-auth", Addr: pos[0]})
		return err
	}
	return usage
}

// parseInterleaved parses flags that may come before or after the
// positional arguments (`queue hold ID --state DIR`); it returns the
// positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// cmdFetch is the collector's: status, and polling now.
func cmdFetch(args []string, stdout io.Writer) error {
	usage := &exitError{2, errors.New("usage: gatehouse fetch status [--format text|json] | now [ACCOUNT]")}
	if len(args) == 0 {
		return usage
	}
	fs := flag.NewFlagSet("fetch "+args[0], flag.ContinueOnError)
	format := fs.String("format", "text", "text or json")
	sock := socketFlags(fs)
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return &exitError{code: 2}
	}
	switch {
	case args[0] == "now" && len(pos) <= 1:
		req := relay.Request{Verb: "fetch-now"}
		if len(pos) == 1 {
			req.ID = pos[0]
		}
		if _, err := relay.Call(relaySocket(sock()), req); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "poll requested")
		return nil
	case args[0] == "status" && len(pos) == 0:
		resp, err := relay.Call(relaySocket(sock()), relay.Request{Verb: "fetch-status"})
		if err != nil {
			return err
		}
		if *format == "json" {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			list := resp.Detail.Fetch
			if list == nil {
				list = []relay.AccountStatus{}
			}
			return enc.Encode(list)
		}
		relay.WriteFetch(stdout, resp.Detail.Fetch)
		return nil
	}
	return usage
}
