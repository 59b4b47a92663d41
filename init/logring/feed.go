package logring

import (
	"errors"
	"sync"
	"time"
)

// Record is one log line as PID 1 saw it: a service's output line, or a
// kernel record. It is what the log feed hands to its subscribers (the
// syslog service); the line is passed on as the service wrote it, so that
// parsing it is the subscriber's work, not PID 1's.
type Record struct {
	Service string    `json:"service"` // the service's name; "kernel" for the kernel's log
	PID     int       `json:"pid,omitempty"`
	Time    time.Time `json:"time"`
	Line    string    `json:"line"`
	// Severity is the record's syslog severity (0 emerg … 7 debug) when
	// its source says it (the kernel does); nil: to be read from the line.
	Severity *int `json:"severity,omitempty"`
	// Dropped counts the records this subscriber lost just before this
	// one, because it did not keep up.
	Dropped uint64 `json:"dropped,omitempty"`
}

// MaxSubscribers bounds the feed's subscribers: one syslog service, and
// room for its next instance while the feed has not yet noticed the
// previous one is gone.
const MaxSubscribers = 2

// SubscriberBuffer is how many records a subscriber may lag behind before
// the feed drops (and counts) what it cannot take.
const SubscriberBuffer = 8192

// ErrTooManySubscribers refuses a subscriber beyond MaxSubscribers.
var ErrTooManySubscribers = errors.New("logring: the log feed has its maximum of subscribers")

// Feed passes every record published to its subscribers. Publish never
// blocks: a subscriber that lags loses records, and is told how many.
// The zero Feed has no subscribers; a nil *Feed publishes nothing.
type Feed struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

// Subscription is one subscriber's end of the feed.
type Subscription struct {
	feed    *Feed
	c       chan Record
	mu      sync.Mutex
	dropped uint64 // lost since the last record taken
	total   uint64
	once    sync.Once
}

// Subscribe adds a subscriber; Close removes it.
func (f *Feed) Subscribe() (*Subscription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.subs) >= MaxSubscribers {
		return nil, ErrTooManySubscribers
	}
	if f.subs == nil {
		f.subs = map[*Subscription]struct{}{}
	}
	s := &Subscription{feed: f, c: make(chan Record, SubscriberBuffer)}
	f.subs[s] = struct{}{}
	return s, nil
}

// Publish hands r to every subscriber that has room for it.
func (f *Feed) Publish(r Record) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		select {
		case s.c <- r:
		default:
			s.mu.Lock()
			s.dropped++
			s.total++
			s.mu.Unlock()
		}
	}
}

// C delivers the records; pass each through Stamp to learn of losses.
func (s *Subscription) C() <-chan Record { return s.c }

// Stamp sets r.Dropped to the records lost before it and resets the count.
func (s *Subscription) Stamp(r Record) Record {
	s.mu.Lock()
	r.Dropped, s.dropped = s.dropped, 0
	s.mu.Unlock()
	return r
}

// Pending is how many records wait for the subscriber.
func (s *Subscription) Pending() int { return len(s.c) }

// Dropped is how many records this subscriber lost in all.
func (s *Subscription) Dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Close removes the subscriber from the feed.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.feed.mu.Lock()
		delete(s.feed.subs, s)
		s.feed.mu.Unlock()
	})
}
