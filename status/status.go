// Package status holds what the appliance reports about itself: the
// supervisor's state of each service, and the detail each service sends
// with it (DETAIL=, see service.Notifier). The services fill these types in;
// PID 1, the CLI, the console and the SSH shell read them. It imports
// nothing of the appliance's, so that a reader of status never pulls in a
// service.
package status

import (
	"encoding/json"
	"fmt"
	"time"
)

// Phase is where a service is in its life.
type Phase string

// The phases a service goes through.
const (
	Waiting    Phase = "waiting"  // for the services it needs
	Starting   Phase = "starting" // running, not ready yet
	Running    Phase = "running"  // ready
	BackingOff Phase = "backoff"  // exited; restarting after a delay
	Stopping   Phase = "stopping"
	Stopped    Phase = "stopped"
)

// State is a snapshot of one service, as the supervisor keeps it.
type State struct {
	Name      string          `json:"name"`
	Phase     Phase           `json:"phase"`
	PID       int             `json:"pid,omitempty"`
	Restarts  int             `json:"restarts"`
	Since     time.Time       `json:"since"`
	LastExit  string          `json:"last_exit,omitempty"`
	NextStart time.Duration   `json:"next_start_ns,omitempty"` // backoff delay, in backoff
	Status    string          `json:"status,omitempty"`        // last STATUS= the service sent
	Detail    json.RawMessage `json:"detail,omitempty"`        // last DETAIL= the service sent: its own status as JSON
}

// Detail decodes the detail the service called name last sent into a T
// (Network for "network", DNS for "dns", ...). ok is false while it has
// sent none; err says the detail is not a T.
func Detail[T any](services []State, name string) (v T, ok bool, err error) {
	for _, s := range services {
		if s.Name == name && len(s.Detail) > 0 {
			if err := json.Unmarshal(s.Detail, &v); err != nil {
				return v, true, fmt.Errorf("status: %s detail: %w", name, err)
			}
			return v, true, nil
		}
	}
	return v, false, nil
}
