package smtp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
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

	"gatehouse/config"
	"gatehouse/queue"
)

// heldTransport delivers nothing: collected mail stays in the queue,
// where the tests look at it.
type heldTransport struct{}

func (heldTransport) Open(context.Context, string) (queue.Session, error) {
	return nil, errors.New("delivery held for the test")
}

// testCollector is a relay with a store, a queue that delivers nothing
// and a collector that waits at most ioTimeout for a server.
func testCollector(t *testing.T, limit int64) (*collector, *Service) {
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
	cfg := &config.SMTP{Hostname: "relay.test", Limits: config.MailLimits{MessageSize: config.Size{Bytes: limit}}}
	svc := &Service{log: log, cfg: cfg, pol: &Policy{hostname: "relay.test", defaultRoute: "mx"}, store: store, q: q}
	c := newCollector(svc)
	c.ioTimeout = 300 * time.Millisecond
	return c, svc
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
	return &account{cfg: cfg, now: make(chan struct{}, 1), oversize: map[string]bool{}, st: AccountStatus{Name: name}}
}

// testTLS is a server certificate for the fake servers (the test
// accounts do not verify it).
func testTLS(t *testing.T) *tls.Config {
	t.Helper()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if _, err := ensureSelfSigned(cert, key, "mail.test"); err != nil {
		t.Fatal(err)
	}
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{kp}}
}

// queued returns the messages in the queue.
func queued(t *testing.T, svc *Service) []string {
	t.Helper()
	var out []string
	for _, in := range svc.q.List() {
		r, err := svc.store.Open(in.ID, in.Size)
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
func fetched(t *testing.T, svc *Service, account string) []string {
	t.Helper()
	m, err := svc.store.Fetched(account)
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
	l, err := tls.Listen("tcp", "127.0.0.1:0", testTLS(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, "+OK ready\r\n")
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					cmd, arg, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
					if !answer(strings.ToUpper(cmd), arg, c) {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
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
				io.WriteString(w, "+OK\r\n")
				for sentBig.Load() < hostileStream {
					n, err := w.Write(chunk)
					sentBig.Add(int64(n))
					if err != nil {
						return false
					}
				}
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
	alloc := allocated(func() { err = c.pollSafely(context.Background(), a, log) })
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
