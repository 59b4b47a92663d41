package smtp

// Tests of the patched writeResponse (PATCHES.md) against the upstream one
// kept in upstream_old_test.go.

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// writeRecorder is a connection that records each write.
type writeRecorder struct {
	net.Conn
	writes []string
}

func (w *writeRecorder) Write(p []byte) (int, error) {
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

func TestWriteResponseSameBytesOneWrite(t *testing.T) {
	tests := []struct {
		code int
		ec   EnhancedCode
		text []string
	}{
		{250, EnhancedCode{2, 0, 0}, []string{"OK"}},
		{250, EnhancedCodeNotSet, []string{"OK"}},
		{354, NoEnhancedCode, []string{"Go ahead. End your data with <CR><LF>.<CR><LF>"}},
		{334, EnhancedCodeNotSet, []string{""}},
		{250, NoEnhancedCode, []string{"Hello example.org", "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "CHUNKING", "SIZE 10240000"}},
		{550, EnhancedCode{5, 7, 1}, []string{"line one\nline two", "100% %d %v\n"}},
		{421, EnhancedCodeNotSet, nil},
		{250, EnhancedCodeNotSet, []string{strings.Repeat("long ", 1000), "two"}},
	}
	for _, tc := range tests {
		newRec, oldRec := &writeRecorder{}, &writeRecorder{}
		newConn(newRec, &Server{}).writeResponse(tc.code, tc.ec, tc.text...)
		oldWriteResponse(newConn(oldRec, &Server{}), tc.code, tc.ec, tc.text...)
		got, want := strings.Join(newRec.writes, ""), strings.Join(oldRec.writes, "")
		if got != want {
			t.Errorf("%d %v %q: wrote %q, upstream %q", tc.code, tc.ec, tc.text, got, want)
		}
		if len(got) <= 4096 && len(newRec.writes) != 1 {
			t.Errorf("%d %v %q: %d writes: %q", tc.code, tc.ec, tc.text, len(newRec.writes), newRec.writes)
		}
	}
}

// recordingBackend keeps the messages its sessions receive.
type recordingBackend struct {
	mu       sync.Mutex
	messages []string
}

func (be *recordingBackend) NewSession(c *Conn) (Session, error) { return recordingSession{be}, nil }

type recordingSession struct{ be *recordingBackend }

func (recordingSession) Reset()                          {}
func (recordingSession) Logout() error                   { return nil }
func (recordingSession) Mail(string, *MailOptions) error { return nil }
func (recordingSession) Rcpt(string, *RcptOptions) error { return nil }
func (s recordingSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.be.mu.Lock()
	s.be.messages = append(s.be.messages, string(b))
	s.be.mu.Unlock()
	return err
}

func TestEhloOneWrite(t *testing.T) {
	rec := &writeRecorder{}
	s := NewServer(&recordingBackend{})
	s.Domain = "example.org"
	s.MaxMessageBytes = 1 << 20
	s.EnableSMTPUTF8 = true
	c := newConn(rec, s)
	c.handle("EHLO", "client.example")
	if len(rec.writes) != 1 || !strings.HasPrefix(rec.writes[0], "250-") || strings.Count(rec.writes[0], "\r\n") < 5 {
		t.Fatalf("EHLO reply in %d writes: %q", len(rec.writes), rec.writes)
	}
}

// TestPipelinedTransactions sends two transactions and QUIT in one write:
// the end of the first message is followed by the next commands in the same
// buffer, and the second message (dot-stuffed, longer than the 4 KiB buffer)
// by QUIT.
func TestPipelinedTransactions(t *testing.T) {
	be := &recordingBackend{}
	s := NewServer(be)
	s.Domain = "example.org"
	s.AllowInsecureAuth = true
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	defer s.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	msg1 := "Subject: one\r\n\r\nshort\r\n"
	msg2 := "Subject: two\r\n\r\n" + strings.Repeat("a line of the second message, long enough\r\n.starts with a dot\r\n", 100)
	stuffed := strings.Replace(msg2, "\r\n.", "\r\n..", -1)
	script := "EHLO client.example\r\n" +
		"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n" + msg1 + ".\r\n" +
		"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n" + stuffed + ".\r\n" +
		"QUIT\r\n"
	if _, err := io.WriteString(c, script); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	replies, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, line := range strings.Split(strings.TrimSuffix(string(replies), "\r\n"), "\r\n") {
		if len(line) > 3 && line[3] == ' ' {
			codes = append(codes, line[:3])
		}
	}
	if got, want := strings.Join(codes, " "), "220 250 250 250 354 250 250 250 354 250 221"; got != want {
		t.Errorf("replies %s, want %s:\n%s", got, want, replies)
	}
	be.mu.Lock()
	defer be.mu.Unlock()
	if len(be.messages) != 2 || be.messages[0] != msg1 || be.messages[1] != msg2 {
		t.Errorf("got %d messages: %s", len(be.messages), short(strings.Join(be.messages, "|")))
	}
}
