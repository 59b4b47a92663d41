// Package mtasts is SMTP MTA Strict Transport Security (RFC 8461) for the
// relay's direct MX delivery: the _mta-sts TXT record and the policy file
// parsed, the policy fetched over HTTPS through the appliance's resolver,
// kept on disk for its max_age so that a restart (or an attacker blocking
// the policy host) does not downgrade a domain to opportunistic TLS, and
// the decision the delivery acts on.
package mtasts

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Mode is a policy's mode (RFC 8461 section 5).
type Mode string

const (
	// Enforce: deliver only to an MX the policy lists, over TLS verified
	// against the MX name; otherwise defer.
	Enforce Mode = "enforce"
	// Testing: deliver as without a policy, but report the failures
	// (TLS-RPT).
	Testing Mode = "testing"
	// None: the domain withdrew its policy; deliver as without one.
	None Mode = "none"
)

// Limits of RFC 8461.
const (
	// MaxPolicySize bounds the policy file (section 3.3: "limit the size
	// of the response body", 64 KiB suggested).
	MaxPolicySize = 64 << 10
	// MaxMaxAge is the largest max_age (section 3.2: about a year).
	MaxMaxAge = 31557600 * time.Second
)

// Policy is a parsed policy file.
type Policy struct {
	Mode   Mode
	MX     []string      // patterns, lower case: "mx.example.com", "*.example.net"
	MaxAge time.Duration // at most MaxMaxAge
	// Text is the file as served, for TLS-RPT's policy-string.
	Text string
}

// Record is a parsed _mta-sts TXT record.
type Record struct {
	ID string // the policy's id: a new one means a new policy to fetch
}

var errNoRecord = errors.New("no v=STSv1 record")

// SelectRecord picks the MTA-STS record out of the TXT records at
// _mta-sts.<domain> (each one's strings already joined): those that are not
// STS records are discarded, and anything but exactly one left means the
// domain has no policy (RFC 8461 3.1).
func SelectRecord(txts []string) (Record, error) {
	var sts []string
	for _, t := range txts {
		if rest, ok := strings.CutPrefix(t, "v=STSv1"); ok && (rest == "" || rest[0] == ';' || rest[0] == ' ' || rest[0] == '\t') {
			sts = append(sts, t)
		}
	}
	switch len(sts) {
	case 0:
		return Record{}, errNoRecord
	case 1:
		return ParseRecord(sts[0])
	}
	return Record{}, fmt.Errorf("%d v=STSv1 records: none applies", len(sts))
}

// ParseRecord parses an _mta-sts TXT record (RFC 8461 3.1):
//
//	v=STSv1; id=20160831085700Z;
//
// strictly: "v=STSv1" first, fields separated by ";" with optional white
// space around it, one optional trailing ";", an id of 1 to 32 letters
// and digits, and extension fields of the RFC's syntax, which are ignored.
// When id appears more than once the first counts (3.1: all but the first
// of a non-repeated field are ignored).
func ParseRecord(txt string) (Record, error) {
	fields := strings.Split(txt, ";")
	if strings.TrimRight(fields[0], " \t") != "v=STSv1" {
		return Record{}, fmt.Errorf("MTA-STS record %q: does not start with v=STSv1", clip(txt))
	}
	var rec Record
	for i, f := range fields[1:] {
		f = strings.Trim(f, " \t")
		if f == "" && i == len(fields)-2 && i > 0 {
			break // the optional trailing delimiter
		}
		k, v, ok := strings.Cut(f, "=")
		if !ok || !isExtName(k, 32) {
			return Record{}, fmt.Errorf("MTA-STS record %q: malformed field %q", clip(txt), clip(f))
		}
		if k == "id" {
			if !isIDValue(v) {
				return Record{}, fmt.Errorf("MTA-STS record %q: malformed id %q", clip(txt), clip(v))
			}
			if rec.ID == "" {
				rec.ID = v
			}
			continue
		}
		if !isExtValue(v) {
			return Record{}, fmt.Errorf("MTA-STS record %q: malformed value of %q", clip(txt), k)
		}
	}
	if rec.ID == "" {
		return Record{}, fmt.Errorf("MTA-STS record %q: no id", clip(txt))
	}
	return rec, nil
}

