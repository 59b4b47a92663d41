package collector

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"gatehouse/config"
	"gatehouse/mailmsg"
	"gatehouse/queue"
	"gatehouse/status"
	"gatehouse/test/hostile"
	"gatehouse/test/testserver"
	"gatehouse/tlscert"
)

// heldTransport delivers nothing: collected mail stays in the queue,
// where the tests look at it.
type heldTransport struct{}

func (heldTransport) Open(context.Context, queue.Route) (queue.Session, error) {
	return nil, errors.New("delivery held for the test")
}

// testSink is the relay's side as the relay has it, a queue that
// delivers nothing, with every recipient routed by MX.
type testSink struct {
	store *queue.Store
	q     *queue.Queue
}

func (s *testSink) Route(to mailmsg.Address) queue.Route {
	return queue.Route{Kind: queue.MX, Name: to.Domain}
}
func (s *testSink) Queue(msgs []queue.Incoming) error { return s.q.AddBatch(msgs) }
func (s *testSink) Seen(account string) (map[string]bool, error) {
	return s.store.Seen(account)
}
func (s *testSink) Forget(account string, keep func(string) bool) error {
	return s.store.PruneSeen(account, keep)
}

// testCollector is a collector into a store and a queue that delivers
// nothing, that waits at most ioTimeout for a server.
func testCollector(t *testing.T, limit int64) (*Collector, *testSink) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, _, probs := queue.OpenStore(t.TempDir())
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	t.Cleanup(func() { store.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	q := queue.New(ctx, store, nil, heldTransport{}, queue.Policy{Lifetime: time.Hour, MinBackoff: time.Hour, MaxBackoff: time.Hour},
		func(queue.Notice) error { return nil }, log)
	t.Cleanup(func() { cancel(); q.Wait() })
	sink := &testSink{store: store, q: q}
	c := New(Options{Sink: sink, Settings: func() Settings { return Settings{Hostname: "relay.test", MaxSize: limit} }, Log: log})
	c.ioTimeout = 300 * time.Millisecond
	return c, sink
}

// testAccount is an account of protocol at addr, delivering to
// helpdesk@example.com, polled by hand.
func testAccount(t *testing.T, name, protocol, addr string) *account {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	pw := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	verify := false
	cfg := config.FetchAccount{Name: name, Protocol: protocol, Server: host, Port: p, User: "helpdesk", PasswordFile: pw,
		DeliverTo: "helpdesk@example.com", Poll: config.Duration{Duration: time.Hour}, TLSVerify: &verify}
	return &account{cfg: cfg, now: make(chan struct{}, 1), oversize: map[string]bool{}, st: status.FetchAccount{Name: name}}
}

// testTLS is a server certificate for the fake servers (the test
// accounts do not verify it).
func testTLS(t *testing.T) *tls.Config {
	t.Helper()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if _, err := tlscert.EnsureSelfSigned(cert, key, "mail.test"); err != nil {
		t.Fatal(err)
	}
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{kp}}
}

// queued returns the messages in the queue.
func queued(t *testing.T, svc *testSink) []string {
	t.Helper()
	var out []string
	for _, in := range svc.q.List() {
		r, err := svc.store.Open(&queue.Envelope{ID: in.ID, Size: in.Size})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r)
		r.Close()
		out = append(out, string(b))
	}
	return out
}

