package mailmsg

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var (
	arrival = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	attempt = time.Date(2025, 3, 4, 6, 0, 0, 0, time.FixedZone("", 3600))
	sent    = time.Date(2025, 3, 5, 5, 6, 7, 0, time.UTC)
)

const origHeader = "Received: from client.example (client.example [192.0.2.7])\r\n\tby mx.example.com\r\nFrom: Sender <sender@example.org>\r\nSubject: hello\r\n\r\n"

func testDSN() DSN {
	return DSN{
		ReportingMTA: "mx.example.com",
		From:         "MAILER-DAEMON@mx.example.com",
		To:           "sender@example.org",
		Arrival:      arrival,
		EnvelopeID:   "QQ314159.env@client.example",
		QueueID:      "Q1234",
		Recipients: []DSNRecipient{{
			Address:     "nobody@example.net",
			Action:      "failed",
			Status:      "5.1.1",
			Diagnostic:  "smtp; 550 5.1.1 no such user",
			RemoteMTA:   "dns; mx.example.net",
			LastAttempt: attempt,
		}, {
			Address: "slow@example.net",
			Action:  "delayed",
			Status:  "4.4.1",
		}},
		OriginalHeader: []byte(origHeader),
		Date:           sent,
		MessageID:      "dsn.Q1234@mx.example.com",
	}
}

// parsedDSN is a DSN as a receiving mail program sees it.
type parsedDSN struct {
	header     mail.Header
	global     bool                   // report-type=global-delivery-status
	types      []string               // the parts' media types, in order
	text       string                 // the human-readable part
	status     string                 // the delivery-status part, raw
	perMessage textproto.MIMEHeader   // delivery-status per-message fields
	recipients []textproto.MIMEHeader // delivery-status per-recipient blocks
	original   *string                // the returned header, decoded; nil if absent
	message    *string                // the returned message; nil if absent
	messageCTE string                 // its Content-Transfer-Encoding
}

// The media types of the parts of a DSN: the report's, then what may be
// returned of the original message.
var dsnPartTypes = map[bool][]string{
	false: {"text/plain", "message/delivery-status", "text/rfc822-headers", "message/rfc822"},
	true:  {"text/plain", "message/global-delivery-status", "message/global-headers", "message/global"},
}

// parseDSN parses a DSN back with net/mail and mime/multipart, failing the
// test on anything a mail program would object to: a part of the wrong type
// for the DSN's kind (RFC 3464 or RFC 6533), 8-bit octets where the DSN is
// not declared 8bit or in a non-global DSN outside the returned message,
// invalid UTF-8 in a global DSN outside the returned message.
func parseDSN(t *testing.T, msg []byte) parsedDSN {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("mail.ReadMessage: %v", err)
	}
	eightBit := m.Header.Get("Content-Transfer-Encoding") == "8bit"
	checkLines(t, msg, eightBit)
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type: %v", err)
	}
	p := parsedDSN{header: m.Header, global: params["report-type"] == "global-delivery-status"}
	if mt != "multipart/report" || params["report-type"] != "delivery-status" && !p.global {
		t.Fatalf("Content-Type %q, want multipart/report; report-type=(global-)delivery-status", m.Header.Get("Content-Type"))
	}
	head := msg[:bytes.Index(msg, []byte("\r\n\r\n"))]
	checkCharset(t, "header", head, p.global)
	want := dsnPartTypes[p.global]
	mr := multipart.NewReader(m.Body, params["boundary"])
	for i := 0; ; i++ {
		part, err := mr.NextPart()
		if err == io.EOF {
			if i < 2 {
				t.Fatalf("only %d parts", i)
			}
			break
		}
		if err != nil {
			t.Fatalf("part %d: %v", i+1, err)
		}
		body, err := io.ReadAll(part)
		if err != nil {
			t.Fatalf("part %d: %v", i+1, err)
		}
		ct, ctParams, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
		p.types = append(p.types, ct)
		cte := part.Header.Get("Content-Transfer-Encoding")
		if i < 2 {
			checkCharset(t, ct, body, p.global)
			if !is7bit(body) && cte != "8bit" {
				t.Errorf("part %d %s holds 8-bit octets but has Content-Transfer-Encoding %q", i+1, ct, cte)
			}
		}
		switch {
		case i == 0 && ct == want[0]:
			if cs := ctParams["charset"]; p.global && cs != "utf-8" || !p.global && cs != "us-ascii" {
				t.Errorf("text part charset %q in a DSN with global %v", cs, p.global)
			}
			p.text = string(body)
		case i == 1 && ct == want[1]:
			p.status = string(body)
			p.perMessage, p.recipients = parseDeliveryStatus(t, body)
		case i == 2 && ct == want[2]:
			if p.global && cte != "" && !utf8.Valid(body) {
				t.Errorf("message/global-headers part with Content-Transfer-Encoding %q is not UTF-8", cte)
			}
			s := string(body)
			p.original = &s
		case i == 2 && ct == want[3]:
			if cte != "7bit" && cte != "8bit" {
				t.Errorf("%s part has Content-Transfer-Encoding %q", ct, cte)
			}
			if cte == "7bit" && !is7bit(body) {
				t.Errorf("%s part is declared 7bit but is not", ct)
			}
			s := string(body)
			p.message, p.messageCTE = &s, cte
		default:
			t.Fatalf("part %d has Content-Type %q in a DSN with global %v", i+1, ct, p.global)
		}
	}
	return p
}

