// Package ntp is the time service: it asks several NTP servers, throws out
// bad answers, follows the best one, slews small offsets and steps large
// ones (writing the RTC after a step), adapts its poll interval, and tells
// the supervisor when the clock is synced.
package ntp

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/beevik/ntp"

	"gatehouse/status"
)

// Limits, as ntpd and chrony use them.
const (
	StepThreshold   = 400 * time.Millisecond // above: step; below: slew
	MaxRootDistance = 1500 * time.Millisecond
	MinPoll         = 16 * time.Second
	MaxPoll         = 1024 * time.Second
	queryTimeout    = 2 * time.Second
)

// Query asks server once and checks the answer: kiss-of-death, an
// unsynchronised leap indicator, stratum 0 or 16 and a root distance over
// MaxRootDistance all disqualify it.
func Query(server string) status.NTPSample {
	s := status.NTPSample{Server: server}
	r, err := ntp.QueryWithOptions(server, ntp.QueryOptions{Timeout: queryTimeout})
	if err != nil {
		s.Err = err.Error()
		return s
	}
	s.Offset, s.RTT, s.Stratum, s.RootDistance = r.ClockOffset, r.RTT, r.Stratum, r.RootDistance
	if err := r.Validate(); err != nil {
		if r.IsKissOfDeath() {
			err = fmt.Errorf("kiss of death %q: %w", r.ReferenceString(), err)
		}
		s.Err = err.Error()
		return s
	}
	if r.RootDistance > MaxRootDistance {
		s.Err = fmt.Sprintf("root distance %v exceeds %v", r.RootDistance, MaxRootDistance)
	}
	return s
}

// Best picks the valid sample with the smallest root distance plus half
// its round trip: the one whose time is least uncertain.
func Best(samples []status.NTPSample) (status.NTPSample, bool) {
	var ok []status.NTPSample
	for _, s := range samples {
		if s.Err == "" {
			ok = append(ok, s)
		}
	}
	if len(ok) == 0 {
		return status.NTPSample{}, false
	}
	sort.SliceStable(ok, func(i, j int) bool {
		return ok[i].RootDistance+ok[i].RTT/2 < ok[j].RootDistance+ok[j].RTT/2
	})
	return ok[0], true
}

// Clock is what the service does to the time: the system clock (PID 1 on
// the appliance) or nothing at all (host mode, where the host keeps its own
// time and tests must never change it).
type Clock interface {
	Slew(offset time.Duration) error
	Step(offset time.Duration) error
}

// Observer measures and never touches the clock.
type Observer struct{}

// Slew does nothing.
func (Observer) Slew(time.Duration) error { return nil }

// Step does nothing.
func (Observer) Step(time.Duration) error { return nil }

// Discipline runs the poll loop over a set of servers.
type Discipline struct {
	Clock    Clock
	Log      *slog.Logger
	MinPoll  time.Duration
	MaxPoll  time.Duration
	OnStatus func(status.NTP)
	OnSynced func()                               // called once, at the first sync
	Query    func(server string) status.NTPSample // default Query; tests use fakes

	mu      sync.Mutex
	st      status.NTP
	servers []string
	kick    chan struct{}
	synced  bool
	fails   int // polls in a row without a usable answer
}

// SetServers replaces the servers and polls at once.
func (d *Discipline) SetServers(servers []string, source string) {
	d.mu.Lock()
	changed := fmt.Sprint(servers) != fmt.Sprint(d.servers)
	d.servers, d.st.Servers, d.st.Source = servers, servers, source
	kick := d.kick
	d.mu.Unlock()
	if changed && kick != nil {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
}

// Run polls until ctx ends.
func (d *Discipline) Run(ctx context.Context) {
	if d.MinPoll == 0 {
		d.MinPoll = MinPoll
	}
	if d.MaxPoll == 0 {
		d.MaxPoll = MaxPoll
	}
	if d.Query == nil {
		d.Query = Query
	}
	d.mu.Lock()
	d.kick = make(chan struct{}, 1)
	_, d.st.SetsClock = d.Clock.(Observer)
	d.st.SetsClock = !d.st.SetsClock
	d.mu.Unlock()
	poll := d.MinPoll
	for {
		poll = d.pollOnce(poll)
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-d.kick:
			t.Stop()
			poll = d.MinPoll
		case <-t.C:
		}
	}
}

// pollOnce asks every server, acts on the best answer, and returns the
// next poll interval: shorter after trouble or a large offset, longer while
// the clock stays close.
func (d *Discipline) pollOnce(poll time.Duration) time.Duration {
	d.mu.Lock()
	servers := append([]string(nil), d.servers...)
	d.mu.Unlock()
	samples := make([]status.NTPSample, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			samples[i] = d.Query(s)
		}()
	}
	wg.Wait()
	best, ok := Best(samples)
	d.mu.Lock()
	d.st.Samples = samples
	d.st.Poll = poll
	var next time.Duration
	switch {
	case len(servers) == 0:
		d.st.LastError = "no NTP servers configured or learned from DHCP"
		next = d.MaxPoll
	case !ok:
		var errs []string
		for _, s := range samples {
			errs = append(errs, s.Server+": "+s.Err)
		}
		d.st.LastError = "no usable answer: " + fmt.Sprint(errs)
		// Lose "synced" only after missing several polls in a row.
		if time.Since(d.st.LastSync) > 4*d.MaxPoll {
			d.st.Synced = false
		}
		// At boot the network may not be up yet: try again soon, then
		// back off to the normal interval.
		next = min(2*time.Second<<min(d.fails, 10), d.MinPoll)
		d.fails++
	default:
		d.fails = 0
		d.st.LastError = ""
		d.st.Server, d.st.Stratum, d.st.Offset, d.st.RTT = best.Server, best.Stratum, best.Offset, best.RTT
		action, err := d.correct(best.Offset)
		if err != nil {
			d.st.LastError = err.Error()
			next = d.MinPoll
			break
		}
		d.st.LastAction = action
		d.st.Synced, d.st.LastSync = true, time.Now()
		next = poll
		switch {
		case action == "step":
			next = d.MinPoll
		case abs(best.Offset) < 50*time.Millisecond:
			next = min(2*poll, d.MaxPoll)
		case abs(best.Offset) > 128*time.Millisecond:
			next = max(poll/2, d.MinPoll)
		}
	}
	st := d.st
	first := st.Synced && !d.synced
	d.synced = d.synced || st.Synced
	d.mu.Unlock()
	if ok {
		d.Log.Info("ntp sample", "server", best.Server, "offset", best.Offset, "rtt", best.RTT, "stratum", best.Stratum, "action", st.LastAction)
	} else if len(servers) > 0 {
		d.Log.Warn("ntp: no usable answer", "err", st.LastError)
	}
	if d.OnStatus != nil {
		d.OnStatus(st)
	}
	if first && d.OnSynced != nil {
		d.OnSynced()
	}
	return next
}

// correct slews an offset below StepThreshold and steps a larger one.
// Called with d.mu held.
func (d *Discipline) correct(offset time.Duration) (string, error) {
	if _, observing := d.Clock.(Observer); observing {
		return "none (clock not ours to set)", nil
	}
	if abs(offset) >= StepThreshold {
		d.Log.Warn("stepping the clock", "offset", offset)
		if err := d.Clock.Step(offset); err != nil {
			return "", fmt.Errorf("step clock by %v: %w", offset, err)
		}
		d.st.Steps++
		return "step", nil
	}
	if err := d.Clock.Slew(offset); err != nil {
		return "", fmt.Errorf("slew clock by %v: %w", offset, err)
	}
	d.st.Slews++
	return "slew", nil
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
