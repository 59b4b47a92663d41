package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"gatehouse/dkimsign"
	"gatehouse/layout"
)

// cmdDKIM holds the DKIM signing commands.
func cmdDKIM(args []string, stdout io.Writer) error {
	const usageLine = "usage: gatehouse dkim keygen DOMAIN SELECTOR [--type rsa|ed25519] [--dir DIR | --state DIR]"
	usage := &exitError{2, errors.New(usageLine)}
	if len(args) == 0 || args[0] != "keygen" {
		return usage
	}
	fs := flag.NewFlagSet("dkim keygen", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the error and the usage line say it all
	algo := fs.String("type", dkimsign.RSA, "key type: rsa (2048 bits) or ed25519")
	dir := fs.String("dir", "", "directory for the key (default "+layout.Appliance().DKIM()+", or the state directory's dkim)")
	state := fs.String("state", "", "state directory of an instance in host mode")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return &exitError{2, fmt.Errorf("gatehouse dkim keygen: %w\n%s", err, usageLine)}
	}
	if err != nil || len(pos) != 2 {
		return usage
	}
	if *algo != dkimsign.RSA && *algo != dkimsign.Ed25519 {
		return &exitError{2, fmt.Errorf("gatehouse dkim keygen: --type %q: rsa or ed25519", *algo)}
	}
	if *dir == "" {
		*dir = layout.Appliance().DKIM()
		if *state != "" {
			*dir = layout.Host(*state).DKIM()
		}
	}
	path, record, err := dkimsign.Keygen(pos[0], pos[1], *algo, *dir)
	if err != nil {
		return &exitError{1, err}
	}
	// A zone file snippet: the comments say what to do with the record.
	fmt.Fprintf(stdout, "; DKIM %s key written to %s\n", *algo, path)
	fmt.Fprintf(stdout, "; publish this record, then name the key in the config's dkim section\n")
	fmt.Fprintln(stdout, record)
	return nil
}
