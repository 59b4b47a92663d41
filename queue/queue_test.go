package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/mailmsg"
)

// fakeTransport records what it delivers; reply decides per recipient.
type fakeTransport struct {
	mu      sync.Mutex
	got     map[string]string // "id to" -> data
	opens   int
	openErr error
	reply   func(rcpt string) Result
}

func (f *fakeTransport) Open(ctx context.Context, route Route) (Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opens++
	if f.openErr != nil {
		return nil, f.openErr
	}
	return fakeSession{f}, nil
}

type fakeSession struct{ f *fakeTransport }

func (s fakeSession) Send(ctx context.Context, m *Outgoing) ([]Result, error) {
	b, err := io.ReadAll(m.Data)
	if err != nil {
		return nil, err
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	var res []Result
	for _, r := range m.Rcpts {
		x := Result{OK: true, Text: "250 ok"}
		if s.f.reply != nil {
			x = s.f.reply(r)
		}
		if x.OK {
			s.f.got[m.ID+" "+r] = string(b)
		}
		res = append(res, x)
	}
	return res, nil
}
func (s fakeSession) Close() error { return nil }

func (f *fakeTransport) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func enqueue(t *testing.T, s *Store, q *Queue, from string, data string, rcpts ...string) string {
	t.Helper()
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, data)
	env := &Envelope{From: from, Arrived: time.Now()}
	for _, r := range rcpts {
		env.Rcpts = append(env.Rcpts, Rcpt{Addr: r, Route: Route{Kind: MX, Name: r[strings.IndexByte(r, '@')+1:]}})
	}
	if err := w.Commit(env); err != nil {
		t.Fatal(err)
	}
	if q != nil {
		q.Add(*env)
	}
	return env.ID
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var fastPolicy = Policy{Lifetime: time.Hour, MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Concurrency: 4, Linger: 10 * time.Millisecond}

func TestDeliverAndRemove(t *testing.T) {
	dir := t.TempDir()
	s, loaded, probs := OpenStore(dir)
	if len(loaded) != 0 || len(probs) != 0 {
		t.Fatal(loaded, probs)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := &fakeTransport{got: map[string]string{}}
	q := New(ctx, s, nil, tr, fastPolicy, func(Notice) error { return nil }, testLog(t))
	t.Cleanup(func() { cancel(); q.Wait() }) // before the temporary directory goes
	var ids []string
	for i := range 50 {
		ids = append(ids, enqueue(t, s, q, "a@x.example", fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i), "u@one.example", "v@two.example"))
	}
	waitFor(t, "100 deliveries", func() bool { return tr.count() == 100 })
	waitFor(t, "empty queue", func() bool { return q.Stats().Depth == 0 })
	if got := tr.got[ids[7]+" v@two.example"]; got != "Subject: 7\r\n\r\nbody\r\n" {
		t.Fatalf("data delivered: %q", got)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "msg"))
	if len(ents) != 0 {
		t.Fatalf("%d files left in msg/", len(ents))
	}
	if c := q.Stats().Counters; c.Received != 50 || c.Delivered != 100 {
		t.Fatalf("counters %+v", c)
	}
}

