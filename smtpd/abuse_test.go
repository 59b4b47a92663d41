package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/smtp"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"gatehouse/config"
	"gatehouse/delivery"
	"gatehouse/queue"
	"gatehouse/test/testserver"
	"gatehouse/tlscert"
)

// relay runs an SMTP server in this process on a free loopback port for
// listener, with the given relay section (hostname filled in), and returns
// its address. What it accepts is delivered to the section's next hops.
func relay(t testing.TB, listener, section string) string {
	t.Helper()
	dir := t.TempDir()
	full, errs, err := config.Parse("t.yaml", []byte("smtp:\n  hostname: mx.example.test\n"+section))
	if err != nil || len(errs) > 0 {
		t.Fatalf("config: %v %v", err, errs)
	}
	c := full.SMTP
	cfg := func() *config.SMTP { return c }
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pol := NewPolicy(c, nil, NewPopAuth(), nil, log)
	store, _, probs := queue.OpenStore(filepath.Join(dir, "queue"))
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	tr := &delivery.Transport{Log: log, Config: cfg, Roots: func() *x509.CertPool { return nil }}
	ctx, cancel := context.WithCancel(context.Background())
	q := queue.New(ctx, store, nil, tr, queue.Policy{Lifetime: time.Hour, MinBackoff: time.Hour, MaxBackoff: time.Hour},
		func(queue.Notice) error { return nil }, log)
	srv := New(Options{Log: log, Store: store, Queue: q, Transport: tr, Config: cfg, Policy: func() *Policy { return pol },
		FreeSpace: func() (int64, error) { return FreeBytes(dir) }})
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if _, err := tlscert.EnsureSelfSigned(cert, key, c.Hostname); err != nil {
		t.Fatal(err)
	}
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetTLS(&tls.Config{Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	srv.Serve(listener, ln, errc)
	t.Cleanup(func() {
		srv.Close()
		cancel()
		q.Wait()
		store.Close()
		select {
		case err := <-errc:
			t.Errorf("server: %v", err)
		default:
		}
	})
	return ln.Addr().String()
}

// login tries AUTH PLAIN over STARTTLS from the local address from and
// returns the server's reply ("235 ..." on success).
func login(t *testing.T, addr, from, user, pass string) string {
	t.Helper()
	c, err := smtp.NewClient(testserver.DialFrom(t, from, addr), "mx.example.test")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil { // the relay's generated certificate
		t.Fatal(err)
	}
	if err := c.Auth(smtp.PlainAuth("", user, pass, "mx.example.test")); err != nil {
		return err.Error()
	}
	return "235 ok"
}

func usersSection(t *testing.T) string {
	h, err := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("  users:\n    - {login: alice, password_hash: %q, addresses: [alice@example.test]}\n", h)
}

// Password guessing from one address is cut off after auth_failures: the
// later guesses get 454 without a password being checked, while a user at
// another address logs in meanwhile.
func TestAuthGuessingBlocksTheClient(t *testing.T) {
	addr := relay(t, "submission", usersSection(t)+"  limits: {auth_failures: 5, auth_block: 1h}\n")
	replies := map[string]int{}
	for range 12 {
		r := login(t, addr, "127.0.0.1", "alice", "guess")
		replies[r[:3]]++
	}
	if replies["535"] != 5 || replies["454"] != 7 {
		t.Errorf("replies to 12 guesses: %v, want 5 x 535 then 7 x 454", replies)
	}
	if r := login(t, addr, "127.0.0.2", "alice", "right"); !strings.HasPrefix(r, "235") {
		t.Errorf("the right password from another address: %q", r)
	}
	// Even the right password is refused from the blocked address.
	if r := login(t, addr, "127.0.0.1", "alice", "right"); !strings.HasPrefix(r, "454") {
		t.Errorf("the right password from the blocked address: %q, want 454", r)
	}
}

// rawSession is a plain SMTP client that shows every reply.
type rawSession struct {
	c net.Conn
	r *bufio.Reader
}

func dial(t testing.TB, addr string) *rawSession {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &rawSession{c: c, r: bufio.NewReader(c)}
	if r := s.reply(); !strings.HasPrefix(r, "220") {
		t.Fatalf("greeting %q", r)
	}
	return s
}

func (s *rawSession) reply() string {
	s.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var last string
	for {
		l, err := s.r.ReadString('\n')
		if err != nil {
			return "EOF"
		}
		last = l
		if len(l) < 4 || l[3] != '-' {
			return strings.TrimSpace(last)
		}
	}
}

func (s *rawSession) cmd(line string) string {
	fmt.Fprintf(s.c, "%s\r\n", line)
	return s.reply()
}

// Harvesting recipients: refusals past the soft limit are slowed, and
// the hard limit ends the session with 421.
func TestErrorLimitEndsTheSession(t *testing.T) {
	addr := relay(t, "smtp", `  domains:
    - {name: example.test, next_hop: "[127.0.0.1]:1", recipients: [alice]}
  limits: {soft_error_limit: 18, hard_error_limit: 20}
`)
	s := dial(t, addr)
	s.cmd("EHLO harvester.test")
	if r := s.cmd("MAIL FROM:<x@outside.test>"); !strings.HasPrefix(r, "250") {
		t.Fatalf("MAIL: %q", r)
	}
	var replies []string
	for i := range 100 {
		r := s.cmd(fmt.Sprintf("RCPT TO:<user%d@example.test>", i))
		replies = append(replies, r)
		if r == "EOF" {
			break
		}
	}
	if len(replies) != 21 || !strings.HasPrefix(replies[18], "550") || !strings.HasPrefix(replies[19], "421 4.7.0") || replies[20] != "EOF" {
		t.Errorf("%d replies, the last three %q; want 19 x 550, a 421 4.7.0 and the connection closed", len(replies), replies[max(0, len(replies)-3):])
	}
}

// Commands pipelined past the hard limit get 421 too, without any work
// done for them (go-smtp still reads them from its buffer).
func TestErrorLimitStopsPipelinedCommands(t *testing.T) {
	hop, f := startNextHop(t, "alice")
	host, port, _ := net.SplitHostPort(hop)
	addr := relay(t, "smtp", fmt.Sprintf(`  domains:
    - {name: example.test, next_hop: "[%s]:%s", tls: none, verify_recipients: true}
  limits: {soft_error_limit: 20, hard_error_limit: 20}
`, host, port))
	s := dial(t, addr)
	s.cmd("EHLO harvester.test")
	s.cmd("MAIL FROM:<x@outside.test>")
	var batch strings.Builder
	for i := range 60 {
		fmt.Fprintf(&batch, "RCPT TO:<user%d@example.test>\r\n", i)
	}
	fmt.Fprint(s.c, batch.String())
	codes := map[string]int{}
	for range 60 {
		r := s.reply()
		if r == "EOF" {
			break
		}
		codes[r[:3]]++
	}
	if codes["550"] != 19 || codes["421"] < 1 {
		t.Errorf("replies %v: want 19 x 550, then 421", codes)
	}
	f.mu.Lock()
	asked := len(f.asked)
	f.mu.Unlock()
	if asked != 20 {
		t.Errorf("the next hop was asked about %d of the 60 recipients; want 20 (none past the limit)", asked)
	}
}

// A header larger than limits.header_size is refused (Postfix's
// header_size_limit), and MAIL is refused when the queue's file system
// has less free space than queue_min_free.
func TestHeaderAndSpaceLimits(t *testing.T) {
	addr := relay(t, "smtp", `  domains:
    - {name: example.test, next_hop: "[127.0.0.1]:1"}
  limits: {header_size: 4KiB}
`)
	s := dial(t, addr)
	s.cmd("EHLO client.test")
	s.cmd("MAIL FROM:<x@outside.test>")
	s.cmd("RCPT TO:<alice@example.test>")
	if r := s.cmd("DATA"); !strings.HasPrefix(r, "354") {
		t.Fatalf("DATA: %q", r)
	}
	fmt.Fprintf(s.c, "Subject: big\r\n%s\r\nbody\r\n.\r\n", strings.Repeat("X-Filler: "+strings.Repeat("x", 1000)+"\r\n", 8))
	if r := s.reply(); !strings.HasPrefix(r, "552 5.3.4") {
		t.Errorf("8 KiB header against a 4 KiB limit: %q", r)
	}

	full := relay(t, "smtp", `  domains:
    - {name: example.test, next_hop: "[127.0.0.1]:1"}
  limits: {queue_min_free: 1024GiB} # more than any test machine has free
`)
	s = dial(t, full)
	s.cmd("EHLO client.test")
	if r := s.cmd("MAIL FROM:<x@outside.test>"); !strings.HasPrefix(r, "452 4.3.1") {
		t.Errorf("MAIL with the queue's disk short of space: %q, want 452 4.3.1", r)
	}
}

// A session is bounded in length however lively the client: one that
// keeps talking is cut off at session_timeout.
func TestSessionTimeout(t *testing.T) {
	addr := relay(t, "smtp", `  domains:
    - {name: example.test, next_hop: "[127.0.0.1]:1"}
  limits: {idle_timeout: 1s, session_timeout: 2s}
`)
	s := dial(t, addr)
	start := time.Now()
	var last string
	for time.Since(start) < 10*time.Second {
		if last = s.cmd("NOOP"); last == "EOF" || strings.HasPrefix(last, "421") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.HasPrefix(last, "421") && last != "EOF" {
		t.Errorf("a lively client was never cut off: last reply %q", last)
	}
}

// Per-client connection limits count an IPv6 /64 as one client.
func TestConnLimitsPerIPv6Prefix(t *testing.T) {
	l := newConnLimits(100, 2)
	for _, a := range []string{"2001:db8:1:1::1", "2001:db8:1:1:ffff::2"} {
		if ok, _ := l.acquire(netip.MustParseAddr(a)); !ok {
			t.Fatalf("%s refused under the limit", a)
		}
	}
	if ok, _ := l.acquire(netip.MustParseAddr("2001:db8:1:1::3")); ok {
		t.Error("a third address of the same /64 got a slot")
	}
	if ok, _ := l.acquire(netip.MustParseAddr("2001:db8:1:2::1")); !ok {
		t.Error("another /64 refused")
	}
	if ok, _ := l.acquire(netip.MustParseAddr("192.0.2.1")); !ok {
		t.Error("an IPv4 client refused")
	}
	l.release(netip.MustParseAddr("2001:db8:1:1::1"))
	if ok, _ := l.acquire(netip.MustParseAddr("2001:db8:1:1::3")); !ok {
		t.Error("a slot freed in the /64 was not given out again")
	}
}

// At most a few password checks run at once, however many connections
// ask.
func TestAuthChecksAreBounded(t *testing.T) {
	g := newAuthGuard(5, time.Minute)
	var mu sync.Mutex
	running, peak := 0, 0
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			g.check(context.Background(), func() (bool, error) {
				mu.Lock()
				running++
				peak = max(peak, running)
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
				mu.Lock()
				running--
				mu.Unlock()
				return false, nil
			})
		})
	}
	wg.Wait()
	if peak > cap(g.slots) || peak < 1 {
		t.Errorf("%d checks ran at once, want at most %d", peak, cap(g.slots))
	}
}
