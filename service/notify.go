// Package service is what every appliance service shares: the notify
// protocol (ready, one-line status, conditions, detail as JSON) spoken to
// the supervisor over the pipe on fd 3, and the loop that reads the
// config, converges and waits for a reload (Run). It imports nothing of
// the appliance but its config, so services need not import PID 1's
// packages.
package service

import (
	"encoding/json"
	"os"
	"strings"
	"sync"
)

// The notify protocol: one line per message, like sd_notify's.
const (
	MsgReady     = "READY=1"
	PrefixStatus = "STATUS="
	// PrefixCondition says a named condition holds from now on (the
	// network is configured, the clock is set).
	PrefixCondition = "CONDITION="
	PrefixDetail    = "DETAIL="
	// EnvFD names the variable that tells a service its notify pipe is fd 3.
	EnvFD = "NOTIFY_FD"
)

// Notifier is a service's end of the notify pipe: how it tells the
// supervisor that it is ready and what its state is.
type Notifier struct {
	mu sync.Mutex
	f  *os.File // nil outside a supervisor: every call is then a no-op
}

// NewNotifier opens the pipe named by $NOTIFY_FD, if any.
func NewNotifier() *Notifier {
	if os.Getenv(EnvFD) != "3" {
		return &Notifier{}
	}
	return &Notifier{f: os.NewFile(3, "notify")}
}

func (n *Notifier) send(line string) error {
	if n == nil || n.f == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	_, err := n.f.Write([]byte(line + "\n"))
	return err
}

// Ready says the service serves.
func (n *Notifier) Ready() error { return n.send(MsgReady) }

// Status sets the service's one-line status.
func (n *Notifier) Status(s string) error {
	return n.send(PrefixStatus + strings.ReplaceAll(s, "\n", " "))
}

// Condition says that a condition holds from now on (see
// Supervisor.Condition).
func (n *Notifier) Condition(name string) error { return n.send(PrefixCondition + name) }

// Detail sets the service's full status, as JSON.
func (n *Notifier) Detail(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return n.send(PrefixDetail + string(b))
}