func TestRetryBounceAndExpire(t *testing.T) {
	dir := t.TempDir()
	s, _, _ := OpenStore(dir)
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	tries := map[string]int{}
	tr := &fakeTransport{got: map[string]string{}, reply: func(r string) Result {
		mu.Lock()
		defer mu.Unlock()
		tries[r]++
		switch {
		case strings.HasPrefix(r, "later"): // fails twice, then works
			if tries[r] < 3 {
				return Result{Text: "451 try again", Status: "4.3.0"}
			}
			return Result{OK: true}
		case strings.HasPrefix(r, "nouser"):
			return Result{Permanent: true, Text: "550 no such user", Status: "5.1.1"}
		default: // never works
			return Result{Text: "421 busy", Status: "4.4.2"}
		}
	}}
	var notices []Notice
	var nmu sync.Mutex
	pol := fastPolicy
	pol.Lifetime = 300 * time.Millisecond
	q := New(ctx, s, nil, tr, pol, func(n Notice) error {
		nmu.Lock()
		defer nmu.Unlock()
		notices = append(notices, n)
		return nil
	}, testLog(t))
	t.Cleanup(func() { cancel(); q.Wait() }) // before the temporary directory goes
	enqueue(t, s, q, "sender@x.example", "m\r\n", "later@a.example", "nouser@b.example", "never@c.example")
	waitFor(t, "queue empty", func() bool { return q.Stats().Depth == 0 })
	nmu.Lock()
	defer nmu.Unlock()
	if len(notices) != 2 {
		t.Fatalf("notices %+v", notices)
	}
	if n := notices[0]; len(n.Rcpts) != 1 || n.Envelope.Rcpts[n.Rcpts[0]].Addr != "nouser@b.example" || !strings.Contains(n.State.Rcpts[n.Rcpts[0]].LastError, "5.1.1") {
		t.Fatalf("first notice %+v", n)
	}
	if n := notices[1]; len(n.Rcpts) != 1 || n.Envelope.Rcpts[n.Rcpts[0]].Addr != "never@c.example" || !strings.Contains(n.State.Rcpts[n.Rcpts[0]].LastError, "expired") {
		t.Fatalf("second notice %+v", n)
	}
	if tr.count() != 1 {
		t.Fatalf("delivered %v", tr.got)
	}
	if tries["later@a.example"] != 3 {
		t.Fatalf("later tried %d times", tries["later@a.example"])
	}
}

func TestNullSenderGetsNoNotice(t *testing.T) {
	s, _, _ := OpenStore(t.TempDir())
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := &fakeTransport{got: map[string]string{}, reply: func(string) Result { return Result{Permanent: true, Text: "550 no"} }}
	called := false
	q := New(ctx, s, nil, tr, fastPolicy, func(Notice) error { called = true; return nil }, testLog(t))
	t.Cleanup(func() { cancel(); q.Wait() }) // before the temporary directory goes
	enqueue(t, s, q, "", "bounce\r\n", "x@a.example")
	waitFor(t, "queue empty", func() bool { return q.Stats().Depth == 0 })
	if called {
		t.Fatal("a bounce of a bounce was generated")
	}
}

func TestRecoveryAfterCrash(t *testing.T) {
	dir := t.TempDir()
	s, _, _ := OpenStore(dir)
	// Three accepted messages and one that never got its 250.
	a := enqueue(t, s, nil, "a@x.example", "one\r\n", "u@one.example")
	b := enqueue(t, s, nil, "a@x.example", "two\r\n", "u@one.example", "v@two.example")
	enqueue(t, s, nil, "a@x.example", "three\r\n", "u@one.example")
	w, _ := s.Create()
	io.WriteString(w, "half a mess")
	// b's first recipient was delivered before the crash.
	st := State{Rcpts: []RcptState{{Status: Sent}, {}}}
	if err := s.SaveState(b, &st); err != nil {
		t.Fatal(err)
	}
	// A stray state file of a message already removed.
	os.WriteFile(filepath.Join(dir, "state", "GONE"), []byte("{}"), 0o600)
	// A damaged message file.
	os.WriteFile(filepath.Join(dir, "msg", "BROKEN"), []byte("data without trailer"), 0o600)
	s.Close() // the process dies here; nothing else is written

	s2, loaded, probs := OpenStore(dir)
	defer s2.Close()
	if len(loaded) != 3 {
		t.Fatalf("loaded %d messages, want 3", len(loaded))
	}
	if len(probs) != 1 || !strings.Contains(probs[0].Error(), "BROKEN") {
		t.Fatalf("problems %v", probs)
	}
	if _, err := os.Stat(filepath.Join(dir, "corrupt", "BROKEN")); err != nil {
		t.Fatal("damaged file not moved to corrupt/")
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Fatal("partial message left in tmp/")
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "GONE")); err == nil {
		t.Fatal("orphan state kept")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := &fakeTransport{got: map[string]string{}}
	q := New(ctx, s2, loaded, tr, fastPolicy, func(Notice) error { return nil }, testLog(t))
	t.Cleanup(func() { cancel(); q.Wait() }) // before the temporary directory goes
	waitFor(t, "queue empty", func() bool { return q.Stats().Depth == 0 })
	if tr.count() != 3 {
		t.Fatalf("delivered %v", tr.got)
	}
	if _, dup := tr.got[b+" u@one.example"]; dup {
		t.Fatal("recipient delivered before the crash was delivered again")
	}
	if tr.got[a+" u@one.example"] != "one\r\n" {
		t.Fatalf("got %q", tr.got[a+" u@one.example"])
	}
}