// fetched returns the remote ids recorded as collected for an account.
func fetched(t *testing.T, svc *testSink, account string) []string {
	t.Helper()
	m, err := svc.store.Seen(account)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// pop3Server is a POP3S server on 127.0.0.1 that answers each command
// with answer(command, argument, connection); false ends the session.
func pop3Server(t *testing.T, answer func(cmd, arg string, w net.Conn) bool) string {
	t.Helper()
	return testserver.Serve(t, listenTLS(t), func(c net.Conn) {
		io.WriteString(c, "+OK ready\r\n")
		eachLine(c, func(line string) bool {
			cmd, arg, _ := strings.Cut(line, " ")
			return answer(strings.ToUpper(cmd), arg, c)
		})
	})
}

// listenTLS is a TLS listener on a free port of 127.0.0.1, with testTLS's
// certificate.
func listenTLS(t *testing.T) net.Listener {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", testTLS(t))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// eachLine reads lines from c and hands each, without its line end, to
// f until f returns false or the client goes away.
func eachLine(c net.Conn, f func(line string) bool) {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil || !f(strings.TrimRight(line, "\r\n")) {
			return
		}
	}
}

// A message the server lists as small but sends without end is read up
// to the size limit, reported, and left on the server; the next poll
// collects the rest of the mailbox.
func TestCollectPOP3MessageLargerThanListed(t *testing.T) {
	const limit = 1 << 20
	small := "Subject: small\r\n\r\nbody\r\n"
	chunk := []byte(strings.Repeat(strings.Repeat("m", 78)+"\r\n", 800))
	var sentBig atomic.Int64
	addr := pop3Server(t, func(cmd, arg string, w net.Conn) bool {
		switch cmd {
		case "CAPA":
			io.WriteString(w, "+OK\r\nUIDL\r\nUSER\r\n.\r\n")
		case "STAT":
			io.WriteString(w, "+OK 2 200\r\n")
		case "LIST":
			io.WriteString(w, "+OK\r\n1 100\r\n2 100\r\n.\r\n")
		case "UIDL":
			io.WriteString(w, "+OK\r\n1 big\r\n2 small\r\n.\r\n")
		case "RETR":
			if arg == "1" {
				hostile.Send(w, "+OK\r\n", func() []byte { return chunk }, &sentBig)
				return false
			}
			io.WriteString(w, "+OK\r\n"+small+".\r\n")
		case "QUIT":
			io.WriteString(w, "+OK bye\r\n")
			return false
		default:
			io.WriteString(w, "+OK\r\n")
		}
		return true
	})
	c, svc := testCollector(t, limit)
	a := testAccount(t, "pop", "pop3s", addr)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var err error
	alloc := hostile.Allocated(func() { err = c.pollSafely(context.Background(), a, log) })
	t.Logf("message larger than listed: %v; allocated %d KiB while the server sent %d KiB", err, alloc>>10, sentBig.Load()>>10)
	if err == nil || !strings.Contains(err.Error(), "message 1 (uid big) is larger than smtp.limits.message_size (1048576 octets), though LIST said 100") {
		t.Fatalf("first poll: %v", err)
	}
	if alloc > 8*limit {
		t.Fatalf("allocated %d KiB for messages limited to %d KiB", alloc>>10, limit>>10)
	}
	if got := queued(t, svc); len(got) != 0 {
		t.Fatalf("queued %q from a session that failed", got)
	}
	if err := c.pollSafely(context.Background(), a, log); err != nil {
		t.Fatalf("second poll: %v", err)
	}
	got := queued(t, svc)
	if len(got) != 1 || !strings.HasSuffix(got[0], small) || strings.Join(fetched(t, svc, "pop"), " ") != "small" {
		t.Fatalf("queued %q as %v, want the small message", got, fetched(t, svc, "pop"))
	}
	if len(a.st.TooLarge) != 1 || a.st.TooLarge[0] != "big" {
		t.Fatalf("too large: %v", a.st.TooLarge)
	}
}

// literal is a message for imapmemserver's Append.
type literal struct{ *strings.Reader }

func (l literal) Size() int64 { return l.Reader.Size() }

// imapGood is a well-behaved IMAPS server (go-imap's in-memory one) whose
// INBOX holds msgs.
func imapGood(t *testing.T, msgs ...string) string {
	t.Helper()
	return imapMem(t, listenTLS(t), nil, msgs...)
}

// imapMem serves go-imap's in-memory server on l, its INBOX holding msgs,
// offering STARTTLS with starttls (nil: none).
func imapMem(t *testing.T, l net.Listener, starttls *tls.Config, msgs ...string) string {
	t.Helper()
	user := imapmemserver.NewUser("helpdesk", "secret")
	if err := user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if _, err := user.Append("INBOX", literal{strings.NewReader(m)}, &imap.AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mem := imapmemserver.New()
	mem.AddUser(user)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:      imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}},
		TLSConfig: starttls,
		Logger:    slogDiscard{},
	})
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

type slogDiscard struct{}

func (slogDiscard) Printf(string, ...any) {}

// imapHostile is an IMAPS server on 127.0.0.1 that answers tagged
// commands through answer(tag, command, connection); false ends the
// session. The command is upper-cased, its arguments follow.
func imapHostile(t *testing.T, answer func(tag, cmd string, w net.Conn) bool) string {
	t.Helper()
	return testserver.Serve(t, listenTLS(t), func(c net.Conn) {
		if !answer("", "", c) {
			return
		}
		eachLine(c, func(line string) bool {
			tag, cmd, _ := strings.Cut(line, " ")
			return answer(tag, strings.ToUpper(cmd), c)
		})
	})
}

