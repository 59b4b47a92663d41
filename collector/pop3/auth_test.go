package pop3

import (
	"bufio"
	"encoding/base64"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/test/testserver"
)

// saslServer answers AUTH as script says, line by line, and records what
// the client sent.
func saslServer(t *testing.T, script ...string) (*Client, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var got []string
	addr := testserver.Local(t, func(c net.Conn) {
		io.WriteString(c, "+OK ready\r\n")
		r := bufio.NewReader(c)
		for _, reply := range script {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, strings.TrimRight(line, "\r\n"))
			mu.Unlock()
			io.WriteString(c, reply+"\r\n")
		}
	})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(conn, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), got...) }
}

func TestAuthenticateWithInitialResponse(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	short := "user=a\x01auth=Bearer tok\x01\x01"
	long := "user=a\x01auth=Bearer " + strings.Repeat("t", 1500) + "\x01\x01"
	reason := `{"status":"401","schemes":"bearer","scope":"https://mail.example/"}`

	c, sent := saslServer(t, "+OK welcome")
	if _, err := c.Authenticate("XOAUTH2", []byte(short), nil); err != nil {
		t.Fatal(err)
	}
	if got := sent(); len(got) != 1 || got[0] != "AUTH XOAUTH2 "+b64(short) {
		t.Errorf("sent %q", got)
	}

	// A token too long for the AUTH line (RFC 5034 4) goes after "+".
	c, sent = saslServer(t, "+ ", "+OK welcome")
	if _, err := c.Authenticate("XOAUTH2", []byte(long), nil); err != nil {
		t.Fatal(err)
	}
	if got := sent(); len(got) != 2 || got[0] != "AUTH XOAUTH2" || got[1] != b64(long) {
		t.Errorf("sent %q", got)
	}

	// A refusal: the reason as a challenge, the abort, then -ERR.
	c, sent = saslServer(t, "+ "+b64(reason), "-ERR [AUTH] Authentication failed")
	challenge, err := c.Authenticate("OAUTHBEARER", []byte(short), []byte{1})
	if err == nil || !strings.Contains(err.Error(), "Authentication failed") || string(challenge) != reason {
		t.Fatalf("refusal: %v, challenge %q", err, challenge)
	}
	if got := sent(); len(got) != 2 || got[1] != "AQ==" {
		t.Errorf("sent %q, want the abort AQ== after the challenge", got)
	}

	// A server that keeps challenging is a protocol error, not a loop.
	c, _ = saslServer(t, "+ "+b64("x"), "+ "+b64("y"))
	if _, err := c.Authenticate("XOAUTH2", []byte(short), nil); err == nil || !strings.Contains(err.Error(), "second challenge") && !strings.Contains(err.Error(), "protocol") {
		t.Fatalf("endless challenges: %v", err)
	}
}
