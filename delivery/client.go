package delivery

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"gatehouse/mailmsg"
)

// smtpConn is the relay's outbound SMTP client. go-smtp's client cannot
// send EHLO with our name before STARTTLS nor pipeline, so the few commands
// a relay needs (RFC 5321, 3207, 2920, 4954) are spoken here.
//
// Every next hop is a stranger: a reply is read a bounded line at a time,
// and every read has a deadline, so a hostile or broken server costs the
// relay a few KiB and a few minutes, never its memory.
type smtpConn struct {
	conn    net.Conn      // the session: dc, or TLS over it
	dc      *deadlineConn // the network side, where read deadlines are set
	r       *bufio.Reader
	w       *bufio.Writer
	ext     map[string]string
	timeout time.Duration // for each write
	wait    replyWait     // for a reply to a command
	dataEnd replyWait     // for the reply after the message
	isTLS   bool
}

// Bounds on a reply. RFC 5321 4.5.3.1.5 allows 512 octets a line; servers
// that overstep it do so by little. A multi-line reply (EHLO) has a dozen
// lines.
const (
	maxReplyLine  = 2048 // octets, CRLF included
	maxReplyLines = 100
)

// replyWait is how long the relay waits for a reply: idle is the longest
// silence on any one read, total the longest the whole reply may take
// however slowly it trickles in.
type replyWait struct{ idle, total time.Duration }

// The waits of RFC 5321 4.5.3.2 (Postfix's smtp_*_timeout): 5 minutes for a
// command's reply; 10 after the message, which the server may be scanning
// or delivering before it answers, and where giving up early means the
// message is sent twice.
var (
	commandWait = replyWait{idle: 5 * time.Minute, total: 10 * time.Minute}
	dataEndWait = replyWait{idle: 10 * time.Minute, total: 20 * time.Minute}
)

// deadlineConn gives every read from the network a deadline: idle from
// now, and never past until. Reads under TLS come through here too, so the
// handshake is bounded the same way.
type deadlineConn struct {
	net.Conn
	idle  time.Duration
	until time.Time // zero: no overall bound
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	d := time.Now().Add(c.idle)
	if !c.until.IsZero() && c.until.Before(d) {
		d = c.until
	}
	c.Conn.SetReadDeadline(d)
	return c.Conn.Read(p)
}

// waitFor bounds the reads from now on by w.
func (c *deadlineConn) waitFor(w replyWait) {
	c.idle, c.until = w.idle, time.Now().Add(w.total)
}

// ReplyError is a reply from the server that is not the one expected.
type ReplyError struct {
	Code     int
	Enhanced string // "5.1.1", or "" when the server sent none
	Text     string
}

func (e *ReplyError) Error() string {
	if e.Enhanced != "" {
		return fmt.Sprintf("%d %s %s", e.Code, e.Enhanced, e.Text)
	}
	return fmt.Sprintf("%d %s", e.Code, e.Text)
}

func newSMTPConn(c net.Conn) *smtpConn {
	dc := &deadlineConn{Conn: c, idle: commandWait.idle}
	return &smtpConn{conn: dc, dc: dc, r: bufio.NewReaderSize(dc, maxReplyLine), w: bufio.NewWriterSize(dc, 32<<10),
		timeout: 5 * time.Minute, wait: commandWait, dataEnd: dataEndWait}
}

// reply reads one (possibly multi-line) reply to a command.
func (c *smtpConn) reply() (int, string, error) { return c.replyWithin(c.wait) }

// replyWithin reads one reply within w. A server that breaks the bounds
// gets an error, never a reply: the session is over, and the queue defers
// what it was sending.
func (c *smtpConn) replyWithin(w replyWait) (int, string, error) {
	c.dc.waitFor(w)
	code, text, err := readReply(c.r)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if time.Now().Before(c.dc.until) {
			return 0, "", fmt.Errorf("the server was silent for %v", w.idle)
		}
		return 0, "", fmt.Errorf("no complete reply within %v", w.total)
	}
	return code, text, err
}

