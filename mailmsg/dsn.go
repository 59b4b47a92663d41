package mailmsg

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"mime/quotedprintable"
	"strings"
	"time"
	"unicode/utf8"
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
// A DSN about mail that came with SMTPUTF8 is Global (RFC 6533): its parts
// may then carry UTF-8, and the caller must send it with SMTPUTF8 or
// 8BITMIME as the next hop allows. Otherwise the DSN is US-ASCII throughout,
// except for an Original that holds 8-bit octets (then it needs 8BITMIME).
type DSN struct {
	ReportingMTA string    // host name of this relay
	From         string    // the sender of the DSN, e.g. "MAILER-DAEMON@mx.example.com"
	To           string    // the original envelope sender; may be a UTF-8 address when Global
	Arrival      time.Time // when the original message was accepted; zero omits Arrival-Date
	// EnvelopeID is the ENVID the sender gave with MAIL FROM (RFC 3461 4.4),
	// decoded from xtext (DecodeXtext); "" omits Original-Envelope-Id. It is
	// the sender's own name for its message, which is why it goes back.
	EnvelopeID string
	// QueueID is this relay's queue id of the original message, for the
	// operator who follows a DSN into the logs. It goes into the per-message
	// extension field X-Gatehouse-Queue-ID (RFC 3464 3.1 allows X- fields;
	// Postfix writes X-Postfix-Queue-ID); "" omits it.
	QueueID    string
	Recipients []DSNRecipient
	// OriginalHeader is the original message's raw header block, returned
	// when Original is nil (RET=HDRS, or no RET); nil or empty omits it.
	OriginalHeader []byte
	// Original is the whole original message with CRLF line ends (RET=FULL);
	// nil returns the header only. It goes as message/rfc822 (message/global
	// when Global) with Content-Transfer-Encoding 7bit or 8bit as its content
	// is, and is never altered: it is what the sender sent. Neither of those
	// allows an encoding, so a message that no mail can carry unaltered
	// (NUL, lines over 998 octets, a bare CR or LF) is returned as its
	// header only, and the human-readable part says why. The caller bounds
	// its size: it passes only the header of a message too large to return,
	// and says so with OriginalTruncated.
	Original []byte
	// OriginalTruncated makes the human-readable part say that the message
	// was too large to return whole, so only its header is attached.
	OriginalTruncated bool
	// Global makes the DSN one for mail that came with SMTPUTF8 (RFC 6533):
	// message/global-delivery-status instead of message/delivery-status,
	// message/global-headers instead of text/rfc822-headers, message/global
	// instead of message/rfc822, a UTF-8 human-readable part, and UTF-8 in
	// addresses and other values.
	Global    bool
	Date      time.Time // Date of the DSN
	MessageID string    // without angle brackets, e.g. "dsn.ID@mx.example.com"
}

// DSNRecipient is the status of one recipient of the original message.
type DSNRecipient struct {
	// Address is the final recipient. An ASCII address is written as
	// "rfc822; addr"; one with UTF-8 as "utf-8; addr" (RFC 6533 3), in a
	// Global DSN as it is, otherwise as utf-8-addr-xtext.
	Address string
	// Original is the ORCPT the client gave for the recipient; the zero
	// value omits Original-Recipient.
	Original OrigRcpt
	// Action is "failed", "delayed", "relayed" (to a next hop that does not
	// offer DSN) or "delivered" (RFC 3464 2.3.3); anything else counts as
	// delayed in the human-readable part and the Subject.
	Action      string
	Status      string    // enhanced status like "5.1.1" / "4.4.1" / "2.0.0"
	Diagnostic  string    // e.g. "smtp; 550 5.1.1 no such user" ("" allowed)
	RemoteMTA   string    // "" allowed; else "dns; mx.example.net"
	LastAttempt time.Time // zero allowed
}

