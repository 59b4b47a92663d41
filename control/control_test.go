package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// fakeBackend records what it was asked; its logs panic for "boom", and
// it refuses what it is told to with refuse.
type fakeBackend struct {
	mu     sync.Mutex
	calls  []string
	refuse error
}

// call records what was asked and returns the refusal in force.
func (f *fakeBackend) call(what string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, what)
	return f.refuse
}

func (f *fakeBackend) setRefuse(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refuse = err
}

func (f *fakeBackend) Status() Status { f.call("status"); return Status{Hostname: "gw-test"} }
func (f *fakeBackend) Logs(service string, n int) ([]string, error) {
	err := f.call(fmt.Sprintf("logs %s %d", service, n))
	if service == "boom" {
		panic("boom")
	}
	return []string{"a line"}, err
}
func (f *fakeBackend) Shutdown(a string) error { return f.call("shutdown " + a) }
func (f *fakeBackend) Reload() error           { return f.call("reload") }
func (f *fakeBackend) Apply(file string, d time.Duration) error {
	return f.call(fmt.Sprintf("apply %s %v", file, d))
}
func (f *fakeBackend) Confirm() error { return f.call("confirm") }

// Each verb reaches the backend's method with its arguments; a refusal is
// the answer's error; an unknown verb or a bad duration reaches nothing.
func TestAnswer(t *testing.T) {
	for _, tc := range []struct {
		req      Request
		refuse   error
		call     string
		wantErr  string
		wantHost string
	}{
		{req: Request{Verb: "status"}, call: "status", wantHost: "gw-test"},
		{req: Request{Verb: "logs", Service: "smtp", Lines: 5}, call: "logs smtp 5"},
		{req: Request{Verb: "logs", Service: "smtp"}, refuse: errors.New("no service smtp"), call: "logs smtp 0", wantErr: "no service smtp"},
		{req: Request{Verb: "apply", File: "/data/x.yaml", Within: "2m"}, call: "apply /data/x.yaml 2m0s"},
		{req: Request{Verb: "apply", File: "/data/x.yaml", Within: "soon"}, wantErr: `confirm within: time: invalid duration "soon"`},
		{req: Request{Verb: "confirm"}, refuse: errors.New("nothing to confirm"), call: "confirm", wantErr: "nothing to confirm"},
		{req: Request{Verb: "reload"}, call: "reload"},
		{req: Request{Verb: "reload"}, refuse: errors.New("x.yaml:1:1: bad"), call: "reload", wantErr: "x.yaml:1:1: bad"},
		{req: Request{Verb: "poweroff"}, call: "shutdown poweroff"},
		{req: Request{Verb: "reboot"}, call: "shutdown reboot"},
		{req: Request{Verb: "format-disk"}, wantErr: `unknown verb "format-disk"`},
	} {
		b := &fakeBackend{refuse: tc.refuse}
		resp := Answer(b, tc.req)
		if resp.Error != tc.wantErr {
			t.Errorf("%+v: error %q, want %q", tc.req, resp.Error, tc.wantErr)
		}
		if got := strings.Join(b.calls, ","); got != tc.call {
			t.Errorf("%+v: backend asked %q, want %q", tc.req, got, tc.call)
		}
		if tc.wantHost != "" && (resp.Status == nil || resp.Status.Hostname != tc.wantHost) {
			t.Errorf("%+v: status %+v", tc.req, resp.Status)
		}
		if tc.req.Verb == "logs" && tc.wantErr == "" && len(resp.Lines) != 1 {
			t.Errorf("%+v: lines %q", tc.req, resp.Lines)
		}
	}
}

// Through the socket: the Client is a Backend on the far side; the
// appliance's refusals come back as errors; a panic is an internal error
// and the socket goes on serving; another user is refused; no socket says
// no gatehouse is running.
func TestSocket(t *testing.T) {
	sock := filepath.Join(asuser.Dir(t), "control.sock")
	b := &fakeBackend{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, sock, b, slog.New(slog.DiscardHandler)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	c := Client{Socket: sock}
	for deadline := time.Now().Add(5 * time.Second); c.Status().Hostname != "gw-test"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the control socket never answered")
		}
	}
	if lines, err := c.Logs("smtp", 3); err != nil || len(lines) != 1 {
		t.Errorf("logs: %q, %v", lines, err)
	}
	if err := c.Apply("/data/x.yaml", 0); err != nil {
		t.Errorf("apply: %v", err)
	}
	if _, err := c.Logs("boom", 1); err == nil || !strings.Contains(err.Error(), "internal error") {
		t.Errorf("panicking request: %v", err)
	}
	if err := c.Reload(); err != nil {
		t.Errorf("reload after the panic: %v", err)
	}
	if err := c.Shutdown("reboot"); err != nil {
		t.Errorf("reboot: %v", err)
	}
	if err := c.Confirm(); err != nil {
		t.Errorf("confirm: %v", err)
	}
	b.setRefuse(errors.New("refused here"))
	if resp, err := Call(sock, Request{Verb: "reload"}); err == nil || err.Error() != "refused here" || resp == nil {
		t.Errorf("refused reload: %+v, %v; want the error with its response", resp, err)
	}

	// The mode (0600) is the first fence; loosen it to reach the second.
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	out, err := asuser.Dial(t, 65534, 65534, sock, `{"verb":"status"}`+"\n")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "uid 65534") || strings.Contains(out, "gw-test") {
		t.Errorf("uid 65534 was answered %q; want a refusal naming the uid", out)
	}

	missing := filepath.Join(t.TempDir(), "control.sock")
	if _, err := Call(missing, Request{Verb: "status"}); err == nil || err.Error() != "no gatehouse is running with control socket "+missing {
		t.Errorf("no socket: %v", err)
	}
	if st := (Client{Socket: missing}).Status(); st.Mode != "unreachable" || !strings.Contains(st.Emergency, "no gatehouse is running") {
		t.Errorf("status of no socket: %+v", st)
	}
}