// quoted shows a part of a parsedDSN.
func quoted(s *string) string {
	if s == nil {
		return "absent"
	}
	return strconv.Quote(*s)
}

// checkCharset checks that text is US-ASCII, or UTF-8 in a global DSN.
func checkCharset(t *testing.T, what string, text []byte, global bool) {
	t.Helper()
	switch {
	case global && !utf8.Valid(text):
		t.Errorf("%s is not valid UTF-8: %q", what, text)
	case !global && !is7bit(text):
		t.Errorf("%s is not US-ASCII: %q", what, text)
	}
}

// parseDeliveryStatus splits a message/delivery-status body into its blocks.
func parseDeliveryStatus(t *testing.T, body []byte) (textproto.MIMEHeader, []textproto.MIMEHeader) {
	t.Helper()
	var blocks []textproto.MIMEHeader
	for _, b := range strings.Split(string(body), "\r\n\r\n") {
		r := textproto.NewReader(bufio.NewReader(strings.NewReader(b + "\r\n\r\n")))
		h, err := r.ReadMIMEHeader()
		if err != nil {
			t.Fatalf("delivery-status block %q: %v", b, err)
		}
		blocks = append(blocks, h)
	}
	return blocks[0], blocks[1:]
}

// checkLines checks that every line ends in CRLF, is at most 998 octets and
// holds no NUL, and that the body holds 8-bit octets exactly when it is
// declared 8bit.
func checkLines(t *testing.T, msg []byte, eightBit bool) {
	t.Helper()
	if !bytes.HasSuffix(msg, []byte("\r\n")) {
		t.Errorf("message does not end in CRLF")
	}
	// The header of a global DSN may hold UTF-8 (RFC 6532); the body's
	// encoding is what Content-Transfer-Encoding declares.
	if body := msg[bytes.Index(msg, []byte("\r\n\r\n")):]; eightBit == is7bit(body) {
		t.Errorf("body declared 8bit: %v, but holds 8-bit octets: %v", eightBit, !eightBit)
	}
	for i, line := range strings.Split(string(msg), "\r\n") {
		if strings.ContainsAny(line, "\r\n\x00") {
			t.Errorf("line %d %q contains a bare CR or LF, or NUL", i+1, line)
		}
		if len(line) > 998 {
			t.Errorf("line %d is %d octets long", i+1, len(line))
		}
	}
}