// Bytes renders the whole DSN message, a multipart/report with CRLF line
// ends: a human-readable explanation, the machine-readable
// message/delivery-status part and, unless there is nothing to return, the
// original message or its header.
//
// Every value taken from d is made safe first: CR, LF and other control
// characters become spaces (so nothing can add a header line or a
// delivery-status field), non-ASCII bytes become '?' (the message is
// declared US-ASCII) or in a Global DSN invalid UTF-8 becomes U+FFFD, and
// runs of white space collapse. Long lines are folded at spaces; a word too
// long for a 998-octet line is split, which in a field inserts a space into
// it.
func (d DSN) Bytes() []byte {
	parts := [][]byte{d.notification(), d.deliveryStatus()}
	if p := d.returned(); p != nil {
		parts = append(parts, p)
	}
	boundary := chooseBoundary(parts)
	reportType := "delivery-status"
	if d.Global {
		reportType = "global-delivery-status" // RFC 6522: the subtype of the second part
	}

	// Each part lacks its final line end: the CRLF before a boundary
	// delimiter belongs to the delimiter (RFC 2046 section 5.1.1). The
	// returned message keeps its own, as it keeps everything else.
	var b bytes.Buffer
	d.writeField(&b, "From", d.address(d.From))
	d.writeField(&b, "To", d.address(d.To))
	writeField(&b, "Subject", d.subject())
	writeField(&b, "Date", d.Date.Format(dateFormat))
	if d.MessageID != "" {
		writeField(&b, "Message-ID", "<"+d.MessageID+">")
	}
	// RFC 3834: keeps auto-responders from answering the DSN.
	writeField(&b, "Auto-Submitted", "auto-replied")
	writeField(&b, "MIME-Version", "1.0")
	writeField(&b, "Content-Type", "multipart/report; report-type="+reportType+"; boundary="+boundary)
	// RFC 2045 6.4: a multipart declares the encoding of what it holds.
	if !allIs7bit(parts) {
		writeField(&b, "Content-Transfer-Encoding", "8bit")
	}
	b.WriteString("\r\nThis is a MIME-encapsulated message.\r\n")
	for _, p := range parts {
		b.WriteString("\r\n--" + boundary + "\r\n")
		b.Write(p)
	}
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return b.Bytes()
}

// The groups of recipients in the human-readable part, in this order, each
// under the paragraph that introduces it. The Subject names the first group
// present but for the successful ones, which share one.
var recipientGroups = []struct {
	action, intro string
}{
	{"failed", "Your message could not be delivered to the following recipients; the mail system has given up:"},
	{"delayed", "Delivery of your message to the following recipients is delayed; the mail system will keep trying and tell you if it gives up:"},
	{"relayed", "Your message was delivered to the following recipients. The next hop does not offer delivery status notifications, so you may still hear of a failure from another system:"},
	{"delivered", "Your message was delivered to the mailbox of the following recipients:"},
}

// group returns the recipient group r belongs to: its action, lower-case,
// or "delayed" for an action the relay does not write.
func (r DSNRecipient) group() string {
	switch a := strings.ToLower(r.Action); a {
	case "failed", "relayed", "delivered":
		return a
	}
	return "delayed"
}

// recipients returns the recipients of the group named by action.
func (d DSN) recipients(action string) []DSNRecipient {
	var rs []DSNRecipient
	for _, r := range d.Recipients {
		if r.group() == action {
			rs = append(rs, r)
		}
	}
	return rs
}

func (d DSN) subject() string {
	switch {
	case len(d.recipients("failed")) > 0:
		return "Undelivered Mail Returned to Sender"
	case len(d.recipients("delayed")) > 0 || len(d.Recipients) == 0:
		return "Delayed Mail (still being retried)"
	}
	return "Successful Mail Delivery Report"
}

// What the third part returns of the original message.
type returnKind int

const (
	returnNothing    returnKind = iota
	returnHeader                // OriginalHeader, Original being nil
	returnMessage               // Original, whole
	returnHeaderOnly            // Original could not go unaltered: its header
)

// returns says what the third part returns of the original message.
func (d DSN) returns() returnKind {
	switch {
	case len(d.Original) > 0 && carriable(d.Original):
		return returnMessage
	case len(d.Original) > 0:
		return returnHeaderOnly
	case len(d.OriginalHeader) > 0:
		return returnHeader
	}
	return returnNothing
}

// returned renders the third part; nil if there is none.
func (d DSN) returned() []byte {
	switch d.returns() {
	case returnMessage:
		return d.messagePart()
	case returnHeaderOnly:
		return d.headersPart(headerOf(d.Original))
	case returnHeader:
		return d.headersPart(d.OriginalHeader)
	}
	return nil
}

