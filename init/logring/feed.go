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
	// Seq numbers the feed's records from 1, in the order published; a
	// subscriber hands back the last it took to resume after it.
	Seq     uint64    `json:"seq,omitempty"`
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

// HistoryRecords and HistoryBytes bound what the feed keeps for the
// subscribers to come: the most recent records, at most this many and at
// most this many bytes of lines. A new subscriber gets them first, so the
// lines written before it subscribed (boot, or while the syslog service
// restarted) are not lost. HistoryRecords is below SubscriberBuffer, so the
// replay always fits.
const (
	HistoryRecords = 4096
	HistoryBytes   = 4 << 20
)

// ErrTooManySubscribers refuses a subscriber beyond MaxSubscribers.
var ErrTooManySubscribers = errors.New("logring: the log feed has its maximum of subscribers")

// Feed passes every record published to its subscribers. Publish never
// blocks: a subscriber that lags loses records, and is told how many.
// The zero Feed has no subscribers; a nil *Feed publishes nothing.
type Feed struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
	seq  uint64 // the last record's
	// hist is a ring of the most recent records: n of them from first.
	hist     []Record
	first, n int
	bytes    int // of the lines in hist
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

// Subscribe adds a subscriber; Close removes it. The subscriber first gets
// the records the feed still keeps that came after since (the Seq of the
// last record it took), then every record as it is published. since 0
// asks for all that is kept; so does a since the feed has not reached (a
// cursor from an earlier feed). When records after since are no longer
// kept, the first one it gets says how many it missed (Dropped).
func (f *Feed) Subscribe(since uint64) (*Subscription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.subs) >= MaxSubscribers {
		return nil, ErrTooManySubscribers
	}
	if f.subs == nil {
		f.subs = map[*Subscription]struct{}{}
	}
	s := &Subscription{feed: f, c: make(chan Record, SubscriberBuffer)}
	if since > f.seq {
		since = 0
	}
	next := f.seq + 1 // the first record after since that is kept
	for i := range f.n {
		r := f.hist[(f.first+i)%len(f.hist)]
		if r.Seq <= since {
			continue
		}
		next = min(next, r.Seq)
		s.offer(r)
	}
	if since > 0 && next > since+1 {
		s.dropped += next - since - 1
		s.total += next - since - 1
	}
	f.subs[s] = struct{}{}
	return s, nil
}

// Publish numbers r, keeps it for subscribers to come and hands it to
// every subscriber that has room for it.
func (f *Feed) Publish(r Record) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	r.Seq = f.seq
	f.keep(r)
	for s := range f.subs {
		s.offer(r)
	}
}

// Last is the Seq of the last record published.
func (f *Feed) Last() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seq
}

// keep adds r to the history, dropping the oldest records beyond its bounds.
func (f *Feed) keep(r Record) {
	if f.hist == nil {
		f.hist = make([]Record, HistoryRecords)
	}
	for f.n > 0 && (f.n == len(f.hist) || f.bytes+len(r.Line) > HistoryBytes) {
		f.bytes -= len(f.hist[f.first].Line)
		f.hist[f.first] = Record{}
		f.first = (f.first + 1) % len(f.hist)
		f.n--
	}
	f.hist[(f.first+f.n)%len(f.hist)] = r
	f.n++
	f.bytes += len(r.Line)
}

// offer hands r to s if it has room, and counts it lost if not.
func (s *Subscription) offer(r Record) {
	select {
	case s.c <- r:
	default:
		s.mu.Lock()
		s.dropped++
		s.total++
		s.mu.Unlock()
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
