package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// fakeServer answers each command line with the next scripted reply; a
// reply "" closes the connection (a server that drops mid-session).
func fakeServer(t *testing.T, greeting string, replies map[string]string) *Client {
	t.Helper()
	cli, srv := net.Pipe()
	return serveFake(t, cli, srv, greeting, replies)
}

// tcpFakeServer is fakeServer over loopback TCP, whose buffers let a
// client write while the server's answers wait to be read (net.Pipe has
// none), as pipelining needs.
func tcpFakeServer(t *testing.T, greeting string, replies map[string]string) *Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cli, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return serveFake(t, cli, srv, greeting, replies)
}

func serveFake(t *testing.T, cli, srv net.Conn, greeting string, replies map[string]string) *Client {
	t.Helper()
	go func() {
		defer srv.Close()
		srv.Write([]byte(greeting))
		r := bufio.NewReader(srv)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			cmd := strings.Fields(l)[0]
			rep, ok := replies[cmd]
			if !ok {
				rep = "-ERR unknown\r\n"
			}
			if rep == "" {
				return
			}
			if r, cut := strings.CutSuffix(rep, "<close>"); cut {
				srv.Write([]byte(r))
				return
			}
			srv.Write([]byte(rep))
		}
	}()
	c, err := NewClient(cli, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestListRetrDele(t *testing.T) {
	c := fakeServer(t, "+OK ready\r\n", map[string]string{
		"CAPA": "+OK\r\nUIDL\r\nSASL PLAIN\r\n.\r\n",
		"AUTH": "+OK logged in\r\n",
		"STAT": "+OK 2 150\r\n",
		"LIST": "+OK 2 messages\r\n1 120\r\n2 30\r\n.\r\n",
		"UIDL": "+OK\r\n1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n.\r\n",
		"RETR": "+OK\r\nSubject: x\r\n\r\n..leading dot\r\n.\r\n",
		"DELE": "+OK marked\r\n",
		"QUIT": "+OK bye\r\n",
	})
	if err := c.Login("u", "p"); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[1].UID != "QhdPYR:00WBw1Ph7x7" || msgs[0].Size != 120 {
		t.Fatalf("%+v", msgs)
	}
	var b bytes.Buffer
	if err := c.Retr(1, &b, 1<<20); err != nil {
		t.Fatal(err)
	}
	if b.String() != "Subject: x\r\n\r\n.leading dot\r\n" {
		t.Fatalf("RETR gave %q", b.String())
	}
	if err := c.Dele(1); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
}

func TestMalformedUIDL(t *testing.T) {
	for name, uidl := range map[string]string{
		"missing id":         "+OK\r\n1\r\n2 b\r\n.\r\n",
		"unknown message":    "+OK\r\n1 a\r\n3 b\r\n.\r\n",
		"duplicate id":       "+OK\r\n1 a\r\n2 a\r\n.\r\n",
		"control character":  "+OK\r\n1 a\x01b\r\n2 b\r\n.\r\n",
		"message without id": "+OK\r\n1 a\r\n.\r\n",
		"not a number":       "+OK\r\none a\r\n2 b\r\n.\r\n",
	} {
		c := fakeServer(t, "+OK\r\n", map[string]string{
			"STAT": "+OK 2 30\r\n",
			"LIST": "+OK\r\n1 10\r\n2 20\r\n.\r\n",
			"UIDL": uidl,
		})
		if _, err := c.List(); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want a protocol error", name, err)
		}
	}
}

func TestDropMidRetr(t *testing.T) {
	c := fakeServer(t, "+OK\r\n", map[string]string{
		"RETR": "+OK\r\nSubject: half\r\n\r\nbody without end<close>",
	})
	var b bytes.Buffer
	if err := c.Retr(1, &b, 1<<20); err == nil {
		t.Fatal("a message cut off by the server was taken as complete")
	}
}

func TestErrAndGarbage(t *testing.T) {
	c := fakeServer(t, "+OK\r\n", map[string]string{"USER": "+OK\r\n", "PASS": "-ERR [AUTH] Authentication failed.\r\n", "CAPA": "-ERR no\r\n"})
	err := c.Login("u", "wrong")
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(e.Text, "Authentication failed") {
		t.Fatalf("login: %v", err)
	}
	cli, srv := net.Pipe()
	go func() { srv.Write([]byte("HTTP/1.1 400 Bad Request\r\n")); srv.Close() }()
	if _, err := NewClient(cli, time.Second); !errors.Is(err, ErrProtocol) {
		t.Fatalf("garbage greeting: %v", err)
	}
}

func FuzzList(f *testing.F) {
	f.Add("1 10\r\n2 20\r\n", "1 a\r\n2 b\r\n")
	f.Fuzz(func(t *testing.T, list, uidl string) {
		if strings.Contains(list, ".\r\n") || strings.Contains(uidl, ".\r\n") {
			return
		}
		stat := fmt.Sprintf("+OK %d 0\r\n", strings.Count(list, "\n")+1)
		c := fakeServer(t, "+OK\r\n", map[string]string{"STAT": stat, "LIST": "+OK\r\n" + list + ".\r\n", "UIDL": "+OK\r\n" + uidl + ".\r\n"})
		msgs, err := c.List()
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, m := range msgs {
			if m.UID == "" || seen[m.UID] || m.Size < 0 {
				t.Fatalf("accepted %+v", msgs)
			}
			seen[m.UID] = true
		}
	})
}

