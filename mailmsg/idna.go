package mailmsg

import (
	"bytes"
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// Internationalised mail (RFC 6530-6533): a domain may come in U-labels
// ("bücher.example") or A-labels ("xn--bcher-kva.example"), which are the
// same domain; a local part may be UTF-8, which has no ASCII form. The
// relay compares domains on their A-labels, looks them up in the DNS by
// them, and writes them as A-labels to a next hop that does not offer
// SMTPUTF8, since that changes nothing. A UTF-8 local part it never
// rewrites (no downgrade: RFC 6531 3.7.5).

// lookup is IDNA2008 with the UTS #46 mapping (case folded, width
// normalised), as browsers and resolvers use it: what a person typed
// resolves to the domain they meant.
var lookup = idna.Lookup

// asciiAtext maps UTF-8 to a letter, since RFC 6532 3.2 counts every
// non-ASCII character as atext: "jörg" is a dot-string, sent unquoted.
func asciiAtext(s string) string {
	if isASCII(s) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r >= 0x80 {
			return 'a'
		}
		return r
	}, s)
}

// HeaderIsASCII says whether the header of a message (up to its first
// empty line) is plain ASCII: if not, with SMTPUTF8 the message needs it
// of every next hop (RFC 6532).
func HeaderIsASCII(msg []byte) bool {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(msg)
	}
	for _, c := range msg[:end] {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// parseUDomain validates a domain with U-labels (name, the trailing dot
// removed) and returns it in its canonical Unicode form.
func parseUDomain(d, name string) (string, error) {
	a, err := lookup.ToASCII(name)
	if err != nil {
		return "", fmt.Errorf("mailmsg: domain %q: not an internationalised domain name: %v", d, err)
	}
	if len(a) > maxDomain {
		return "", fmt.Errorf("mailmsg: domain %q: longer than %d octets as A-labels", d, maxDomain)
	}
	if err := checkHostName(a); err != nil {
		return "", fmt.Errorf("mailmsg: domain %q: %v", d, err)
	}
	u, err := lookup.ToUnicode(a)
	if err != nil {
		return "", fmt.Errorf("mailmsg: domain %q: %v", d, err)
	}
	if len(u) > maxDomain { // SMTPUTF8 sends this form: its octets count
		return "", fmt.Errorf("mailmsg: domain %q: longer than %d octets", d, maxDomain)
	}
	return u, nil
}

// ASCIIDomain returns a domain as A-labels, lower-cased: the form the DNS
// knows and the form domains are compared in. A domain that is not a valid
// internationalised name is returned lower-cased as it is (it then matches
// nothing it should not); an address literal is returned unchanged.
func ASCIIDomain(d string) string {
	if isASCII(d) {
		if strings.HasPrefix(d, "[") {
			return d
		}
		return strings.ToLower(d)
	}
	a, err := lookup.ToASCII(strings.TrimSuffix(d, "."))
	if err != nil {
		return strings.ToLower(d)
	}
	return a
}

// UnicodeDomain returns a domain with its A-labels as U-labels, for people
// to read; a domain that is not valid IDNA is returned as it is.
func UnicodeDomain(d string) string {
	if !strings.Contains(d, "xn--") && !strings.Contains(d, "XN--") {
		return d
	}
	u, err := lookup.ToUnicode(d)
	if err != nil {
		return d
	}
	return u
}

// IsASCII says whether a is an address of plain SMTP: no UTF-8 in its local
// part or domain. Any other address needs SMTPUTF8 from the client that
// sends it (RFC 6531 3.4).
func (a Address) IsASCII() bool { return isASCII(a.Local) && isASCII(a.Domain) }

// NeedsSMTPUTF8 says whether a can only be sent with SMTPUTF8: its local
// part is UTF-8. A domain of U-labels alone can be sent as A-labels.
func (a Address) NeedsSMTPUTF8() bool { return !isASCII(a.Local) }

// ASCII returns a with its domain as A-labels, what a next hop without
// SMTPUTF8 is sent; false when the local part is UTF-8 and a has no ASCII
// form.
func (a Address) ASCII() (Address, bool) {
	if a.NeedsSMTPUTF8() {
		return a, false
	}
	if !isASCII(a.Domain) {
		a.Domain = ASCIIDomain(a.Domain)
	}
	return a, true
}

// Key is the form in which the relay compares addresses (recipient lists,
// users' sender addresses, exceptions): the local part lower-cased, the
// domain as lower-case A-labels. Lower-casing the local part is the
// relay's long-standing choice (as Postfix's table lookups); RFC 5321 lets
// the receiving domain decide, and the managed domains' servers do not
// tell case apart.
func (a Address) Key() string {
	if a.IsNull() {
		return ""
	}
	return strings.ToLower(a.Local) + "@" + ASCIIDomain(a.Domain)
}