// notification renders the human-readable first part.
func (d DSN) notification() []byte {
	var t bytes.Buffer
	d.writeText(&t, "This is the mail system at host "+d.ReportingMTA+".")
	for _, g := range recipientGroups {
		if rs := d.recipients(g.action); len(rs) > 0 {
			t.WriteString("\r\n")
			d.writeText(&t, g.intro)
			d.writeRecipients(&t, rs)
		}
	}
	var attached string
	switch kind := d.returns(); {
	case kind == returnMessage:
		attached = "Your message is attached."
	case kind == returnHeaderOnly:
		attached = "Your message cannot be returned whole as it was sent (it has a NUL, a bare CR or LF, or a line over 998 octets); its header is attached."
	case kind == returnHeader && d.OriginalTruncated:
		attached = "Your message was too large to return whole; its header is attached."
	case kind == returnHeader:
		attached = "The header of your message is attached."
	case d.OriginalTruncated:
		attached = "Your message was too large to return."
	}
	if attached != "" {
		t.WriteString("\r\n")
		d.writeText(&t, attached)
	}
	text := bytes.TrimSuffix(t.Bytes(), []byte("\r\n"))
	return d.part("text/plain; charset=us-ascii", "text/plain; charset=utf-8", "Notification", eightBit(text), text)
}

