package ntp

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"gatehouse/status"
)

func TestBestSkipsBadAnswersAndPrefersLeastUncertain(t *testing.T) {
	samples := []status.NTPSample{
		{Server: "kod", Err: "kiss of death"},
		{Server: "far", Offset: time.Millisecond, RootDistance: 80 * time.Millisecond, RTT: 10 * time.Millisecond},
		{Server: "near", Offset: 2 * time.Millisecond, RootDistance: 20 * time.Millisecond, RTT: 40 * time.Millisecond},
	}
	best, ok := Best(samples)
	if !ok || best.Server != "near" {
		t.Errorf("best %+v", best)
	}
	if _, ok := Best([]status.NTPSample{{Server: "x", Err: "timeout"}}); ok {
		t.Error("a failed sample was chosen")
	}
}

type recordingClock struct{ slews, steps []time.Duration }

func (c *recordingClock) Slew(d time.Duration) error { c.slews = append(c.slews, d); return nil }
func (c *recordingClock) Step(d time.Duration) error { c.steps = append(c.steps, d); return nil }

func TestDisciplineSlewsSmallStepsLargeAndAdaptsPoll(t *testing.T) {
	offsets := []time.Duration{2 * time.Second, 10 * time.Millisecond, 5 * time.Millisecond, 300 * time.Millisecond}
	i := 0
	c := &recordingClock{}
	var synced int
	d := &Discipline{Clock: c, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), MinPoll: 16 * time.Second, MaxPoll: 64 * time.Second,
		Query: func(s string) status.NTPSample {
			o := offsets[i]
			i++
			return status.NTPSample{Server: s, Offset: o, Stratum: 2, RootDistance: 10 * time.Millisecond}
		},
		OnSynced: func() { synced++ },
	}
	d.SetServers([]string{"ntp.test"}, "config")
	poll := d.MinPoll
	var polls []time.Duration
	for range offsets {
		poll = d.pollOnce(poll)
		polls = append(polls, poll)
	}
	if len(c.steps) != 1 || c.steps[0] != 2*time.Second {
		t.Errorf("steps %v, want one of 2s", c.steps)
	}
	if len(c.slews) != 3 {
		t.Errorf("slews %v, want 3", c.slews)
	}
	// step -> back to min; small offsets -> doubling; 300ms -> halving.
	want := []time.Duration{16 * time.Second, 32 * time.Second, 64 * time.Second, 32 * time.Second}
	for k := range want {
		if polls[k] != want[k] {
			t.Fatalf("polls %v, want %v", polls, want)
		}
	}
	if synced != 1 {
		t.Errorf("OnSynced called %d times, want once", synced)
	}
	if st := d.st; !st.Synced || st.Steps != 1 || st.Slews != 3 {
		t.Errorf("status %+v", st)
	}
}

func TestObserverNeverTouchesTheClock(t *testing.T) {
	d := &Discipline{Clock: Observer{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Query: func(s string) status.NTPSample { return status.NTPSample{Server: s, Offset: time.Hour, Stratum: 1} }}
	d.SetServers([]string{"x"}, "config")
	d.pollOnce(MinPoll)
	if d.st.Steps != 0 || d.st.Slews != 0 || !d.st.Synced {
		t.Errorf("observer: %+v", d.st)
	}
}