func TestDSN(t *testing.T) {
	p := parseDSN(t, testDSN().Bytes())

	for name, want := range map[string]string{
		"From":           "MAILER-DAEMON@mx.example.com",
		"To":             "sender@example.org",
		"Subject":        "Undelivered Mail Returned to Sender",
		"Date":           "Wed, 05 Mar 2025 05:06:07 +0000",
		"Message-Id":     "<dsn.Q1234@mx.example.com>",
		"Auto-Submitted": "auto-replied",
		"Mime-Version":   "1.0",
	} {
		if got := p.header.Get(name); got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	if to, err := p.header.AddressList("To"); err != nil || len(to) != 1 || to[0].Address != "sender@example.org" {
		t.Errorf("To: %v, %v", to, err)
	}
	if d, err := p.header.Date(); err != nil || !d.Equal(sent) {
		t.Errorf("Date: %v, %v", d, err)
	}

	for _, s := range []string{"mx.example.com", "<nobody@example.net>: 5.1.1 smtp; 550 5.1.1 no such user", "<slow@example.net>: 4.4.1"} {
		if !strings.Contains(p.text, s) {
			t.Errorf("text part does not mention %q:\n%s", s, p.text)
		}
	}

	wantMessage := map[string]string{
		"Original-Envelope-Id": "QQ314159.env@client.example",
		"Reporting-Mta":        "dns; mx.example.com",
		"Arrival-Date":         "Tue, 04 Mar 2025 05:06:07 +0000",
		"X-Gatehouse-Queue-Id": "Q1234",
	}
	checkFields(t, "per-message", p.perMessage, wantMessage)
	checkOrder(t, p.status, "Original-Envelope-Id:", "Reporting-MTA:", "Arrival-Date:", "X-Gatehouse-Queue-ID:", "\r\n\r\n")
	if len(p.recipients) != 2 {
		t.Fatalf("%d recipient blocks, want 2", len(p.recipients))
	}
	checkFields(t, "recipient 1", p.recipients[0], map[string]string{
		"Final-Recipient":   "rfc822; nobody@example.net",
		"Action":            "failed",
		"Status":            "5.1.1",
		"Remote-Mta":        "dns; mx.example.net",
		"Diagnostic-Code":   "smtp; 550 5.1.1 no such user",
		"Last-Attempt-Date": "Tue, 04 Mar 2025 06:00:00 +0100",
	})
	checkFields(t, "recipient 2", p.recipients[1], map[string]string{
		"Final-Recipient": "rfc822; slow@example.net",
		"Action":          "delayed",
		"Status":          "4.4.1",
	})

	if p.original == nil {
		t.Fatal("no text/rfc822-headers part")
	}
	// The line end before the boundary belongs to the boundary.
	if want := strings.TrimSuffix(origHeader, "\r\n"); *p.original != want {
		t.Errorf("original header part %q, want %q", *p.original, want)
	}
}

// checkOrder checks that each of subs occurs in s, in this order.
func checkOrder(t *testing.T, s string, subs ...string) {
	t.Helper()
	at := 0
	for _, sub := range subs {
		i := strings.Index(s[at:], sub)
		if i < 0 {
			t.Errorf("%q does not occur after %q in\n%s", sub, s[:at], s)
			return
		}
		at += i + len(sub)
	}
}

// checkFields checks that h has exactly the fields in want.
func checkFields(t *testing.T, what string, h textproto.MIMEHeader, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := h.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
	for k := range h {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected field %s: %q", what, k, h[k])
		}
	}
}

func TestDSNDelayedOnlyAndOptionalFields(t *testing.T) {
	d := testDSN()
	d.Recipients = d.Recipients[1:]
	d.EnvelopeID = ""
	d.QueueID = ""
	d.Arrival = time.Time{}
	d.OriginalHeader = nil
	p := parseDSN(t, d.Bytes())
	if got := p.header.Get("Subject"); got != "Delayed Mail (still being retried)" {
		t.Errorf("Subject %q", got)
	}
	checkFields(t, "per-message", p.perMessage, map[string]string{"Reporting-Mta": "dns; mx.example.com"})
	if p.original != nil {
		t.Errorf("text/rfc822-headers part present without OriginalHeader")
	}
	if strings.Contains(p.text, "attached") {
		t.Errorf("text part speaks of an attachment that is not there:\n%s", p.text)
	}
}

// Values from input (a remote server's reply, a sender address) must not be
// able to add header lines or delivery-status fields.
func TestDSNInjection(t *testing.T) {
	d := testDSN()
	d.To = "sender@example.org\r\nBcc: victim@example.com"
	d.MessageID = "id@x\nX-Injected: 1"
	d.Recipients[0].Diagnostic = "smtp; 550 no\r\nX-Injected: 2\r\n\r\nFinal-Recipient: rfc822; evil@example.com"
	d.Recipients[0].Address = "nobody@example.net\rAction: delivered"
	d.Recipients[1].Status = "4.4.1\n\nX-Injected: 3"
	d.Recipients[1].Diagnostic = "smtp; 450 caf\xc3\xa9\x00\x7f"
	p := parseDSN(t, d.Bytes())
	for k := range p.header {
		if k == "Bcc" || k == "X-Injected" {
			t.Errorf("injected header %s: %q", k, p.header[k])
		}
	}
	if len(p.recipients) != 2 {
		t.Fatalf("%d recipient blocks, want 2", len(p.recipients))
	}
	for i, r := range p.recipients {
		if r.Get("X-Injected") != "" || len(r.Values("Action")) != 1 || len(r.Values("Final-Recipient")) != 1 {
			t.Errorf("recipient %d: injected fields: %q", i+1, r)
		}
	}
	if got, want := p.recipients[0].Get("Diagnostic-Code"), "smtp; 550 no X-Injected: 2 Final-Recipient: rfc822; evil@example.com"; got != want {
		t.Errorf("Diagnostic-Code %q, want %q", got, want)
	}
	if got, want := p.recipients[1].Get("Diagnostic-Code"), "smtp; 450 caf??"; got != want {
		t.Errorf("Diagnostic-Code %q, want %q", got, want)
	}
}