// imapScript answers as an IMAP server whose INBOX holds UID 5, of the
// size given, up to the FETCH of its body, which body writes.
func imapScript(size int, body func(tag string, w net.Conn) bool) func(tag, cmd string, w net.Conn) bool {
	return func(tag, cmd string, w net.Conn) bool {
		switch {
		case tag == "":
			io.WriteString(w, "* OK [CAPABILITY IMAP4rev1 UIDPLUS AUTH=PLAIN] ready\r\n")
		case strings.HasPrefix(cmd, "LOGIN"):
			io.WriteString(w, tag+" OK [CAPABILITY IMAP4rev1 UIDPLUS] logged in\r\n")
		case strings.HasPrefix(cmd, "SELECT"):
			io.WriteString(w, "* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n"+tag+" OK [READ-WRITE] selected\r\n")
		case strings.HasPrefix(cmd, "UID SEARCH"):
			io.WriteString(w, "* SEARCH 5\r\n"+tag+" OK done\r\n")
		case strings.HasPrefix(cmd, "UID FETCH") && strings.Contains(cmd, "BODY"):
			return body(tag, w)
		case strings.HasPrefix(cmd, "UID FETCH"):
			io.WriteString(w, "* 1 FETCH (UID 5 RFC822.SIZE "+strconv.Itoa(size)+")\r\n"+tag+" OK done\r\n")
		case strings.HasPrefix(cmd, "LOGOUT"):
			io.WriteString(w, "* BYE\r\n"+tag+" OK bye\r\n")
			return false
		default:
			io.WriteString(w, tag+" OK\r\n")
		}
		return true
	}
}

// A message body without end (a literal announced far larger than it
// said it was) is not read: the poll ends with an error naming it, and
// the next one leaves it on the server.
func TestCollectIMAPEndlessLiteral(t *testing.T) {
	const limit = 1 << 20
	chunk := []byte(strings.Repeat(strings.Repeat("m", 78)+"\r\n", 800))
	var sent atomic.Int64
	addr := imapHostile(t, imapScript(100, func(tag string, w net.Conn) bool {
		literal := fmt.Sprintf("* 1 FETCH (UID 5 RFC822.SIZE 100 BODY[] {%d}\r\n", int64(hostile.Stream))
		hostile.Send(w, literal, func() []byte { return chunk }, &sent)
		return false
	}))
	c, svc := testCollector(t, limit)
	a := testAccount(t, "imap", "imaps", addr)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var err error
	alloc := hostile.Allocated(func() { err = c.pollSafely(context.Background(), a, log) })
	t.Logf("endless literal: %v; allocated %d KiB while the server sent %d KiB", err, alloc>>10, sent.Load()>>10)
	if err == nil || !strings.Contains(err.Error(), "UID 5: the server sends 209715200 octets, more than smtp.limits.message_size (1048576), though RFC822.SIZE said 100") {
		t.Fatalf("first poll: %v", err)
	}
	if alloc > 4*limit {
		t.Fatalf("allocated %d KiB for messages limited to %d KiB", alloc>>10, limit>>10)
	}
	if err := c.pollSafely(context.Background(), a, log); err != nil {
		t.Fatalf("second poll: %v", err)
	}
	if len(queued(t, svc)) != 0 || len(a.st.TooLarge) != 1 || a.st.TooLarge[0] != "INBOX/7/5" {
		t.Fatalf("queued %d, too large %v", len(queued(t, svc)), a.st.TooLarge)
	}
}

// A response line without end is refused once it is longer than a
// message may be.
func TestCollectIMAPEndlessLine(t *testing.T) {
	const limit = 1 << 20
	chunk := []byte(strings.Repeat("a", 64<<10))
	var sent atomic.Int64
	addr := imapHostile(t, imapScript(100, func(tag string, w net.Conn) bool {
		hostile.Send(w, "* OK ", func() []byte { return chunk }, &sent)
		return false
	}))
	c, _ := testCollector(t, limit)
	a := testAccount(t, "imap", "imaps", addr)
	var err error
	alloc := hostile.Allocated(func() { err = c.pollSafely(context.Background(), a, slog.New(slog.NewTextHandler(io.Discard, nil))) })
	t.Logf("endless line: %v; allocated %d KiB while the server sent %d KiB", err, alloc>>10, sent.Load()>>10)
	if err == nil || !strings.Contains(err.Error(), "line longer than") {
		t.Fatalf("poll: %v", err)
	}
	// go-imap's parser holds the line as it grows, doubling its buffer.
	if alloc > 16*limit {
		t.Fatalf("allocated %d KiB for a line limited to about %d KiB", alloc>>10, limit>>10)
	}
}

