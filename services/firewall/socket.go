package firewall

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"gatehouse/control"
)

// SocketPath is the firewall service's socket for a run directory. PID 1
// asks it for the installed rules: reading them back (iptables-save, or
// nftables over netlink) happens in the service, never in PID 1, whose
// reaper must be the only one to wait for children.
func SocketPath(runDir string) string { return filepath.Join(runDir, "firewall", "firewall.sock") }

// Request is one call on the firewall's socket.
type Request struct {
	Verb string `json:"verb"` // show
}

// Response answers a Request.
type Response struct {
	Error string `json:"error,omitempty"`
	Installed
}

// Installed is what the firewall installed, as the kernel has it: what
// is enforced, not what was meant to be.
type Installed struct {
	Backend string `json:"backend"`
	// Rules are the nftables table in nft's syntax, or the GATEHOUSE lines
	// of iptables-save -c, with their counters.
	Rules string `json:"rules"`
}

// serve answers the socket at path until ctx ends, with the same checks
// as every control socket (mode 0600, root callers only, bounded
// requests, panics answered as errors).
func (f *Firewall) serve(ctx context.Context, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("firewall: socket: %w", err)
	}
	ln, err := control.Listen(path)
	if err != nil {
		return fmt.Errorf("firewall: socket: %w", err)
	}
	go func() { <-ctx.Done(); ln.Close() }()
	log := f.log.With("socket", path)
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("firewall: socket: %w", err)
		}
		go control.ServeConn(c, log, f.answer)
	}
}

func (f *Firewall) answer(req Request) Response {
	switch req.Verb {
	case "show":
		in, err := f.readBack()
		if err != nil {
			return Response{Error: err.Error(), Installed: in}
		}
		return Response{Installed: in}
	}
	return Response{Error: fmt.Sprintf("unknown verb %q", req.Verb)}
}

// readBack reads the rules of the backend in use from the kernel.
func (f *Firewall) readBack() (Installed, error) {
	f.mu.Lock()
	b := f.backend
	f.mu.Unlock()
	if b == nil {
		return Installed{}, errors.New("firewall: no backend chosen yet")
	}
	rules, err := b.Show()
	return Installed{Backend: b.Name(), Rules: rules}, err
}

// QueryRules asks the firewall service at socket for the rules it
// installed, as the kernel has them (`firewall show`). The error of a
// failed read-back names the backend, which Installed carries too.
func QueryRules(socket string) (Installed, error) {
	c, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		return Installed{}, fmt.Errorf("the firewall service is not running (no %s): %w", socket, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := json.NewEncoder(c).Encode(Request{Verb: "show"}); err != nil {
		return Installed{}, fmt.Errorf("firewall: send: %w", err)
	}
	var r Response
	if err := json.NewDecoder(c).Decode(&r); err != nil {
		return Installed{}, fmt.Errorf("firewall: read answer: %w", err)
	}
	if r.Error != "" {
		return r.Installed, errors.New(r.Error)
	}
	return r.Installed, nil
}