func TestDSNLongLines(t *testing.T) {
	words := "smtp; 550 5.7.1" + strings.Repeat(" policy", 300)
	token := strings.Repeat("x", 2500)
	d := testDSN()
	d.Recipients[0].Diagnostic = words
	d.Recipients[1].Diagnostic = "smtp; " + token
	d.ReportingMTA = strings.Repeat("h", 1500)
	d.OriginalHeader = []byte("Subject: " + strings.Repeat("long ", 300) + "\nX-Token: " + token + "\r\nX-8bit: caf\xc3\xa9 =\r\n\r\n")
	p := parseDSN(t, d.Bytes()) // checks the line lengths

	// Folding at spaces is undone by unfolding.
	if got := p.recipients[0].Get("Diagnostic-Code"); got != words {
		t.Errorf("Diagnostic-Code %q, want %q", got, words)
	}
	// A word too long for any line is split, losing nothing but gaining spaces.
	got := p.recipients[1].Get("Diagnostic-Code")
	if strings.ReplaceAll(got, " ", "") != "smtp;"+token {
		t.Errorf("Diagnostic-Code %q lost part of the token", got)
	}
	// The original header survives whole, with CRLF line ends.
	want := strings.ReplaceAll(string(d.OriginalHeader), "\r\n", "\n")
	want = strings.TrimSuffix(strings.ReplaceAll(want, "\n", "\r\n"), "\r\n")
	if p.original == nil {
		t.Fatal("no text/rfc822-headers part")
	}
	if *p.original != want {
		t.Errorf("original header part %q, want %q", *p.original, want)
	}
}

// The boundary must not occur in the content.
func TestDSNBoundary(t *testing.T) {
	d := testDSN()
	d.Recipients[0].Diagnostic = "smtp; 550 --" + boundaryOf(t, d.Bytes())
	d.OriginalHeader = append(d.OriginalHeader, "X-B: --dsn-\r\n"...)
	msg := d.Bytes()
	b := boundaryOf(t, msg)
	body := msg[bytes.Index(msg, []byte("\r\n\r\n")):]
	if n := bytes.Count(body, []byte(b)); n != 4 { // 3 parts + the closing delimiter
		t.Errorf("boundary %q occurs %d times in the body, want 4", b, n)
	}
	parseDSN(t, msg)
	if !bytes.Equal(msg, d.Bytes()) {
		t.Error("Bytes is not deterministic")
	}
}

// A part that contains a candidate boundary makes freeBoundary move on to
// the next one. Through chooseBoundary that cannot be provoked, since the
// candidates depend on the content.
func TestFreeBoundary(t *testing.T) {
	seed := []byte("0123456789abcdef")
	parts := [][]byte{[]byte("a"), []byte("b")}
	seen := map[string]bool{}
	for range 3 {
		c := freeBoundary(parts, seed)
		if anyContains(parts, c) || seen[c] {
			t.Fatalf("boundary %q occurs in the content or was refused before", c)
		}
		seen[c] = true
		parts[1] = append(parts[1], "\r\n--"+c...)
	}
}

func boundaryOf(t *testing.T, msg []byte) string {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	return params["boundary"]
}

func TestDSNQuotedLocalPart(t *testing.T) {
	d := testDSN()
	d.To = "a@b@example.org" // "a@b"@example.org, unquoted by go-smtp
	d.Recipients[0].Address = `x"y@example.net`
	p := parseDSN(t, d.Bytes())
	if got := p.header.Get("To"); got != `"a@b"@example.org` {
		t.Errorf("To %q", got)
	}
	if to, err := p.header.AddressList("To"); err != nil || len(to) != 1 {
		t.Errorf("To does not parse: %v %v", to, err)
	}
	if got := p.recipients[0].Get("Final-Recipient"); got != `rfc822; "x\"y"@example.net` {
		t.Errorf("Final-Recipient %q", got)
	}
}