func TestHoldReleaseDeleteFlush(t *testing.T) {
	s, _, _ := OpenStore(t.TempDir())
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	up := false
	tr := &fakeTransport{got: map[string]string{}, reply: func(string) Result {
		mu.Lock()
		defer mu.Unlock()
		if up {
			return Result{OK: true}
		}
		return Result{Text: "451 down"}
	}}
	pol := fastPolicy
	pol.MinBackoff, pol.MaxBackoff = time.Hour, time.Hour
	q := New(ctx, s, nil, tr, pol, func(Notice) error { return nil }, testLog(t))
	t.Cleanup(func() { cancel(); q.Wait() }) // before the temporary directory goes
	a := enqueue(t, s, q, "a@x.example", "a\r\n", "u@one.example")
	b := enqueue(t, s, q, "a@x.example", "b\r\n", "u@one.example")
	c := enqueue(t, s, q, "a@x.example", "c\r\n", "u@one.example")
	waitFor(t, "three deferred", func() bool { return q.Stats().Deferred == 3 })
	if err := q.Hold(a); err != nil {
		t.Fatal(err)
	}
	if err := q.Delete(b); err != nil {
		t.Fatal(err)
	}
	if err := q.Delete(b); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	mu.Lock()
	up = true
	mu.Unlock()
	if n := q.Flush(); n != 1 {
		t.Fatalf("flushed %d, want 1 (one held, one deleted)", n)
	}
	waitFor(t, "c delivered", func() bool { return tr.count() == 1 })
	if _, ok := tr.got[c+" u@one.example"]; !ok {
		t.Fatal(tr.got)
	}
	in, err := q.Get(a)
	if err != nil || !in.Hold {
		t.Fatalf("held message: %+v %v", in, err)
	}
	if err := q.Release(a); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "queue empty", func() bool { return q.Stats().Depth == 0 })
	if tr.count() != 2 {
		t.Fatal(tr.got)
	}
}

func TestDeadDestinationDefersAllAtOnce(t *testing.T) {
	s, _, _ := OpenStore(t.TempDir())
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := &fakeTransport{got: map[string]string{}, openErr: errors.New("connection refused")}
	pol := fastPolicy
	pol.MinBackoff, pol.MaxBackoff, pol.Concurrency = time.Hour, time.Hour, 1
	q := New(ctx, s, nil, tr, pol, func(Notice) error { return nil }, testLog(t))
	t.Cleanup(func() { cancel(); q.Wait() }) // before the temporary directory goes
	for range 20 {
		enqueue(t, s, q, "a@x.example", "m\r\n", "u@down.example")
	}
	waitFor(t, "all deferred", func() bool { return q.Stats().Deferred == 20 })
	if tr.opens > 2 {
		t.Fatalf("%d connection attempts to a dead destination for 20 messages", tr.opens)
	}
	for _, in := range q.List() {
		if !strings.Contains(in.Error, "connection refused") {
			t.Fatalf("last error %q", in.Error)
		}
	}
}

