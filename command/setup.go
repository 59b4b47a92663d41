package command

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"gatehouse/adminauth"
	"gatehouse/config"
	"gatehouse/paths"
	"gatehouse/safeio"
	"gatehouse/setup"
)

// SetupFile is the candidate config the setup writes on the data disk
// and has the appliance apply (which copies it to the config's place).
const SetupFile = "gatehouse.setup.yaml"

// setupCmd is the first-boot setup: the answers (asked, or from a file),
// the config they make written beside the config and applied with
// commit-confirm, the path table for the network team, then keep it or
// let the rollback come.
func setupCmd(e *Env, args []string) error {
	var file string
	var within time.Duration
	var yes bool
	pos, err := e.parse("setup", args, func(fs *flag.FlagSet) {
		fs.StringVar(&file, "answers", "", "a YAML file of the answers; nothing is asked")
		fs.DurationVar(&within, "confirm-within", 120*time.Second, "roll back unless confirmed in time; 0: no rollback")
		fs.BoolVar(&yes, "yes", false, "keep the config without asking")
	})
	if err != nil {
		return err
	}
	if len(pos) > 0 || within < 0 {
		return e.usage("setup")
	}
	var a setup.Answers
	if file != "" {
		if a, err = readAnswers(file); err != nil {
			return &ExitError{2, err}
		}
	} else {
		if e.ReadLine == nil {
			return &ExitError{2, errors.New("nobody here to answer: run setup at the console, or give --answers FILE")}
		}
		if a, err = setup.Ask(e.ReadLine, e.Out, setup.Defaults()); err != nil {
			return &ExitError{2, err}
		}
	}
	data, err := setup.Render(a)
	if err != nil {
		return &ExitError{2, fmt.Errorf("the answers do not make a valid config:\n%w", err)}
	}
	cand := filepath.Join(e.Paths.Data(), SetupFile)
	if err := safeio.WriteFile(cand, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", cand, err)
	}
	cfg, _, err := config.Parse(cand, data)
	if err != nil { // Render parsed it already
		return &ExitError{2, err}
	}
	fmt.Fprintf(e.Out, "config written to %s\n", cand)
	if err := e.Appliance.Apply(cand, within); err != nil {
		return &ExitError{2, fmt.Errorf("apply refused; the running config is unchanged:\n%w", err)}
	}
	if within > 0 {
		fmt.Fprintf(e.Out, "config applied; it is rolled back unless kept within %s\n", within)
	} else {
		fmt.Fprintln(e.Out, "config applied")
	}
	// The table goes out in one write: on the serial console the
	// services' log lines would otherwise cut into its lines.
	var table bytes.Buffer
	fmt.Fprintln(&table, "\nCommunication paths, for the network team (`paths --format md` or `csv` for a document):")
	if err := paths.Write(&table, paths.Table(cfg), "text"); err != nil {
		return err
	}
	fmt.Fprintln(&table)
	if _, err := e.Out.Write(table.Bytes()); err != nil {
		return err
	}
	if within > 0 {
		keep := yes
		if !yes {
			keep = e.askKeep()
		}
		if !keep {
			fmt.Fprintf(e.Out, "not kept: the previous config comes back when %s are up (`config confirm` keeps this one)\n", within)
			if a.WebPassword != "" {
				fmt.Fprintln(e.Out, "the web password was not set")
			}
			return nil
		}
		if err := e.Appliance.Confirm(); err != nil {
			return &ExitError{2, fmt.Errorf("confirm refused: %w", err)}
		}
		fmt.Fprintln(e.Out, "config kept")
	}
	// The password belongs to the config kept: one rolled back leaves the
	// old password too.
	if a.WebPassword != "" {
		if err := adminauth.SetPassword(e.Paths.Admin(), a.WebPassword); err != nil {
			return fmt.Errorf("web password: %w", err)
		}
		fmt.Fprintln(e.Out, "web password set for the user admin")
	}
	return nil
}

// askKeep asks whether to keep the applied config; no answer is no.
func (e *Env) askKeep() bool {
	if e.ReadLine == nil {
		return false
	}
	fmt.Fprint(e.Out, "Keep this config? [y/N] ")
	s, err := e.ReadLine()
	if err != nil {
		fmt.Fprintln(e.Out)
		return false
	}
	s = strings.ToLower(strings.TrimSpace(s))
	return s == "y" || s == "yes"
}

// readAnswers reads an answers file; an unknown key is an error (a
// misspelt answer would otherwise fall back to its default unnoticed).
func readAnswers(file string) (setup.Answers, error) {
	var a setup.Answers
	data, err := os.ReadFile(file)
	if err != nil {
		return a, err
	}
	if err := yaml.NewDecoder(bytes.NewReader(data), yaml.DisallowUnknownField()).Decode(&a); err != nil {
		return a, fmt.Errorf("%s: %v", file, err)
	}
	return a, nil
}