func TestWriteFolded(t *testing.T) {
	var b bytes.Buffer
	writeField(&b, "Empty", "  \r\n ")
	writeField(&b, "Short", "a  b\tc")
	writeField(&b, "X", strings.Repeat("abcdefghi ", 10))
	want := "Empty:\r\nShort: a b c\r\n" +
		"X: abcdefghi abcdefghi abcdefghi abcdefghi abcdefghi abcdefghi abcdefghi\r\n" +
		" abcdefghi abcdefghi abcdefghi\r\n"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
}

// origMessage is an original message as the relay received it, with an
// 8-bit body.
const origMessage = origHeader + "Hello,\r\n\r\ncaf\xc3\xa9 at 8:00?\r\n-- \r\nSender\r\n"

// The parts of a DSN by its kind and what it returns.
func TestDSNParts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		global   bool
		original []byte // DSN.Original; else the header is returned
		types    []string
		cte      string
		attached string
	}{
		{"headers", false, nil, []string{"text/plain", "message/delivery-status", "text/rfc822-headers"}, "", "The header of your message is attached."},
		{"full", false, []byte(origMessage), []string{"text/plain", "message/delivery-status", "message/rfc822"}, "8bit", "Your message is attached."},
		{"full 7bit", false, []byte(origHeader + "Hello\r\n"), []string{"text/plain", "message/delivery-status", "message/rfc822"}, "7bit", "Your message is attached."},
		{"global headers", true, nil, []string{"text/plain", "message/global-delivery-status", "message/global-headers"}, "", "The header of your message is attached."},
		{"global full", true, []byte(origMessage), []string{"text/plain", "message/global-delivery-status", "message/global"}, "8bit", "Your message is attached."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := testDSN()
			d.Global = tc.global
			d.Original = tc.original
			msg := d.Bytes()
			p := parseDSN(t, msg)
			if p.global != tc.global {
				t.Errorf("global %v, want %v", p.global, tc.global)
			}
			if strings.Join(p.types, " ") != strings.Join(tc.types, " ") {
				t.Errorf("parts %q, want %q", p.types, tc.types)
			}
			if !strings.Contains(p.text, tc.attached) {
				t.Errorf("text part does not say %q:\n%s", tc.attached, p.text)
			}
			if tc.original == nil {
				if p.original == nil || *p.original != strings.TrimSuffix(origHeader, "\r\n") {
					t.Errorf("header part %s", quoted(p.original))
				}
				return
			}
			// RET=FULL: the message goes back byte for byte.
			if p.message == nil || *p.message != string(tc.original) {
				t.Fatalf("message part %s, want %q", quoted(p.message), tc.original)
			}
			if p.messageCTE != tc.cte {
				t.Errorf("message part Content-Transfer-Encoding %q, want %q", p.messageCTE, tc.cte)
			}
			if !bytes.Contains(msg, tc.original) {
				t.Errorf("the original is not in the DSN as it is")
			}
		})
	}
}

// A message that no mail can carry unaltered goes back as its header, and
// the sender is told why; a message too large for the caller to return
// likewise.
func TestDSNOriginalNotReturned(t *testing.T) {
	for _, orig := range []string{
		strings.ReplaceAll(origHeader, "\r\n", "\n") + "bare\nLF\n",
		origHeader + "bare\rCR\r\n",
		origHeader + "NUL\x00\r\n",
		origHeader + strings.Repeat("x", 999) + "\r\n",
	} {
		d := testDSN()
		d.Original = []byte(orig)
		p := parseDSN(t, d.Bytes())
		if p.message != nil || p.original == nil || *p.original != strings.TrimSuffix(origHeader, "\r\n") {
			t.Errorf("Original %q: message part %v, header part %v", orig, p.message != nil, p.original)
		}
		if !strings.Contains(p.text, "cannot be returned whole as it was sent") || strings.Contains(p.text, "Your message is attached") {
			t.Errorf("Original %q: text part:\n%s", orig, p.text)
		}
	}

	d := testDSN()
	d.OriginalTruncated = true
	p := parseDSN(t, d.Bytes())
	if want := "Your message was too large to return whole; its header is attached."; !strings.Contains(p.text, want) {
		t.Errorf("text part does not say %q:\n%s", want, p.text)
	}
	if strings.Contains(p.text, "The header of your message is attached.") {
		t.Errorf("text part speaks of the header twice:\n%s", p.text)
	}
}

