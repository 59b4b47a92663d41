package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"gatehouse/command"
	"gatehouse/layout"
	"gatehouse/status"
)

// relaySocket is the relay's own socket, beside the control socket.
func relaySocket(controlSock string) string {
	return layout.OfControlSocket(controlSock).RelaySocket()
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
		_, err = command.RelayCall(relaySocket(sock()), status.RelayRequest{Verb: "pop-auth", Addr: pos[0]})
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
