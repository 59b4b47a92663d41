// Package console is the diagnostics shell of the serial console and of
// the SSH shell (the commands are package command's), and the log format
// the console shows during boot.
package console

import (
	"bufio"
	"context"
	"fmt"
	"io"

	"gatehouse/command"
	"gatehouse/control"
	"gatehouse/layout"
)

// Prompt is what the shell prints when it waits for a command.
const Prompt = "gatehouse> "

// Shell reads commands from In and answers on Out.
type Shell struct {
	Backend control.Backend
	In      io.Reader
	Out     io.Writer
	// Paths locate the services' sockets (the relay's, for the queue
	// command); zero: the appliance's.
	Paths layout.Paths
}

// Run serves until In ends or ctx is done. Nothing is printed until the
// first line is read: pressing Enter on a busy boot console brings up the
// prompt.
func (s *Shell) Run(ctx context.Context) error {
	lines := make(chan string)
	errc := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(s.In)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
		errc <- sc.Err()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return err
		case line := <-lines:
			// A command that asks (setup) reads the lines typed next.
			s.exec(line, func() (string, error) {
				select {
				case l := <-lines:
					return l, nil
				case err := <-errc:
					errc <- err // for the loop, once the command returns
					if err == nil {
						err = io.EOF
					}
					return "", err
				case <-ctx.Done():
					return "", ctx.Err()
				}
			})
			fmt.Fprint(s.Out, Prompt)
		}
	}
}

// Exec runs one command line, with no input for it.
func (s *Shell) Exec(line string) { s.exec(line, nil) }

func (s *Shell) exec(line string, readLine func() (string, error)) {
	p := s.Paths
	if p.Run == "" {
		p = layout.Appliance()
	}
	command.Exec(&command.Env{Appliance: command.Backend(s.Backend), Paths: p, Out: s.Out, ReadLine: readLine}, line)
}