// readReply reads one reply from r, whose buffer must hold maxReplyLine
// octets: a longer line is refused without reading further.
func readReply(r *bufio.Reader) (int, string, error) {
	var lines []string
	code := 0
	for {
		b, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull || len(b) > maxReplyLine {
			return 0, "", fmt.Errorf("reply line longer than %d octets", maxReplyLine)
		}
		if err != nil {
			return 0, "", err
		}
		line := strings.TrimRight(string(b), "\r\n")
		if len(line) < 3 {
			return 0, "", fmt.Errorf("malformed reply %q", line)
		}
		n, err := strconv.Atoi(line[:3])
		if err != nil || n < 200 || n > 599 || code != 0 && n != code {
			return 0, "", fmt.Errorf("malformed reply %q", truncate(line))
		}
		code = n
		more := len(line) > 3 && line[3] == '-'
		if len(line) > 4 {
			lines = append(lines, line[4:])
		} else {
			lines = append(lines, "")
		}
		if !more {
			return code, strings.Join(lines, "\n"), nil
		}
		if len(lines) >= maxReplyLines {
			return 0, "", fmt.Errorf("reply longer than %d lines", maxReplyLines)
		}
	}
}

// truncate shortens remote text quoted in an error.
func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// expect reads a reply and turns a code other than want into a ReplyError.
func (c *smtpConn) expect(want int) (string, error) { return c.expectWithin(want, c.wait) }

func (c *smtpConn) expectWithin(want int, w replyWait) (string, error) {
	code, text, err := c.replyWithin(w)
	if err != nil {
		return "", err
	}
	if code != want {
		return text, toReplyError(code, text)
	}
	return text, nil
}

func toReplyError(code int, text string) *ReplyError {
	e := &ReplyError{Code: code, Text: strings.ReplaceAll(text, "\n", " ")}
	if f, rest, ok := strings.Cut(e.Text, " "); ok && len(f) >= 5 && f[1] == '.' && f[0] == byte('0'+code/100) {
		e.Enhanced, e.Text = f, rest
	}
	return e
}

func (c *smtpConn) send(format string, args ...any) error {
	c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	fmt.Fprintf(c.w, format+"\r\n", args...)
	return c.w.Flush()
}

func (c *smtpConn) cmd(want int, format string, args ...any) (string, error) {
	if err := c.send(format, args...); err != nil {
		return "", err
	}
	return c.expect(want)
}

// greet reads the banner and says EHLO (HELO if EHLO is refused).
func (c *smtpConn) greet(name string) error {
	if _, err := c.expect(220); err != nil {
		return err
	}
	return c.hello(name)
}

func (c *smtpConn) hello(name string) error {
	text, err := c.cmd(250, "EHLO %s", name)
	var re *ReplyError
	if errors.As(err, &re) && re.Code >= 500 {
		c.ext = map[string]string{}
		_, err = c.cmd(250, "HELO %s", name)
		return err
	}
	if err != nil {
		return err
	}
	c.ext = map[string]string{}
	for i, l := range strings.Split(text, "\n") {
		if i == 0 {
			continue // the greeting line
		}
		k, v, _ := strings.Cut(l, " ")
		c.ext[strings.ToUpper(k)] = v
	}
	return nil
}

func (c *smtpConn) has(ext string) bool {
	_, ok := c.ext[ext]
	return ok
}

// startTLS upgrades the connection and says EHLO again (RFC 3207).
func (c *smtpConn) startTLS(cfg *tls.Config, name string) error {
	if _, err := c.cmd(220, "STARTTLS"); err != nil {
		return err
	}
	tc := tls.Client(c.conn, cfg)
	tc.SetWriteDeadline(time.Now().Add(c.timeout))
	c.dc.waitFor(c.wait)
	if err := tc.Handshake(); err != nil {
		return err
	}
	tc.SetWriteDeadline(time.Time{})
	c.conn, c.isTLS = tc, true
	c.r.Reset(tc)
	c.w.Reset(tc)
	return c.hello(name)
}

// auth logs in with PLAIN, or LOGIN when that is all the server offers.
func (c *smtpConn) auth(user, pass string) error {
	mechs := " " + strings.ToUpper(c.ext["AUTH"]) + " "
	switch {
	case strings.Contains(mechs, " PLAIN "):
		ir := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
		_, err := c.cmd(235, "AUTH PLAIN %s", ir)
		return err
	case strings.Contains(mechs, " LOGIN "):
		if _, err := c.cmd(334, "AUTH LOGIN"); err != nil {
			return err
		}
		if _, err := c.cmd(334, "%s", base64.StdEncoding.EncodeToString([]byte(user))); err != nil {
			return err
		}
		_, err := c.cmd(235, "%s", base64.StdEncoding.EncodeToString([]byte(pass)))
		return err
	}
	return fmt.Errorf("the server offers no AUTH mechanism we speak (PLAIN, LOGIN): %q", c.ext["AUTH"])
}

