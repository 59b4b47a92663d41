package mailmsg

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"mime/quotedprintable"
	"strings"
	"time"
)

// Line length limits of RFC 5322 section 2.1.1, line end excluded.
const (
	softLineLimit = 78
	hardLineLimit = 998
)

// dateFormat is the RFC 5322 date-time format.
const dateFormat = time.RFC1123Z

// DSN is a delivery status notification (RFC 3464) about one message.
//
// The caller sends it with the null reverse path and never to the null
// reverse path (RFC 5321 section 4.5.5); Bytes does not check either.
//
// EnvelopeID goes into Original-Envelope-Id. RFC 3464 means that field for
// the ENVID a sender gave with the DSN extension (RFC 3461); a queue id only
// fits there as long as the relay does not offer that extension.
type DSN struct {
	ReportingMTA   string    // host name of this relay
	From           string    // the sender of the DSN, e.g. "MAILER-DAEMON@mx.example.com"
	To             string    // the original envelope sender
	Arrival        time.Time // when the original message was accepted; zero omits Arrival-Date
	EnvelopeID     string    // queue id of the original message; "" omits Original-Envelope-Id
	Recipients     []DSNRecipient
	OriginalHeader []byte    // the original message's raw header block; nil or empty omits it
	Date           time.Time // Date of the DSN
	MessageID      string    // without angle brackets, e.g. "dsn.ID@mx.example.com"
}

// DSNRecipient is the status of one recipient of the original message.
type DSNRecipient struct {
	Address     string    // final recipient
	Action      string    // "failed" | "delayed"; anything but "failed" counts as delayed
	Status      string    // enhanced status like "5.1.1" / "4.4.1"
	Diagnostic  string    // e.g. "smtp; 550 5.1.1 no such user" ("" allowed)
	RemoteMTA   string    // "" allowed; else "dns; mx.example.net"
	LastAttempt time.Time // zero allowed
}

// Bytes renders the whole DSN message, a multipart/report with CRLF line
// ends: a human-readable explanation, the machine-readable
// message/delivery-status part and, unless OriginalHeader is empty, the
// original header as text/rfc822-headers.
//
// Every value taken from d is made safe first: CR, LF and other control
// characters become spaces (so nothing can add a header line or a
// delivery-status field), non-ASCII bytes become '?' (the message is
// declared US-ASCII), and runs of white space collapse. Long lines are
// folded at spaces; a word too long for a 998-octet line is split, which in
// a field inserts a space into it.
func (d DSN) Bytes() []byte {
	parts := [][]byte{d.notification(), d.deliveryStatus()}
	if len(d.OriginalHeader) > 0 {
		parts = append(parts, headersPart(d.OriginalHeader))
	}
	boundary := chooseBoundary(parts)

	// Each part lacks its final line end: the CRLF before a boundary
	// delimiter belongs to the delimiter (RFC 2046 section 5.1.1).
	var b bytes.Buffer
	writeField(&b, "From", headerAddress(d.From))
	writeField(&b, "To", headerAddress(d.To))
	writeField(&b, "Subject", d.subject())
	writeField(&b, "Date", d.Date.Format(dateFormat))
	if d.MessageID != "" {
		writeField(&b, "Message-ID", "<"+d.MessageID+">")
	}
	// RFC 3834: keeps auto-responders from answering the DSN.
	writeField(&b, "Auto-Submitted", "auto-replied")
	writeField(&b, "MIME-Version", "1.0")
	writeField(&b, "Content-Type", "multipart/report; report-type=delivery-status; boundary="+boundary)
	b.WriteString("\r\nThis is a MIME-encapsulated message.\r\n")
	for _, p := range parts {
		b.WriteString("\r\n--" + boundary + "\r\n")
		b.Write(p)
	}
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return b.Bytes()
}

// failed says whether delivery to r has failed for good; any other action
// is reported as a delay.
func (r DSNRecipient) failed() bool { return strings.EqualFold(r.Action, "failed") }

// recipients returns the recipients whose delivery failed, or with failed
// false the others.
func (d DSN) recipients(failed bool) []DSNRecipient {
	var rs []DSNRecipient
	for _, r := range d.Recipients {
		if r.failed() == failed {
			rs = append(rs, r)
		}
	}
	return rs
}

