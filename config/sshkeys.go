package config

import (
	"fmt"
	"net/netip"
	"path"
	"strings"

	"golang.org/x/crypto/ssh"
)

// AuthorizedKey is one ssh.authorized_keys line with the options the shell
// honours. Any other option is an error: a key must never get more than
// its line says.
type AuthorizedKey struct {
	Key     ssh.PublicKey
	Comment string
	From    []AddrPattern // from="...": where the key may log in from; none: anywhere
	Command string        // command="...": the one shell command the key runs, whatever the client asks
	NoPTY   bool          // no-pty, or restrict (without a later pty)
}

// AddrPattern is one pattern of a from= list, as OpenSSH reads it for
// addresses: an address, a CIDR prefix or a wildcard over the address's
// text (10.99.*), each perhaps negated with '!'. Host name patterns are
// not among them: the shell does not look client names up.
type AddrPattern struct {
	Not    bool
	Prefix netip.Prefix // an address is a full-length prefix
	Glob   string       // or a wildcard pattern (* and ?)
}

// KeyError is a problem with a part of an authorized_keys line (an
// option, say); Offset is where in the line it begins.
type KeyError struct {
	Offset int
	Msg    string
}

func (e *KeyError) Error() string { return e.Msg }

// Options from OpenSSH that only switch off what the shell never does.
var noOpOptions = map[string]bool{
	"no-port-forwarding": true, "no-agent-forwarding": true, "no-x11-forwarding": true, "no-user-rc": true,
	"port-forwarding": true, "agent-forwarding": true, "x11-forwarding": true, "user-rc": true,
}

// ParseAuthorizedKey reads one authorized_keys line and its options.
func ParseAuthorizedKey(line string) (AuthorizedKey, error) {
	pk, comment, opts, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return AuthorizedKey{}, fmt.Errorf("not an authorized_keys line: %w", err)
	}
	if strings.TrimSpace(string(rest)) != "" {
		return AuthorizedKey{}, &KeyError{Offset: len(line) - len(rest), Msg: "one authorized_keys line per entry"}
	}
	k := AuthorizedKey{Key: pk, Comment: comment}
	// The options are the line's first field, split at commas outside
	// quotes, in order: find each one's place for the error messages.
	at := len(line) - len(strings.TrimLeft(line, " \t"))
	seen := map[string]bool{}
	for _, opt := range opts {
		at += strings.Index(line[at:], opt)
		if err := k.option(opt, seen); err != nil {
			err.Offset += at
			return AuthorizedKey{}, err
		}
		at += len(opt)
	}
	return k, nil
}

// option applies one option; the error's offset is within opt.
func (k *AuthorizedKey) option(opt string, seen map[string]bool) *KeyError {
	written, value, hasValue := strings.Cut(opt, "=")
	name := strings.ToLower(written) // as OpenSSH: option names in any case
	switch name {
	case "restrict", "no-pty", "pty":
		if hasValue {
			return &KeyError{Msg: fmt.Sprintf("option %q takes no value", written)}
		}
	case "command", "from":
		if !hasValue {
			return &KeyError{Msg: fmt.Sprintf("option %q needs a value: %s=\"...\"", written, written)}
		}
		if seen[name] {
			return &KeyError{Msg: fmt.Sprintf("option %q is given twice", written)}
		}
		seen[name] = true
	}
	switch name {
	case "restrict", "no-pty":
		k.NoPTY = true
	case "pty":
		k.NoPTY = false
	case "command":
		cmd, err := dequote(value)
		if err != nil {
			return &KeyError{Offset: len(written) + 1, Msg: fmt.Sprintf("option %q: %v", written, err)}
		}
		if strings.TrimSpace(cmd) == "" {
			return &KeyError{Offset: len(written) + 1, Msg: fmt.Sprintf("option %q: an empty command", written)}
		}
		k.Command = cmd
	case "from":
		list, err := dequote(value)
		if err != nil {
			return &KeyError{Offset: len(written) + 1, Msg: fmt.Sprintf("option %q: %v", written, err)}
		}
		at := len(written) + 2 // past from="
		for _, s := range strings.Split(list, ",") {
			p, err := ParseAddrPattern(s)
			if err != nil {
				return &KeyError{Offset: at, Msg: fmt.Sprintf("option %q: %v", written, err)}
			}
			k.From = append(k.From, p)
			at += len(s) + 1
		}
	default:
		if noOpOptions[name] {
			return &KeyError{Msg: fmt.Sprintf("option %q is not supported: the shell forwards nothing and runs no rc files, so leave it out (the shell honours from=, command=, restrict, no-pty and pty)", written)}
		}
		return &KeyError{Msg: fmt.Sprintf("option %q is not supported (the shell honours from=, command=, restrict, no-pty and pty)", written)}
	}
	return nil
}

// dequote reads an option's value as OpenSSH does: in double quotes, \"
// for a quote inside, nothing after the closing quote.
func dequote(s string) (string, error) {
	if !strings.HasPrefix(s, `"`) {
		return "", fmt.Errorf("the value must be in double quotes")
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == '"':
			b.WriteByte('"')
			i++
		case s[i] == '"':
			if i != len(s)-1 {
				return "", fmt.Errorf("text after the closing quote")
			}
			return b.String(), nil
		default:
			b.WriteByte(s[i])
		}
	}
	return "", fmt.Errorf("no closing quote")
}

// ParseAddrPattern reads one pattern of a from= list.
func ParseAddrPattern(s string) (AddrPattern, error) {
	var p AddrPattern
	text, not := strings.CutPrefix(s, "!")
	p.Not = not
	if text == "" {
		return p, fmt.Errorf("%q: an empty pattern", s)
	}
	if a, err := netip.ParseAddr(text); err == nil && a.Zone() == "" {
		p.Prefix = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		return p, nil
	}
	if strings.Contains(text, "/") {
		pfx, err := netip.ParsePrefix(text)
		if err != nil {
			return p, fmt.Errorf("%q is not a CIDR prefix", text)
		}
		if pfx.Masked() != pfx {
			return p, fmt.Errorf("%q has host bits set: did you mean %s?", text, pfx.Masked())
		}
		p.Prefix = pfx
		return p, nil
	}
	if strings.ContainsAny(text, "*?") && strings.Trim(strings.ToLower(text), "0123456789abcdef.:*?") == "" {
		if _, err := path.Match(text, ""); err == nil {
			p.Glob = strings.ToLower(text)
			return p, nil
		}
	}
	return p, fmt.Errorf("%q is not an address, a CIDR prefix or an address wildcard like 10.99.*; host names are not supported (the shell does not look client names up)", text)
}

// FromAllows says whether the key may log in from a: with OpenSSH's
// pattern-list rule, a negated pattern that matches refuses at once,
// otherwise one pattern must match.
func (k AuthorizedKey) FromAllows(a netip.Addr) bool {
	if len(k.From) == 0 {
		return true
	}
	a = a.Unmap()
	ok := false
	for _, p := range k.From {
		if p.match(a) {
			if p.Not {
				return false
			}
			ok = true
		}
	}
	return ok
}

func (p AddrPattern) match(a netip.Addr) bool {
	if p.Glob != "" {
		ok, _ := path.Match(p.Glob, a.String())
		return ok
	}
	return p.Prefix.Contains(a)
}
