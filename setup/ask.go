package setup

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"gatehouse/config"
)

// ReadLine returns the next line typed, without its end; io.EOF when
// there are no more.
type ReadLine func() (string, error)

// Lines reads lines from r (a terminal, a pipe).
func Lines(r io.Reader) ReadLine {
	sc := bufio.NewScanner(r)
	return func() (string, error) {
		if sc.Scan() {
			return sc.Text(), nil
		}
		if err := sc.Err(); err != nil {
			return "", err
		}
		return "", io.EOF
	}
}

// question is one prompt of the setup. show gives the default in
// brackets; set takes the answer typed (not empty: an empty one keeps the
// default) and says precisely what is wrong with one it refuses.
type question struct {
	prompt string
	ask    func(a *Answers) bool // nil: always asked
	show   func(a *Answers) string
	set    func(a *Answers, s string) error
	// need refuses an empty answer to an empty default.
	need string
}

// clear is the answer that empties a list.
const clear = "-"

// questions are the setup's prompts, in order.
var questions = []question{
	{prompt: "Host name",
		show: func(a *Answers) string { return a.Hostname },
		set: func(a *Answers, s string) error {
			a.Hostname = s
			return probe("hostname: %s", s)
		},
		need: "the appliance needs a host name"},
	{prompt: "Network interface",
		show: func(a *Answers) string { return a.Interface },
		set: func(a *Answers, s string) error {
			a.Interface = s
			return probe("interfaces: [{name: %s, dhcp: true}]", s)
		},
		need: "name the interface, such as eth0"},
	{prompt: "Address by DHCP? (yes/no)",
		show: func(a *Answers) string { return yesNo(a.DHCP) },
		set: func(a *Answers, s string) error {
			v, err := parseYes(s)
			a.DHCP = v
			if v {
				a.Address, a.Gateway = "", ""
			}
			return err
		}},
	{prompt: "Address with prefix length (such as 192.0.2.10/24)",
		ask:  func(a *Answers) bool { return !a.DHCP },
		show: func(a *Answers) string { return a.Address },
		set: func(a *Answers, s string) error {
			a.Address = s
			if _, err := netip.ParsePrefix(s); err != nil && !strings.Contains(s, "/") {
				return fmt.Errorf("%q has no prefix length: write it as %s/24, say", s, s)
			}
			return probe("interfaces: [{name: eth0, addresses: [%s]}]", s)
		},
		need: "without DHCP the interface needs an address"},
	{prompt: "Default gateway (" + clear + ": none)",
		ask:  func(a *Answers) bool { return !a.DHCP },
		show: func(a *Answers) string { return a.Gateway },
		set: func(a *Answers, s string) error {
			if s == clear {
				a.Gateway = ""
				return nil
			}
			a.Gateway = s
			g, err := netip.ParseAddr(s)
			if err != nil {
				return fmt.Errorf("%q is not an IP address", s)
			}
			p, _ := netip.ParsePrefix(a.Address)
			if !p.Contains(g) {
				return fmt.Errorf("%s is not in the interface's network %s", g, p.Masked())
			}
			return nil
		}},
	{prompt: "DNS servers (addresses, comma-separated)",
		show: func(a *Answers) string {
			if len(a.DNS) == 0 && a.DHCP {
				return "from DHCP"
			}
			return strings.Join(a.DNS, ", ")
		},
		set:  setList(func(a *Answers) *[]string { return &a.DNS }, "dns: {servers: [%s]}"),
		need: "with a static address nothing else names the DNS servers"},
	{prompt: "NTP servers (names or addresses, comma-separated)",
		show: func(a *Answers) string { return strings.Join(a.NTP, ", ") },
		set:  setList(func(a *Answers) *[]string { return &a.NTP }, "ntp: {servers: [%s]}")},
	{prompt: "Managed mail domains (comma-separated; " + clear + ": none, no relay yet)",
		show: func(a *Answers) string { return strings.Join(a.Domains, ", ") },
		set: setList(func(a *Answers) *[]string { return &a.Domains },
			`smtp: {domains: [{name: %s, next_hop: "[192.0.2.1]:25"}]}`)},
	{prompt: "Internal mail server (host[:port], the managed domains' mail goes there)",
		ask:  func(a *Answers) bool { return len(a.Domains) > 0 },
		show: func(a *Answers) string { return a.InternalServer },
		set: func(a *Answers, s string) error {
			a.InternalServer = s
			hop := nextHop(s)
			err := probe("smtp: {domains: [{name: example.com, next_hop: %s}]}", hop)
			if err != nil && hop != s { // name what was typed, not what it became
				err = errors.New(strings.ReplaceAll(err.Error(), fmt.Sprintf("%q", hop), fmt.Sprintf("%q", s)))
			}
			return err
		},
		need: "the managed domains' mail needs somewhere to go"},
	{prompt: "Trusted networks, which may relay through the gateway (" + clear + ": none)",
		ask: func(a *Answers) bool { return len(a.Domains) > 0 },
		show: func(a *Answers) string {
			if len(a.TrustedNetworks) == 0 && a.InternalServer != "" {
				// The internal server sends the outbound mail.
				a.TrustedNetworks = []string{serverHost(a.InternalServer)}
			}
			return strings.Join(a.TrustedNetworks, ", ")
		},
		set: setList(func(a *Answers) *[]string { return &a.TrustedNetworks }, "monitoring: {hosts: [%s]}")},
	{prompt: "Administration (SSH, web console, API) allowed from (addresses, prefixes, ranges, names; " + clear + ": nobody)",
		show: func(a *Answers) string { return strings.Join(a.AdminAllow, ", ") },
		set:  setList(func(a *Answers) *[]string { return &a.AdminAllow }, "monitoring: {hosts: [%s]}")},
	{prompt: "SSH public key, an authorized_keys line (" + clear + ": none)",
		ask:  func(a *Answers) bool { return len(a.AdminAllow) > 0 },
		show: func(a *Answers) string { return a.SSHKey },
		set: func(a *Answers, s string) error {
			if s == clear {
				a.SSHKey = ""
				return nil
			}
			a.SSHKey = s
			_, err := config.ParseAuthorizedKey(s)
			return err
		}},
}

