package relay

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/config"
	"gatehouse/smtpd"
	"gatehouse/sockrpc"
	"gatehouse/status"
	"gatehouse/test/asuser"
)

func TestMain(m *testing.M) {
	asuser.Main()
	os.Exit(m.Run())
}

// The relay's socket grants POP-before-SMTP relaying and deletes mail:
// only root may use it. A relay without a queue makes "list" panic, which
// must be answered as an error without taking the relay down.
func TestControlSocketChecksCallerBoundsRequestsSurvivesPanics(t *testing.T) {
	sock := filepath.Join(asuser.Dir(t), "smtp.sock")
	s := &Service{log: slog.New(slog.NewTextHandler(io.Discard, nil)), pop: smtpd.NewPopAuth(), cfg: &config.SMTP{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveControl(ctx, sock, s) }()
	t.Cleanup(func() { cancel(); <-done })
	call := func(req status.RelayRequest) error {
		var r status.RelayResponse
		return sockrpc.Call(sock, 10*time.Second, req, &r)
	}
	popAuth := func(addr string) error { return call(status.RelayRequest{Verb: "pop-auth", Addr: addr}) }
	for deadline := time.Now().Add(5 * time.Second); popAuth("192.0.2.1") != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the relay's socket never answered")
		}
	}
	if !s.pop.Authorized(netip.MustParseAddr("192.0.2.1"), time.Minute) {
		t.Fatal("root's pop-auth was not applied")
	}
	if info, err := os.Stat(sock); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v (%v), want 0600", info.Mode().Perm(), err)
	}

	// The mode is the first fence; loosen it to reach the second.
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	out, err := asuser.Dial(t, 65534, 65534, sock, `{"verb":"pop-auth","addr":"192.0.2.9"}`+"\n")
	if err != nil {
		t.Fatal(err)
	}
	var r status.RelayResponse
	if err := json.Unmarshal([]byte(out), &r); err != nil || !strings.Contains(r.Error, "uid 65534") {
		t.Errorf("uid 65534 was answered %q; want a refusal naming the uid", out)
	}
	if s.pop.Authorized(netip.MustParseAddr("192.0.2.9"), time.Minute) {
		t.Error("uid 65534 granted POP-before-SMTP relaying")
	}

	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(c, `{"verb":"pop-auth","id":"`+strings.Repeat("a", 100<<10)+`","addr":"192.0.2.10"}`+"\n")
	r = status.RelayResponse{}
	if err := json.NewDecoder(c).Decode(&r); err != nil || !strings.Contains(r.Error, "64 KiB") {
		t.Errorf("oversized request: %+v, %v; want an error naming the limit", r, err)
	}
	c.Close()

	if err := call(status.RelayRequest{Verb: "list"}); err == nil || !strings.Contains(err.Error(), "internal error") {
		t.Errorf("panicking request: err = %v; want an internal error", err)
	}
	if err := popAuth("192.0.2.2"); err != nil {
		t.Errorf("after the panic: %v", err)
	}
}
