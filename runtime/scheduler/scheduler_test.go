package scheduler

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/runtime"
)

// recorder collects fires and events.
type recorder struct {
	mu     sync.Mutex
	fires  []Fire
	events []Event
}

func (r *recorder) fire(_ context.Context, f Fire) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fires = append(r.fires, f)
	return nil
}

func (r *recorder) observe(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

// of lists the fire times of one schedule, formatted like fmtFire.
func (r *recorder) of(name string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, f := range r.fires {
		if f.Schedule == name {
			out = append(out, fmtFire(f.At))
		}
	}
	return out
}

func (r *recorder) count(o Outcome) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ev := range r.events {
		if ev.Outcome == o {
			n += ev.Count
		}
	}
	return n
}

func newTestScheduler(t *testing.T, clock Clock, opts Options) (*Scheduler, *recorder) {
	t.Helper()
	rec := &recorder{}
	if opts.Fire == nil {
		opts.Fire = rec.fire
	}
	opts.Observe = rec.observe
	opts.Clock = clock
	s, err := New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, rec
}

func openRuntime(t *testing.T) *runtime.Runtime {
	t.Helper()
	rt, err := runtime.Open(context.Background(), runtime.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

// step advances the clock from its time to `to` in steps of d, letting each
// scheduler handle what is due after every step.
func step(t *testing.T, c *FakeClock, to time.Time, d time.Duration, ss ...*Scheduler) {
	t.Helper()
	for c.Now().Before(to) {
		next := c.Now().Add(d)
		if next.After(to) {
			next = to
		}
		c.Set(next)
		for _, s := range ss {
			if err := s.RunDue(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// jump moves the clock exactly to each next due time until `to`.
func jump(t *testing.T, c *FakeClock, to time.Time, s *Scheduler) {
	t.Helper()
	for {
		if err := s.RunDue(t.Context()); err != nil {
			t.Fatal(err)
		}
		next, ok := s.NextDue()
		if !ok || next.After(to) {
			c.Set(to)
			if err := s.RunDue(t.Context()); err != nil {
				t.Fatal(err)
			}
			return
		}
		c.Set(next)
	}
}

// TestSchedulerDST runs schedules on a fake clock across the 2026 DST
// transitions of Europe/Amsterdam and America/New_York and checks the exact
// fires, stepping the clock by a minute, by 7 seconds, and straight to each
// due time.
func TestSchedulerDST(t *testing.T) {
	ams, ny := mustLoc(t, "Europe/Amsterdam"), mustLoc(t, "America/New_York")
	entries := []Entry{
		{Tenant: "acme", Name: "ams_daily", Integration: "i", Spec: "30 2 * * *", Location: ams, Enabled: true},
		{Tenant: "acme", Name: "ams_half", Integration: "i", Spec: "*/30 * * * *", Location: ams, Enabled: true},
		{Tenant: "acme", Name: "ams_hour", Integration: "i", Spec: "0 * * * *", Location: ams, Enabled: true},
		{Tenant: "acme", Name: "ams_hourly", Integration: "i", Spec: "@hourly", Location: ams, Enabled: true},
		{Tenant: "acme", Name: "ams_seconds", Integration: "i", Spec: "10 30 2 * * *", Location: ams, Enabled: true},
		{Tenant: "acme", Name: "ams_off", Integration: "i", Spec: "* * * * *", Location: ams, Enabled: false},
		{Tenant: "beta", Name: "ny_daily", Integration: "i", Spec: "30 1 * * *", Location: ny, Enabled: true},
		{Tenant: "beta", Name: "ny_daily2", Integration: "i", Spec: "30 2 * * *", Location: ny, Enabled: true},
		{Tenant: "beta", Name: "ny_half", Integration: "i", Spec: "*/30 * * * *", Location: ny, Enabled: true},
	}
	windows := []struct {
		name     string
		from, to time.Time
		daily    map[string][]string
	}{
		{"spring", time.Date(2026, 3, 7, 12, 0, 0, 0, time.UTC), time.Date(2026, 3, 9, 12, 0, 0, 0, time.UTC), map[string][]string{
			"ny_daily":  {"03-08 01:30:00 EST 06:30Z", "03-09 01:30:00 EDT 05:30Z"},
			"ny_daily2": {"03-08 03:00:00 EDT 07:00Z", "03-09 02:30:00 EDT 06:30Z"},
		}},
		{"spring", time.Date(2026, 3, 28, 12, 0, 0, 0, time.UTC), time.Date(2026, 3, 30, 12, 0, 0, 0, time.UTC), map[string][]string{
			"ams_daily":   {"03-29 03:00:00 CEST 01:00Z", "03-30 02:30:00 CEST 00:30Z"},
			"ams_seconds": {"03-29 03:00:00 CEST 01:00Z", "03-30 02:30:10 CEST 00:30Z"},
		}},
		{"fall", time.Date(2026, 10, 24, 12, 0, 0, 0, time.UTC), time.Date(2026, 10, 26, 12, 0, 0, 0, time.UTC), map[string][]string{
			"ams_daily":   {"10-25 02:30:00 CEST 00:30Z", "10-26 02:30:00 CET 01:30Z"},
			"ams_seconds": {"10-25 02:30:10 CEST 00:30Z", "10-26 02:30:10 CET 01:30Z"},
		}},
		{"fall", time.Date(2026, 10, 31, 12, 0, 0, 0, time.UTC), time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC), map[string][]string{
			"ny_daily":  {"11-01 01:30:00 EDT 05:30Z", "11-02 01:30:00 EST 06:30Z"},
			"ny_daily2": {"11-01 02:30:00 EST 07:30Z", "11-02 02:30:00 EST 07:30Z"},
		}},
	}
	for _, w := range windows {
		for _, stepBy := range []time.Duration{time.Minute, 7 * time.Second, 0} {
			t.Run(fmt.Sprintf("%s %s step %s", w.name, w.from.Format("01-02"), stepBy), func(t *testing.T) {
				c := NewFakeClock(w.from)
				s, rec := newTestScheduler(t, c, Options{})
				if err := s.Set(entries); err != nil {
					t.Fatal(err)
				}
				if stepBy == 0 {
					jump(t, c, w.to, s)
				} else {
					step(t, c, w.to, stepBy, s)
				}
				for _, e := range entries {
					want := fires(t, e.Spec, e.Location, w.from, w.to)
					if !e.Enabled {
						want = nil
					}
					if d, ok := w.daily[e.Name]; ok && !slices.Equal(d, want) {
						t.Fatalf("%s: Next gives %q, want %q", e.Name, want, d)
					}
					if got := rec.of(e.Name); !slices.Equal(got, want) {
						t.Errorf("%s (%s in %s):\n got %q\nwant %q", e.Name, e.Spec, e.Location, got, want)
					}
				}
				if n := rec.count(OutcomeMissed); n != 0 {
					t.Errorf("%d fires missed", n)
				}
			})
		}
	}
}

// TestClusterOnce runs two schedulers (two nodes) on one embedded JetStream:
// every fire happens exactly once, whichever node is first, also when both
// handle the same fire time at the same moment.
func TestClusterOnce(t *testing.T) {
	t.Run("alternating", func(t *testing.T) { testClusterOnce(t, false) })
	t.Run("parallel", func(t *testing.T) { testClusterOnce(t, true) })
}

func testClusterOnce(t *testing.T, parallel bool) {
	rt := openRuntime(t)
	ams := mustLoc(t, "Europe/Amsterdam")
	entries := []Entry{
		{Tenant: "acme", Name: "half", Integration: "i", Spec: "*/30 * * * *", Location: ams, Enabled: true},
		{Tenant: "acme", Name: "daily", Integration: "i", Spec: "30 2 * * *", Location: ams, Enabled: true},
		{Tenant: "beta", Name: "half", Integration: "j", Spec: "*/30 * * * *", Location: ams, Enabled: true},
	}
	from := time.Date(2026, 10, 24, 22, 0, 0, 0, time.UTC)
	to := from.Add(6 * time.Hour)
	// Each node has its own clock.
	ca, cb := NewFakeClock(from), NewFakeClock(from)
	a, ra := newTestScheduler(t, ca, Options{JetStream: rt.JetStream(), Node: "a"})
	b, rb := newTestScheduler(t, cb, Options{JetStream: rt.JetStream(), Node: "b"})
	for _, s := range []*Scheduler{a, b} {
		if err := s.Set(entries); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; ca.Now().Before(to); i++ {
		ca.Advance(time.Minute)
		cb.Advance(time.Minute)
		// Alternate which node looks first.
		order := []*Scheduler{a, b}
		if (i/30)%2 == 0 {
			order = []*Scheduler{b, a}
		}
		if parallel {
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for j, s := range order {
				wg.Go(func() { errs[j] = s.RunDue(t.Context()) })
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		for _, s := range order {
			if err := s.RunDue(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, e := range entries {
		var ats []time.Time
		for _, r := range []*recorder{ra, rb} {
			for _, f := range r.fires {
				if f.Tenant == e.Tenant && f.Schedule == e.Name {
					ats = append(ats, f.At)
				}
			}
		}
		slices.SortFunc(ats, time.Time.Compare)
		var got []string
		for _, at := range ats {
			got = append(got, fmtFire(at))
		}
		want := fires(t, e.Spec, e.Location, from, to)
		if !slices.Equal(got, want) {
			t.Errorf("%s/%s: fires across both nodes:\n got %q\nwant %q", e.Tenant, e.Name, got, want)
		}
	}
	fa, fb := ra.count(OutcomeFired), rb.count(OutcomeFired)
	da, db := ra.count(OutcomeDuplicate), rb.count(OutcomeDuplicate)
	if (!parallel && (fa == 0 || fb == 0)) || da != fb || db != fa {
		t.Errorf("node a fired %d, saw %d duplicates; node b fired %d, saw %d duplicates: want both nodes to fire some and lose the rest", fa, da, fb, db)
	}
	// The shared state has the last fire.
	st, found, err := ReadState(t.Context(), rt.JetStream(), "acme", "daily")
	if err != nil || !found || !st.LastFire.Equal(time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC)) || st.LastOutcome != OutcomeFired {
		t.Errorf("state of acme/daily: %+v %v %v", st, found, err)
	}
	// The claims are in the stream, one message per fire.
	info, err := rt.JetStream().Stream(t.Context(), FiresStream)
	if err != nil {
		t.Fatal(err)
	}
	si, err := info.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := si.State.Msgs; got != uint64(fa+fb) {
		t.Errorf("%d claim messages, want %d", got, fa+fb)
	}
}

// TestMissedFire simulates downtime: a node fires, stops, and a new node
// starts hours later.
func TestMissedFire(t *testing.T) {
	for _, c := range []struct {
		missed  Missed
		restart time.Duration // after 11:00:05
		want    []string      // fires after the restart, until 17:30
		catchUp bool
		missedN int
	}{
		{MissedSkip, 4*time.Hour + 20*time.Minute, []string{"16:00Z", "17:00Z"}, false, 4},
		{MissedRunOnce, 4*time.Hour + 20*time.Minute, []string{"15:00Z", "16:00Z", "17:00Z"}, true, 3},
		// Back within the misfire threshold of 15:00: 15:00 fires on time.
		{MissedSkip, 4*time.Hour + 30*time.Second, []string{"15:00Z", "16:00Z", "17:00Z"}, false, 3},
		{MissedRunOnce, 4*time.Hour + 30*time.Second, []string{"15:00Z", "16:00Z", "17:00Z"}, false, 3},
	} {
		t.Run(fmt.Sprintf("%s after %s", c.missed, c.restart), func(t *testing.T) {
			rt := openRuntime(t)
			e := []Entry{{Tenant: "acme", Name: "hourly", Integration: "i", Spec: "0 * * * *", Missed: c.missed, Enabled: true}}
			clock := NewFakeClock(time.Date(2026, 5, 1, 10, 0, 30, 0, time.UTC))
			s1, r1 := newTestScheduler(t, clock, Options{JetStream: rt.JetStream()})
			s1.Set(e)
			step(t, clock, time.Date(2026, 5, 1, 11, 0, 5, 0, time.UTC), 5*time.Second, s1)
			if got := r1.of("hourly"); len(got) != 1 || got[0] != "05-01 11:00:00 UTC 11:00Z" {
				t.Fatalf("before the downtime: %q", got)
			}
			// Down; a new process starts later.
			clock.Advance(c.restart)
			s2, r2 := newTestScheduler(t, clock, Options{JetStream: rt.JetStream()})
			s2.Set(e)
			step(t, clock, time.Date(2026, 5, 1, 17, 30, 0, 0, time.UTC), 10*time.Second, s2)
			var got []string
			for _, f := range r2.fires {
				got = append(got, f.At.UTC().Format("15:04Z"))
				if f.CatchUp != (c.catchUp && f.At.Hour() == 15) {
					t.Errorf("fire %s: CatchUp %v", f.At, f.CatchUp)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("fires after the restart: %q, want %q", got, c.want)
			}
			if n := r2.count(OutcomeMissed); n != c.missedN {
				t.Errorf("%d missed, want %d", n, c.missedN)
			}
		})
	}
}

// TestFreshSchedule: a new, changed or re-enabled schedule does not catch up.
func TestFreshSchedule(t *testing.T) {
	clock := NewFakeClock(time.Date(2026, 5, 1, 10, 0, 30, 0, time.UTC))
	s, rec := newTestScheduler(t, clock, Options{})
	e := Entry{Tenant: "acme", Name: "h", Integration: "i", Spec: "0 * * * *", Missed: MissedRunOnce, Enabled: true}
	s.Set([]Entry{e})
	step(t, clock, time.Date(2026, 5, 1, 10, 30, 0, 0, time.UTC), time.Minute, s)
	// Disabled for hours, then enabled again: no catch-up fire.
	e.Enabled = false
	s.Set([]Entry{e})
	step(t, clock, time.Date(2026, 5, 1, 13, 30, 0, 0, time.UTC), time.Minute, s)
	if got := rec.of("h"); len(got) != 0 {
		t.Fatalf("disabled schedule fired: %q", got)
	}
	e.Enabled = true
	s.Set([]Entry{e})
	step(t, clock, time.Date(2026, 5, 1, 14, 30, 0, 0, time.UTC), time.Minute, s)
	if got := rec.of("h"); !slices.Equal(got, []string{"05-01 14:00:00 UTC 14:00Z"}) {
		t.Fatalf("after re-enabling: %q", got)
	}
	// Changing the expression restarts it (from 14:30:00, exclusive).
	e.Spec = "30 * * * *"
	s.Set([]Entry{e})
	step(t, clock, time.Date(2026, 5, 1, 15, 45, 0, 0, time.UTC), time.Minute, s)
	if got := rec.of("h"); !slices.Equal(got, []string{"05-01 14:00:00 UTC 14:00Z", "05-01 15:30:00 UTC 15:30Z"}) {
		t.Fatalf("after changing the expression: %q", got)
	}
	if n := rec.count(OutcomeMissed); n != 0 {
		t.Errorf("%d missed", n)
	}
}

func TestConcurrencyPolicy(t *testing.T) {
	var mu sync.Mutex
	var cancelled []string
	running := map[string]string{"busy": "run-1"}
	for _, c := range []struct {
		policy      Concurrency
		integration string
		outcome     Outcome
		fired       bool
		replaced    string
	}{
		{Forbid, "busy", OutcomeSkippedRunning, false, ""},
		{Forbid, "idle", OutcomeFired, true, ""},
		{Allow, "busy", OutcomeFired, true, ""},
		{Replace, "busy", OutcomeFired, true, "run-1"},
		{Replace, "idle", OutcomeFired, true, ""},
	} {
		t.Run(string(c.policy)+" "+c.integration, func(t *testing.T) {
			cancelled = nil
			clock := NewFakeClock(time.Date(2026, 5, 1, 10, 0, 30, 0, time.UTC))
			s, rec := newTestScheduler(t, clock, Options{
				Running: func(_ context.Context, tenant, integration string) (string, bool, error) {
					if c.policy == Allow {
						t.Error("Running called for allow")
					}
					id, ok := running[integration]
					return id, ok, nil
				},
				Cancel: func(_ context.Context, tenant, id string) error {
					mu.Lock()
					defer mu.Unlock()
					cancelled = append(cancelled, tenant+"/"+id)
					return nil
				},
			})
			s.Set([]Entry{{Tenant: "acme", Name: "s", Integration: c.integration, Spec: "0 * * * *", Concurrency: c.policy, Enabled: true}})
			step(t, clock, time.Date(2026, 5, 1, 11, 0, 30, 0, time.UTC), 30*time.Second, s)
			if len(rec.events) != 1 || rec.events[0].Outcome != c.outcome {
				t.Fatalf("events %+v, want one %s", rec.events, c.outcome)
			}
			if (len(rec.fires) == 1) != c.fired {
				t.Fatalf("fires %+v", rec.fires)
			}
			if c.fired && (rec.fires[0].Replaced != c.replaced || rec.fires[0].Policy != c.policy) {
				t.Errorf("fire %+v", rec.fires[0])
			}
			if c.replaced != "" && !slices.Equal(cancelled, []string{"acme/" + c.replaced}) {
				t.Errorf("cancelled %q", cancelled)
			}
			st, _, _ := s.State(t.Context(), "acme", "s")
			if st.LastOutcome != c.outcome || !st.Checked.Equal(time.Date(2026, 5, 1, 11, 0, 0, 0, time.UTC)) {
				t.Errorf("state %+v", st)
			}
		})
	}
}

// TestRun drives Run (the goroutine) with a fake clock.
func TestRun(t *testing.T) {
	ams := mustLoc(t, "Europe/Amsterdam")
	clock := NewFakeClock(time.Date(2026, 3, 29, 0, 50, 0, 0, time.UTC)) // 01:50 CET
	fired := make(chan Fire, 10)
	s, _ := newTestScheduler(t, clock, Options{Fire: func(_ context.Context, f Fire) error { fired <- f; return nil }})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	s.Set([]Entry{{Tenant: "acme", Name: "daily", Integration: "i", Spec: "30 2 * * *", Location: ams, Enabled: true}})
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("the schedule to be loaded", func() bool {
		next, ok := s.NextDue()
		return ok && next.Equal(time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC)) && clock.Waiters() > 0
	})
	clock.Set(time.Date(2026, 3, 29, 0, 59, 59, 0, time.UTC))
	select {
	case f := <-fired:
		t.Fatalf("fired early: %+v", f)
	case <-time.After(20 * time.Millisecond):
	}
	clock.Set(time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC)) // 03:00 CEST: the gap's end
	select {
	case f := <-fired:
		if fmtFire(f.At) != "03-29 03:00:00 CEST 01:00Z" {
			t.Errorf("fired %s", fmtFire(f.At))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no fire")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestSetValidates(t *testing.T) {
	s, _ := newTestScheduler(t, NewFakeClock(time.Now()), Options{})
	err := s.Set([]Entry{
		{Tenant: "acme", Name: "ok", Integration: "i", Spec: "@daily", Enabled: true},
		{Tenant: "acme", Name: "bad cron", Integration: "i", Spec: "@daily"},
		{Tenant: "acme", Name: "bad", Integration: "i", Spec: "nope"},
		{Tenant: "acme", Name: "pol", Integration: "i", Spec: "@daily", Concurrency: "sometimes"},
		{Tenant: "acme", Name: "ok", Integration: "i", Spec: "@daily"},
	})
	if err == nil {
		t.Fatal("no error")
	}
	if next, ok := s.NextDue(); !ok || next.IsZero() {
		t.Error("the valid entry was not kept")
	}
}