// A message larger than the limit by its RFC822.SIZE is not downloaded.
func TestCollectIMAPTooLargeNotDownloaded(t *testing.T) {
	var fetched atomic.Bool
	addr := imapHostile(t, imapScript(2<<20, func(tag string, w net.Conn) bool {
		fetched.Store(true)
		io.WriteString(w, tag+" OK\r\n")
		return true
	}))
	c, _ := testCollector(t, 1<<20)
	a := testAccount(t, "imap", "imaps", addr)
	if err := c.pollSafely(context.Background(), a, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	if fetched.Load() || len(a.st.TooLarge) != 1 {
		t.Fatalf("body fetched: %v; too large: %v", fetched.Load(), a.st.TooLarge)
	}
}

// A server that goes silent ends its account's poll with a clear error
// after the idle timeout; another account, polled meanwhile, collects its
// mail.
func TestCollectIMAPSilentServerOtherAccountsCarryOn(t *testing.T) {
	silent := imapHostile(t, func(tag, cmd string, w net.Conn) bool {
		if tag == "" {
			io.WriteString(w, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n")
		}
		return true // and answer nothing
	})
	msg := "From: a@example.org\r\nSubject: hello\r\n\r\nbody\r\n"
	good := imapGood(t, msg)
	c, svc := testCollector(t, 1<<20)
	var accounts []config.FetchAccount
	for name, addr := range map[string]string{"silent": silent, "good": good} {
		accounts = append(accounts, testAccount(t, name, "imaps", addr).cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); c.wg.Wait() }()
	start := time.Now()
	c.Apply(ctx, accounts)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := map[string]status.FetchAccount{}
		for _, s := range c.Status() {
			st[s.Name] = s
		}
		if st["silent"].LastError != "" && st["good"].Collected == 1 {
			t.Logf("silent: %s, after %v", st["silent"].LastError, time.Since(start).Round(time.Millisecond))
			if !strings.Contains(st["silent"].LastError, "the server was silent for 300ms") {
				t.Fatalf("silent account: %q", st["silent"].LastError)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("accounts: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := queued(t, svc); len(got) != 1 || !strings.HasSuffix(got[0], msg) {
		t.Fatalf("queued %q", got)
	}
}

// Messages are streamed and committed in chunks of about
// imapCommitBytes, all of them, over STARTTLS too.
func TestCollectIMAPStreamsInChunks(t *testing.T) {
	var msgs []string
	for i := range 5 {
		msgs = append(msgs, fmt.Sprintf("Subject: %d\r\n\r\n%s", i, strings.Repeat(strings.Repeat("x", 78)+"\r\n", 3<<20/80)))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := imapMem(t, l, testTLS(t), msgs...)
	c, svc := testCollector(t, 25<<20)
	a := testAccount(t, "imap", "imap", addr)
	if err := c.pollSafely(context.Background(), a, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	got := queued(t, svc)
	if len(got) != len(msgs) {
		t.Fatalf("queued %d of %d", len(got), len(msgs))
	}
	for _, m := range msgs {
		found := false
		for _, g := range got {
			found = found || strings.HasSuffix(g, m)
		}
		if !found {
			t.Fatalf("%.20q not queued whole", m)
		}
	}
	if a.st.Collected != 5 || a.st.Deleted != 5 || a.st.OnServer != 0 {
		t.Fatalf("status %+v", a.st)
	}
}

// Collected mail has its line ends normalised like received mail: a bare
// CR or LF ending a "line" of a dot would end the message early for a
// server that reads it so, and what follows would be a second message.
func TestCollectedMailLineEndsNormalised(t *testing.T) {
	c, svc := testCollector(t, 1<<20)
	a := testAccount(t, "pop", "pop3s", "127.0.0.1:1")
	bodies := [][]byte{
		[]byte("Subject: cr\r\n\r\nhello\r.\rMAIL FROM:<x@evil.example>\r\n"),
		[]byte("Subject: lf\n\nhello\n.\nMAIL FROM:<x@evil.example>\n"),
		[]byte("Subject: clean\r\n\r\nhello\r\n"),
	}
	if err := c.commitMany(a.cfg, []string{"1", "2", "3"}, bodies, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	got := queued(t, svc)
	if len(got) != 3 {
		t.Fatalf("queued %d", len(got))
	}
	for _, m := range got {
		if strings.Contains(strings.ReplaceAll(m, "\r\n", ""), "\r") || strings.Contains(strings.ReplaceAll(m, "\r\n", ""), "\n") {
			t.Errorf("queued with a bare line end: %q", m)
		}
	}
	want := map[string]bool{
		"Subject: cr\r\n\r\nhello\r\n.\r\nMAIL FROM:<x@evil.example>\r\n": true,
		"Subject: lf\r\n\r\nhello\r\n.\r\nMAIL FROM:<x@evil.example>\r\n": true,
		"Subject: clean\r\n\r\nhello\r\n":                                 true,
	}
	for _, m := range got {
		_, body, _ := strings.Cut(m, ";\r\n\t") // after the Received header's date line
		_, body, _ = strings.Cut(body, "\r\n")
		if !want[body] {
			t.Errorf("queued %q", m)
		}
	}
}
