// Package pop3 is a POP3 client (RFC 1939, 2449, 2595, 5034): CAPA, STLS,
// USER/PASS and SASL PLAIN, STAT, LIST, UIDL, RETR, DELE, QUIT. It is what
// the collector needs and no more; no POP3 library is available to us.
package pop3

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
	"slices"
	"strconv"
	"strings"
	"time"
)

// Bounds on what a server may send. The server is a stranger to the
// appliance (a compromised or impersonated one is the case to plan for),
// so nothing it sends is held without a limit.
const (
	// maxLine bounds a response line and a line of a listing (CAPA,
	// LIST, UIDL). RFC 1939 and 2449 allow 512 octets; servers overstep
	// that with long -ERR texts or IMPLEMENTATION strings, never by
	// much: 4 KiB leaves them room and keeps a line small. Lines of a
	// message are not bounded one by one (mail has long lines); the
	// whole message is, by the caller's limit.
	maxLine = 4 << 10
	// maxCapaLines bounds CAPA: servers announce a dozen capabilities.
	maxCapaLines = 256
	// MaxMessages is the largest maildrop STAT may announce. LIST and
	// UIDL may not name more messages than STAT did, so the listing the
	// client holds (about 100 octets a message) stays under 100 MiB
	// even for a server that claims the maximum.
	MaxMessages = 1_000_000
)

// bufSize is the read buffer: a line that fits is read without copying,
// and a message's long lines are passed on in pieces of this size.
const bufSize = 32 << 10

// Error is a -ERR response.
type Error struct{ Text string }

func (e *Error) Error() string { return "-ERR " + e.Text }

// ErrProtocol marks a response that is not POP3.
var ErrProtocol = errors.New("pop3: protocol error")

// TooLargeError says a message was larger than the caller's limit. Its
// rest is unread: the session cannot go on, and should be closed.
type TooLargeError struct {
	Num   int
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("pop3: RETR %d: message larger than %d octets", e.Num, e.Limit)
}

// Client is one POP3 session.
type Client struct {
	conn net.Conn // every read has a deadline (idleConn)
	r    *bufio.Reader
	// timeout is the longest the server may be silent on any one read,
	// and the deadline for each write.
	timeout time.Duration
	caps    map[string]string
	// err is the failure that left the session out of step with the
	// server (a response cut short or refused half read): every later
	// command returns it.
	err error
}

// idleConn gives every read from the network a deadline: a server that
// stops sending in the middle of a response is given up after the idle
// timeout, however much it sent before.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c idleConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	return c.Conn.Read(p)
}

// NewClient reads the greeting on an open connection (plain, or already
// TLS). timeout is the longest the server may be silent on any one read.
func NewClient(conn net.Conn, timeout time.Duration) (*Client, error) {
	ic := idleConn{Conn: conn, idle: timeout}
	c := &Client{conn: ic, r: bufio.NewReaderSize(ic, bufSize), timeout: timeout}
	if _, err := c.status(); err != nil {
		return nil, fmt.Errorf("pop3: greeting: %w", err)
	}
	return c, nil
}