// FuzzResponses feeds the response readers whatever a server might send:
// a status line, a listing, a status line and a message. Each returns what
// it was sent, within its bounds, or an error.
func FuzzResponses(f *testing.F) {
	f.Add("+OK\r\n1 10\r\n2 20\r\n.\r\n+OK\r\nSubject: x\r\n\r\n..leading dot\r\n.\r\n")
	f.Add("+OK\r\n.\r\n+OK\r\n.\r\n")
	f.Add("-ERR no\r\n")
	f.Add("+OK\n1 10\n.\n+OK\nbare LF\n.\n")
	f.Add("+OK\r\n" + strings.Repeat("1 1\r\n", 11) + ".\r\n")
	f.Add("+OK " + strings.Repeat("x", maxLine) + "\r\n")
	f.Add("+OK\r\n.\r\n+OK\r\n" + strings.Repeat("y", bufSize+7) + "\r\n.\r\n")
	f.Add("+OK\r\n.\r\n+OK\r\n.a\r\n.\r\n.\r\n")
	f.Add("+OK\r\n.\r\n+OK\r\n" + strings.Repeat("z", 99) + "\r\n.\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		const maxLines, limit = 10, 100
		c := &Client{r: bufio.NewReaderSize(strings.NewReader(s), bufSize), timeout: time.Second}
		if _, err := c.status(); err != nil {
			return
		}
		lines := 0
		err := c.listing("LIST", maxLines, func(l string) error {
			if len(l) > maxLine || strings.ContainsAny(l, "\n") {
				t.Fatalf("listing line %q", l)
			}
			lines++
			return nil
		})
		if lines > maxLines {
			t.Fatalf("%d lines accepted, at most %d wanted", lines, maxLines)
		}
		if err != nil {
			return
		}
		if _, err := c.status(); err != nil {
			return
		}
		rest, _ := io.ReadAll(c.r)
		c.r.Reset(bytes.NewReader(rest))
		var got bytes.Buffer
		err = c.body(1, &got, limit)
		if got.Len() > limit {
			t.Fatalf("body gave %d octets past the limit of %d", got.Len(), limit)
		}
		// The rule, written plainly: up to a line ".", every line
		// starting with '.' loses it.
		var want bytes.Buffer
		ended := false
		for _, l := range bytes.SplitAfter(rest, []byte("\n")) {
			if string(l) == ".\r\n" || string(l) == ".\n" {
				ended = true
				break
			}
			want.Write(bytes.TrimPrefix(l, []byte(".")))
		}
		var tl *TooLargeError
		switch {
		case !ended && err == nil:
			t.Fatalf("a message without its end was taken as complete: %q", rest)
		case ended && want.Len() > limit && !errors.As(err, &tl):
			t.Fatalf("a message of %d octets passed a limit of %d: %v", want.Len(), limit, err)
		case err == nil && !bytes.Equal(got.Bytes(), want.Bytes()):
			t.Fatalf("body of %q:\n got %q\nwant %q", rest, got.Bytes(), want.Bytes())
		}
	})
}

// Pipelined as the collector does it: the next batch's RETRs go out before
// the last batch's DELEs, and the answers are read in the order sent.
func TestPipelinedBatches(t *testing.T) {
	c := tcpFakeServer(t, "+OK ready\r\n", map[string]string{
		"CAPA": "+OK\r\nPIPELINING\r\n.\r\n",
		"RETR": "+OK\r\nSubject: x\r\n\r\n..dot\r\n.\r\n",
		"DELE": "+OK marked\r\n",
	})
	if !c.Pipelining() {
		t.Fatal("PIPELINING not seen")
	}
	var bodies [3]strings.Builder
	to := func(off int) func(int) io.Writer { return func(i int) io.Writer { return &bodies[off+i] } }
	if err := c.SendRetr([]int{1, 2}); err != nil {
		t.Fatal(err)
	}
	if err := c.ReadRetr([]int{1, 2}, to(0), 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := c.SendRetr([]int{3}); err != nil {
		t.Fatal(err)
	}
	if err := c.SendDele([]int{1, 2}); err != nil {
		t.Fatal(err)
	}
	if err := c.ReadRetr([]int{3}, to(2), 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := c.ReadDele([]int{1, 2}); err != nil {
		t.Fatal(err)
	}
	for i, b := range bodies {
		if b.String() != "Subject: x\r\n\r\n.dot\r\n" {
			t.Errorf("message %d: %q", i+1, b.String())
		}
	}
	// A DELE answered -ERR is an error naming the message.
	c2 := tcpFakeServer(t, "+OK ready\r\n", map[string]string{"CAPA": "+OK\r\nPIPELINING\r\n.\r\n", "DELE": "-ERR no such message\r\n"})
	c2.SendDele([]int{7})
	if err := c2.ReadDele([]int{7}); err == nil || !strings.Contains(err.Error(), "DELE 7") {
		t.Errorf("ReadDele: %v", err)
	}
}