func (d DSN) subject() string {
	if len(d.recipients(true)) > 0 {
		return "Undelivered Mail Returned to Sender"
	}
	return "Delayed Mail (still being retried)"
}

// notification renders the human-readable first part.
func (d DSN) notification() []byte {
	var b bytes.Buffer
	b.WriteString("Content-Type: text/plain; charset=us-ascii\r\n")
	b.WriteString("Content-Description: Notification\r\n\r\n")
	writeText(&b, "This is the mail system at host "+d.ReportingMTA+".")
	if rs := d.recipients(true); len(rs) > 0 {
		b.WriteString("\r\n")
		writeText(&b, "Your message could not be delivered to the following recipients; the mail system has given up:")
		writeRecipients(&b, rs)
	}
	if rs := d.recipients(false); len(rs) > 0 {
		b.WriteString("\r\n")
		writeText(&b, "Delivery of your message to the following recipients is delayed; the mail system will keep trying and tell you if it gives up:")
		writeRecipients(&b, rs)
	}
	if len(d.OriginalHeader) > 0 {
		b.WriteString("\r\n")
		writeText(&b, "The header of your message is attached.")
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\r\n"))
}

// writeRecipients lists recipients with status and diagnostic.
func writeRecipients(b *bytes.Buffer, rs []DSNRecipient) {
	b.WriteString("\r\n")
	for _, r := range rs {
		line := "<" + headerAddress(r.Address) + ">: " + r.Status
		if r.Diagnostic != "" {
			line += " " + r.Diagnostic
		}
		writeFolded(b, "  ", clean(line), "      ")
	}
}

// deliveryStatus renders the message/delivery-status part: per-message
// fields, then one block per recipient, blocks separated by empty lines.
func (d DSN) deliveryStatus() []byte {
	var b bytes.Buffer
	b.WriteString("Content-Type: message/delivery-status\r\n")
	b.WriteString("Content-Description: Delivery report\r\n\r\n")
	writeField(&b, "Reporting-MTA", "dns; "+d.ReportingMTA)
	if d.EnvelopeID != "" {
		writeField(&b, "Original-Envelope-Id", d.EnvelopeID)
	}
	if !d.Arrival.IsZero() {
		writeField(&b, "Arrival-Date", d.Arrival.Format(dateFormat))
	}
	for _, r := range d.Recipients {
		b.WriteString("\r\n")
		writeField(&b, "Final-Recipient", "rfc822; "+headerAddress(r.Address))
		writeField(&b, "Action", r.Action)
		writeField(&b, "Status", r.Status)
		if r.RemoteMTA != "" {
			writeField(&b, "Remote-MTA", r.RemoteMTA)
		}
		if r.Diagnostic != "" {
			writeField(&b, "Diagnostic-Code", r.Diagnostic)
		}
		if !r.LastAttempt.IsZero() {
			writeField(&b, "Last-Attempt-Date", r.LastAttempt.Format(dateFormat))
		}
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\r\n"))
}

// headersPart renders the original header as text/rfc822-headers. Line ends
// are made CRLF. The header is copied as it is when it is valid 7bit
// content; otherwise (8-bit bytes, NUL, lines over 998 octets) it is
// quoted-printable encoded, which keeps it intact and the DSN valid.
func headersPart(h []byte) []byte {
	h = crlf(h)
	var b bytes.Buffer
	b.WriteString("Content-Type: text/rfc822-headers\r\n")
	b.WriteString("Content-Description: Undelivered message header\r\n")
	if is7bit(h) {
		b.WriteString("\r\n")
		b.Write(h)
	} else {
		b.WriteString("Content-Transfer-Encoding: quoted-printable\r\n\r\n")
		w := quotedprintable.NewWriter(&b)
		w.Write(h) // writes to a bytes.Buffer do not fail
		w.Close()
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\r\n"))
}

// crlf makes every line end, bare CR and bare LF included, a CRLF.
func crlf(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/32)
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case b[i] == '\r' || b[i] == '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, b[i])
		}
	}
	return out
}

