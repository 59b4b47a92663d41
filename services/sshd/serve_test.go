package sshd

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"gatehouse/config"
	"gatehouse/control"
	"gatehouse/test/testlog"
)

// fakePID1 stands in for PID 1 behind the control socket: it records what
// the shell asks of it.
type fakePID1 struct {
	mu    sync.Mutex
	calls []string
}

func (b *fakePID1) record(call string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, call)
}

func (b *fakePID1) Calls() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.calls...)
}

func (b *fakePID1) Status() control.Status {
	b.record("status")
	return control.Status{Mode: "test", Version: "test"}
}
func (b *fakePID1) Logs(service string, n int) ([]string, error) {
	b.record("logs " + service)
	return nil, nil
}
func (b *fakePID1) Shutdown(action string) error { b.record(action); return nil }
func (b *fakePID1) Reload() error                { b.record("reload"); return nil }
func (b *fakePID1) Apply(file string, d time.Duration) error {
	b.record("apply")
	return nil
}
func (b *fakePID1) Confirm() error { b.record("confirm"); return nil }

// testShell is the SSH service on a loopback port, with a fake PID 1 and
// a firewall that only records bans.
type testShell struct {
	s     *server
	addr  string
	pid1  *fakePID1
	log   *testlog.Buffer
	mu    sync.Mutex
	fwBan []netip.Addr
}

// newKey makes a client key and its authorized_keys line, options first.
func newKey(t *testing.T, options string) (ssh.Signer, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " test@example.com"
	if options != "" {
		line = options + " " + line
	}
	return signer, line
}

// startShell serves the config yaml (its ssh.allow must let 127.0.0.1 in),
// with the changes tweaks make to the server before it listens.
func startShell(t *testing.T, yaml string, tweaks ...func(*server)) *testShell {
	t.Helper()
	c, _, err := config.Parse("f.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	_, hk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(hk)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testShell{pid1: &fakePID1{}, log: &testlog.Buffer{}}
	ts.s = newServer(context.Background(), c, signer, Options{Log: slog.New(slog.NewTextHandler(ts.log, nil)), Control: "/nonexistent/control.sock"})
	ts.s.backend = ts.pid1
	ts.s.kernelBan = func(a netip.Addr, _ time.Duration) error {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		ts.fwBan = append(ts.fwBan, a)
		return nil
	}
	for _, tweak := range tweaks {
		tweak(ts.s)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { ts.s.serve(c) })
		}
	})
	ts.addr = l.Addr().String()
	return ts
}

// dial logs in as admin, offering the keys in order as OpenSSH's client
// does: each asked about first, the first one accepted signs.
func (ts *testShell) dial(keys ...ssh.Signer) (*ssh.Client, error) {
	return ssh.Dial("tcp", ts.addr, &ssh.ClientConfig{
		User:            "admin",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(keys...)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         5 * time.Second,
	})
}

// run logs in with keys and runs cmd; it returns the output.
func (ts *testShell) run(keys []ssh.Signer, cmd string) (string, error) {
	c, err := ts.dial(keys...)
	if err != nil {
		return "", err
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	out, err := sess.CombinedOutput(cmd)
	return string(out), err
}

// waitLog waits until the log has n lines with msg: the server finishes a
// connection after the client has given up on it.
func (ts *testShell) waitLog(t *testing.T, msg string, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); strings.Count(ts.log.String(), msg) < n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d lines with %s in the log, want %d:\n%s", strings.Count(ts.log.String(), msg), msg, n, ts.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (ts *testShell) banned() bool {
	ok, _ := ts.s.current().gate.Admit(netip.MustParseAddr("127.0.0.1"))
	return !ok
}

func shellConfig(after int, keys ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ssh:\n  allow: [127.0.0.1]\n  ban: {after: %d, for: 1h}\n  authorized_keys:\n", after)
	for _, k := range keys {
		fmt.Fprintf(&b, "    - %q\n", k)
	}
	return b.String()
}

