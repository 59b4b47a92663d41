package firewall

import (
	"context"
	"errors"
	"fmt"

	"gatehouse/sockrpc"
	"gatehouse/status"
)

// serve answers the firewall's socket at path until ctx ends. PID 1 asks
// it for the installed rules (`firewall show`): reading them back
// (iptables-save, or nftables over netlink) happens here, never in PID 1,
// whose reaper must be the only one to wait for children.
func (f *Firewall) serve(ctx context.Context, path string) error {
	ln, err := sockrpc.Listen(path)
	if err != nil {
		return fmt.Errorf("firewall: socket: %w", err)
	}
	return sockrpc.NewServer(f.answer, f.log.With("socket", path)).Serve(ctx, ln)
}

func (f *Firewall) answer(req status.FirewallRequest) status.FirewallRules {
	switch req.Verb {
	case "show":
		in, err := f.readBack()
		if err != nil {
			in.Error = err.Error()
		}
		return in
	}
	return status.FirewallRules{Error: fmt.Sprintf("unknown verb %q", req.Verb)}
}

// readBack reads the rules of the backend in use from the kernel: what is
// enforced, not what was meant to be.
func (f *Firewall) readBack() (status.FirewallRules, error) {
	f.mu.Lock()
	b := f.backend
	f.mu.Unlock()
	if b == nil {
		return status.FirewallRules{}, errors.New("firewall: no backend chosen yet")
	}
	rules, err := b.Show()
	return status.FirewallRules{Backend: b.Name(), Rules: rules}, err
}