// part renders one body part: its Content-Type (globalType in a Global
// DSN), description, transfer encoding ("" leaves 7bit implied) and
// content.
func (d DSN) part(typ, globalType, desc, cte string, body []byte) []byte {
	if d.Global {
		typ = globalType
	}
	var b bytes.Buffer
	b.WriteString("Content-Type: " + typ + "\r\n")
	b.WriteString("Content-Description: " + desc + "\r\n")
	if cte != "" {
		b.WriteString("Content-Transfer-Encoding: " + cte + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// eightBit is the transfer encoding to declare for text: none for 7bit.
func eightBit(text []byte) string {
	if is7bit(text) {
		return ""
	}
	return "8bit"
}

// writeRecipients lists recipients with status and diagnostic.
func (d DSN) writeRecipients(b *bytes.Buffer, rs []DSNRecipient) {
	b.WriteString("\r\n")
	for _, r := range rs {
		line := "<" + d.address(r.Address) + ">: " + r.Status
		if r.Diagnostic != "" {
			line += " " + r.Diagnostic
		}
		writeFolded(b, "  ", d.clean(line), "      ")
	}
}

// deliveryStatus renders the message/delivery-status part: per-message
// fields, then one block per recipient, blocks separated by empty lines,
// each field where RFC 3464 2.2 and 2.3 order it.
func (d DSN) deliveryStatus() []byte {
	var f bytes.Buffer
	if d.EnvelopeID != "" {
		d.writeField(&f, "Original-Envelope-Id", d.EnvelopeID)
	}
	d.writeField(&f, "Reporting-MTA", "dns; "+d.ReportingMTA)
	if !d.Arrival.IsZero() {
		writeField(&f, "Arrival-Date", d.Arrival.Format(dateFormat))
	}
	if d.QueueID != "" {
		d.writeField(&f, "X-Gatehouse-Queue-ID", d.QueueID)
	}
	for _, r := range d.Recipients {
		f.WriteString("\r\n")
		if v := r.Original.Field(d.Global); v != "" {
			d.writeField(&f, "Original-Recipient", v)
		}
		d.writeField(&f, "Final-Recipient", d.finalRecipient(r.Address))
		d.writeField(&f, "Action", r.Action)
		d.writeField(&f, "Status", r.Status)
		if r.RemoteMTA != "" {
			d.writeField(&f, "Remote-MTA", r.RemoteMTA)
		}
		if r.Diagnostic != "" {
			d.writeField(&f, "Diagnostic-Code", r.Diagnostic)
		}
		if !r.LastAttempt.IsZero() {
			writeField(&f, "Last-Attempt-Date", r.LastAttempt.Format(dateFormat))
		}
	}
	fields := bytes.TrimSuffix(f.Bytes(), []byte("\r\n"))
	return d.part("message/delivery-status", "message/global-delivery-status", "Delivery report", eightBit(fields), fields)
}

// finalRecipient is the value of Final-Recipient for addr: type rfc822 for
// an ASCII address, utf-8 (RFC 6533 3) for one with non-ASCII octets, which
// outside a Global DSN goes as utf-8-addr-xtext to keep the part ASCII.
func (d DSN) finalRecipient(addr string) string {
	if isASCII(addr) {
		return "rfc822; " + headerAddress(addr)
	}
	a := quoteLocal(cleanUTF8(addr))
	if d.Global {
		return "utf-8; " + a
	}
	return "utf-8; " + EncodeUTF8AddrXtext(a)
}

// messagePart renders the original message, whole and unaltered, as
// message/rfc822 or message/global. Its final line end stays its own: the
// delimiter brings another.
func (d DSN) messagePart() []byte {
	cte := "8bit"
	if is7bit(d.Original) {
		cte = "7bit"
	}
	return d.part("message/rfc822", "message/global", "Original message", cte, d.Original)
}

// carriable says whether msg can go as 7bit or 8bit content as it is (RFC
// 2045 2.7, 2.8): CRLF line ends only, no NUL, lines of at most 998 octets.
func carriable(msg []byte) bool {
	for _, line := range bytes.Split(msg, []byte("\r\n")) {
		if len(line) > hardLineLimit || bytes.ContainsAny(line, "\x00\r\n") {
			return false
		}
	}
	return true
}

// headerOf returns the header block of msg with CRLF line ends, the empty
// line that ends it included, or all of msg if it has no body. Line ends
// are made CRLF first: a message that comes here may have bare ones.
func headerOf(msg []byte) []byte {
	msg = crlf(msg)
	if bytes.HasPrefix(msg, []byte("\r\n")) {
		return msg[:2]
	}
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return msg[:i+4]
	}
	return msg
}

// headersPart renders the original header as text/rfc822-headers, or as
// message/global-headers in a Global DSN. Line ends are made CRLF. The
// header is copied as it is when it is valid 7bit content, or in a Global
// DSN valid 8bit UTF-8 (RFC 6533 6.3); otherwise (8-bit bytes or invalid
// UTF-8, NUL, lines over 998 octets) it is quoted-printable encoded, which
// keeps it intact and the DSN valid.
func (d DSN) headersPart(h []byte) []byte {
	h = crlf(h)
	cte := ""
	switch {
	case is7bit(h):
	case d.Global && carriable(h) && utf8.Valid(h):
		cte = "8bit"
	default:
		var qp bytes.Buffer
		w := quotedprintable.NewWriter(&qp)
		w.Write(h) // writes to a bytes.Buffer do not fail
		w.Close()
		cte, h = "quoted-printable", qp.Bytes()
	}
	p := d.part("text/rfc822-headers", "message/global-headers", "Original message header", cte, h)
	return bytes.TrimSuffix(p, []byte("\r\n"))
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

// allIs7bit says whether all parts are 7bit data.
func allIs7bit(parts [][]byte) bool {
	for _, p := range parts {
		if !is7bit(p) {
			return false
		}
	}
	return true
}

// isASCII says whether s holds no octet above 0x7f.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
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

// writeField writes a header or delivery-status field, folded, made
// US-ASCII.
func writeField(b *bytes.Buffer, name, value string) {
	writeCleanField(b, name, clean(value))
}

// writeField writes a field whose value may be UTF-8 in a Global DSN.
func (d DSN) writeField(b *bytes.Buffer, name, value string) {
	writeCleanField(b, name, d.clean(value))
}

// writeCleanField writes a field whose value clean or cleanUTF8 made safe.
func writeCleanField(b *bytes.Buffer, name, value string) {
	if value == "" {
		b.WriteString(name + ":\r\n")
		return
	}
	writeFolded(b, name+": ", value, " ")
}

// writeText writes a paragraph of the human-readable part, wrapped.
func (d DSN) writeText(b *bytes.Buffer, text string) {
	writeFolded(b, "", d.clean(text), "")
}

// writeFolded writes head followed by the words of value, separated by
// spaces, and a CRLF. Where the line would pass 78 octets it breaks the line
// instead of writing a space and starts the next one with fold; a fold of
// " " is exactly how RFC 5322 folds a field. A word too long for a 998-octet
// line is split across lines, never inside a UTF-8 sequence; head and fold
// must be short.
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
			for k > 1 && k < len(w) && !utf8.RuneStart(w[k]) {
				k--
			}
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

// clean makes s safe for d: as US-ASCII, or in a Global DSN as UTF-8.
func (d DSN) clean(s string) string {
	if d.Global {
		return cleanUTF8(s)
	}
	return clean(s)
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
func headerAddress(s string) string { return quoteLocal(clean(s)) }

// address is headerAddress for d, which in a Global DSN keeps UTF-8.
func (d DSN) address(s string) string { return quoteLocal(d.clean(s)) }

// quoteLocal quotes the local part of an address already made clean when it
// is not a dot-atom. Non-ASCII counts as atext, as RFC 6532 3.2 has it; in
// a US-ASCII DSN clean has replaced it.
func quoteLocal(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at < 0 || isDotAtom(strings.Map(func(r rune) rune {
		if r >= utf8.RuneSelf {
			return 'a'
		}
		return r
	}, s[:at])) {
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