func TestDSNOriginalRecipient(t *testing.T) {
	rcpts := []OrigRcpt{{"rfc822", "Bob+list@Example.COM"}, {"utf-8", "müller@bücher.example"}}
	for _, tc := range []struct {
		global bool
		want   []string
	}{
		{false, []string{"rfc822;Bob+list@Example.COM", `utf-8;m\x{FC}ller@b\x{FC}cher.example`}},
		{true, []string{"rfc822;Bob+list@Example.COM", "utf-8;müller@bücher.example"}},
	} {
		d := testDSN()
		d.Global = tc.global
		d.Recipients[0].Original = rcpts[0]
		d.Recipients[1].Original = rcpts[1]
		p := parseDSN(t, d.Bytes())
		for i, r := range p.recipients {
			if got := r.Get("Original-Recipient"); got != tc.want[i] {
				t.Errorf("global %v: recipient %d: Original-Recipient %q, want %q", tc.global, i+1, got, tc.want[i])
			}
		}
		// RFC 3464 2.3: Original-Recipient comes first in the block.
		checkOrder(t, p.status, "\r\n\r\nOriginal-Recipient:", "\r\nFinal-Recipient:", "\r\n\r\nOriginal-Recipient:", "\r\nFinal-Recipient:")
	}
}

func TestDSNSuccess(t *testing.T) {
	d := testDSN()
	d.Recipients = []DSNRecipient{{Address: "far@example.net", Action: "relayed", Status: "2.0.0", RemoteMTA: "dns; mx.example.net", Diagnostic: "smtp; 250 2.0.0 queued as 1234"}}
	p := parseDSN(t, d.Bytes())
	if got := p.header.Get("Subject"); got != "Successful Mail Delivery Report" {
		t.Errorf("Subject %q", got)
	}
	checkFields(t, "recipient", p.recipients[0], map[string]string{
		"Final-Recipient": "rfc822; far@example.net",
		"Action":          "relayed",
		"Status":          "2.0.0",
		"Remote-Mta":      "dns; mx.example.net",
		"Diagnostic-Code": "smtp; 250 2.0.0 queued as 1234",
	})
	text := strings.Join(strings.Fields(p.text), " ") // unwrapped
	for _, s := range []string{"The next hop does not offer delivery status notifications, so you may still hear of a failure from another system:", "<far@example.net>: 2.0.0"} {
		if !strings.Contains(text, s) {
			t.Errorf("text part does not say %q:\n%s", s, p.text)
		}
	}
	if strings.Contains(text, "could not be delivered") || strings.Contains(text, "delayed") {
		t.Errorf("text part speaks of failure or delay:\n%s", p.text)
	}

	d.Recipients[0].Action = "delivered"
	p = parseDSN(t, d.Bytes())
	if got := p.header.Get("Subject"); got != "Successful Mail Delivery Report" {
		t.Errorf("Subject %q", got)
	}
	if text := strings.Join(strings.Fields(p.text), " "); !strings.Contains(text, "delivered to the mailbox of the following recipients") || strings.Contains(text, "next hop") {
		t.Errorf("text part for delivered:\n%s", p.text)
	}
}

// A DSN about recipients in several states lists each group under its own
// paragraph, and its Subject names the worst.
func TestDSNMixed(t *testing.T) {
	d := testDSN()
	d.Recipients = []DSNRecipient{
		{Address: "in@example.net", Action: "delivered", Status: "2.0.0"},
		{Address: "far@example.net", Action: "relayed", Status: "2.0.0"},
		{Address: "slow@example.net", Action: "delayed", Status: "4.4.1"},
		{Address: "nobody@example.net", Action: "failed", Status: "5.1.1"},
	}
	p := parseDSN(t, d.Bytes())
	if got := p.header.Get("Subject"); got != "Undelivered Mail Returned to Sender" {
		t.Errorf("Subject %q", got)
	}
	checkOrder(t, strings.Join(strings.Fields(p.text), " "),
		"could not be delivered", "<nobody@example.net>",
		"is delayed", "<slow@example.net>",
		"next hop does not offer", "<far@example.net>",
		"to the mailbox", "<in@example.net>")
	for _, addr := range []string{"nobody", "slow", "far", "in"} {
		if n := strings.Count(p.text, "<"+addr+"@"); n != 1 {
			t.Errorf("%s listed %d times", addr, n)
		}
	}

	d.Recipients = d.Recipients[:3]
	if got := parseDSN(t, d.Bytes()).header.Get("Subject"); got != "Delayed Mail (still being retried)" {
		t.Errorf("Subject %q without failures", got)
	}
}

