package mailmsg

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The address types of an ORCPT parameter and an Original-Recipient field
// that the relay knows, lower-case.
const (
	addrTypeRFC822 = "rfc822" // RFC 3461 4.2: an ASCII address as xtext
	addrTypeUTF8   = "utf-8"  // RFC 6533 3: a UTF-8 address as utf-8-addr-xtext/-unitext
)

// maxORCPT is the longest ORCPT value RFC 3461 4.2 allows, in octets as
// sent: a client that sends more is refused, and a longer value is not sent
// on to the next hop.
const maxORCPT = 500

// errORCPTTooLong is what ParseORCPT and Param return for a value over
// maxORCPT octets.
var errORCPTTooLong = fmt.Errorf("mailmsg: ORCPT: longer than %d octets", maxORCPT)

// OrigRcpt is the ORCPT parameter of RCPT TO (RFC 3461 4.2): an address type and the
// address, decoded. Type is lower-case: "rfc822" or "utf-8" (RFC 6533).
//
// The relay keeps it with the recipient so that a DSN about that recipient
// names it as its sender knew it (Original-Recipient), and passes it on to a
// next hop that offers DSN.
type OrigRcpt struct {
	Type string `json:"type"`
	Addr string `json:"addr"`
}

// IsZero says whether o is the zero value: the client gave no ORCPT.
func (o OrigRcpt) IsZero() bool { return o == OrigRcpt{} }

// ParseORCPT decodes an ORCPT value as it comes on the wire: "rfc822;" + xtext, or
// "utf-8;" + utf-8-addr-xtext / utf-8-addr-unitext. Type matched case-insensitively and
// returned lower-case; unknown types, empty address, bad xtext, control chars, invalid UTF-8,
// "rfc822" holding non-ASCII, over 500 octets: an error saying what is wrong.
//
// Unknown types are refused rather than kept: the relay could neither check
// nor safely write them into a DSN, and RFC 3461 lets it refuse the
// parameter (the client sees a 501 for that RCPT TO and may retry without).
// The address is not parsed as a mailbox: it is what the sender's system
// called the recipient, shown back to it, never used to route mail.
func ParseORCPT(v string) (OrigRcpt, error) {
	if len(v) > maxORCPT {
		return OrigRcpt{}, errORCPTTooLong
	}
	typ, enc, ok := strings.Cut(v, ";")
	if !ok {
		return OrigRcpt{}, fmt.Errorf("mailmsg: ORCPT %q: no ';' after the address type", v)
	}
	if enc == "" {
		return OrigRcpt{}, fmt.Errorf("mailmsg: ORCPT %q: empty address", v)
	}
	var (
		o   = OrigRcpt{Type: asciiLower(typ)}
		err error
	)
	switch o.Type {
	case addrTypeRFC822:
		o.Addr, err = DecodeXtext(enc)
		if err == nil {
			err = checkRFC822Addr(o.Addr)
		}
	case addrTypeUTF8:
		o.Addr, err = DecodeUTF8AddrXtext(enc)
		if err == nil {
			err = checkUTF8Addr(o.Addr)
		}
	default:
		return OrigRcpt{}, fmt.Errorf("mailmsg: ORCPT %q: unknown address type %q", v, typ)
	}
	if err != nil {
		return OrigRcpt{}, fmt.Errorf("mailmsg: ORCPT %q: %w", v, err)
	}
	return o, nil
}

// Param encodes o for RCPT TO ... ORCPT=<Param> to a next hop; smtputf8 says the next hop offered
// SMTPUTF8 (then utf-8 addresses go as utf-8-addr-unitext, else as utf-8-addr-xtext, RFC 6533 3).
// An "rfc822" address that is not printable ASCII, or an unknown type, is an error (not sent).
// So is a value over 500 octets, which an xtext encoding of a long UTF-8
// address can become.
func (o OrigRcpt) Param(smtputf8 bool) (string, error) {
	var p string
	switch o.Type {
	case addrTypeRFC822:
		if err := checkRFC822Addr(o.Addr); err != nil {
			return "", fmt.Errorf("mailmsg: ORCPT %q: %w", o.Addr, err)
		}
		p = addrTypeRFC822 + ";" + EncodeXtext(o.Addr)
	case addrTypeUTF8:
		if err := checkUTF8Addr(o.Addr); err != nil {
			return "", fmt.Errorf("mailmsg: ORCPT %q: %w", o.Addr, err)
		}
		if smtputf8 {
			p = addrTypeUTF8 + ";" + EncodeUTF8AddrUnitext(o.Addr)
		} else {
			p = addrTypeUTF8 + ";" + EncodeUTF8AddrXtext(o.Addr)
		}
	default:
		return "", fmt.Errorf("mailmsg: ORCPT: unknown address type %q", o.Type)
	}
	if len(p) > maxORCPT {
		return "", errORCPTTooLong
	}
	return p, nil
}

