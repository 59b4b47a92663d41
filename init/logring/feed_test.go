package logring

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFeedDropsAndCountsInsteadOfBlocking(t *testing.T) {
	var f Feed
	s, err := f.Subscribe(0)
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
		s, err := f.Subscribe(0)
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	if _, err := f.Subscribe(0); !errors.Is(err, ErrTooManySubscribers) {
		t.Fatalf("subscriber beyond the limit: err %v", err)
	}
	subs[0].Close()
	subs[0].Close() // twice is harmless
	s, err := f.Subscribe(0)
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

// drain takes what s holds now, stamped.
func drain(s *Subscription) []Record {
	var out []Record
	for {
		select {
		case r := <-s.C():
			out = append(out, s.Stamp(r))
		default:
			return out
		}
	}
}

// A subscriber gets what was published before it came, then what comes;
// resubscribing after the last Seq taken neither repeats nor skips a
// record.
func TestFeedReplaysWhatCameBeforeWithoutDuplicates(t *testing.T) {
	var f Feed
	for i := range 5 {
		f.Publish(Record{Service: "init", Line: fmt.Sprint("boot ", i)})
	}
	s, err := f.Subscribe(0)
	if err != nil {
		t.Fatal(err)
	}
	f.Publish(Record{Service: "smtp", Line: "live"})
	got := drain(s)
	if len(got) != 6 || got[0].Line != "boot 0" || got[5].Line != "live" {
		t.Fatalf("since 0: %+v", got)
	}
	for i, r := range got {
		if r.Seq != uint64(i+1) || r.Dropped != 0 {
			t.Errorf("record %d: seq %d dropped %d", i, r.Seq, r.Dropped)
		}
	}
	last := got[3].Seq // the subscriber went away having taken four
	s.Close()
	f.Publish(Record{Line: "while away"})
	s, _ = f.Subscribe(last)
	defer s.Close()
	var lines []string
	for _, r := range drain(s) {
		lines = append(lines, r.Line)
	}
	if want := []string{"boot 4", "live", "while away"}; !slices.Equal(lines, want) {
		t.Errorf("since %d: %q, want %q", last, lines, want)
	}
	if f.Last() != 7 {
		t.Errorf("Last %d", f.Last())
	}
}

// The history is bounded; a subscriber whose cursor is older than what is
// kept is told how many records it missed; a cursor from another feed
// (beyond this one's last) gets all that is kept.
func TestFeedHistoryBoundsAndGaps(t *testing.T) {
	var f Feed
	for i := range HistoryRecords + 10 {
		f.Publish(Record{Line: fmt.Sprint(i)})
	}
	s, _ := f.Subscribe(0)
	got := drain(s)
	s.Close()
	if len(got) != HistoryRecords || got[0].Line != "10" || got[0].Dropped != 0 {
		t.Fatalf("since 0: %d records, first %+v", len(got), got[0])
	}
	s, _ = f.Subscribe(5) // records 6 … 10 are gone
	got = drain(s)
	s.Close()
	if len(got) != HistoryRecords || got[0].Seq != 11 || got[0].Dropped != 5 || s.Dropped() != 5 {
		t.Fatalf("since 5: %d records, first %+v, total dropped %d", len(got), got[0], s.Dropped())
	}
	s, _ = f.Subscribe(1 << 40)
	if got := drain(s); len(got) != HistoryRecords || got[0].Dropped != 0 {
		t.Fatalf("cursor beyond the feed: %d records, first %+v", len(got), got[0])
	}
	s.Close()

	var b Feed
	long := strings.Repeat("x", 64<<10)
	for range 2 * HistoryBytes / len(long) {
		b.Publish(Record{Line: long})
	}
	s, _ = b.Subscribe(0)
	defer s.Close()
	if got := drain(s); len(got) != HistoryBytes/len(long) {
		t.Fatalf("%d records of 64 KiB kept, want %d (HistoryBytes)", len(got), HistoryBytes/len(long))
	}
}
