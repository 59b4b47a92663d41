// Package mailmsg holds the pieces of mail handling the relay needs beyond
// the SMTP dialogue itself: envelope addresses as go-smtp hands them to a
// session, the header block of a message, and the delivery status
// notifications (RFC 3464) the relay sends back when it cannot deliver.
//
// Everything here is strict on input and careful on output: addresses and
// headers that do not follow the RFCs are refused with an error that says
// what is wrong, and nothing taken from input can break the structure of a
// message the relay writes.
package mailmsg

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// RFC 5321 section 4.5.3.1 limits.
const (
	maxLocalPart = 64
	maxDomain    = 255
	maxLabel     = 63
)

// Address is an SMTP mailbox: local part and domain. Domain is lower-cased.
//
// Local is the local part as go-smtp delivers it, that is with any quoting
// removed, so it may contain characters such as '@' or '"' that would need
// quoting again on the wire.
type Address struct{ Local, Domain string }

// String returns "local@domain", or "" for the null address.
func (a Address) String() string {
	if a.IsNull() {
		return ""
	}
	return a.Local + "@" + a.Domain
}

// Path returns a as written inside MAIL FROM:<...> or RCPT TO:<...>: the
// local part as a quoted string (RFC 5321 4.1.2) when it is not a
// dot-string, since go-smtp hands it over unquoted; "" for the null path.
func (a Address) Path() string {
	if a.IsNull() {
		return ""
	}
	local := a.Local
	if !isDotAtom(asciiAtext(local)) { // RFC 5321's Dot-string is RFC 5322's dot-atom
		local = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(local) + `"`
	}
	return local + "@" + a.Domain
}

// IsNull says whether a is the null reverse path "<>".
func (a Address) IsNull() bool { return a.Local == "" && a.Domain == "" }

// IsLiteral says whether the domain is an address literal such as
// "[192.0.2.1]" or "[IPv6:2001:db8::1]".
func (a Address) IsLiteral() bool { return strings.HasPrefix(a.Domain, "[") }

// ParseAddress parses a MAIL FROM or RCPT TO path as go-smtp hands it: angle
// brackets and source route already removed, a quoted local part already
// unquoted. "" is the null address and not an error.
//
// Internationalised addresses (RFC 6531) are accepted: a UTF-8 local part
// and a domain of U-labels, which is kept in its canonical Unicode form
// (IDNA2008 with the UTS #46 mapping: "Bücher.Example" is
// "bücher.example"). Whether the session allowed them (SMTPUTF8 given
// with MAIL) is the caller's to check, with IsASCII.
//
// The string is split at the last '@' because an unquoted local part may
// itself contain '@'; a domain never can.
//
// The domain is lower-cased and a trailing dot removed. In an IPv6 literal
// the tag is written "IPv6:" as in RFC 5321 and the rest lower-cased.
func ParseAddress(s string) (Address, error) {
	if s == "" {
		return Address{}, nil
	}
	if err := checkBytes(s); err != nil {
		return Address{}, err
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return Address{}, fmt.Errorf("mailmsg: address %q: no '@'", s)
	}
	local, domain := s[:at], s[at+1:]
	if local == "" {
		return Address{}, fmt.Errorf("mailmsg: address %q: empty local part", s)
	}
	if len(local) > maxLocalPart {
		return Address{}, fmt.Errorf("mailmsg: address %q: local part longer than %d octets", s, maxLocalPart)
	}
	if domain == "" {
		return Address{}, fmt.Errorf("mailmsg: address %q: empty domain", s)
	}
	d, err := parseDomain(domain)
	if err != nil {
		return Address{}, err
	}
	return Address{Local: local, Domain: d}, nil
}

// checkBytes refuses what no path may contain. Control characters (C1
// included) and spaces cannot appear even in a quoted local part that went
// through go-smtp's parser legitimately; non-ASCII text must be UTF-8
// (RFC 6531 3.3).
func checkBytes(s string) error {
	for i, r := range s {
		switch {
		case r == ' ':
			return fmt.Errorf("mailmsg: address %q: space at offset %d", s, i)
		case r < ' ' || r == 0x7f || 0x80 <= r && r <= 0x9f:
			return fmt.Errorf("mailmsg: address %q: control character %U at offset %d", s, r, i)
		case r == utf8.RuneError:
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 { // not a U+FFFD written out
				return fmt.Errorf("mailmsg: address %q: not UTF-8 at offset %d", s, i)
			}
		}
	}
	return nil
}

// parseDomain validates a domain (host name or address literal) and returns
// it in canonical form.
func parseDomain(d string) (string, error) {
	if strings.HasPrefix(d, "[") {
		return parseLiteral(d)
	}
	// A trailing dot only marks the name as absolute; it is not part of it.
	name := strings.TrimSuffix(d, ".")
	if !isASCII(name) {
		return parseUDomain(d, name)
	}
	if len(name) > maxDomain {
		return "", fmt.Errorf("mailmsg: domain %q: longer than %d octets", d, maxDomain)
	}
	if err := checkHostName(name); err != nil {
		return "", fmt.Errorf("mailmsg: domain %q: %v", d, err)
	}
	return strings.ToLower(name), nil
}