// A Global DSN carries UTF-8 addresses as they are; the ASCII one writes a
// UTF-8 recipient address as utf-8-addr-xtext.
func TestDSNUTF8Address(t *testing.T) {
	d := testDSN()
	d.To = "jürgen@example.org"
	d.Recipients[0].Address = "müller@bücher.example"
	d.Recipients[0].Diagnostic = "smtp; 550 5.1.1 Benutzer unbekannt: müller"
	d.OriginalHeader = []byte("From: Jürgen <jürgen@example.org>\r\nSubject: Grüße\r\n\r\n")

	d.Global = true
	p := parseDSN(t, d.Bytes())
	if got := p.header.Get("To"); got != "jürgen@example.org" {
		t.Errorf("To %q", got)
	}
	checkFields(t, "recipient 1", p.recipients[0], map[string]string{
		"Final-Recipient":   "utf-8; müller@bücher.example",
		"Action":            "failed",
		"Status":            "5.1.1",
		"Remote-Mta":        "dns; mx.example.net",
		"Diagnostic-Code":   "smtp; 550 5.1.1 Benutzer unbekannt: müller",
		"Last-Attempt-Date": "Tue, 04 Mar 2025 06:00:00 +0100",
	})
	if !strings.Contains(p.text, "<müller@bücher.example>: 5.1.1") {
		t.Errorf("text part:\n%s", p.text)
	}
	// Valid UTF-8 goes as 8bit, not quoted-printable (RFC 6533 6.3).
	if p.original == nil || *p.original != strings.TrimSuffix(string(d.OriginalHeader), "\r\n") {
		t.Errorf("global header part %s", quoted(p.original))
	}
	if !bytes.Contains(d.Bytes(), d.OriginalHeader) {
		t.Errorf("the UTF-8 header is not carried as it is")
	}
	// Invalid UTF-8 cannot go as 8bit in message/global-headers; it is
	// quoted-printable and decodes to what it was.
	bad := testDSN()
	bad.Global = true
	bad.OriginalHeader = []byte("Subject: Gr\xfc\xdfe\r\n\r\n")
	if p := parseDSN(t, bad.Bytes()); p.original == nil || *p.original != "Subject: Gr\xfc\xdfe\r\n" {
		t.Errorf("invalid UTF-8 header part %s", quoted(p.original))
	}

	d.Global = false
	p = parseDSN(t, d.Bytes())
	if got := p.recipients[0].Get("Final-Recipient"); got != `utf-8; m\x{FC}ller@b\x{FC}cher.example` {
		t.Errorf("Final-Recipient %q outside a Global DSN", got)
	}
	if got := p.header.Get("To"); got != "j??rgen@example.org" {
		t.Errorf("To %q outside a Global DSN", got)
	}
}

