package peergate

import (
	"context"
	"sync"
	"time"

	"gatehouse/config"
)

// Policies holds the policy of the config in force (who gets in, built
// with the allow list's host names resolved) and builds it again when a
// name's answer runs out. A connection keeps the policy it was accepted
// under.
type Policies[P any] struct {
	// build compiles cfg's policy and says when the first of its answers
	// runs out (zero: none).
	build func(ctx context.Context, cfg *config.Config) (P, time.Time, error)

	mu   sync.Mutex
	cfg  *config.Config
	pol  P
	next time.Time
}

// NewPolicies builds cfg's policy with build and puts it in force.
func NewPolicies[P any](ctx context.Context, cfg *config.Config, build func(context.Context, *config.Config) (P, time.Time, error)) (*Policies[P], error) {
	p := &Policies[P]{build: build}
	return p, p.Set(ctx, cfg)
}

// Set puts cfg's policy in force for the connections accepted from now
// on; one that cannot be built changes nothing.
func (p *Policies[P]) Set(ctx context.Context, cfg *config.Config) error {
	pol, next, err := p.build(ctx, cfg)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.cfg, p.pol, p.next = cfg, pol, next
	p.mu.Unlock()
	return nil
}

// Current is the policy a new connection is judged by.
func (p *Policies[P]) Current() P {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pol
}

// Refresh builds the policy again when a host name's answer has run out,
// and says when to look again: at least every minute, as a reload may have
// brought names.
func (p *Policies[P]) Refresh(ctx context.Context) time.Duration {
	p.mu.Lock()
	cfg, next := p.cfg, p.next
	p.mu.Unlock()
	if !next.IsZero() && time.Now().After(next) {
		if pol, n, err := p.build(ctx, cfg); err == nil {
			p.mu.Lock()
			// Only if no reload came meanwhile: its config is the newer
			// one (the old one may hold what the reload revoked).
			if p.cfg == cfg {
				p.pol, p.next = pol, n
			}
			next = p.next
			p.mu.Unlock()
		}
	}
	if next.IsZero() {
		return time.Minute
	}
	return min(max(time.Until(next), time.Second), time.Minute)
}
