package control

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/init/logring"
	"gatehouse/test/asuser"
)

// followBackend is a fakeBackend with a log feed.
type followBackend struct {
	fakeBackend
	feed logring.Feed
}

func (f *followBackend) Follow(since uint64) (*logring.Subscription, error) {
	return f.feed.Subscribe(since)
}

// The feed's records reach the caller with their fields; hanging up frees
// the subscription.
func TestFollowOverTheSocket(t *testing.T) {
	sock := filepath.Join(asuser.Dir(t), "control.sock")
	b := &followBackend{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Serve(ctx, sock, b, slog.New(slog.DiscardHandler))
	for deadline := time.Now().Add(5 * time.Second); (Client{Socket: sock}).Status().Hostname != "gw-test"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the control socket never answered")
		}
	}

	fctx, fcancel := context.WithCancel(context.Background())
	got := make(chan logring.Record, 100)
	done := make(chan error, 1)
	go func() {
		done <- Follow(fctx, sock, 0, func(r logring.Record) error {
			got <- r
			return nil
		})
	}()
	// Publish until the subscription is there.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		b.feed.Publish(logring.Record{Service: "probe", Line: "hello"})
		select {
		case r := <-got:
			if r.Service != "probe" {
				t.Fatalf("first record %+v", r)
			}
		default:
			if time.Now().After(deadline) {
				t.Fatal("the follower never got a record")
			}
			continue
		}
		break
	}
	b.feed.Publish(logring.Record{Service: "smtp", PID: 7, Line: "level=INFO msg=one"})
	r := <-got
	for r.Service == "probe" { // probes still in flight
		r = <-got
	}
	if r.Service != "smtp" || r.PID != 7 || r.Line != "level=INFO msg=one" {
		t.Fatalf("record %+v", r)
	}
	fcancel()
	if err := <-done; err != nil {
		t.Fatalf("follow ended with %v", err)
	}
	// The subscription is freed once the feed notices the caller is gone.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s, err := b.feed.Subscribe(0)
		if err == nil {
			s2, err2 := b.feed.Subscribe(0)
			s.Close()
			if err2 == nil {
				s2.Close()
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("subscriptions were not freed after the callers hung up")
		}
	}
}

func TestFollowWithoutFeed(t *testing.T) {
	if resp := Answer(&fakeBackend{}, Request{Verb: "follow"}); !strings.Contains(resp.Error, "no log feed") {
		t.Fatalf("follow on a backend without a feed: %+v", resp)
	}
}

// A follower that does not read loses records instead of holding the
// publisher up, and learns how many.
func TestFollowLaggingCallerIsToldWhatItLost(t *testing.T) {
	var feed logring.Feed
	sub, _ := feed.Subscribe(0)
	for range logring.SubscriberBuffer + 10 {
		feed.Publish(logring.Record{Line: "x"})
	}
	if r := sub.Stamp(<-sub.C()); r.Dropped != 10 {
		t.Fatalf("dropped %d, want 10", r.Dropped)
	}
}

// follow carries the caller's cursor: the records kept after it come
// first, then the live ones.
func TestFollowResumesAfterSince(t *testing.T) {
	sock := filepath.Join(asuser.Dir(t), "control.sock")
	b := &followBackend{}
	for i := range 3 {
		b.feed.Publish(logring.Record{Service: "init", Line: strings.Repeat("x", i+1)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Serve(ctx, sock, b, slog.New(slog.DiscardHandler))
	for deadline := time.Now().Add(5 * time.Second); (Client{Socket: sock}).Status().Hostname != "gw-test"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the control socket never answered")
		}
	}
	got := make(chan logring.Record, 10)
	fctx, fcancel := context.WithCancel(context.Background())
	defer fcancel()
	go Follow(fctx, sock, 2, func(r logring.Record) error { got <- r; return nil })
	if r := <-got; r.Seq != 3 || r.Line != "xxx" {
		t.Fatalf("first record after since 2: %+v", r)
	}
	b.feed.Publish(logring.Record{Service: "smtp", Line: "live"})
	if r := <-got; r.Seq != 4 || r.Line != "live" {
		t.Fatalf("then: %+v", r)
	}
}
