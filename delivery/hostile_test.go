package delivery

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/config"
	"gatehouse/queue"
	"gatehouse/test/hostile"
	"gatehouse/test/testserver"
)

var testWait = replyWait{idle: 300 * time.Millisecond, total: 2 * time.Second}

func dialSMTP(t *testing.T, addr string) *smtpConn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := newSMTPConn(conn)
	c.wait, c.dataEnd = testWait, testWait
	return c
}

// A next hop that streams one endless reply line costs the relay one
// buffer, not the stream: the line is refused once it is too long.
func TestClientEndlessReplyLine(t *testing.T) {
	chunk := []byte(strings.Repeat("a", 64<<10))
	var sent atomic.Int64
	addr := testserver.Local(t, func(c net.Conn) { hostile.Send(c, "220 ", func() []byte { return chunk }, &sent) })
	c := dialSMTP(t, addr)
	var err error
	start := time.Now()
	alloc := hostile.Allocated(func() { err = c.greet("relay.test") })
	t.Logf("endless reply line: %v after %v; allocated %d KiB while the server sent %d KiB", err, time.Since(start).Round(time.Millisecond), alloc>>10, sent.Load()>>10)
	if err == nil || !strings.Contains(err.Error(), "longer than 2048 octets") {
		t.Fatalf("greet: %v, want a reply line too long", err)
	}
	if isReply(err) {
		t.Fatalf("%v is taken for the server's reply", err)
	}
	if alloc > 1<<20 {
		t.Fatalf("allocated %d KiB reading a hostile reply; want a bounded buffer", alloc>>10)
	}
}

// So does one whose reply never ends: well-formed lines, without end.
func TestClientEndlessMultilineReply(t *testing.T) {
	chunk := []byte(strings.Repeat("250-"+strings.Repeat("x", 60)+"\r\n", 1000))
	var sent atomic.Int64
	addr := testserver.Local(t, func(c net.Conn) { hostile.Send(c, "", func() []byte { return chunk }, &sent) })
	c := dialSMTP(t, addr)
	var err error
	alloc := hostile.Allocated(func() { _, err = c.expect(220) })
	t.Logf("endless multi-line reply: %v; allocated %d KiB while the server sent %d KiB", err, alloc>>10, sent.Load()>>10)
	if err == nil || !strings.Contains(err.Error(), "longer than 100 lines") {
		t.Fatalf("%v, want a reply with too many lines", err)
	}
	if alloc > 1<<20 {
		t.Fatalf("allocated %d KiB", alloc>>10)
	}
}

// A next hop that says nothing is given up after the idle timeout.
func TestClientSilentServer(t *testing.T) {
	addr := testserver.Local(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	c := dialSMTP(t, addr)
	start := time.Now()
	err := c.greet("relay.test")
	if err == nil || !strings.Contains(err.Error(), "silent for 300ms") {
		t.Fatalf("greet: %v, want silence noticed", err)
	}
	if d := time.Since(start); d > testWait.total {
		t.Fatalf("gave up after %v, want about %v", d, testWait.idle)
	}
}

// One that trickles its reply, a byte at a time within the idle timeout,
// is given up when the reply has taken its whole time.
func TestClientTricklingServer(t *testing.T) {
	addr := testserver.Local(t, func(c net.Conn) {
		for {
			for _, b := range []byte("220-trickle\r\n") {
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	})
	c := dialSMTP(t, addr)
	start := time.Now()
	err := c.greet("relay.test")
	if err == nil || !strings.Contains(err.Error(), "no complete reply within 2s") {
		t.Fatalf("greet: %v, want the reply's time exceeded", err)
	}
	if d := time.Since(start); d > testWait.total+time.Second {
		t.Fatalf("gave up after %v, want about %v", d, testWait.total)
	}
}

// The reply after the message gets its own, longer wait: the server may
// scan the message before it answers.
func TestClientSlowDataEnd(t *testing.T) {
	addr := testserver.Local(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		io.WriteString(c, "220 slow\r\n")
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch strings.ToUpper(strings.Fields(l + " x")[0]) {
			case "EHLO", "MAIL", "RCPT":
				io.WriteString(c, "250 ok\r\n")
			case "DATA":
				io.WriteString(c, "354 go\r\n")
			case ".":
				time.Sleep(600 * time.Millisecond) // past the command wait
				io.WriteString(c, "250 queued\r\n")
			}
		}
	})
	c := dialSMTP(t, addr)
	c.dataEnd = replyWait{idle: 2 * time.Second, total: 3 * time.Second}
	if err := c.greet("relay.test"); err != nil {
		t.Fatal(err)
	}
	tr, err := c.deliver("a@b.test", []string{"u@x.test"}, 5, strings.NewReader("x\r\n"))
	if err != nil || tr.data != nil || tr.reply != "queued" {
		t.Fatalf("%+v %v", tr, err)
	}
}

// sinkServer is a well-behaved next hop: it takes every message.
func sinkServer(t *testing.T, got chan<- string) string {
	return testserver.Local(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		io.WriteString(c, "220 sink ESMTP\r\n")
		var data strings.Builder
		in := false
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if in {
				if l == ".\r\n" {
					in = false
					got <- data.String()
					data.Reset()
					io.WriteString(c, "250 2.0.0 queued\r\n")
				} else {
					data.WriteString(l)
				}
				continue
			}
			switch strings.ToUpper(strings.Fields(l + " x")[0]) {
			case "EHLO", "MAIL", "RCPT", "RSET":
				io.WriteString(c, "250 ok\r\n")
			case "DATA":
				in = true
				io.WriteString(c, "354 go\r\n")
			case "QUIT":
				io.WriteString(c, "221 bye\r\n")
				return
			default:
				io.WriteString(c, "500 what\r\n")
			}
		}
	})
}