// Ask asks every question of the setup on out and reads the answers with
// next, offering defaults' values in brackets (Enter keeps one). A refused
// answer is asked again, with the reason. The web password is asked twice
// and never echoed back. The answers it returns Render well.
func Ask(next ReadLine, out io.Writer, defaults Answers) (Answers, error) {
	a := withDefaults(defaults)
	for _, qn := range questions {
		if qn.ask != nil && !qn.ask(&a) {
			continue
		}
		for {
			def := qn.show(&a)
			if def != "" {
				fmt.Fprintf(out, "%s [%s]: ", qn.prompt, def)
			} else {
				fmt.Fprintf(out, "%s: ", qn.prompt)
			}
			s, err := next()
			if err != nil {
				return a, fmt.Errorf("setup: no answer to %q: %w", qn.prompt, err)
			}
			s = strings.TrimSpace(s)
			if s == "" {
				if def != "" || qn.need == "" {
					break
				}
				fmt.Fprintf(out, "  an answer is needed: %s\n", qn.need)
				continue
			}
			before := a
			if err := qn.set(&a, s); err != nil {
				a = before
				fmt.Fprintf(out, "  %v; again, please\n", err)
				continue
			}
			break
		}
	}
	if !a.DHCP && len(a.DNS) == 0 {
		// Cleared with "-": valid, but worth saying.
		fmt.Fprintln(out, "  note: no DNS servers: the appliance cannot look names up")
	}
	if len(a.AdminAllow) > 0 {
		pw, err := askPassword(next, out)
		if err != nil {
			return a, err
		}
		a.WebPassword = pw
	} else {
		fmt.Fprintln(out, "  note: nobody may administer the appliance over the network (SSH, web console, API)")
	}
	if _, err := Render(a); err != nil {
		return a, fmt.Errorf("setup: the answers do not make a valid config:\n%w", err)
	}
	return a, nil
}

// Password limits, adminauth.SetPassword's.
const (
	minPassword = 10
	maxPassword = 72 // bcrypt's limit, in bytes
)

func askPassword(next ReadLine, out io.Writer) (string, error) {
	for {
		fmt.Fprintf(out, "Web console password for the user admin (%d to %d characters; Enter: none): ", minPassword, maxPassword)
		pw, err := next()
		if err != nil {
			return "", fmt.Errorf("setup: no answer to the password: %w", err)
		}
		if pw == "" {
			return "", nil
		}
		if len(pw) < minPassword || len(pw) > maxPassword {
			fmt.Fprintf(out, "  it has %d characters, %d to %d are needed; again, please\n", len(pw), minPassword, maxPassword)
			continue
		}
		fmt.Fprint(out, "The same password again: ")
		again, err := next()
		if err != nil {
			return "", fmt.Errorf("setup: no answer to the password: %w", err)
		}
		if again != pw {
			fmt.Fprintln(out, "  the two differ; again, please")
			continue
		}
		return pw, nil
	}
}

// setList sets a list from a comma- or space-separated answer (clear
// empties it), each item checked by the config fragment format makes of it.
func setList(field func(*Answers) *[]string, format string) func(*Answers, string) error {
	return func(a *Answers, s string) error {
		p := field(a)
		if s == clear {
			*p = nil
			return nil
		}
		items := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
		for _, it := range items {
			if err := probe(format, it); err != nil {
				return err
			}
		}
		*p = items
		return nil
	}
}

// probe checks one answer with the config's own rules: it writes the
// answer (quoted) into a config fragment and returns the first problem
// the loader finds, without the fragment's file position.
func probe(format, answer string) error {
	quoted, _ := json.Marshal(answer) // a JSON string is a YAML scalar
	_, _, err := config.Parse(RenderName, []byte(fmt.Sprintf(format, quoted)))
	var errs config.Errors
	if errors.As(err, &errs) && len(errs) > 0 {
		return errors.New(errs[0].Msg)
	}
	return err
}

func yesNo(v bool) string {
	if v {
		return "yes"
	}
	return "no"
}

func parseYes(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "y", "yes":
		return true, nil
	case "n", "no":
		return false, nil
	}
	return false, fmt.Errorf("%q: answer yes or no", s)
}

// serverHost is the host of a host[:port] or [host]:port.
func serverHost(s string) string {
	h, _, _ := strings.Cut(strings.TrimPrefix(nextHop(s), "["), "]")
	return h
}