// transaction is the outcome of one MAIL transaction.
type transaction struct {
	mail  error
	rcpts []error // nil: accepted
	data  error   // the reply after the message (or to DATA)
	reply string  // the final 250 text
}

// deliver runs MAIL, RCPT..., DATA, pipelined when the server offers it.
// A non-nil error means the connection is broken.
func (c *smtpConn) deliver(from string, rcpts []string, size int64, data io.Reader) (*transaction, error) {
	return c.deliverWith(from, rcpts, size, data, "", nil)
}

// deliverWith is deliver with ESMTP parameters: mailExt is added to MAIL
// FROM, rcptExt[i] (if any) to the i-th RCPT TO, each with its leading
// space. The caller offers only what the server advertised.
func (c *smtpConn) deliverWith(from string, rcpts []string, size int64, data io.Reader, mailExt string, rcptExt []string) (*transaction, error) {
	t := &transaction{rcpts: make([]error, len(rcpts))}
	from, err := smtpPath(from)
	if err != nil {
		return nil, err
	}
	paths := make([]string, len(rcpts))
	for i, r := range rcpts {
		if paths[i], err = smtpPath(r); err != nil {
			return nil, err
		}
	}
	mail := fmt.Sprintf("MAIL FROM:<%s>", from)
	if c.has("SIZE") {
		mail += fmt.Sprintf(" SIZE=%d", size)
	}
	if c.has("8BITMIME") {
		mail += " BODY=8BITMIME"
	}
	mail += mailExt
	pipelined := c.has("PIPELINING")
	c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	c.w.WriteString(mail + "\r\n")
	if !pipelined {
		if err := c.w.Flush(); err != nil {
			return nil, err
		}
		if _, err := c.expect(250); err != nil {
			return c.failMail(t, err)
		}
	}
	for i, r := range paths {
		ext := ""
		if i < len(rcptExt) {
			ext = rcptExt[i]
		}
		fmt.Fprintf(c.w, "RCPT TO:<%s>%s\r\n", r, ext)
		if !pipelined {
			if err := c.w.Flush(); err != nil {
				return nil, err
			}
			if _, err := c.expect(250); err != nil {
				if !isReply(err) {
					return nil, err
				}
				t.rcpts[i] = err
			}
		}
	}
	if pipelined {
		c.w.WriteString("DATA\r\n")
		if err := c.w.Flush(); err != nil {
			return nil, err
		}
		if _, err := c.expect(250); err != nil {
			if !isReply(err) {
				return nil, err
			}
			t.mail = err
		}
		for i := range rcpts {
			if _, err := c.expect(250); err != nil {
				if !isReply(err) {
					return nil, err
				}
				if t.rcpts[i] == nil {
					t.rcpts[i] = err
				}
			}
		}
	}
	accepted := 0
	for _, e := range t.rcpts {
		if e == nil {
			accepted++
		}
	}
	if t.mail == nil && !pipelined && accepted == 0 {
		return t, c.reset()
	}
	if !pipelined {
		if err := c.send("DATA"); err != nil {
			return nil, err
		}
	}
	_, err = c.expect(354)
	if err != nil {
		if !isReply(err) {
			return nil, err
		}
		t.data = err
		if t.mail != nil || accepted == 0 {
			t.data = nil // the failure is the sender's or every recipient's
		}
		return t, c.reset()
	}
	if t.mail != nil || accepted == 0 {
		// A server that says 354 with no valid recipient gets an empty
		// message, which it must not deliver (RFC 2920 3.1).
		if err := c.send("."); err != nil {
			return nil, err
		}
		c.reply()
		return t, c.reset()
	}
	if err := c.writeData(data); err != nil {
		return nil, err
	}
	text, err := c.expectWithin(250, c.dataEnd)
	if err != nil {
		if !isReply(err) {
			return nil, err
		}
		t.data = err
		return t, nil
	}
	t.reply = text
	return t, nil
}

