package peergate

import (
	"context"
	"testing"
	"time"

	"gatehouse/config"
)

// A policy whose answers ran out is built again; one that a reload
// replaced meanwhile is not put back.
func TestPoliciesRefresh(t *testing.T) {
	builds := 0
	next := time.Now().Add(-time.Second) // already run out
	build := func(_ context.Context, c *config.Config) (string, time.Time, error) {
		builds++
		return c.Hostname, next, nil
	}
	ctx := context.Background()
	a, b := &config.Config{Hostname: "a"}, &config.Config{Hostname: "b"}
	p, err := NewPolicies(ctx, a, build)
	if err != nil || p.Current() != "a" {
		t.Fatal(p.Current(), err)
	}
	if d := p.Refresh(ctx); builds != 2 || d != time.Second {
		t.Errorf("refresh of an answer run out: %d builds, next in %v", builds, d)
	}
	next = time.Time{}
	p.Set(ctx, b)
	if d := p.Refresh(ctx); p.Current() != "b" || d != time.Minute || builds != 3 {
		t.Errorf("after a reload: %q, next in %v, %d builds", p.Current(), d, builds)
	}
}