// ParsePolicy parses a policy file (RFC 8461 3.2): "key: value" lines
// ended by LF or CRLF, in any order; version, mode and max_age once (the
// first counts when repeated), mx once per pattern, unknown keys of the
// RFC's syntax ignored.
//
// Strict where the RFC's grammar is, with one leniency: an empty line is
// skipped rather than refused. It carries no field, and refusing the whole
// policy for it would only downgrade the domain to opportunistic TLS.
// A max_age above a year is cut to a year, for the same reason.
func ParsePolicy(b []byte) (*Policy, error) {
	if len(b) > MaxPolicySize {
		return nil, fmt.Errorf("MTA-STS policy longer than %d octets", MaxPolicySize)
	}
	if !utf8.Valid(b) {
		return nil, errors.New("MTA-STS policy is not UTF-8")
	}
	p := &Policy{Text: string(b)}
	var version string
	maxAge := int64(-1)
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		bad := func(why string) (*Policy, error) {
			return nil, fmt.Errorf("MTA-STS policy line %d %q: %s", n+1, clip(line), why)
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || !isExtName(k, 32) {
			return bad("not a key: value field")
		}
		v = strings.TrimLeft(v, " \t")
		v = strings.TrimRight(v, " \t")
		switch k {
		case "version":
			if version == "" {
				if v != "STSv1" {
					return bad("unknown version")
				}
				version = v
			}
		case "mode":
			if p.Mode == "" {
				switch m := Mode(v); m {
				case Enforce, Testing, None:
					p.Mode = m
				default:
					return bad("unknown mode")
				}
			}
		case "max_age":
			if maxAge < 0 {
				if len(v) < 1 || len(v) > 10 || strings.Trim(v, "0123456789") != "" {
					return bad("max_age is not 1 to 10 digits")
				}
				maxAge, _ = strconv.ParseInt(v, 10, 64)
			}
		case "mx":
			pat := strings.ToLower(v)
			if !isDomain(strings.TrimPrefix(pat, "*.")) {
				return bad("not a host name or *.domain pattern")
			}
			p.MX = append(p.MX, pat)
		default:
			if !isExtValue2(v) {
				return bad("malformed value")
			}
		}
	}
	switch {
	case version == "":
		return nil, errors.New("MTA-STS policy without version")
	case p.Mode == "":
		return nil, errors.New("MTA-STS policy without mode")
	case maxAge < 0:
		return nil, errors.New("MTA-STS policy without max_age")
	case len(p.MX) == 0 && p.Mode != None:
		return nil, fmt.Errorf("MTA-STS policy in mode %s without mx", p.Mode)
	}
	p.MaxAge = time.Duration(min(maxAge, int64(MaxMaxAge/time.Second))) * time.Second
	return p, nil
}

// Match says whether mxHost is one of the policy's MX patterns (RFC 8461
// 4.1): equal ignoring case and a trailing dot, or, for "*.example.net",
// one label more than example.net ("a.example.net", never "example.net" nor
// "a.b.example.net").
func (p *Policy) Match(mxHost string) bool {
	h := strings.ToLower(strings.TrimSuffix(mxHost, "."))
	if h == "" {
		return false
	}
	for _, pat := range p.MX {
		if parent, ok := strings.CutPrefix(pat, "*."); ok {
			label, rest, found := strings.Cut(h, ".")
			if found && label != "" && rest == parent {
				return true
			}
			continue
		}
		if h == pat {
			return true
		}
	}
	return false
}

// Lines is the policy as TLS-RPT's policy-string: its lines, without their
// ends, empty ones left out.
func (p *Policy) Lines() []string {
	var out []string
	for _, l := range strings.Split(p.Text, "\n") {
		if l = strings.TrimSuffix(l, "\r"); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// isExtName: (ALPHA / DIGIT) *(max-1)(ALPHA / DIGIT / "_" / "-" / ".").
func isExtName(s string, max int) bool {
	if s == "" || len(s) > max || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// isIDValue: 1*32(ALPHA / DIGIT).
func isIDValue(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) {
			return false
		}
	}
	return true
}

// isExtValue is a TXT extension value: 1*(%x21-3A / %x3C / %x3E-7E),
// printable ASCII but "=" and ";".
func isExtValue(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '=' || c == ';' {
			return false
		}
	}
	return true
}

// isExtValue2 is a policy extension value: visible characters (UTF-8
// allowed) with white space between them; the ends are trimmed already.
func isExtValue2(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < 0x21 && r != ' ' && r != '\t' || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return false
		}
	}
	return true
}

// isDomain is RFC 5321's Domain: dot-separated labels of letters, digits
// and hyphens, starting and ending with a letter or digit; at most 63
// octets a label and 253 in all. No trailing dot.
func isDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || !isAlnum(l[0]) || !isAlnum(l[len(l)-1]) {
			return false
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !isAlnum(c) && c != '-' {
				return false
			}
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// clip shortens remote text quoted in an error.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
