package logring

import (
	"errors"
	"testing"
	"time"
)

func TestFeedDropsAndCountsInsteadOfBlocking(t *testing.T) {
	var f Feed
	s, err := f.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	done := make(chan struct{})
	go func() {
		// Nobody reads: Publish must still return, every time.
		for i := range SubscriberBuffer + 100 {
			f.Publish(Record{Service: "smtp", Line: "line", PID: i})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked on a subscriber that does not read")
	}
	first := s.Stamp(<-s.C())
	if first.PID != 0 || first.Dropped != 100 {
		t.Errorf("first record: pid %d dropped %d; want 0 and 100", first.PID, first.Dropped)
	}
	if next := s.Stamp(<-s.C()); next.Dropped != 0 {
		t.Errorf("the loss is reported once; next record says %d", next.Dropped)
	}
	if s.Dropped() != 100 {
		t.Errorf("total dropped %d, want 100", s.Dropped())
	}
}

func TestFeedSubscriberLimit(t *testing.T) {
	var f Feed
	var subs []*Subscription
	for range MaxSubscribers {
		s, err := f.Subscribe()
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	if _, err := f.Subscribe(); !errors.Is(err, ErrTooManySubscribers) {
		t.Fatalf("subscriber beyond the limit: err %v", err)
	}
	subs[0].Close()
	subs[0].Close() // twice is harmless
	s, err := f.Subscribe()
	if err != nil {
		t.Fatalf("after a Close: %v", err)
	}
	f.Publish(Record{Line: "x"})
	if r := <-s.C(); r.Line != "x" {
		t.Fatalf("got %+v", r)
	}
	var nilFeed *Feed
	nilFeed.Publish(Record{}) // no feed: nothing happens
}