// An administrator whose agent holds several keys offers the wrong ones
// first, every time: the keys refused on the way to the right one are no
// failures, and OpenSSH's default of 6 tries leaves room for them.
func TestOfferedKeysAreNoFailures(t *testing.T) {
	for _, wrong := range []int{2, 5} {
		t.Run(fmt.Sprintf("%d wrong keys first", wrong), func(t *testing.T) {
			right, line := newKey(t, "")
			var keys []ssh.Signer
			for range wrong {
				k, _ := newKey(t, "")
				keys = append(keys, k)
			}
			keys = append(keys, right)
			ts := startShell(t, shellConfig(3, line))
			for i := range 10 {
				if out, err := ts.run(keys, "status"); err != nil {
					t.Fatalf("login %d: %v\n%s\n%s", i+1, err, out, ts.log.String())
				}
			}
			if ts.banned() {
				t.Error("the administrator is banned")
			}
		})
	}
}

// A connection that offers only keys the shell does not know and ends
// without logging in is one failure, however many keys it offered; a
// login clears the count.
func TestFailedConnectionsBan(t *testing.T) {
	right, line := newKey(t, "")
	w1, _ := newKey(t, "")
	w2, _ := newKey(t, "")
	w3, _ := newKey(t, "")
	ts := startShell(t, shellConfig(3, line))
	failures := 0
	wrong := func(n int) {
		t.Helper()
		for range n {
			if c, err := ts.dial(w1, w2, w3); err == nil {
				c.Close()
				t.Fatal("logged in with wrong keys")
			}
			failures++
			ts.waitLog(t, `msg="ssh authentication failed"`, failures)
		}
	}
	wrong(2)
	if ts.banned() {
		t.Fatal("banned after two failed connections (each offering three keys), want the third")
	}
	if _, err := ts.run([]ssh.Signer{right}, "status"); err != nil {
		t.Fatalf("login: %v", err)
	}
	wrong(2)
	if ts.banned() {
		t.Fatal("banned after a login and two failed connections: the login did not clear the count")
	}
	wrong(1)
	if !ts.banned() {
		t.Fatalf("not banned after three failed connections in a row\n%s", ts.log.String())
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.fwBan) != 1 {
		t.Errorf("bans put into the firewall: %v, want one", ts.fwBan)
	}
	if _, err := ts.dial(right); err == nil {
		t.Error("a banned source logged in")
	}
}

type fakeMeta struct{ ssh.ConnMetadata }

func (fakeMeta) User() string { return "admin" }

// What one connection adds to its source's count, as fail2ban reads
// OpenSSH's log: refused keys are not failures one by one, a connection
// that tried keys and ended without logging in is one, every password or
// keyboard-interactive attempt is one, a scanner that never tried is none.
func TestLoginAttemptCounts(t *testing.T) {
	refused := errors.New("unknown key")
	for _, tc := range []struct {
		name  string
		run   func(l *loginAttempt)
		login bool
		want  int
	}{
		{"no attempt", func(l *loginAttempt) { l.logged(fakeMeta{}, "none", ssh.ErrNoAuth) }, false, 0},
		{"keys refused", func(l *loginAttempt) {
			l.logged(fakeMeta{}, "none", ssh.ErrNoAuth)
			for range 5 {
				l.triedKey = true
				l.logged(fakeMeta{}, "publickey", refused)
			}
		}, false, 1},
		{"key accepted, never signed", func(l *loginAttempt) { l.triedKey = true }, false, 1},
		{"keys refused, then one accepted", func(l *loginAttempt) {
			l.triedKey = true
			l.logged(fakeMeta{}, "publickey", refused)
			l.logged(fakeMeta{}, "publickey", nil)
		}, true, 0},
		{"passwords", func(l *loginAttempt) {
			for range 3 {
				l.logged(fakeMeta{}, "password", errors.New("ssh: password auth not configured"))
			}
			l.logged(fakeMeta{}, "keyboard-interactive", errors.New("ssh: keyboard-interactive auth not configured"))
		}, false, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startShell(t, shellConfig(100))
			src := netip.MustParseAddr("127.0.0.1")
			l := &loginAttempt{s: ts.s, gate: ts.s.current().gate, src: src}
			tc.run(l)
			if tc.login {
				l.gate.Succeeded(src)
			} else {
				l.ended()
			}
			if got := ts.s.bans.Failures(src); got != tc.want {
				t.Errorf("%d failures counted, want %d", got, tc.want)
			}
		})
	}
}

