package sockrpc

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/test/asuser"
	"gatehouse/test/testlog"
)

func TestMain(m *testing.M) {
	asuser.Main()
	os.Exit(m.Run())
}

type request struct {
	Verb string `json:"verb"`
	Arg  string `json:"arg,omitempty"`
}

type response struct {
	Error string `json:"error,omitempty"`
	Echo  string `json:"echo,omitempty"`
}

// answer echoes; "boom" panics.
func answer(r request) response {
	if r.Verb == "boom" {
		panic("boom")
	}
	if r.Verb == "fail" {
		return response{Error: "failed as asked", Echo: r.Arg}
	}
	return response{Echo: r.Verb + " " + r.Arg}
}

// serve runs a server in a fresh directory (made by Listen) until the test
// ends.
func serve(t *testing.T) (sock string, logs *testlog.Buffer) {
	t.Helper()
	sock = filepath.Join(asuser.Dir(t), "sub", "test.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	logs = &testlog.Buffer{}
	s := NewServer(answer, slog.New(slog.NewTextHandler(logs, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return sock, logs
}

// raw sends b as it is and decodes the answer.
func raw(t *testing.T, sock string, b string) response {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// Written aside: the server stops reading at its limit.
	go io.WriteString(c, b)
	var r response
	if err := json.NewDecoder(c).Decode(&r); err != nil {
		t.Fatalf("no answer: %v", err)
	}
	return r
}

func TestListenModes(t *testing.T) {
	sock, _ := serve(t)
	for path, want := range map[string]os.FileMode{filepath.Dir(sock): 0o700 | os.ModeDir, sock: 0o600 | os.ModeSocket} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
	}
	// A stale socket file from a previous run is replaced.
	l, err := Listen(sock)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	l.Close()
}

func TestCallAnswersAndErrors(t *testing.T) {
	sock, _ := serve(t)
	var r response
	if err := Call(sock, 5*time.Second, request{Verb: "echo", Arg: "x"}, &r); err != nil || r.Echo != "echo x" {
		t.Errorf("echo: %+v, %v", r, err)
	}
	r = response{}
	if err := Call(sock, 5*time.Second, request{Verb: "fail", Arg: "y"}, &r); err == nil || err.Error() != "failed as asked" || r.Echo != "y" {
		t.Errorf("failing request: %+v, %v; want its error, and the answer decoded", r, err)
	}
	err := Call(filepath.Join(t.TempDir(), "none.sock"), time.Second, request{}, &r)
	var de *DialError
	if !errors.As(err, &de) || !de.Missing() {
		t.Errorf("no socket: %v; want a DialError that says it is missing", err)
	}
}

// Bad JSON and oversized requests are answered with an error, and the
// server goes on serving; so is a request whose answer panics.
func TestBadRequestsAndPanics(t *testing.T) {
	sock, logs := serve(t)
	if r := raw(t, sock, "{not json\n"); !strings.HasPrefix(r.Error, "bad request: ") {
		t.Errorf("bad JSON answered %+v", r)
	}
	if r := raw(t, sock, `{"verb":"echo","arg":"`+strings.Repeat("a", 100<<10)+`"}`+"\n"); r.Echo != "" || !strings.Contains(r.Error, "64 KiB") {
		t.Errorf("oversized request answered %+v; want an error naming the limit", r)
	}
	if !strings.Contains(logs.String(), "request too large") {
		t.Errorf("the oversized request was not logged:\n%s", logs)
	}
	// Just under the limit is fine.
	if r := raw(t, sock, `{"verb":"echo","arg":"`+strings.Repeat("a", MaxRequest-100)+`"}`+"\n"); r.Error != "" {
		t.Errorf("request under the limit refused: %s", r.Error)
	}
	var r response
	if err := Call(sock, 5*time.Second, request{Verb: "boom"}, &r); err == nil || !strings.Contains(err.Error(), "internal error: boom") {
		t.Errorf("panicking request: %v; want an internal error", err)
	}
	if !strings.Contains(logs.String(), "request panicked") {
		t.Errorf("the panic was not logged:\n%s", logs)
	}
	if err := Call(sock, 5*time.Second, request{Verb: "echo"}, &r); err != nil {
		t.Errorf("after the panic: %v", err)
	}
}

// Only root and the server's own user may call: another user is refused
// even where the socket's mode would let it connect.
func TestPeerCredentials(t *testing.T) {
	sock, logs := serve(t)
	// The modes are the first fence; loosen them to reach the second.
	if err := os.Chmod(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	out, err := asuser.Dial(t, 65534, 65534, sock, `{"verb":"echo"}`+"\n")
	if err != nil {
		t.Fatal(err)
	}
	var r response
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Echo != "" || !strings.Contains(r.Error, "uid 65534") {
		t.Errorf("uid 65534 was answered %q; want a refusal naming the uid", out)
	}
	if !strings.Contains(logs.String(), "caller refused") || !strings.Contains(logs.String(), "uid=65534") {
		t.Errorf("no log line for the refused caller:\n%s", logs)
	}
}

// A server may admit one other user besides root.
func TestPeerCredentialsOtherUser(t *testing.T) {
	sock, _ := serve(t)
	os.Chmod(filepath.Dir(sock), 0o755)
	os.Chmod(sock, 0o666)
	// serve's server admits this process's user; make one that admits 65534.
	l, err := Listen(filepath.Join(filepath.Dir(sock), "other.sock"))
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(l.Addr().String(), 0o666)
	s := &Server[request, response]{Answer: answer, Log: slog.New(slog.DiscardHandler), UID: 65534}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Serve(ctx, l)
	out, err := asuser.Dial(t, 65534, 65534, l.Addr().String(), `{"verb":"echo","arg":"z"}`+"\n")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"echo":"echo z"`) {
		t.Errorf("uid 65534 admitted by UID was answered %q", out)
	}
}
