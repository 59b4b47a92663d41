package control

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/test/asuser"
)

func TestMain(m *testing.M) {
	asuser.Main()
	os.Exit(m.Run())
}

// fakeBackend answers status; its logs panic for the service "boom".
type fakeBackend struct{}

func (fakeBackend) Status() Status { return Status{Hostname: "gw-test"} }
func (fakeBackend) Logs(service string, n int) ([]string, error) {
	if service == "boom" {
		panic("boom")
	}
	return []string{"a line"}, nil
}
func (fakeBackend) Shutdown(string) error             { return nil }
func (fakeBackend) Reload() error                     { return nil }
func (fakeBackend) Apply(string, time.Duration) error { return nil }
func (fakeBackend) Confirm() error                    { return nil }

// logBuffer collects log lines from several goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func serveForTest(t *testing.T) (sock string, logs *logBuffer) {
	t.Helper()
	sock = filepath.Join(asuser.Dir(t), "control.sock")
	logs = &logBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, sock, fakeBackend{}, slog.New(slog.NewTextHandler(logs, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := Call(sock, Request{Verb: "status"}); err == nil {
			return sock, logs
		}
		if time.Now().After(deadline) {
			t.Fatal("the control socket never answered")
		}
	}
}

// oversized sends a request of more than 64 KiB and returns the answer.
func oversized(t *testing.T, sock, verb string) Response {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// Written aside: the server stops reading at its limit.
	go io.WriteString(c, `{"verb":"`+verb+`","file":"`+strings.Repeat("a", 100<<10)+`"}`+"\n")
	var r Response
	if err := json.NewDecoder(c).Decode(&r); err != nil {
		t.Fatalf("no answer to an oversized request: %v", err)
	}
	return r
}

// Only root may steer the appliance: another user is refused even where
// the socket's mode would let it connect; requests are bounded; a panic in
// a request is answered as an error and the socket goes on serving.
func TestSocketChecksCallerBoundsRequestsSurvivesPanics(t *testing.T) {
	sock, logs := serveForTest(t)

	resp, err := Call(sock, Request{Verb: "status"})
	if err != nil || resp.Status.Hostname != "gw-test" {
		t.Fatalf("root: %+v, %v", resp, err)
	}

	// The mode (0600) is the first fence; loosen it to reach the second.
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	out, err := asuser.Dial(t, 65534, 65534, sock, `{"verb":"status"}`+"\n")
	if err != nil {
		t.Fatal(err)
	}
	var r Response
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Status != nil || !strings.Contains(r.Error, "uid 65534") {
		t.Errorf("uid 65534 was answered %q; want a refusal naming the uid", out)
	}
	if !strings.Contains(logs.String(), "refused") || !strings.Contains(logs.String(), "uid=65534") {
		t.Errorf("no log line for the refused caller:\n%s", logs)
	}

	if r := oversized(t, sock, "status"); r.Status != nil || !strings.Contains(r.Error, "64 KiB") {
		t.Errorf("oversized request answered %+v; want an error naming the limit", r)
	}

	_, err = Call(sock, Request{Verb: "logs", Service: "boom"})
	if err == nil || !strings.Contains(err.Error(), "internal error") {
		t.Errorf("panicking request: err = %v; want an internal error", err)
	}
	if !strings.Contains(logs.String(), "panic") {
		t.Errorf("the panic was not logged:\n%s", logs)
	}
	if resp, err := Call(sock, Request{Verb: "logs", Service: "ok"}); err != nil || len(resp.Lines) != 1 {
		t.Errorf("after the panic: %+v, %v", resp, err)
	}
}