// A login that leaves its shell alone for the idle timeout is closed; one
// that keeps typing is not.
func TestIdleLoginIsClosed(t *testing.T) {
	const idle = time.Second
	k, line := newKey(t, "")
	ts := startShell(t, shellConfig(3, line), func(s *server) { s.current().idle = idle })
	c, err := ts.dial(k)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	closed := make(chan error, 1)
	go func() { closed <- c.Wait() }()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	sess.Stdout, sess.Stderr = io.Discard, io.Discard
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	for range 30 { // three times the idle timeout, typing
		if _, err := fmt.Fprintln(stdin, "help"); err != nil {
			t.Fatalf("closed while in use: %v", err)
		}
		time.Sleep(idle / 10)
	}
	select {
	case err := <-closed:
		t.Fatalf("closed while in use: %v\n%s", err, ts.log.String())
	default:
	}
	start := time.Now()
	select {
	case <-closed:
		t.Logf("closed %v after the last command", time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * idle):
		t.Fatal("an idle login was not closed")
	}
	ts.waitLog(t, `msg="ssh login closed after idle timeout"`, 1)
}

// from= restricts where a key may log in from; a key listed again with
// another from= gets in from either place, as with OpenSSH.
func TestKeyFromOption(t *testing.T) {
	elsewhere, elsewhereLine := newKey(t, `from="10.99.0.0/16"`)
	here, hereLine := newKey(t, `from="10.99.0.0/16,127.0.0.0/8,!127.0.0.2"`)
	twice, twiceLine1 := newKey(t, `from="10.99.0.0/16"`)
	twiceLine2 := `from="127.0.0.1" ` + strings.SplitN(twiceLine1, " ", 2)[1]
	ts := startShell(t, shellConfig(10, elsewhereLine, hereLine, twiceLine1, twiceLine2))
	if c, err := ts.dial(elsewhere); err == nil {
		c.Close()
		t.Error(`a key with from="10.99.0.0/16" logged in from 127.0.0.1`)
	}
	ts.waitLog(t, `msg="ssh key refused from this source by its from= option"`, 1)
	for name, k := range map[string]ssh.Signer{"from= matching": here, "listed twice": twice} {
		if _, err := ts.run([]ssh.Signer{k}, "status"); err != nil {
			t.Errorf("%s: %v\n%s", name, err, ts.log.String())
		}
	}
}

// command= runs that command whatever the client asks: another command,
// or the interactive shell.
func TestKeyForcedCommand(t *testing.T) {
	k, line := newKey(t, `restrict,command="status"`)
	ts := startShell(t, shellConfig(10, line))
	out, err := ts.run([]ssh.Signer{k}, "poweroff")
	if err != nil || !strings.Contains(out, "gatehouse") {
		t.Errorf("forced status instead of poweroff: %v\n%s", err, out)
	}
	c, err := ts.dial(k)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var shellOut bytes.Buffer
	sess.Stdout = &shellOut
	sess.Stdin = strings.NewReader("reboot\nqueue delete X\n")
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the shell request did not end after the forced command")
	}
	if calls := strings.Join(ts.pid1.Calls(), ","); calls != "status,status" {
		t.Errorf("PID 1 was asked for %s, want status twice and nothing else", calls)
	}
	if strings.Contains(shellOut.String(), "gatehouse> ") {
		t.Errorf("the forced command's key got a prompt:\n%s", shellOut.String())
	}
}

// restrict and no-pty refuse a terminal; pty after restrict gives it back.
func TestKeyNoPTY(t *testing.T) {
	for options, want := range map[string]bool{"": true, "restrict": false, "no-pty": false, "restrict,pty": true} {
		k, line := newKey(t, options)
		ts := startShell(t, shellConfig(10, line))
		c, err := ts.dial(k)
		if err != nil {
			t.Fatal(err)
		}
		sess, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		err = sess.RequestPty("xterm", 24, 80, ssh.TerminalModes{})
		if (err == nil) != want {
			t.Errorf("%q: pty request: %v, want granted %v", options, err, want)
		}
		c.Close()
	}
}