// Field is the value of a DSN's Original-Recipient field (RFC 3464 2.3.1, RFC 6533 3):
// "rfc822;addr", or for utf-8 "utf-8;" + the UTF-8 address when global (message/global-delivery-status)
// and utf-8-addr-xtext otherwise.
//
// o may not come from ParseORCPT, so the address is made safe as the DSN
// makes every value safe: controls become spaces, and what the part may not
// carry (non-ASCII in an rfc822 address, invalid UTF-8) becomes '?' or
// U+FFFD. An unknown type or an address with nothing left gives "": the DSN
// then leaves the field out rather than write one it cannot vouch for.
func (o OrigRcpt) Field(global bool) string {
	var a string
	switch o.Type {
	case addrTypeRFC822:
		a = clean(o.Addr)
	case addrTypeUTF8:
		a = cleanUTF8(o.Addr)
		if !global {
			// The xtext form has no spaces, so folding never breaks it up.
			a = EncodeUTF8AddrXtext(a)
		}
	}
	if a == "" {
		return ""
	}
	return o.Type + ";" + a
}

// asciiLower lower-cases the ASCII letters of s and leaves the rest alone:
// unlike strings.ToLower it cannot turn something else (the Kelvin sign,
// say) into a letter of a known type.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// checkRFC822Addr checks what RFC 3461 4.2 allows in an rfc822 ORCPT
// address: printable US-ASCII, space included (a quoted local part may hold
// one).
func checkRFC822Addr(a string) error {
	if a == "" {
		return errors.New("empty address")
	}
	for i := 0; i < len(a); i++ {
		if c := a[i]; c < ' ' || c > '~' {
			return fmt.Errorf("rfc822 address holds %s at octet %d", describeByte(c), i)
		}
	}
	return nil
}

// checkUTF8Addr checks a decoded utf-8 address: valid UTF-8 without control
// characters (C0, DEL and C1), which could only be there to break whatever
// shows or logs it.
func checkUTF8Addr(a string) error {
	if a == "" {
		return errors.New("empty address")
	}
	for i, r := range a {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(a[i:], "\uFFFD"):
			return fmt.Errorf("invalid UTF-8 at octet %d", i)
		case isControl(r):
			return fmt.Errorf("control character %U at octet %d", r, i)
		}
	}
	return nil
}

// isControl says whether r is a C0 or C1 control character or DEL.
func isControl(r rune) bool { return r < ' ' || r == 0x7f || 0x80 <= r && r <= 0x9f }

// isXchar says whether c stands for itself in xtext (RFC 3461 4).
func isXchar(c byte) bool { return '!' <= c && c <= '~' && c != '+' && c != '=' }

// isQchar says whether c stands for itself in utf-8-addr-xtext and
// utf-8-addr-unitext (RFC 6533 3): an xchar other than '\', which starts an
// EmbeddedUnicodeChar.
func isQchar(c byte) bool { return isXchar(c) && c != '\\' }

const upperHex = "0123456789ABCDEF"

// EncodeXtext encodes s as xtext (RFC 3461 4): '+' and two upper-case hex
// digits for each octet below '!', above '~', '+' and '='. It works on
// octets, not characters: xtext has no notion of a character set, and so
// any s, invalid UTF-8 included, decodes back to itself.
func EncodeXtext(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; isXchar(c) {
			b.WriteByte(c)
		} else {
			b.WriteByte('+')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&0xf])
		}
	}
	return b.String()
}

// DecodeXtext decodes xtext (RFC 3461 4) strictly: every octet is an xchar
// ('!'..'~' but '+' and '=') or a hexchar, '+' and two upper-case hex
// digits, the only form RFC 3461 defines. A hexchar for an octet that needed
// none ("+41") is accepted: RFC 3461 leaves that to the encoder. The result
// is octets, which need not be UTF-8; the caller checks what it expects.
func DecodeXtext(s string) (string, error) {
	if isXcharString(s) {
		return s, nil // the common case: nothing encoded
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) {
				return "", fmt.Errorf("mailmsg: xtext: incomplete hexchar at octet %d", i)
			}
			hi, lo := unhexUpper(s[i+1]), unhexUpper(s[i+2])
			if hi < 0 || lo < 0 {
				return "", fmt.Errorf("mailmsg: xtext: hexchar %q at octet %d is not '+' and two upper-case hex digits", s[i:i+3], i)
			}
			b.WriteByte(byte(hi<<4 | lo))
			i += 2
		case isXchar(c):
			b.WriteByte(c)
		default:
			return "", fmt.Errorf("mailmsg: xtext: %s at octet %d must be sent as a hexchar", describeByte(c), i)
		}
	}
	return b.String(), nil
}

func isXcharString(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isXchar(s[i]) {
			return false
		}
	}
	return true
}

