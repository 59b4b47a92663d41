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
	"strconv"
	"strings"
	"time"
)

// maxLine bounds a response line; RFC 1939 allows 512 octets, servers
// send longer ones, nobody sends 64 KiB.
const maxLine = 64 << 10

// Error is a -ERR response.
type Error struct{ Text string }

func (e *Error) Error() string { return "-ERR " + e.Text }

// ErrProtocol marks a response that is not POP3.
var ErrProtocol = errors.New("pop3: protocol error")

// Client is one POP3 session.
type Client struct {
	conn    net.Conn
	r       *bufio.Reader
	timeout time.Duration
	caps    map[string]string
}

// NewClient reads the greeting on an open connection (plain, or already TLS).
func NewClient(conn net.Conn, timeout time.Duration) (*Client, error) {
	c := &Client{conn: conn, r: bufio.NewReaderSize(conn, 32<<10), timeout: timeout}
	if _, err := c.status(); err != nil {
		return nil, fmt.Errorf("pop3: greeting: %w", err)
	}
	return c, nil
}

func (c *Client) line() (string, error) {
	c.conn.SetReadDeadline(time.Now().Add(c.timeout))
	var b []byte
	for {
		part, isPrefix, err := c.r.ReadLine()
		if err != nil {
			return "", err
		}
		b = append(b, part...)
		if len(b) > maxLine {
			return "", fmt.Errorf("%w: line longer than %d octets", ErrProtocol, maxLine)
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

// status reads a +OK / -ERR line and returns the text after it.
func (c *Client) status() (string, error) {
	l, err := c.line()
	if err != nil {
		return "", err
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
	c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	if _, err := fmt.Fprintf(c.conn, format+"\r\n", args...); err != nil {
		return "", err
	}
	return c.status()
}

// multi reads a dot-terminated multi-line body, undoing dot-stuffing.
func (c *Client) multi(w io.Writer) error {
	for {
		c.conn.SetReadDeadline(time.Now().Add(c.timeout))
		l, err := c.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A long line: pass it on in pieces.
			if _, err := w.Write(l); err != nil {
				return err
			}
			for err == bufio.ErrBufferFull {
				l, err = c.r.ReadSlice('\n')
				if err != nil && err != bufio.ErrBufferFull {
					return err
				}
				if _, werr := w.Write(l); werr != nil {
					return werr
				}
			}
			continue
		}
		if err != nil {
			if err == io.EOF {
				return fmt.Errorf("%w: connection closed in the middle of a response", ErrProtocol)
			}
			return err
		}
		if bytes.Equal(l, []byte(".\r\n")) || bytes.Equal(l, []byte(".\n")) {
			return nil
		}
		if l[0] == '.' {
			l = l[1:]
		}
		if _, err := w.Write(l); err != nil {
			return err
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
	var b bytes.Buffer
	if err := c.multi(&b); err != nil {
		return c.caps
	}
	for _, l := range strings.Split(b.String(), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
		if k != "" {
			c.caps[strings.ToUpper(k)] = v
		}
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

// Message is one entry of the maildrop.
type Message struct {
	Num  int
	Size int64
	UID  string // from UIDL
}

// List returns every message with its size and unique id (LIST + UIDL).
// A malformed line is an error: guessing a message's identity is how
// collectors lose or duplicate mail.
func (c *Client) List() ([]Message, error) {
	if _, err := c.cmd("LIST"); err != nil {
		return nil, fmt.Errorf("pop3: LIST: %w", err)
	}
	var b bytes.Buffer
	if err := c.multi(&b); err != nil {
		return nil, err
	}
	var msgs []Message
	byNum := map[int]int{}
	for _, l := range nonEmptyLines(b.String()) {
		f := strings.Fields(l)
		if len(f) < 2 {
			return nil, fmt.Errorf("%w: LIST line %q", ErrProtocol, truncate(l))
		}
		n, err1 := strconv.Atoi(f[0])
		size, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil || n < 1 || size < 0 {
			return nil, fmt.Errorf("%w: LIST line %q", ErrProtocol, truncate(l))
		}
		if _, dup := byNum[n]; dup {
			return nil, fmt.Errorf("%w: LIST names message %d twice", ErrProtocol, n)
		}
		byNum[n] = len(msgs)
		msgs = append(msgs, Message{Num: n, Size: size})
	}
	if _, err := c.cmd("UIDL"); err != nil {
		return nil, fmt.Errorf("pop3: UIDL (the server must support it to collect without duplicates): %w", err)
	}
	b.Reset()
	if err := c.multi(&b); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, l := range nonEmptyLines(b.String()) {
		f := strings.Fields(l)
		if len(f) != 2 {
			return nil, fmt.Errorf("%w: UIDL line %q", ErrProtocol, truncate(l))
		}
		n, err := strconv.Atoi(f[0])
		i, ok := byNum[n]
		if err != nil || !ok || !validUID(f[1]) {
			return nil, fmt.Errorf("%w: UIDL line %q", ErrProtocol, truncate(l))
		}
		if seen[f[1]] {
			return nil, fmt.Errorf("%w: UIDL gives %q to two messages", ErrProtocol, f[1])
		}
		seen[f[1]] = true
		msgs[i].UID = f[1]
	}
	for _, m := range msgs {
		if m.UID == "" {
			return nil, fmt.Errorf("%w: UIDL has no id for message %d", ErrProtocol, m.Num)
		}
	}
	return msgs, nil
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

func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimRight(l, "\r"); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// Retr copies message n to w, exactly as stored (dot-stuffing undone).
func (c *Client) Retr(n int, w io.Writer) error {
	if _, err := c.cmd("RETR %d", n); err != nil {
		return fmt.Errorf("pop3: RETR %d: %w", n, err)
	}
	return c.multi(w)
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

// RetrMany retrieves several messages, each into the writer to(i) gives;
// with PIPELINING all RETR commands go out at once, saving a round trip
// per message.
func (c *Client) RetrMany(nums []int, to func(i int) io.Writer) error {
	if !c.Pipelining() {
		for i, n := range nums {
			if err := c.Retr(n, to(i)); err != nil {
				return err
			}
		}
		return nil
	}
	var b strings.Builder
	for _, n := range nums {
		fmt.Fprintf(&b, "RETR %d\r\n", n)
	}
	c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	if _, err := io.WriteString(c.conn, b.String()); err != nil {
		return err
	}
	for i, n := range nums {
		if _, err := c.status(); err != nil {
			return fmt.Errorf("pop3: RETR %d: %w", n, err)
		}
		if err := c.multi(to(i)); err != nil {
			return err
		}
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
	var b strings.Builder
	for _, n := range nums {
		fmt.Fprintf(&b, "DELE %d\r\n", n)
	}
	c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	if _, err := io.WriteString(c.conn, b.String()); err != nil {
		return err
	}
	for _, n := range nums {
		if _, err := c.status(); err != nil {
			return fmt.Errorf("pop3: DELE %d: %w", n, err)
		}
	}
	return nil
}