// nextHop writes 127.0.0.1:port as a next hop: [127.0.0.1]:port.
func nextHop(addr string) config.NextHop {
	h, p, _ := net.SplitHostPort(addr)
	nh, _ := config.ParseNextHop("[" + h + "]:" + p)
	return nh
}

// Hostile next hops defer the mail for their destinations with a clear
// error, and mail for other destinations goes on meanwhile.
func TestHostileNextHopDefersOnlyItsDestination(t *testing.T) {
	chunk := []byte(strings.Repeat("a", 64<<10))
	var sent atomic.Int64
	endless := testserver.Local(t, func(c net.Conn) { hostile.Send(c, "220 ", func() []byte { return chunk }, &sent) })
	silent := testserver.Local(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	got := make(chan string, 1)
	good := sinkServer(t, got)

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := &config.SMTP{Hostname: "relay.test", Domains: []config.MailDomain{
		{Name: "endless.test", NextHop: nextHop(endless), TLS: config.TLSNone},
		{Name: "silent.test", NextHop: nextHop(silent), TLS: config.TLSNone},
		{Name: "good.test", NextHop: nextHop(good), TLS: config.TLSNone},
	}}
	tr := &Transport{Log: log, Config: func() *config.SMTP { return cfg }, Dial: (&net.Dialer{}).DialContext, wait: testWait}
	store, _, probs := queue.OpenStore(t.TempDir())
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	defer store.Close()
	ctx, cancel := context.WithCancel(context.Background())
	q := queue.New(ctx, store, nil, tr, queue.Policy{Lifetime: time.Hour, MinBackoff: time.Hour, MaxBackoff: time.Hour, Concurrency: 3},
		func(queue.Notice) error { return nil }, log)
	defer func() { cancel(); q.Wait() }()
	add := func(domain string) string {
		w, err := store.Create()
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, "Subject: x\r\n\r\nbody\r\n")
		env := &queue.Envelope{From: "a@example.com", Arrived: time.Now(), Rcpts: []queue.Rcpt{{Addr: "u@" + domain, Route: queue.Route{Kind: queue.Domain, Name: domain}}}}
		if err := w.Commit(env); err != nil {
			t.Fatal(err)
		}
		q.Add(*env)
		return env.ID
	}
	hostile := map[string]string{add("endless.test"): "longer than 2048 octets", add("silent.test"): "silent for 300ms"}
	add("good.test")
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the good destination got nothing while the hostile ones were tried")
	}
	deadline := time.Now().Add(10 * time.Second)
	for id, reason := range hostile {
		for {
			in, err := q.Get(id)
			if err != nil {
				t.Fatal(err)
			}
			if in.Attempts > 0 && !in.Active {
				if in.Status[0] != "pending" || !strings.HasPrefix(in.Errors[0], "4.") || !strings.Contains(in.Errors[0], reason) {
					t.Fatalf("%s: %s %q, want deferred, %s", in.Rcpts[0], in.Status[0], in.Errors[0], reason)
				}
				t.Logf("%s deferred: %s", in.Rcpts[0], in.Errors[0])
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s was never settled: %+v", in.Rcpts[0], in)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