// checkHostName checks the LDH rule of RFC 1123 section 2.1. An all-numeric
// top-level label is allowed: refusing it would buy nothing here, since the
// relay resolves names through DNS anyway.
func checkHostName(name string) error {
	if name == "" {
		return fmt.Errorf("no labels")
	}
	for _, label := range strings.Split(name, ".") {
		if err := checkLabel(label); err != nil {
			return err
		}
	}
	return nil
}

func checkLabel(label string) error {
	switch {
	case label == "":
		return fmt.Errorf("empty label")
	case len(label) > maxLabel:
		return fmt.Errorf("label longer than %d characters", maxLabel)
	case label[0] == '-':
		return fmt.Errorf("label %q starts with '-'", label)
	case label[len(label)-1] == '-':
		return fmt.Errorf("label %q ends with '-'", label)
	}
	for i := 0; i < len(label); i++ {
		if !isLDH(label[i]) {
			return fmt.Errorf("label %q contains %q", label, label[i])
		}
	}
	return nil
}

func isLDH(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-'
}

// ipv6Tag is the only standardized address literal tag (RFC 5321 section
// 4.1.3). Tags are case-insensitive, like all ABNF strings.
const ipv6Tag = "IPv6:"

// parseLiteral validates an address literal and returns it lower-cased with
// the tag spelled as in RFC 5321, so equal literals compare equal.
func parseLiteral(d string) (string, error) {
	if len(d) > maxDomain {
		return "", fmt.Errorf("mailmsg: address literal %q: longer than %d octets", d, maxDomain)
	}
	inner, ok := strings.CutSuffix(d[1:], "]")
	if !ok {
		return "", fmt.Errorf("mailmsg: address literal %q: no closing ']'", d)
	}
	if len(inner) >= len(ipv6Tag) && strings.EqualFold(inner[:len(ipv6Tag)], ipv6Tag) {
		ip := inner[len(ipv6Tag):]
		addr, err := netip.ParseAddr(ip)
		switch {
		case err != nil:
			return "", fmt.Errorf("mailmsg: address literal %q: not an IPv6 address", d)
		case !addr.Is6():
			return "", fmt.Errorf("mailmsg: address literal %q: IPv4 address behind the IPv6: tag", d)
		case addr.Zone() != "":
			// A zone only means something on the host that wrote it.
			return "", fmt.Errorf("mailmsg: address literal %q: IPv6 zone not allowed", d)
		}
		return "[" + ipv6Tag + strings.ToLower(ip) + "]", nil
	}
	if strings.Contains(inner, ":") {
		return "", fmt.Errorf("mailmsg: address literal %q: IPv6 address needs the IPv6: tag, other tags are not supported", d)
	}
	addr, err := netip.ParseAddr(inner)
	if err != nil || !addr.Is4() {
		return "", fmt.Errorf("mailmsg: address literal %q: not an IPv4 address", d)
	}
	return d, nil
}

// RelayTrick returns a non-empty reason when the local part carries routing
// syntax that a downstream server might interpret as a further hop, so that a
// message accepted for a managed domain would be relayed on somewhere else:
// '%' (percent hack), '!' (bang path), '@' (quoted local part with an
// embedded address), ':' or ',' (remains of a source route). It returns ""
// for an ordinary local part.
func (a Address) RelayTrick() string {
	i := strings.IndexAny(a.Local, "%!@:,")
	if i < 0 {
		return ""
	}
	switch a.Local[i] {
	case '%':
		return "local part contains '%' (percent hack routing)"
	case '!':
		return "local part contains '!' (UUCP bang path routing)"
	case '@':
		return "local part contains '@' (embedded address)"
	default:
		return fmt.Sprintf("local part contains %q (source route)", a.Local[i])
	}
}

// InDomain says whether a.Domain equals d or, when sub is true, is a
// sub-domain of d. Sub-domains are matched on a label boundary, so
// "x.example.com" is in "example.com" but "badexample.com" is not. The
// comparison is case-insensitive, ignores a trailing dot on d, and is made
// on A-labels, so "bücher.example" and "xn--bcher-kva.example" are the same
// domain in either place. An address literal has no sub-domains and only
// matches itself.
func (a Address) InDomain(d string, sub bool) bool {
	d = ASCIIDomain(strings.TrimSuffix(d, "."))
	ad := ASCIIDomain(a.Domain)
	if d == "" || ad == "" {
		return false
	}
	if strings.EqualFold(ad, d) {
		return true
	}
	if !sub || a.IsLiteral() || strings.HasPrefix(d, "[") {
		return false
	}
	n := len(ad) - len(d)
	return n > 0 && ad[n-1] == '.' && strings.EqualFold(ad[n:], d)
}