// is7bit says whether CRLF-terminated text is 7bit data as RFC 2045 section
// 2.7 defines it: no NUL, no 8-bit bytes, lines of at most 998 octets.
func is7bit(text []byte) bool {
	for _, line := range bytes.Split(text, []byte("\r\n")) {
		if len(line) > hardLineLimit {
			return false
		}
		for _, c := range line {
			if c == 0 || c >= 0x80 {
				return false
			}
		}
	}
	return true
}

// chooseBoundary derives the boundary from a hash of the content, which keeps
// the output reproducible, and checks it against the content, so that not
// even content crafted to contain a candidate can break the MIME structure.
func chooseBoundary(parts [][]byte) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	return freeBoundary(parts, h.Sum(nil))
}

// freeBoundary returns the first boundary of a sequence derived from seed
// that occurs in no part. Boundaries use only characters that need no
// quoting in Content-Type.
func freeBoundary(parts [][]byte, seed []byte) string {
	sum := seed
	for {
		boundary := fmt.Sprintf("dsn-%x", sum[:12])
		if !anyContains(parts, boundary) {
			return boundary
		}
		next := sha256.Sum256(sum)
		sum = next[:]
	}
}

func anyContains(parts [][]byte, s string) bool {
	for _, p := range parts {
		if bytes.Contains(p, []byte(s)) {
			return true
		}
	}
	return false
}

// writeField writes a header or delivery-status field, folded.
func writeField(b *bytes.Buffer, name, value string) {
	value = clean(value)
	if value == "" {
		b.WriteString(name + ":\r\n")
		return
	}
	writeFolded(b, name+": ", value, " ")
}

// writeText writes a paragraph of the human-readable part, wrapped.
func writeText(b *bytes.Buffer, text string) {
	writeFolded(b, "", clean(text), "")
}

// writeFolded writes head followed by the words of value, separated by
// spaces, and a CRLF. Where the line would pass 78 octets it breaks the line
// instead of writing a space and starts the next one with fold; a fold of
// " " is exactly how RFC 5322 folds a field. A word too long for a 998-octet
// line is split across lines; head and fold must be short.
func writeFolded(b *bytes.Buffer, head, value, fold string) {
	b.WriteString(head)
	n, words := len(head), 0 // octets and words on the current line
	for _, w := range strings.Fields(value) {
		for w != "" {
			if words > 0 && n+1+len(w) > softLineLimit {
				b.WriteString("\r\n" + fold)
				n, words = len(fold), 0
			}
			if words > 0 {
				b.WriteByte(' ')
				n++
			}
			k := max(1, min(len(w), hardLineLimit-n))
			b.WriteString(w[:k])
			n, words, w = n+k, words+1, w[k:]
		}
	}
	b.WriteString("\r\n")
}

// clean makes s safe as a field value or line of text. CR and LF would end
// the line and let input add header lines or fields; other control
// characters have no business in a value either; they all become spaces.
// Non-ASCII bytes become '?' because the message is declared US-ASCII. Runs
// of white space collapse to one space, which lets the value be folded at
// any space.
func clean(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c < ' ' || c == 0x7f:
			b[i] = ' '
		case c >= 0x80:
			b[i] = '?'
		}
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

// cleanUTF8 is clean for the parts of a global DSN (RFC 6533), which may
// carry UTF-8: control characters, the C1 ones included, become spaces as in
// clean, and what is not valid UTF-8 becomes U+FFFD, so that the part is
// valid UTF-8 whatever the input. Runs of white space collapse.
func cleanUTF8(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s { // ranging over invalid UTF-8 yields U+FFFD
		if isControl(r) {
			r = ' '
		}
		b.WriteRune(r)
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

// headerAddress quotes the local part of an address for a header field when
// it is not a dot-atom. go-smtp hands over quoted local parts unquoted, so
// the original sender may well be "a@b"@example.com, which written as
// a@b@example.com would not parse.
func headerAddress(s string) string {
	s = clean(s)
	at := strings.LastIndexByte(s, '@')
	if at < 0 || isDotAtom(s[:at]) {
		return s
	}
	local := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s[:at])
	return `"` + local + `"` + s[at:]
}

// isDotAtom reports whether s is a dot-atom (RFC 5322 section 3.2.3).
func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '.' && !isAtext(s[i]) {
			return false
		}
	}
	return true
}

func isAtext(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}
