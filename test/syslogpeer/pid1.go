package syslogpeer

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"gatehouse/control"
	"gatehouse/init/logring"
)

// PID1 stands in for PID 1's control socket when a test runs the syslog
// service by itself: it serves the log feed (follow) and nothing else, so
// that the test decides exactly which records the service gets.
type PID1 struct {
	Feed logring.Feed
	mu   sync.Mutex
	sub  *logring.Subscription
}

// Serve answers on the socket at path until ctx ends.
func (p *PID1) Serve(ctx context.Context, path string) {
	go control.Serve(ctx, path, p, slog.New(slog.DiscardHandler))
}

// Follow implements control.Follower.
func (p *PID1) Follow(since uint64) (*logring.Subscription, error) {
	s, err := p.Feed.Subscribe(since)
	if err == nil {
		p.mu.Lock()
		p.sub = s
		p.mu.Unlock()
	}
	return s, err
}

// Subscribed waits until the service follows the feed.
func (p *PID1) Subscribed(limit time.Duration) error {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		p.mu.Lock()
		s := p.sub
		p.mu.Unlock()
		if s != nil {
			return nil
		}
	}
	return errors.New("syslogpeer: the syslog service never followed the feed")
}

// Pending is how many records wait for the service.
func (p *PID1) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sub == nil {
		return 0
	}
	return p.sub.Pending()
}

var errNotHere = errors.New("not served by the test's PID 1")

// Status implements control.Backend.
func (p *PID1) Status() control.Status { return control.Status{Mode: "test"} }

// Logs implements control.Backend.
func (p *PID1) Logs(string, int) ([]string, error) { return nil, errNotHere }

// Shutdown implements control.Backend.
func (p *PID1) Shutdown(string) error { return errNotHere }

// Reload implements control.Backend.
func (p *PID1) Reload() error { return errNotHere }

// Apply implements control.Backend.
func (p *PID1) Apply(string, time.Duration) error { return errNotHere }

// Confirm implements control.Backend.
func (p *PID1) Confirm() error { return errNotHere }