// line reads one line of at most maxLine octets, without its line end.
// A longer one is refused without reading on: the session is over.
func (c *Client) line() (string, error) {
	b, err := c.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull || len(b) > maxLine {
		return "", fmt.Errorf("%w: line longer than %d octets", ErrProtocol, maxLine)
	}
	if err != nil {
		return "", c.readError(err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// readError says what a failed read means for the operator.
func (c *Client) readError(err error) error {
	switch {
	case err == io.EOF:
		return fmt.Errorf("%w: connection closed in the middle of a response", ErrProtocol)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("the server was silent for %v", c.timeout)
	}
	return err
}

// fail records err as the end of the session and returns it.
func (c *Client) fail(err error) error {
	if c.err == nil {
		c.err = err
	}
	return err
}

// status reads a +OK / -ERR line and returns the text after it.
func (c *Client) status() (string, error) {
	l, err := c.line()
	if err != nil {
		return "", c.fail(err)
	}
	switch {
	case strings.HasPrefix(l, "+OK"):
		return strings.TrimSpace(l[3:]), nil
	case strings.HasPrefix(l, "-ERR"):
		return "", &Error{strings.TrimSpace(l[4:])}
	}
	return "", fmt.Errorf("%w: %q", ErrProtocol, truncate(l))
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func (c *Client) cmd(format string, args ...any) (string, error) {
	if c.err != nil {
		return "", c.err
	}
	c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	if _, err := fmt.Fprintf(c.conn, format+"\r\n", args...); err != nil {
		return "", err
	}
	return c.status()
}

// listing reads a dot-terminated multi-line response of at most max
// lines (CAPA, LIST, UIDL), each of at most maxLine octets, handing each
// line to f with dot-stuffing undone and without its line end.
func (c *Client) listing(what string, max int, f func(line string) error) error {
	for n := 0; ; n++ {
		// Every failure leaves the rest of the listing unread.
		l, err := c.line()
		if err != nil {
			return c.fail(fmt.Errorf("pop3: %s: %w", what, err))
		}
		if l == "." {
			return nil
		}
		if n == max {
			return c.fail(fmt.Errorf("%w: %s has more than %d lines", ErrProtocol, what, max))
		}
		if err := f(strings.TrimPrefix(l, ".")); err != nil {
			return c.fail(err)
		}
	}
}

// body copies a dot-terminated message to w, dot-stuffing undone. Lines
// of any length pass, in pieces; the message as a whole may not exceed
// limit octets: past it, body stops reading (the connection has then
// given at most limit octets and one buffer) and returns a TooLargeError.
func (c *Client) body(num int, w io.Writer, limit int64) error {
	var n int64
	bol := true // at the beginning of a line
	for {
		l, err := c.r.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			return c.fail(fmt.Errorf("pop3: RETR %d: %w", num, c.readError(err)))
		}
		whole := err == nil // l ends with the line end
		if bol && whole && (bytes.Equal(l, []byte(".\r\n")) || bytes.Equal(l, []byte(".\n"))) {
			return nil
		}
		if bol && len(l) > 0 && l[0] == '.' {
			l = l[1:]
		}
		bol = whole
		if n += int64(len(l)); n > limit {
			return c.fail(&TooLargeError{Num: num, Limit: limit})
		}
		if _, err := w.Write(l); err != nil {
			return c.fail(err)
		}
	}
}

// Capabilities asks CAPA; servers without it get an empty set.
func (c *Client) Capabilities() map[string]string {
	if c.caps != nil {
		return c.caps
	}
	c.caps = map[string]string{}
	if _, err := c.cmd("CAPA"); err != nil {
		return c.caps
	}
	caps := map[string]string{}
	err := c.listing("CAPA", maxCapaLines, func(l string) error {
		k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
		if k != "" {
			caps[strings.ToUpper(k)] = v
		}
		return nil
	})
	if err == nil {
		c.caps = caps
	}
	return c.caps
}

// StartTLS upgrades the session (STLS, RFC 2595).
func (c *Client) StartTLS(cfg *tls.Config) error {
	if _, err := c.cmd("STLS"); err != nil {
		return fmt.Errorf("pop3: STLS: %w", err)
	}
	tc := tls.Client(c.conn, cfg)
	tc.SetDeadline(time.Now().Add(c.timeout))
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("pop3: TLS: %w", err)
	}
	tc.SetDeadline(time.Time{})
	c.conn = tc
	c.r.Reset(tc)
	c.caps = nil // capabilities may change after STLS
	return nil
}

// Login authenticates: SASL PLAIN when offered, else USER/PASS.
func (c *Client) Login(user, pass string) error {
	if strings.ContainsAny(user+pass, "\r\n") {
		return errors.New("pop3: user or password contains a line break")
	}
	if strings.Contains(" "+strings.ToUpper(c.Capabilities()["SASL"])+" ", " PLAIN ") {
		ir := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
		if _, err := c.cmd("AUTH PLAIN %s", ir); err != nil {
			return fmt.Errorf("pop3: AUTH PLAIN: %w", err)
		}
		return nil
	}
	if _, err := c.cmd("USER %s", user); err != nil {
		return fmt.Errorf("pop3: USER: %w", err)
	}
	if _, err := c.cmd("PASS %s", pass); err != nil {
		return fmt.Errorf("pop3: PASS: %w", err)
	}
	return nil
}

// Mechanisms are the SASL mechanisms the server announces (CAPA SASL),
// upper-case.
func (c *Client) Mechanisms() []string {
	return strings.Fields(strings.ToUpper(c.Capabilities()["SASL"]))
}

// maxAuthLine is RFC 5034 4's bound on an AUTH command with its initial
// response; a longer one (an OAuth2 token is often 2 KB) goes after the
// server's empty challenge instead.
const maxAuthLine = 255

// Authenticate logs in with a SASL mechanism that completes with its
// initial response, such as XOAUTH2 or OAUTHBEARER (RFC 5034). A server
// that refuses sends a challenge with its reason first (RFC 7628 3.2.2),
// which gets abort as the answer and is returned, decoded, with the error.
func (c *Client) Authenticate(mech string, ir, abort []byte) (challenge []byte, err error) {
	b64 := base64.StdEncoding.EncodeToString(ir)
	if strings.ContainsAny(mech, " \r\n") {
		return nil, errors.New("pop3: bad SASL mechanism name")
	}
	send := func(line string) (string, error) {
		if c.err != nil {
			return "", c.err
		}
		c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
		if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
			return "", c.fail(err)
		}
		return c.line()
	}
	l, err := "", error(nil)
	if len("AUTH "+mech+" "+b64) <= maxAuthLine {
		l, err = send("AUTH " + mech + " " + b64)
	} else if l, err = send("AUTH " + mech); err == nil && strings.TrimSpace(l) == "+" {
		l, err = send(b64)
	}
	for range 2 { // the final answer, or one challenge and then it
		switch {
		case err != nil:
			return challenge, fmt.Errorf("pop3: AUTH %s: %w", mech, c.fail(err))
		case strings.HasPrefix(l, "+OK"):
			return nil, nil
		case strings.HasPrefix(l, "-ERR"):
			return challenge, fmt.Errorf("pop3: AUTH %s: %w", mech, &Error{strings.TrimSpace(l[4:])})
		case strings.HasPrefix(l, "+ ") && challenge == nil:
			challenge, _ = base64.StdEncoding.DecodeString(strings.TrimSpace(l[2:]))
			l, err = send(base64.StdEncoding.EncodeToString(abort))
		default:
			return challenge, c.fail(fmt.Errorf("pop3: AUTH %s: %w: %q", mech, ErrProtocol, truncate(l)))
		}
	}
	return challenge, c.fail(fmt.Errorf("pop3: AUTH %s: %w: a second challenge", mech, ErrProtocol))
}

// Message is one entry of the maildrop.
type Message struct {
	Num  int
	Size int64
	UID  string // from UIDL
}

// List returns every message with its size and unique id (STAT, LIST,
// UIDL). A malformed line is an error: guessing a message's identity is how
// collectors lose or duplicate mail. STAT's count bounds the listings: a
// server cannot make the client hold more than it announced.
func (c *Client) List() ([]Message, error) {
	count, err := c.stat()
	if err != nil {
		return nil, err
	}
	if _, err := c.cmd("LIST"); err != nil {
		return nil, fmt.Errorf("pop3: LIST: %w", err)
	}
	msgs := make([]Message, 0, min(count, 4096)) // the server's word is not an allocation
	// byNum indexes msgs by message number, which in a session that
	// deleted nothing runs from 1 to STAT's count (RFC 1939 5).
	byNum := make([]int32, count+1)
	err = c.listing("LIST", count+blankLines, func(l string) error {
		f := strings.Fields(l)
		if len(f) == 0 {
			return nil
		}
		if len(f) < 2 {
			return fmt.Errorf("%w: LIST line %q", ErrProtocol, truncate(l))
		}
		n, err1 := strconv.Atoi(f[0])
		size, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil || n < 1 || size < 0 {
			return fmt.Errorf("%w: LIST line %q", ErrProtocol, truncate(l))
		}
		if n > count {
			return fmt.Errorf("%w: LIST names message %d of the %d STAT announced", ErrProtocol, n, count)
		}
		if byNum[n] != 0 {
			return fmt.Errorf("%w: LIST names message %d twice", ErrProtocol, n)
		}
		msgs = append(msgs, Message{Num: n, Size: size})
		byNum[n] = int32(len(msgs)) // 0: not listed
		return nil
	})
	if err != nil {
		return nil, err
	}
	if _, err := c.cmd("UIDL"); err != nil {
		return nil, fmt.Errorf("pop3: UIDL (the server must support it to collect without duplicates): %w", err)
	}
	err = c.listing("UIDL", count+blankLines, func(l string) error {
		f := strings.Fields(l)
		if len(f) == 0 {
			return nil
		}
		if len(f) != 2 {
			return fmt.Errorf("%w: UIDL line %q", ErrProtocol, truncate(l))
		}
		n, err := strconv.Atoi(f[0])
		if err != nil || n < 1 || n > count || byNum[n] == 0 || !validUID(f[1]) {
			return fmt.Errorf("%w: UIDL line %q", ErrProtocol, truncate(l))
		}
		m := &msgs[byNum[n]-1]
		if m.UID != "" {
			return fmt.Errorf("%w: UIDL names message %d twice", ErrProtocol, n)
		}
		m.UID = f[1]
		return nil
	})
	if err != nil {
		return nil, err
	}
	uids := make([]string, len(msgs))
	for i, m := range msgs {
		if m.UID == "" {
			return nil, fmt.Errorf("%w: UIDL has no id for message %d", ErrProtocol, m.Num)
		}
		uids[i] = m.UID
	}
	slices.Sort(uids)
	for i := 1; i < len(uids); i++ {
		if uids[i] == uids[i-1] {
			return nil, fmt.Errorf("%w: UIDL gives %q to two messages", ErrProtocol, uids[i])
		}
	}
	return msgs, nil
}

// blankLines is how many empty lines a listing may hold beyond STAT's
// count: they are not POP3, but have been seen and mean nothing.
const blankLines = 100

// stat returns the number of messages in the maildrop, refusing a number
// beyond MaxMessages.
func (c *Client) stat() (int, error) {
	text, err := c.cmd("STAT")
	if err != nil {
		return 0, fmt.Errorf("pop3: STAT: %w", err)
	}
	f := strings.Fields(text)
	if len(f) < 2 {
		return 0, fmt.Errorf("%w: STAT answer %q", ErrProtocol, truncate(text))
	}
	n, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: STAT answer %q", ErrProtocol, truncate(text))
	}
	if n > MaxMessages {
		return 0, fmt.Errorf("pop3: STAT: the maildrop holds %d messages, more than the %d a session lists", n, MaxMessages)
	}
	return int(n), nil
}