// unhexUpper returns the value of an upper-case hex digit, or -1.
func unhexUpper(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// EncodeUTF8AddrXtext encodes s as utf-8-addr-xtext (RFC 6533 3), the 7bit
// form: each character that is not a QCHAR ('!'..'~' but '+', '=', '\')
// becomes \x{HEX}, upper-case and without leading zeros, the only spelling
// RFC 6533's HEXPOINT grammar allows. Invalid UTF-8 is encoded as U+FFFD, so
// such s do not decode back to themselves; Param refuses them before.
func EncodeUTF8AddrXtext(s string) string {
	return encodeUTF8Addr(s, false)
}

// EncodeUTF8AddrUnitext encodes s as utf-8-addr-unitext (RFC 6533 3), the
// form for a next hop that offered SMTPUTF8: like EncodeUTF8AddrXtext, but
// non-ASCII characters go as themselves, in UTF-8.
func EncodeUTF8AddrUnitext(s string) string {
	return encodeUTF8Addr(s, true)
}

func encodeUTF8Addr(s string, unitext bool) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf && isQchar(byte(r)):
			b.WriteRune(r)
		case unitext && r >= utf8.RuneSelf && !isControl(r):
			b.WriteRune(r) // invalid UTF-8 came as U+FFFD and goes as U+FFFD
		case r < 0x100:
			b.WriteString(`\x{`)
			b.WriteByte(upperHex[r>>4])
			b.WriteByte(upperHex[r&0xf])
			b.WriteByte('}')
		default:
			b.WriteString(`\x{` + strings.ToUpper(strconv.FormatInt(int64(r), 16)) + "}")
		}
	}
	return b.String()
}

// DecodeUTF8AddrXtext decodes utf-8-addr-xtext and utf-8-addr-unitext (RFC
// 6533 3); a decoder cannot tell them apart, nor needs to. Octets outside
// '!'..'~' in ASCII are refused, as are '+' and '=', and non-ASCII must be
// valid UTF-8. An EmbeddedUnicodeChar, \x{HEX}, must be spelled as
// HEXPOINT allows: no leading zeros, no surrogates, nothing above U+10FFFF,
// and not a character that could have gone as itself ("\x{41}" is refused;
// go-smtp lets it through). Hex digits may be lower-case: RFC 6533's grammar
// is ABNF, whose quoted letters match either case.
//
// Control characters are decoded here (HEXPOINT has forms for some);
// ParseORCPT refuses them in an address.
func DecodeUTF8AddrXtext(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			r, n, err := decodeEmbedded(s[i:])
			if err != nil {
				return "", fmt.Errorf("mailmsg: utf-8-addr-xtext at octet %d: %w", i, err)
			}
			b.WriteRune(r)
			i += n
		case c < utf8.RuneSelf:
			if !isQchar(c) {
				return "", fmt.Errorf("mailmsg: utf-8-addr-xtext: %s at octet %d must be sent as \\x{HEX}", describeByte(c), i)
			}
			b.WriteByte(c)
			i++
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n <= 1 {
				return "", fmt.Errorf("mailmsg: utf-8-addr-unitext: invalid UTF-8 at octet %d", i)
			}
			b.WriteString(s[i : i+n])
			i += n
		}
	}
	return b.String(), nil
}

// decodeEmbedded decodes the EmbeddedUnicodeChar at the start of s and
// returns it and its length.
func decodeEmbedded(s string) (rune, int, error) {
	if !strings.HasPrefix(s, `\x{`) {
		return 0, 0, errors.New(`'\' not followed by "x{"`)
	}
	end := strings.IndexByte(s, '}')
	if end < 0 {
		return 0, 0, errors.New(`\x{ without '}'`)
	}
	hex := s[3:end]
	if hex == "" || len(hex) > 6 {
		return 0, 0, fmt.Errorf(`\x{%s}: not 1 to 6 hex digits`, hex)
	}
	for i := 0; i < len(hex); i++ {
		if !isHexDigit(hex[i]) {
			return 0, 0, fmt.Errorf(`\x{%s}: not 1 to 6 hex digits`, hex)
		}
	}
	v, _ := strconv.ParseUint(hex, 16, 32) // at most 6 hex digits: fits
	r := rune(v)
	switch {
	case len(hex) == 1 || hex[0] == '0' && len(hex) != 2:
		// HEXPOINT spells U+0001..U+00FF with two digits, the rest without leading zeros.
		return 0, 0, fmt.Errorf(`\x{%s}: not the one spelling HEXPOINT allows (two digits below U+0100, else no leading zeros)`, hex)
	case r == 0:
		return 0, 0, fmt.Errorf(`\x{%s}: NUL`, hex)
	case 0xd800 <= r && r <= 0xdfff:
		return 0, 0, fmt.Errorf(`\x{%s}: a surrogate, not a character`, hex)
	case r > utf8.MaxRune:
		return 0, 0, fmt.Errorf(`\x{%s}: beyond U+10FFFF`, hex)
	case r < utf8.RuneSelf && isQchar(byte(r)):
		return 0, 0, fmt.Errorf(`\x{%s}: %q needs no encoding and RFC 6533 does not allow it encoded`, hex, r)
	}
	return r, end + 1, nil
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' || 'a' <= c && c <= 'f'
}
