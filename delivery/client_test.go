package delivery

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// scriptServer answers the client from a fixed list of replies and records
// what it was sent.
func scriptServer(t *testing.T, replies ...string) (*smtpConn, *bytes.Buffer, chan struct{}) {
	t.Helper()
	cli, srv := net.Pipe()
	var got bytes.Buffer
	done := make(chan struct{})
	r := bufio.NewReader(srv)
	go func() {
		defer close(done) // after the last read: got is complete
		for {
			l, err := r.ReadString('\n')
			got.WriteString(l)
			if err != nil {
				return
			}
		}
	}()
	go func() {
		defer srv.Close()
		for _, rep := range replies {
			if _, err := srv.Write([]byte(rep)); err != nil {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}()
	return newSMTPConn(cli), &got, done
}

func TestClientPipelinedPartialRecipients(t *testing.T) {
	c, got, done := scriptServer(t,
		"220 sink ESMTP\r\n",
		"250-sink\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n",
		"250 2.1.0 ok\r\n", "250 2.1.5 ok\r\n", "550 5.1.1 no such user\r\n", "354 go\r\n",
		"250 2.0.0 queued as X\r\n")
	if err := c.greet("relay.test"); err != nil {
		t.Fatal(err)
	}
	tr, err := c.deliver("a@b.test", []string{"ok@x.test", "nouser@x.test"}, 42, strings.NewReader(".leading dot\r\nline\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	var re *ReplyError
	if tr.mail != nil || tr.rcpts[0] != nil || !errors.As(tr.rcpts[1], &re) || re.Code != 550 || re.Enhanced != "5.1.1" || tr.data != nil {
		t.Fatalf("transaction %+v", tr)
	}
	<-done
	want := "EHLO relay.test\r\nMAIL FROM:<a@b.test> SIZE=42\r\nRCPT TO:<ok@x.test>\r\nRCPT TO:<nouser@x.test>\r\nDATA\r\n..leading dot\r\nline\r\n.\r\n"
	if got.String() != want {
		t.Errorf("sent:\n%q\nwant:\n%q", got.String(), want)
	}
}

func TestClientDataWithoutFinalNewline(t *testing.T) {
	c, got, done := scriptServer(t, "220 x\r\n", "250 x\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 ok\r\n")
	if err := c.greet("r"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.deliver("", []string{"u@x.test"}, 3, strings.NewReader("abc")); err != nil {
		t.Fatal(err)
	}
	<-done
	if !strings.HasSuffix(got.String(), "MAIL FROM:<>\r\nRCPT TO:<u@x.test>\r\nDATA\r\nabc\r\n.\r\n") {
		t.Errorf("sent %q", got.String())
	}
}

func TestClientAllRecipientsRefused(t *testing.T) {
	c, got, done := scriptServer(t, "220 x\r\n", "250-x\r\n250 PIPELINING\r\n", "250 ok\r\n", "550 no\r\n", "554 no valid recipients\r\n", "250 reset\r\n")
	if err := c.greet("r"); err != nil {
		t.Fatal(err)
	}
	tr, err := c.deliver("a@b.test", []string{"u@x.test"}, 3, strings.NewReader("abc\r\n"))
	if err != nil || tr.rcpts[0] == nil || tr.data != nil {
		t.Fatalf("%+v %v", tr, err)
	}
	<-done
	if strings.Contains(got.String(), "abc") || !strings.HasSuffix(got.String(), "RSET\r\n") {
		t.Errorf("sent %q", got.String())
	}
}

// FuzzReply feeds the reply reader what a next hop might send: it either
// returns a reply within the bounds or an error, never more.
func FuzzReply(f *testing.F) {
	f.Add("250-a\r\n250 b\r\n")
	f.Add("421 4.4.2 bye\r\n")
	f.Add("25\r\n")
	f.Add("250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
	f.Add("550-5.1.1 first\n550 5.1.1 bare LF\n")
	f.Add("220 " + strings.Repeat("x", maxReplyLine) + "\r\n")
	f.Add(strings.Repeat("250-x\r\n", maxReplyLines+1) + "250 x\r\n")
	f.Add("250-a\r\n251 b\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		code, text, err := readReply(bufio.NewReaderSize(strings.NewReader(s), maxReplyLine))
		if err != nil {
			return
		}
		if code < 200 || code > 599 {
			t.Fatalf("accepted code %d from %q", code, s)
		}
		lines := strings.Split(text, "\n")
		if len(lines) > maxReplyLines {
			t.Fatalf("accepted %d lines", len(lines))
		}
		for _, l := range lines {
			if len(l) > maxReplyLine {
				t.Fatalf("accepted a line of %d octets", len(l))
			}
		}
		_ = toReplyError(code, text).Error()
	})
}

type nopConn struct{ net.Conn }

func (nopConn) SetReadDeadline(time.Time) error { return nil }

func (nopConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzWriteData checks the dot-stuffing against the rule written plainly:
// every line that starts with '.' gets another; the data ends in CRLF.CRLF.
func FuzzWriteData(f *testing.F) {
	f.Add([]byte(".a\r\nb\r\n..c\r\n"))
	f.Add([]byte("no newline at end"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		c := &smtpConn{conn: nopConn{}, w: bufio.NewWriterSize(&out, 16), timeout: time.Second}
		if err := c.writeData(iotestHalf{bytes.NewReader(in)}); err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		lines := bytes.SplitAfter(in, []byte("\n"))
		for _, l := range lines {
			if len(l) > 0 && l[0] == '.' {
				want.WriteByte('.')
			}
			want.Write(l)
		}
		if len(in) > 0 && !bytes.HasSuffix(in, []byte("\r\n")) {
			want.WriteString("\r\n")
		}
		want.WriteString(".\r\n")
		if !bytes.Equal(out.Bytes(), want.Bytes()) {
			t.Fatalf("in %q:\n got %q\nwant %q", in, out.Bytes(), want.Bytes())
		}
	})
}

// iotestHalf returns at most 3 bytes per Read, to cross chunk boundaries.
type iotestHalf struct{ r *bytes.Reader }

func (h iotestHalf) Read(p []byte) (int, error) {
	if len(p) > 3 {
		p = p[:3]
	}
	return h.r.Read(p)
}

// Local parts that are not dot-strings go out quoted: sent bare, a '>'
// would end the path and what follows would be taken for parameters.
func TestClientQuotesLocalParts(t *testing.T) {
	replies := []string{"220 x\r\n", "250-x\r\n250 PIPELINING\r\n"}
	for range 1 + 7 { // MAIL, RCPT
		replies = append(replies, "250 ok\r\n")
	}
	c, got, done := scriptServer(t, append(replies, "354 go\r\n", "250 ok\r\n")...)
	if err := c.greet("r"); err != nil {
		t.Fatal(err)
	}
	rcpts := []string{`a>b@x.test`, `a"b@x.test`, `a\b@x.test`, `x@y@x.test`, `.a@x.test`, `a b@x.test`}
	if _, err := c.deliver(`o> NOTIFY=NEVER@s.test`, append(rcpts, "plain.name+tag@x.test"), 3, strings.NewReader("x\r\n")); err != nil {
		t.Fatal(err)
	}
	<-done
	want := "EHLO r\r\n" +
		`MAIL FROM:<"o> NOTIFY=NEVER"@s.test>` + "\r\n" +
		`RCPT TO:<"a>b"@x.test>` + "\r\n" +
		`RCPT TO:<"a\"b"@x.test>` + "\r\n" +
		`RCPT TO:<"a\\b"@x.test>` + "\r\n" +
		`RCPT TO:<"x@y"@x.test>` + "\r\n" +
		`RCPT TO:<".a"@x.test>` + "\r\n" +
		`RCPT TO:<"a b"@x.test>` + "\r\n" +
		"RCPT TO:<plain.name+tag@x.test>\r\nDATA\r\nx\r\n.\r\n"
	if got.String() != want {
		t.Errorf("sent:\n%s\nwant:\n%s", got.String(), want)
	}
}

// An address with a line break in it is never written into a command.
func TestClientRefusesControlCharacters(t *testing.T) {
	c, got, done := scriptServer(t, "220 x\r\n", "250 x\r\n")
	if err := c.greet("r"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.deliver("a@b.test", []string{"u@x.test>\r\nRCPT TO:<v@y.test"}, 3, strings.NewReader("x\r\n")); err == nil {
		t.Fatal("an address with CRLF was sent")
	}
	c.conn.Close()
	<-done
	if strings.Contains(got.String(), "MAIL") {
		t.Errorf("sent %q", got.String())
	}
}