func TestBackoff(t *testing.T) {
	p := Policy{MinBackoff: 5 * time.Minute, MaxBackoff: time.Hour}
	want := []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 40 * time.Minute, time.Hour, time.Hour}
	for i, w := range want {
		if got := backoff(p, i+1); got != w {
			t.Errorf("attempt %d: %s, want %s", i+1, got, w)
		}
	}
}

func FuzzDecodeTrailer(f *testing.F) {
	f.Add([]byte("data{\"id\":\"X\",\"rcpts\":[{\"addr\":\"a@b\"}],\"size\":4}\x00\x00\x00\x2dGHQ1"))
	f.Add([]byte("GHQ1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := DecodeTrailer(strings.NewReader(string(b)), int64(len(b)))
		if err == nil && (env.Size < 0 || env.Size > int64(len(b)) || len(env.Rcpts) == 0) {
			t.Fatalf("accepted an inconsistent envelope %+v", env)
		}
	})
}

func BenchmarkCommit(b *testing.B) {
	s, _, _ := OpenStore(b.TempDir())
	defer s.Close()
	data := []byte(strings.Repeat("x", 4000) + "\r\n")
	b.SetBytes(int64(len(data)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w, err := s.Create()
			if err != nil {
				b.Fatal(err)
			}
			w.Write(data)
			if err := w.Commit(&Envelope{From: "a@b", Rcpts: []Rcpt{{Addr: "c@d", Route: Route{Kind: MX, Name: "d"}}}}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestDelayWarningOnce(t *testing.T) {
	s, _, _ := OpenStore(t.TempDir())
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := &fakeTransport{got: map[string]string{}, reply: func(string) Result { return Result{Text: "451 later", Status: "4.3.0"} }}
	var mu sync.Mutex
	var notices []Notice
	pol := fastPolicy
	pol.DelayWarning = 30 * time.Millisecond
	q := New(ctx, s, nil, tr, pol, func(n Notice) error {
		mu.Lock()
		defer mu.Unlock()
		notices = append(notices, n)
		return nil
	}, testLog(t))
	t.Cleanup(func() { cancel(); q.Wait() }) // before the temporary directory goes
	id := enqueue(t, s, q, "sender@x.example", "m\r\n", "slow@a.example")
	waitFor(t, "a delay warning", func() bool { mu.Lock(); defer mu.Unlock(); return len(notices) > 0 })
	time.Sleep(200 * time.Millisecond) // several more rounds
	mu.Lock()
	defer mu.Unlock()
	if len(notices) != 1 || !notices[0].Delayed || notices[0].Envelope.ID != id {
		t.Fatalf("notices %+v", notices)
	}
	if in, _ := q.Get(id); in.Status[0] != "pending" {
		t.Fatalf("message after the warning: %+v", in)
	}
}

// A collected message the next hop refuses for good is held for the
// operator, not bounced to its Return-Path (backscatter); release sends it
// again.
func TestCollectedMessageIsHeldNotBounced(t *testing.T) {
	s, _, _ := OpenStore(t.TempDir())
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	refuse := true
	tr := &fakeTransport{got: map[string]string{}, reply: func(string) Result {
		mu.Lock()
		defer mu.Unlock()
		if refuse {
			return Result{Permanent: true, Text: "550 no such user", Status: "5.1.1"}
		}
		return Result{OK: true, Text: "250 ok"}
	}}
	notices := 0
	q := New(ctx, s, nil, tr, fastPolicy, func(Notice) error { notices++; return nil }, testLog(t))
	t.Cleanup(func() { cancel(); q.Wait() }) // before the temporary directory goes
	env := enqueueCollected(t, s, q, "1")
	if notices != 0 {
		t.Fatalf("%d DSNs to the Return-Path of a collected message", notices)
	}
	mu.Lock()
	refuse = false
	mu.Unlock()
	if err := q.Release(env.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivered after release", func() bool { return tr.count() == 1 && q.Stats().Depth == 0 })
}

// A destination that comes back is tried again soon, however many
// messages wait for it and however short the backoff: deferring the jobs
// dispatched meanwhile with the old error kept every worker busy
// deferring, and no one connected, for minutes.
func TestDestinationBackIsTriedAgain(t *testing.T) {
	s, _, _ := OpenStore(t.TempDir())
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := &fakeTransport{got: map[string]string{}, openErr: errors.New("connection refused")}
	pol := fastPolicy
	pol.MinBackoff, pol.MaxBackoff, pol.Concurrency = 5*time.Millisecond, 10*time.Millisecond, 20
	q := New(ctx, s, nil, tr, pol, func(Notice) error { return nil }, testLog(t))
	t.Cleanup(func() { cancel(); q.Wait() }) // before the temporary directory goes
	const n = 300
	for range n {
		enqueue(t, s, q, "a@x.example", "m\r\n", "u@back.example")
	}
	waitFor(t, "the destination tried a few times", func() bool { tr.mu.Lock(); defer tr.mu.Unlock(); return tr.opens > 5 })
	tr.mu.Lock()
	tr.openErr = nil // the destination is back
	tr.mu.Unlock()
	waitFor(t, "all delivered once the destination is back", func() bool { return tr.count() == n })
}

// Past its lifetime a collected message is held, not expired and bounced,
// and it gets no delay warning either.
func TestCollectedMessagePastLifetimeIsHeld(t *testing.T) {
	s, _, _ := OpenStore(t.TempDir())
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := &fakeTransport{got: map[string]string{}, reply: func(string) Result { return Result{Text: "451 later", Status: "4.3.0"} }}
	notices := 0
	pol := fastPolicy
	pol.Lifetime, pol.DelayWarning = 100*time.Millisecond, 10*time.Millisecond
	q := New(ctx, s, nil, tr, pol, func(Notice) error { notices++; return nil }, testLog(t))
	t.Cleanup(func() { cancel(); q.Wait() }) // before the temporary directory goes
	env := enqueueCollected(t, s, q, "2")
	if notices != 0 {
		t.Errorf("%d DSNs (bounce or delay warning) for a collected message", notices)
	}
	if in, _ := q.Get(env.ID); in.Status[0] != "pending" {
		t.Errorf("status %q, want pending (held)", in.Status[0])
	}
}

// enqueueCollected queues a collected message (a forged Return-Path) and
// waits until the queue holds it for the operator.
func enqueueCollected(t *testing.T, s *Store, q *Queue, key string) *Envelope {
	t.Helper()
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Return-Path: <forged@victim.example>\r\n\r\nhi\r\n")
	env := &Envelope{From: "forged@victim.example", Arrived: time.Now(), Source: "fetch:acct", Dedup: Dedup{Set: "acct", Key: key},
		Rcpts: []Rcpt{{Addr: "u@example.test", Route: Route{Kind: Domain, Name: "example.test"}}}}
	if err := w.Commit(env); err != nil {
		t.Fatal(err)
	}
	q.Add(*env)
	waitFor(t, "the collected message on hold", func() bool {
		in, err := q.Get(env.ID)
		return err == nil && in.Hold && !in.Active
	})
	return env
}

// Header fields known only after the data was on disk go out in front of
// it, and survive a restart with the envelope.
func TestPrependedHeadersGoOutFirst(t *testing.T) {
	dir := t.TempDir()
	s, _, _ := OpenStore(dir)
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: x\r\n\r\nbody\r\n")
	env := &Envelope{From: "a@x.example", Arrived: time.Now(), Prepend: "Authentication-Results: gw; spf=pass\r\n",
		Rcpts: []Rcpt{{Addr: "u@one.example", Route: Route{Kind: MX, Name: "one.example"}}}}
	if err := w.Commit(env); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, loaded, probs := OpenStore(dir)
	defer s.Close()
	if len(loaded) != 1 || len(probs) != 0 {
		t.Fatal(loaded, probs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := &fakeTransport{got: map[string]string{}}
	q := New(ctx, s, loaded, tr, fastPolicy, func(Notice) error { return nil }, testLog(t))
	t.Cleanup(func() { cancel(); q.Wait() })
	waitFor(t, "the delivery", func() bool { return tr.count() == 1 })
	if got := tr.got[env.ID+" u@one.example"]; got != "Authentication-Results: gw; spf=pass\r\nSubject: x\r\n\r\nbody\r\n" {
		t.Fatalf("delivered %q", got)
	}
}

// A quarantined message is held from the start, across a restart too, until
// released.
func TestQuarantinedMessageIsHeld(t *testing.T) {
	dir := t.TempDir()
	s, _, _ := OpenStore(dir)
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: x\r\n\r\nbody\r\n")
	env := &Envelope{From: "a@x.example", Arrived: time.Now(), Quarantine: "DMARC quarantine policy of x.example",
		Rcpts: []Rcpt{{Addr: "u@one.example", Route: Route{Kind: MX, Name: "one.example"}}}}
	if err := w.Commit(env); err != nil {
		t.Fatal(err)
	}
	s.Close() // a crash before the queue saw it: no state file yet
	s, loaded, _ := OpenStore(dir)
	defer s.Close()
	if len(loaded) != 1 || !loaded[0].State.Hold {
		t.Fatalf("loaded %+v", loaded)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := &fakeTransport{got: map[string]string{}}
	q := New(ctx, s, loaded, tr, fastPolicy, func(Notice) error { return nil }, testLog(t))
	t.Cleanup(func() { cancel(); q.Wait() })
	if st := q.Stats(); st.Held != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Nothing goes out until the release.
	if err := q.Release(env.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the delivery", func() bool { return tr.count() == 1 })
	// One added while running is held too.
	id := enqueueEnv(t, s, q, &Envelope{From: "b@x.example", Arrived: time.Now(), Quarantine: "test",
		Rcpts: []Rcpt{{Addr: "v@one.example", Route: Route{Kind: MX, Name: "one.example"}}}})
	if st := q.Stats(); st.Held != 1 {
		t.Fatalf("stats after add %+v", st)
	}
	if err := q.Release(id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second delivery", func() bool { return tr.count() == 2 })
}

func enqueueEnv(t *testing.T, s *Store, q *Queue, env *Envelope) string {
	t.Helper()
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: y\r\n\r\nbody\r\n")
	if err := w.Commit(env); err != nil {
		t.Fatal(err)
	}
	q.Add(*env)
	return env.ID
}

// The sender's NOTIFY decides which outcomes it hears of (RFC 3461 4.1):
// failures unless it asked otherwise; success only when the next hop did
// not offer DSN and so will not report it.
func TestNotifyDecidesNotices(t *testing.T) {
	bounce := Result{Permanent: true, Text: "550 no such user", Status: "5.1.1"}
	for _, tc := range []struct {
		notify  string
		reply   Result
		notices int
	}{
		{"", bounce, 1},
		{"NEVER", bounce, 0},
		{"DELAY", bounce, 0},
		{"SUCCESS,FAILURE", bounce, 1},
		{"", Result{OK: true, Text: "250 ok"}, 0},
		{"SUCCESS", Result{OK: true, Text: "250 ok"}, 1},            // relayed: the next hop has no DSN
		{"SUCCESS", Result{OK: true, Text: "250 ok", DSN: true}, 0}, // the next hop took the request
		{"FAILURE,DELAY", Result{OK: true, Text: "250 ok"}, 0},
	} {
		t.Run(fmt.Sprintf("%s/%s", tc.notify, tc.reply.Text), func(t *testing.T) {
			s, _, _ := OpenStore(t.TempDir())
			defer s.Close()
			ctx, cancel := context.WithCancel(context.Background())
			tr := &fakeTransport{got: map[string]string{}, reply: func(string) Result { return tc.reply }}
			var mu sync.Mutex
			var notices []Notice
			q := New(ctx, s, nil, tr, fastPolicy, func(n Notice) error {
				mu.Lock()
				defer mu.Unlock()
				notices = append(notices, n)
				return nil
			}, testLog(t))
			t.Cleanup(func() { cancel(); q.Wait() })
			id := enqueueEnv(t, s, q, &Envelope{From: "sender@x.example", Arrived: time.Now(),
				Rcpts: []Rcpt{{Addr: "u@a.example", Route: Route{Kind: MX, Name: "a.example"}, Notify: tc.notify}}})
			waitFor(t, "the message to leave the queue", func() bool { _, err := q.Get(id); return err != nil })
			mu.Lock()
			defer mu.Unlock()
			if len(notices) != tc.notices {
				t.Fatalf("%d notices, want %d: %+v", len(notices), tc.notices, notices)
			}
			if len(notices) == 1 {
				n := notices[0]
				want := Failed
				if tc.reply.OK {
					want = Sent
				}
				if n.Delayed || len(n.Rcpts) != 1 || n.State.Rcpts[0].Status != want {
					t.Fatalf("notice %+v, want one about a %q recipient", n, want)
				}
			}
		})
	}
}

func TestDelayedRcpts(t *testing.T) {
	arrived := time.Now()
	env := Envelope{Arrived: arrived, Rcpts: []Rcpt{{Addr: "a@x"}, {Addr: "b@x", Notify: "DELAY"}, {Addr: "c@x", Notify: "FAILURE"}, {Addr: "d@x", Notify: "NEVER"}}}
	all := []int{0, 1, 2, 3}
	for _, tc := range []struct {
		warning time.Duration
		age     time.Duration
		want    string
	}{
		{0, time.Hour, "[]"},                   // no delay warnings, DELAY waits for delayNotice
		{0, delayNotice, "[1]"},                // then the one that asked
		{time.Hour, 30 * time.Minute, "[]"},    // too early for everyone
		{time.Hour, time.Hour, "[0 1]"},        // the relay's warning: those without NOTIFY, and DELAY
		{time.Hour, 10 * delayNotice, "[0 1]"}, // never FAILURE-only or NEVER
	} {
		got := fmt.Sprint(delayedRcpts(env, all, tc.warning, arrived.Add(tc.age)))
		if got == "[]" && tc.want == "[]" || got == tc.want {
			continue
		}
		t.Errorf("delay_warning %s, age %s: %s, want %s", tc.warning, tc.age, got, tc.want)
	}
}

// What the sender asked for with SMTPUTF8 and DSN lives in the envelope
// on disk: a restart (or kill -9) after the 250 keeps it.
func TestExtensionsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	s, _, _ := OpenStore(dir)
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: y\r\n\r\nbody\r\n")
	env := &Envelope{From: "jörg@bücher.example", Arrived: time.Now(), SMTPUTF8: true, UTF8Header: true, Ret: "HDRS", EnvID: "QQ314159",
		Rcpts: []Rcpt{{Addr: "müller@example.test", Route: Route{Kind: MX, Name: "example.test"}, Notify: "SUCCESS,DELAY",
			ORCPT: mailmsg.OrigRcpt{Type: "utf-8", Addr: "müller@example.test"}}}}
	if err := w.Commit(env); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, loaded, probs := OpenStore(dir)
	defer s2.Close()
	if len(probs) != 0 || len(loaded) != 1 {
		t.Fatalf("loaded %v, problems %v", loaded, probs)
	}
	got := loaded[0].Envelope
	if got.From != env.From || !got.SMTPUTF8 || !got.UTF8Header || got.Ret != "HDRS" || got.EnvID != "QQ314159" ||
		fmt.Sprint(got.Rcpts) != fmt.Sprint(env.Rcpts) {
		t.Fatalf("after a restart: %+v\nwant %+v", got, *env)
	}
}