// validUID: RFC 1939 7: 1 to 70 characters in the range 0x21 to 0x7E.
func validUID(s string) bool {
	if len(s) < 1 || len(s) > 70 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Retr copies message n to w, exactly as stored (dot-stuffing undone). A
// message larger than limit octets is a TooLargeError, found without
// reading much more than limit; the session cannot go on after it.
func (c *Client) Retr(n int, w io.Writer, limit int64) error {
	if _, err := c.cmd("RETR %d", n); err != nil {
		return fmt.Errorf("pop3: RETR %d: %w", n, err)
	}
	return c.body(n, w, limit)
}

// Dele marks message n for deletion; it happens at Quit.
func (c *Client) Dele(n int) error {
	if _, err := c.cmd("DELE %d", n); err != nil {
		return fmt.Errorf("pop3: DELE %d: %w", n, err)
	}
	return nil
}

// Quit ends the session; the server deletes what was marked (UPDATE state).
func (c *Client) Quit() error {
	_, err := c.cmd("QUIT")
	c.conn.Close()
	if err != nil {
		return fmt.Errorf("pop3: QUIT: %w", err)
	}
	return nil
}

// Close drops the connection without QUIT: nothing marked is deleted.
func (c *Client) Close() error { return c.conn.Close() }

// Pipelining says whether commands may be sent without waiting for each
// reply (RFC 2449).
func (c *Client) Pipelining() bool {
	_, ok := c.Capabilities()["PIPELINING"]
	return ok
}

// RetrMany retrieves several messages, each into the writer to(i) gives
// and each of at most limit octets (see Retr); with PIPELINING all RETR
// commands go out at once, saving a round trip per message.
func (c *Client) RetrMany(nums []int, to func(i int) io.Writer, limit int64) error {
	if !c.Pipelining() {
		for i, n := range nums {
			if err := c.Retr(n, to(i), limit); err != nil {
				return err
			}
		}
		return nil
	}
	if err := c.SendRetr(nums); err != nil {
		return err
	}
	return c.ReadRetr(nums, to, limit)
}

// SendRetr sends RETR for each of nums in one write, answers not read:
// ReadRetr reads them, in order, after the answers to whatever was sent
// before. Only with PIPELINING.
func (c *Client) SendRetr(nums []int) error { return c.send("RETR", nums) }

// ReadRetr reads the answers to SendRetr(nums), as RetrMany.
func (c *Client) ReadRetr(nums []int, to func(i int) io.Writer, limit int64) error {
	for i, n := range nums {
		if _, err := c.status(); err != nil {
			return fmt.Errorf("pop3: RETR %d: %w", n, err)
		}
		if err := c.body(n, to(i), limit); err != nil {
			return err
		}
	}
	return nil
}

// SendDele sends DELE for each of nums in one write; ReadDele reads the
// answers. Only with PIPELINING.
func (c *Client) SendDele(nums []int) error { return c.send("DELE", nums) }

// ReadDele reads the answers to SendDele(nums).
func (c *Client) ReadDele(nums []int) error {
	for _, n := range nums {
		if _, err := c.status(); err != nil {
			return fmt.Errorf("pop3: DELE %d: %w", n, err)
		}
	}
	return nil
}

// send writes verb with each of nums, one command a line, in one write.
func (c *Client) send(verb string, nums []int) error {
	if c.err != nil {
		return c.err
	}
	var b strings.Builder
	for _, n := range nums {
		fmt.Fprintf(&b, "%s %d\r\n", verb, n)
	}
	c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	if _, err := io.WriteString(c.conn, b.String()); err != nil {
		return c.fail(fmt.Errorf("pop3: %s: %w", verb, err))
	}
	return nil
}

// DeleMany marks several messages for deletion, pipelined when it may.
func (c *Client) DeleMany(nums []int) error {
	if !c.Pipelining() {
		for _, n := range nums {
			if err := c.Dele(n); err != nil {
				return err
			}
		}
		return nil
	}
	if err := c.SendDele(nums); err != nil {
		return err
	}
	return c.ReadDele(nums)
}
