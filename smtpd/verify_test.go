package smtpd

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"gatehouse/test/testserver"
)

// fakeNextHop is an internal mail server that knows only the local parts
// in users; it counts the RCPTs it was asked.
type fakeNextHop struct {
	mu    sync.Mutex
	asked map[string]int
}

func startNextHop(t *testing.T, users ...string) (string, *fakeNextHop) {
	return startNextHopWith(t, false, users...)
}

// startNextHopWith can refuse the null sender, as Exchange's "block blank
// senders" does.
func startNextHopWith(t *testing.T, refuseNull bool, users ...string) (string, *fakeNextHop) {
	t.Helper()
	f := &fakeNextHop{asked: map[string]int{}}
	known := map[string]bool{}
	for _, u := range users {
		known[u] = true
	}
	hop := testserver.Local(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		fmt.Fprint(c, "220 internal.test ESMTP\r\n")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			cmd := strings.ToUpper(strings.TrimSpace(line))
			switch {
			case strings.HasPrefix(cmd, "EHLO"):
				fmt.Fprint(c, "250-internal.test\r\n250 PIPELINING\r\n")
			case strings.HasPrefix(cmd, "RCPT TO:"):
				addr := strings.Trim(strings.TrimSpace(line[len("RCPT TO:"):]), "<>")
				local, _, _ := strings.Cut(addr, "@")
				f.mu.Lock()
				f.asked[addr]++
				f.mu.Unlock()
				if known[local] {
					fmt.Fprint(c, "250 2.1.5 Ok\r\n")
				} else {
					fmt.Fprint(c, "550 5.1.1 <"+addr+">: Recipient address rejected: User unknown in virtual mailbox table\r\n")
				}
			case refuseNull && strings.HasPrefix(cmd, "MAIL FROM:<>"):
				fmt.Fprint(c, "550 5.7.1 Blank senders are not accepted\r\n")
			case cmd == "QUIT":
				fmt.Fprint(c, "221 Bye\r\n")
				return
			default: // MAIL, RSET
				fmt.Fprint(c, "250 Ok\r\n")
			}
		}
	})
	return hop, f
}

// With verify_recipients, a recipient the internal server does not know is
// refused at RCPT (no bounce to a forged sender later); known ones are
// accepted; answers are remembered; a next hop that cannot be asked gets
// the client a temporary refusal.
func TestRecipientVerification(t *testing.T) {
	hop, f := startNextHop(t, "alice")
	addr := relay(t, "smtp", fmt.Sprintf(`  domains:
    - {name: example.test, next_hop: "[%s]:%s", tls: none, verify_recipients: true}
    - {name: down.test, next_hop: "[127.0.0.1]:1", tls: none, verify_recipients: true}
`, strings.Split(hop, ":")[0], strings.Split(hop, ":")[1]))
	s := dial(t, addr)
	s.cmd("EHLO client.test")
	s.cmd("MAIL FROM:<forged@victim.test>")
	if r := s.cmd("RCPT TO:<alice@example.test>"); !strings.HasPrefix(r, "250") {
		t.Errorf("known user: %q", r)
	}
	for range 3 {
		if r := s.cmd("RCPT TO:<mallory@example.test>"); !strings.HasPrefix(r, "550 5.1.1") || !strings.Contains(r, "User unknown") {
			t.Errorf("unknown user: %q, want 550 5.1.1 with the next hop's words", r)
		}
	}
	f.mu.Lock()
	if n := f.asked["mallory@example.test"]; n != 1 {
		t.Errorf("the next hop was asked %d times about the same address, want 1 (remembered)", n)
	}
	f.mu.Unlock()
	if r := s.cmd("RCPT TO:<bob@down.test>"); !strings.HasPrefix(r, "450 4.1.1") {
		t.Errorf("next hop down: %q, want 450 4.1.1", r)
	}
}

// A next hop that refuses the null sender says nothing about the
// recipient: the client gets a temporary refusal, and nothing is cached as
// "unknown user".
func TestVerificationNullSenderRefused(t *testing.T) {
	hop, _ := startNextHopWith(t, true, "alice")
	host, port, _ := net.SplitHostPort(hop)
	addr := relay(t, "smtp", fmt.Sprintf(`  domains:
    - {name: example.test, next_hop: "[%s]:%s", tls: none, verify_recipients: true}
`, host, port))
	s := dial(t, addr)
	s.cmd("EHLO client.test")
	s.cmd("MAIL FROM:<someone@outside.test>")
	if r := s.cmd("RCPT TO:<alice@example.test>"); !strings.HasPrefix(r, "450 4.1.1") {
		t.Errorf("next hop refusing MAIL FROM:<>: %q, want 450 4.1.1", r)
	}
}