// In a Global DSN, too, values cannot add lines or fields, invalid UTF-8
// does not get through, and nothing in the returned message, not even a line
// that looks like a delimiter, breaks the structure.
func TestDSNGlobalHostile(t *testing.T) {
	d := testDSN()
	d.Global = true
	d.To = "j\xfcrgen@example.org\r\nBcc: victim@example.com"
	d.EnvelopeID = "env\r\nX-Injected: 1"
	d.QueueID = "Q1\n\nFinal-Recipient: rfc822; evil@example.com"
	d.Recipients[0].Address = "m\xfcller@b\u0085cher.example\rAction: delivered"
	d.Recipients[0].Original = OrigRcpt{"utf-8", "x\r\nAction: delivered"}
	d.Recipients[0].Diagnostic = "smtp; 550 \xff\xfe\u2028\r\n\r\nX-Injected: 2 " + strings.Repeat("ü", 600)
	d.Recipients[1].Original = OrigRcpt{"rfc822", "y\r\n\r\nX-Injected: 3"}
	first := d.Bytes()
	d.Original = []byte(origHeader + "--" + boundaryOf(t, first) + "\r\n--" + boundaryOf(t, first) + "--\r\n\xff\xfe invalid UTF-8 and\r\n--dsn-\r\n")
	msg := d.Bytes()
	p := parseDSN(t, msg)
	if len(p.types) != 3 {
		t.Fatalf("%d parts", len(p.types))
	}
	if p.message == nil || *p.message != string(d.Original) {
		t.Fatalf("message part %s, want %q", quoted(p.message), d.Original)
	}
	for k := range p.header {
		if k == "Bcc" {
			t.Errorf("injected header %s: %q", k, p.header[k])
		}
	}
	if got := p.header.Get("To"); got != "\"j\uFFFDrgen@example.org Bcc: victim\"@example.com" {
		t.Errorf("To %q", got)
	}
	if len(p.recipients) != 2 {
		t.Fatalf("%d recipient blocks, want 2", len(p.recipients))
	}
	for i, r := range append(p.recipients, p.perMessage) {
		if r.Get("X-Injected") != "" || len(r.Values("Action")) > 1 || len(r.Values("Final-Recipient")) > 1 {
			t.Errorf("block %d: injected fields: %q", i+1, r)
		}
	}
	if got, want := p.recipients[0].Get("Final-Recipient"), "utf-8; m\uFFFDller@b cher.example Action: delivered"; got != want {
		t.Errorf("Final-Recipient %q, want %q", got, want)
	}
	if got, want := p.recipients[0].Get("Original-Recipient"), "utf-8;x Action: delivered"; got != want {
		t.Errorf("Original-Recipient %q, want %q", got, want)
	}
	// The long diagnostic is folded between characters, never inside one.
	if got := p.recipients[0].Get("Diagnostic-Code"); !strings.HasPrefix(got, "smtp; 550 \uFFFD\uFFFD X-Injected: 2 ü") || !utf8.ValidString(got) {
		t.Errorf("Diagnostic-Code %q", got)
	}
	if !bytes.Equal(msg, d.Bytes()) {
		t.Error("Bytes is not deterministic")
	}
}

// Whatever the input, the DSN must be a well-formed message with exactly the
// fields Bytes writes, of the kind asked for, returning what it says.
func FuzzDSN(f *testing.F) {
	f.Add("sender@example.org", "nobody@example.net", "smtp; 550 5.1.1 no such user", "bob@example.net", []byte(origHeader), false, false)
	f.Add("a@b@c\r\nBcc: x", "x\ny@z", "smtp;\r\n\r\nX: 1"+strings.Repeat("y", 1200), "\xff\r\n", []byte("Subject: \xff\rX: y\n\n"), false, true)
	f.Add("jürgen@example.org", "müller@bücher.example", "smtp; 550 "+strings.Repeat("ü", 700), "müller@bücher.example", []byte(origMessage), true, true)
	f.Add("j\xfc@x", "m\xfc\u0085@y", "smtp; \xc3", "\x00", []byte(origHeader+"--dsn-\r\n\xff\r\n"), true, false)
	f.Fuzz(func(t *testing.T, to, rcpt, diag, orcpt string, orig []byte, global, full bool) {
		d := testDSN()
		d.Global = global
		d.To = to
		d.Recipients[0].Address = rcpt
		d.Recipients[0].Diagnostic = diag
		d.Recipients[0].Original = OrigRcpt{"utf-8", orcpt}
		d.Recipients[1].Original = OrigRcpt{"rfc822", orcpt}
		d.Recipients[1].RemoteMTA = diag
		if full {
			d.Original, d.OriginalHeader = orig, nil
		} else {
			d.OriginalHeader = orig
		}
		p := parseDSN(t, d.Bytes())
		if p.global != global {
			t.Fatalf("global %v, want %v", p.global, global)
		}
		if len(p.recipients) != 2 {
			t.Fatalf("%d recipient blocks, want 2", len(p.recipients))
		}
		for _, r := range p.recipients {
			for k, v := range r {
				if len(v) != 1 {
					t.Fatalf("field %s occurs %d times", k, len(v))
				}
			}
		}
		if returned := p.original != nil || p.message != nil; returned != (len(orig) > 0) {
			t.Fatalf("something returned: %v, original %q", returned, orig)
		}
		if p.message != nil && *p.message != string(orig) {
			t.Fatalf("message part %q, want %q", *p.message, orig)
		}
	})
}
