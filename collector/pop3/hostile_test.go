package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/test/hostile"
	"gatehouse/test/testserver"
)

// hostileServer listens on 127.0.0.1 and answers each command with what
// answer writes (a scripted reply, an endless stream, or nothing).
func hostileServer(t *testing.T, greeting string, answer func(cmd string, w net.Conn) bool) *Client {
	t.Helper()
	addr := testserver.Local(t, func(c net.Conn) {
		io.WriteString(c, greeting)
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if !answer(strings.Fields(line + " x")[0], c) {
				return
			}
		}
	})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(conn, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A LIST that never ends is refused after the messages STAT announced,
// holding no more than they take.
func TestEndlessList(t *testing.T) {
	var sent atomic.Int64
	c := hostileServer(t, "+OK\r\n", func(cmd string, w net.Conn) bool {
		switch cmd {
		case "STAT":
			io.WriteString(w, "+OK 3 300\r\n")
		case "LIST":
			var b bytes.Buffer
			n := 0
			hostile.Send(w, "+OK\r\n", func() []byte {
				b.Reset()
				for range 1000 {
					n++
					fmt.Fprintf(&b, "%d 100\r\n", n)
				}
				return b.Bytes()
			}, &sent)
			return false
		}
		return true
	})
	var err error
	alloc := hostile.Allocated(func() { _, err = c.List() })
	t.Logf("endless LIST: %v; allocated %d KiB while the server sent %d KiB", err, alloc>>10, sent.Load()>>10)
	if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "message 4 of the 3 STAT announced") {
		t.Fatalf("List: %v, want a protocol error past STAT's count", err)
	}
	if alloc > 1<<20 {
		t.Fatalf("allocated %d KiB reading a hostile LIST", alloc>>10)
	}
}

// A STAT that announces more messages than a session lists is refused
// before anything is listed.
func TestStatBeyondBound(t *testing.T) {
	c := hostileServer(t, "+OK\r\n", func(cmd string, w net.Conn) bool {
		io.WriteString(w, "+OK 4000000000 1\r\n")
		return true
	})
	if _, err := c.List(); err == nil || !strings.Contains(err.Error(), "more than the 1000000") {
		t.Fatalf("List: %v", err)
	}
}

// A CAPA that never ends is refused at maxCapaLines, and the session
// says so at the next command instead of reading on out of step.
func TestEndlessCapa(t *testing.T) {
	var sent atomic.Int64
	line := []byte(strings.Repeat("X-CAP\r\n", 1000))
	c := hostileServer(t, "+OK\r\n", func(cmd string, w net.Conn) bool {
		hostile.Send(w, "+OK\r\n", func() []byte { return line }, &sent)
		return false
	})
	var err error
	alloc := hostile.Allocated(func() {
		c.Capabilities()
		err = c.Login("u", "p")
	})
	t.Logf("endless CAPA: %v; allocated %d KiB while the server sent %d KiB", err, alloc>>10, sent.Load()>>10)
	if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "CAPA has more than 256 lines") {
		t.Fatalf("Login after an endless CAPA: %v", err)
	}
	if alloc > 1<<20 {
		t.Fatalf("allocated %d KiB reading a hostile CAPA", alloc>>10)
	}
}

// One endless line is refused at maxLine.
func TestEndlessStatusLine(t *testing.T) {
	var sent atomic.Int64
	chunk := []byte(strings.Repeat("a", 64<<10))
	c := hostileServer(t, "+OK\r\n", func(cmd string, w net.Conn) bool {
		hostile.Send(w, "+OK ", func() []byte { return chunk }, &sent)
		return false
	})
	var err error
	alloc := hostile.Allocated(func() { err = c.Dele(1) })
	t.Logf("endless status line: %v; allocated %d KiB while the server sent %d KiB", err, alloc>>10, sent.Load()>>10)
	if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "line longer than 4096 octets") {
		t.Fatalf("Dele: %v", err)
	}
	if alloc > 1<<20 {
		t.Fatalf("allocated %d KiB", alloc>>10)
	}
}

// A message without end is read up to the limit, not further.
func TestEndlessRetr(t *testing.T) {
	var sent atomic.Int64
	chunk := []byte(strings.Repeat(strings.Repeat("m", 998)+"\r\n", 64))
	c := hostileServer(t, "+OK\r\n", func(cmd string, w net.Conn) bool {
		hostile.Send(w, "+OK\r\n", func() []byte { return chunk }, &sent)
		return false
	})
	const limit = 1 << 20
	var b countingWriter
	var err error
	alloc := hostile.Allocated(func() { err = c.Retr(1, &b, limit) })
	t.Logf("endless RETR, limit %d KiB: %v; allocated %d KiB while the server sent %d KiB", limit>>10, err, alloc>>10, sent.Load()>>10)
	var tl *TooLargeError
	if !errors.As(err, &tl) || tl.Num != 1 || tl.Limit != limit {
		t.Fatalf("Retr: %v, want a TooLargeError", err)
	}
	if b.n > limit {
		t.Fatalf("passed on %d octets of a message limited to %d", b.n, limit)
	}
	if alloc > 1<<20 {
		t.Fatalf("allocated %d KiB reading a hostile message", alloc>>10)
	}
	if err := c.Dele(1); !errors.As(err, &tl) {
		t.Fatalf("a command after a message left half read: %v", err)
	}
}

// A message of exactly the limit passes; one octet more does not.
func TestRetrAtLimit(t *testing.T) {
	for _, size := range []int{99, 100, 101} {
		msg := strings.Repeat("x", size-2) + "\r\n"
		c := fakeServer(t, "+OK\r\n", map[string]string{"RETR": "+OK\r\n" + msg + ".\r\n"})
		var b bytes.Buffer
		err := c.Retr(1, &b, 100)
		var tl *TooLargeError
		if size <= 100 && (err != nil || b.String() != msg) || size > 100 && !errors.As(err, &tl) {
			t.Errorf("%d octets, limit 100: %v", size, err)
		}
	}
}

// A server that stops answering is given up after the idle timeout.
func TestSilentServer(t *testing.T) {
	c := hostileServer(t, "+OK\r\n", func(cmd string, w net.Conn) bool {
		if cmd == "RETR" {
			io.WriteString(w, "+OK\r\nSubject: half a message\r\n")
		}
		return true // and say nothing more
	})
	start := time.Now()
	if _, err := c.List(); err == nil || !strings.Contains(err.Error(), "silent for 300ms") {
		t.Fatalf("List: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("gave up after %v", d)
	}
	c = hostileServer(t, "+OK\r\n", func(cmd string, w net.Conn) bool {
		if cmd == "RETR" {
			io.WriteString(w, "+OK\r\nSubject: half a message\r\n")
		}
		return true
	})
	if err := c.Retr(1, io.Discard, 1<<20); err == nil || !strings.Contains(err.Error(), "RETR 1: the server was silent for 300ms") {
		t.Fatalf("Retr: %v", err)
	}
}

// countingWriter takes what it is given and keeps only the count.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}
