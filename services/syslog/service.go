package syslog

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/config"
	"gatehouse/control"
	"gatehouse/init/kmsg"
	"gatehouse/init/logring"
	"gatehouse/service"
	"gatehouse/status"
)

// Options configure the service.
type Options struct {
	Config  string
	Control string // PID 1's control socket, where the log feed is
	Log     *slog.Logger
	Notify  *service.Notifier
	Reload  <-chan struct{}
}

// Run forwards the log feed to the configured servers until ctx ends.
func Run(ctx context.Context, o Options) error {
	f := newForwarder(o.Log)
	fctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.follow(fctx, o.Control)
	}()
	err := service.Run(ctx, service.Options{Config: o.Config, Log: o.Log, Notify: o.Notify, Reload: o.Reload}, &reconciler{f: f, ctx: ctx})
	cancel()
	wg.Wait()
	f.closeAll()
	return err
}

// settings are what the reading of the feed needs from the config; they
// change only on a reload.
type settings struct {
	hostname string
	kernel   bool
	dests    []*destination
}

// forwarder reads PID 1's log feed and hands each record to every
// destination that wants it.
type forwarder struct {
	log      *slog.Logger
	cur      atomic.Pointer[settings]
	received atomic.Uint64
	feedLost atomic.Uint64
	// seen is the Seq of the last record taken from the feed: following
	// again after the feed ended resumes after it, without duplicates.
	seen atomic.Uint64
	feed atomic.Value // string: the feed's state
	// configured is closed once the config's destinations are in place:
	// the feed's first records (those kept since boot) need them.
	configured chan struct{}
	once       sync.Once
}

func newForwarder(log *slog.Logger) *forwarder {
	f := &forwarder{log: log, configured: make(chan struct{})}
	f.cur.Store(&settings{})
	f.feed.Store("connecting")
	return f
}

// follow subscribes to the feed, again after a pause if it ends, until
// ctx ends.
func (f *forwarder) follow(ctx context.Context, socket string) {
	select {
	case <-ctx.Done():
		return
	case <-f.configured:
	}
	backoff := minBackoff
	for ctx.Err() == nil {
		start := time.Now()
		err := control.Follow(ctx, socket, f.seen.Load(), func(r logring.Record) error {
			f.feed.Store("following")
			f.handle(r)
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		f.feed.Store(fmt.Sprintf("not following: %v", err))
		f.log.Warn("log feed ended; subscribing again", "err", err, "retry_in", backoff)
		if time.Since(start) > maxBackoff {
			backoff = minBackoff
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// handle formats one record for each destination that wants it.
func (f *forwarder) handle(r logring.Record) {
	f.received.Add(1)
	if r.Seq > 0 {
		f.seen.Store(r.Seq)
	}
	s := f.cur.Load()
	if r.Dropped > 0 {
		f.feedLost.Add(r.Dropped)
		f.send(s, &Entry{Time: time.Now(), Hostname: s.hostname, AppName: "syslog", MsgID: "dropped", Severity: SevWarning,
			Params: []Param{{"dropped", strconv.FormatUint(r.Dropped, 10)}},
			Msg:    fmt.Sprintf("%d log records lost before forwarding: the syslog service did not keep up", r.Dropped)})
	}
	if r.Service == kmsg.Name && !s.kernel {
		return
	}
	e := Entry{Time: r.Time, Hostname: s.hostname, AppName: r.Service}
	if r.PID > 0 {
		e.ProcID = strconv.Itoa(r.PID)
	}
	if r.Severity != nil {
		e.Severity, e.Msg = min(max(*r.Severity, SevEmerg), SevDebug), r.Line
	} else {
		e.Severity, e.Msg, e.Params = ParseLine(r.Line)
		for _, p := range e.Params {
			if p.Name == "msgid" {
				e.MsgID = p.Value
			}
		}
	}
	f.send(s, &e)
}

func (f *forwarder) send(s *settings, e *Entry) {
	for _, d := range s.dests {
		if d.wants(e.Severity) {
			d.enqueue(Format(nil, e, d.facility, int(d.cfg.MaxMessage.Bytes)))
		}
	}
}

func (f *forwarder) closeAll() {
	var wg sync.WaitGroup
	for _, d := range f.cur.Load().dests {
		wg.Add(1)
		go func() { defer wg.Done(); d.close() }()
	}
	wg.Wait()
}

// reconciler converges the destinations on the config: a destination
// whose settings did not change keeps its connection and its buffer.
type reconciler struct {
	f   *forwarder
	ctx context.Context
}

// Reconcile implements service.Reconciler; it runs every second to
// publish the counters.
func (r *reconciler) Reconcile(ctx context.Context, cfg *config.Config) (time.Duration, error) {
	const again = time.Second
	old := r.f.cur.Load()
	var want []config.SyslogDestination
	next := &settings{}
	if cfg.Syslog != nil {
		want = cfg.Syslog.Destinations
		next.hostname, next.kernel = cfg.Syslog.Hostname, *cfg.Syslog.Kernel
	}
	defer r.f.once.Do(func() { close(r.f.configured) })
	if old.hostname == next.hostname && old.kernel == next.kernel && sameDests(old.dests, want) {
		return again, nil
	}
	keep := map[*destination]bool{}
	hostname := func() string { return r.f.cur.Load().hostname }
	for _, w := range want {
		var d *destination
		for _, o := range old.dests {
			if o.cfg == w && !keep[o] {
				d = o
				break
			}
		}
		if d == nil {
			d = newDestination(w, hostname, r.f.log)
			d.start(r.ctx)
		}
		keep[d] = true
		next.dests = append(next.dests, d)
	}
	r.f.cur.Store(next)
	for _, o := range old.dests {
		if !keep[o] {
			o.close()
		}
	}
	r.f.log.Info("forwarding the log", "destinations", len(next.dests), "kernel", next.kernel)
	return again, nil
}

func sameDests(have []*destination, want []config.SyslogDestination) bool {
	if len(have) != len(want) {
		return false
	}
	for i := range have {
		if have[i].cfg != want[i] {
			return false
		}
	}
	return true
}

// Status implements service.Reconciler.
func (r *reconciler) Status() service.Status {
	st := status.Syslog{Feed: r.f.feed.Load().(string), Received: r.f.received.Load(), FeedLost: r.f.feedLost.Load()}
	up, dropped := 0, uint64(0)
	for _, d := range r.f.cur.Load().dests {
		ds := d.status()
		st.Destinations = append(st.Destinations, ds)
		if ds.State == stateUp {
			up++
		}
		dropped += ds.Dropped
	}
	summary := fmt.Sprintf("%d of %d destinations up, %d dropped", up, len(st.Destinations), dropped)
	if st.Feed != "following" {
		summary += "; log feed: " + st.Feed
	}
	return service.Status{Ready: true, Summary: summary, Detail: st}
}