// smtpPath writes a queued address as the path of MAIL FROM or RCPT TO,
// its local part quoted when it is not a dot-string ("a>b"@example.com
// sent bare would end the path early). The queue holds addresses as the
// listener took them, unquoted and without control characters; one with a
// control character would be a command of its own and is refused.
func smtpPath(addr string) (string, error) {
	if strings.ContainsFunc(addr, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return "", fmt.Errorf("address %q holds a control character: not sent", addr)
	}
	at := strings.LastIndexByte(addr, '@')
	if addr == "" || at < 0 {
		return addr, nil
	}
	return mailmsg.Address{Local: addr[:at], Domain: addr[at+1:]}.Path(), nil
}

func (c *smtpConn) failMail(t *transaction, err error) (*transaction, error) {
	if !isReply(err) {
		return nil, err
	}
	t.mail = err
	return t, c.reset()
}

// probe asks whether the server takes rcpt (MAIL FROM:<>, RCPT, RSET)
// and returns its refusal of the sender or of the recipient, or nils. A
// non-nil err means the connection broke.
//
// An internationalised address is asked about as it would be sent: with
// SMTPUTF8 when the server offers it, else in A-labels; one that cannot
// be sent at all is refused here, with 5.6.7, rather than bounced later.
func (c *smtpConn) probe(rcpt string) (mailRefusal, rcptRefusal, err error) {
	mail := "MAIL FROM:<>"
	if a, err := mailmsg.ParseAddress(rcpt); err == nil && !a.IsASCII() {
		if c.has("SMTPUTF8") {
			mail += " SMTPUTF8"
		} else if asc, ok := a.ASCII(); ok {
			rcpt = asc.String()
		} else {
			return nil, &ReplyError{Code: 553, Enhanced: "5.6.7", Text: "SMTPUTF8 is required, but was not offered by the next hop"}, nil
		}
	}
	path, err := smtpPath(rcpt)
	if err != nil {
		return nil, nil, err
	}
	if _, err := c.cmd(250, "%s", mail); err != nil {
		if !isReply(err) {
			return nil, nil, err
		}
		return err, nil, c.reset()
	}
	if _, err := c.cmd(250, "RCPT TO:<%s>", path); err != nil {
		if !isReply(err) {
			return nil, nil, err
		}
		rcptRefusal = err
	}
	return nil, rcptRefusal, c.reset()
}

func (c *smtpConn) reset() error {
	_, err := c.cmd(250, "RSET")
	if isReply(err) {
		return fmt.Errorf("RSET refused: %w", err)
	}
	return err
}

func isReply(err error) bool {
	var re *ReplyError
	return errors.As(err, &re)
}

// writeData sends the message dot-stuffed and terminated (RFC 5321
// 4.5.2). The queue holds CRLF line ends only.
func (c *smtpConn) writeData(data io.Reader) error {
	buf := make([]byte, 32<<10)
	bol := true // at the beginning of a line
	last := [2]byte{'\r', '\n'}
	for {
		n, err := data.Read(buf)
		chunk := buf[:n]
		// Copy in runs up to each line that starts with a dot.
		for len(chunk) > 0 {
			if bol && chunk[0] == '.' {
				c.w.WriteByte('.')
			}
			i := bytes.Index(chunk, []byte("\n."))
			if i < 0 {
				c.w.Write(chunk)
				bol = chunk[len(chunk)-1] == '\n'
				break
			}
			c.w.Write(chunk[:i+1])
			chunk = chunk[i+1:]
			bol = true
		}
		if n >= 2 {
			last = [2]byte{buf[n-2], buf[n-1]}
		} else if n == 1 {
			last = [2]byte{last[1], buf[0]}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	}
	if last != [2]byte{'\r', '\n'} {
		c.w.WriteString("\r\n")
	}
	c.w.WriteString(".\r\n")
	c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.w.Flush()
}

// quitWait is all a server gets to answer QUIT: the mail is delivered.
var quitWait = replyWait{idle: 5 * time.Second, total: 5 * time.Second}

func (c *smtpConn) quit() {
	c.conn.SetWriteDeadline(time.Now().Add(quitWait.total))
	c.w.WriteString("QUIT\r\n")
	if c.w.Flush() == nil {
		c.replyWithin(quitWait)
	}
	c.conn.Close()
}
