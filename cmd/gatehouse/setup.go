package main

import (
	"io"

	"gatehouse/command"
	"gatehouse/setup"
)

// cmdSetup is the command table's setup, answered on standard input.
func cmdSetup(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c, _ := command.Lookup("setup")
	e := commandEnv(stdout, stderr)
	e.ReadLine = setup.Lines(stdin)
	return c.Run(e, args)
}
