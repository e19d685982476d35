package scheduler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Concurrency is what a fire does while a run of its integration is in
// progress.
type Concurrency string

// Concurrency policies.
const (
	Allow   Concurrency = "allow"   // start another run
	Forbid  Concurrency = "forbid"  // skip this fire (the default)
	Replace Concurrency = "replace" // cancel the running run, then start
)

// Missed is the missed-fire policy.
type Missed string

// Missed-fire policies.
const (
	MissedSkip    Missed = "skip"     // missed fire times do not fire (the default)
	MissedRunOnce Missed = "run_once" // one fire for the most recent missed time
)

// Entry is one schedule of one tenant.
type Entry struct {
	Tenant      string
	Name        string
	Integration string
	Spec        string
	Location    *time.Location // nil: UTC
	Concurrency Concurrency    // "": forbid
	Missed      Missed         // "": skip
	Enabled     bool
}

// Fire is one fire of a schedule, handed to Options.Fire.
type Fire struct {
	Tenant      string
	Schedule    string
	Integration string
	// At is the scheduled fire time (in the schedule's zone), not the time it
	// was handled.
	At     time.Time
	Policy Concurrency
	// CatchUp marks the one fire of a missed-fire run_once.
	CatchUp bool
	// Replaced is the id of the run cancelled for this fire (replace).
	Replaced string
}

// Outcome is what became of a fire time on this node.
type Outcome string

// Outcomes.
const (
	OutcomeFired          Outcome = "fired"           // Fire returned nil
	OutcomeFailed         Outcome = "failed"          // Fire (or the Running check) returned an error
	OutcomeDuplicate      Outcome = "duplicate"       // another node claimed it
	OutcomeSkippedRunning Outcome = "skipped_running" // forbid: a run was in progress
	OutcomeMissed         Outcome = "missed"          // not fired: missed-fire policy
	OutcomeSkipped        Outcome = "skipped"         // Fire declined it (ErrSkip)
)

// ErrSkip, returned (or wrapped) by Fire, declines a fire without it being a
// failure: the integration is deactivated, say. The outcome is "skipped".
var ErrSkip = errors.New("fire skipped")

// Event reports a handled fire time (Options.Observe): metrics and logs.
type Event struct {
	Fire    Fire
	Outcome Outcome
	// Lag is how late the fire time was handled.
	Lag time.Duration
	// Count is the number of fire times the event stands for (missed: may be
	// more than one; at most a lower bound after very long downtime).
	Count int
	Err   error
}

// Options configure a Scheduler.
type Options struct {
	// JetStream holds claims and state, shared by every node. nil keeps them in
	// memory: one process only (tests, tools).
	JetStream jetstream.JetStream
	Replicas  int // of the stream and bucket on a cluster (default 1)
	// Clock is the time source (default: the real clock).
	Clock Clock
	// Fire starts a run. It is called once cluster-wide per fire and must not
	// block for the run's duration. Required.
	Fire func(ctx context.Context, f Fire) error
	// Running reports a run in progress of an integration (its id). With it the
	// scheduler enforces the concurrency policy; see the package comment.
	Running func(ctx context.Context, tenant, integration string) (runID string, running bool, err error)
	// Cancel cancels a run (the replace policy).
	Cancel func(ctx context.Context, tenant, runID string) error
	// Observe is called for every handled fire time.
	Observe func(Event)
	// MisfireThreshold: a fire time handled later than this is missed
	// (default 1 minute).
	MisfireThreshold time.Duration
	// Node names this process in claim messages (diagnostics).
	Node   string
	Logger *slog.Logger
}

// Scheduler fires schedules; see the package comment.
type Scheduler struct {
	opts  Options
	clock Clock
	st    store
	log   *slog.Logger
	wake  chan struct{}

	pendMu  sync.Mutex
	pending []*entry // the next Set, applied by RunDue / NextDue
	pendSet bool

	mu      sync.Mutex // guards entries; held while RunDue handles them
	entries map[string]*entry
}

type entry struct {
	Entry
	spec    *Spec
	sig     string
	loaded  bool      // State read (and its Sig written) on this node
	cursor  time.Time // fire times up to and including cursor are handled
	next    time.Time // first fire time after cursor (zero: never)
	retryAt time.Time // after an error: not before
}

func (e *entry) key() string { return e.Tenant + "/" + e.Name }

// New creates a Scheduler, and with Options.JetStream its stream and bucket
// (idempotently).
func New(ctx context.Context, opts Options) (*Scheduler, error) {
	if opts.Fire == nil {
		return nil, errors.New("scheduler: Options.Fire is required")
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.MisfireThreshold <= 0 {
		opts.MisfireThreshold = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Scheduler{opts: opts, clock: opts.Clock, log: opts.Logger, wake: make(chan struct{}, 1), entries: map[string]*entry{}}
	if opts.JetStream != nil {
		st, err := openJetStream(ctx, opts.JetStream, opts.Replicas)
		if err != nil {
			return nil, err
		}
		s.st = st
	} else {
		s.st = newMemStore()
	}
	return s, nil
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// Set replaces the schedules. Invalid entries are left out and reported in
// the error; the valid ones are used. A schedule whose expression, zone and
// enabled flag are unchanged keeps its place in time.
func (s *Scheduler) Set(entries []Entry) error {
	var errs []error
	var out []*entry
	seen := map[string]bool{}
	for _, in := range entries {
		e, err := newEntry(in)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[e.key()] {
			errs = append(errs, fmt.Errorf("schedule %s of tenant %s: listed twice", e.Name, e.Tenant))
			continue
		}
		seen[e.key()] = true
		out = append(out, e)
	}
	s.pendMu.Lock()
	s.pending, s.pendSet = out, true
	s.pendMu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return errors.Join(errs...)
}

func newEntry(in Entry) (*entry, error) {
	if !nameRe.MatchString(in.Tenant) || !nameRe.MatchString(in.Name) || !nameRe.MatchString(in.Integration) {
		return nil, fmt.Errorf("schedule %q of tenant %q (integration %q): names must be 1-128 letters, digits, '_' or '-'", in.Name, in.Tenant, in.Integration)
	}
	switch in.Concurrency {
	case "":
		in.Concurrency = Forbid
	case Allow, Forbid, Replace:
	default:
		return nil, fmt.Errorf("schedule %s of tenant %s: concurrency %q is not allow, forbid or replace", in.Name, in.Tenant, in.Concurrency)
	}
	switch in.Missed {
	case "":
		in.Missed = MissedSkip
	case MissedSkip, MissedRunOnce:
	default:
		return nil, fmt.Errorf("schedule %s of tenant %s: missed-fire policy %q is not skip or run_once", in.Name, in.Tenant, in.Missed)
	}
	sp, err := Parse(in.Spec, in.Location)
	if err != nil {
		return nil, fmt.Errorf("schedule %s of tenant %s: %w", in.Name, in.Tenant, err)
	}
	return &entry{Entry: in, spec: sp, sig: fmt.Sprintf("%s|%s|%t", in.Spec, sp.Location(), in.Enabled)}, nil
}

// applyPending installs the last Set; s.mu is held.
func (s *Scheduler) applyPending(ctx context.Context) {
	s.pendMu.Lock()
	pending, ok := s.pending, s.pendSet
	s.pending, s.pendSet = nil, false
	s.pendMu.Unlock()
	if !ok {
		return
	}
	next := make(map[string]*entry, len(pending))
	for _, e := range pending {
		if old, ok := s.entries[e.key()]; ok && old.sig == e.sig {
			e.loaded, e.cursor, e.next, e.retryAt = old.loaded, old.cursor, old.next, old.retryAt
		}
		next[e.key()] = e
	}
	for k, old := range s.entries {
		if _, ok := next[k]; !ok && old.loaded {
			// Removed: forget its place in time, so that a schedule added again
			// under this name does not catch up on the time it was gone.
			if _, err := s.st.update(ctx, old.Tenant, old.Name, func(st *State) { st.Sig = "" }); err != nil {
				s.log.Warn("schedule removed: resetting its state", "tenant", old.Tenant, "schedule", old.Name, "error", err)
			}
		}
	}
	s.entries = next
}

// NextDue is the earliest time something is due (a fire time, or loading
// the state of a new schedule); false when nothing is scheduled.
func (s *Scheduler) NextDue() (time.Time, bool) {
	s.pendMu.Lock()
	pending := s.pendSet
	s.pendMu.Unlock()
	if pending {
		return s.clock.Now(), true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var best time.Time
	for _, e := range s.entries {
		var t time.Time
		switch {
		case !e.loaded:
			t = s.clock.Now()
		case e.next.IsZero():
			continue
		default:
			t = e.next
		}
		if t.Before(e.retryAt) {
			t = e.retryAt
		}
		if best.IsZero() || t.Before(best) {
			best = t
		}
	}
	return best, !best.IsZero()
}

// maxWait bounds a sleep, so that wall-clock jumps are noticed.
const maxWait = time.Minute

// Run handles due fire times until ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	for {
		if err := s.RunDue(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("scheduler", "error", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		wait := maxWait
		if next, ok := s.NextDue(); ok {
			wait = min(wait, max(0, next.Sub(s.clock.Now())))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-s.clock.After(wait):
		}
	}
}

// RunDue handles every fire time due at the clock's now, once. Run calls it;
// tests call it directly with a FakeClock.
func (s *Scheduler) RunDue(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applyPending(ctx)
	es := make([]*entry, 0, len(s.entries))
	for _, e := range s.entries {
		es = append(es, e)
	}
	sort.Slice(es, func(i, j int) bool { return es[i].key() < es[j].key() })
	var errs []error
	for _, e := range es {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		now := s.clock.Now()
		if now.Before(e.retryAt) {
			continue
		}
		if err := s.handle(ctx, e, now); err != nil {
			e.retryAt = now.Add(time.Second)
			errs = append(errs, fmt.Errorf("schedule %s of tenant %s: %w", e.Name, e.Tenant, err))
		}
	}
	return errors.Join(errs...)
}

func (s *Scheduler) handle(ctx context.Context, e *entry, now time.Time) error {
	if !e.loaded {
		if err := s.load(ctx, e, now); err != nil {
			return err
		}
	}
	if !e.Enabled || e.next.IsZero() || e.next.After(now) {
		return nil
	}
	first := e.next
	last, n := e.spec.lastAtOrBefore(first, now)
	if now.Sub(last) > s.opts.MisfireThreshold {
		// Every due fire time is late: downtime, or this node fell behind.
		// Another node may have handled them.
		st, found, err := s.st.get(ctx, e.Tenant, e.Name)
		if err != nil {
			return err
		}
		if found && st.Sig == e.sig && st.Checked.After(e.cursor) {
			e.setCursor(st.Checked)
			if e.next.IsZero() || e.next.After(now) {
				return nil
			}
			first = e.next
			last, n = e.spec.lastAtOrBefore(first, now)
		}
	}
	late := now.Sub(last) > s.opts.MisfireThreshold
	f := s.fireOf(e, last)
	switch {
	case !late || e.Missed == MissedRunOnce:
		if n > 1 {
			s.observe(Event{Fire: s.fireOf(e, first), Outcome: OutcomeMissed, Lag: now.Sub(first), Count: n - 1})
		}
		f.CatchUp = late
		return s.fire(ctx, e, f, now)
	default:
		s.observe(Event{Fire: f, Outcome: OutcomeMissed, Lag: now.Sub(last), Count: n})
		s.log.Info("missed schedule fires skipped", "tenant", e.Tenant, "schedule", e.Name, "count", n, "last", last)
		if _, err := s.st.update(ctx, e.Tenant, e.Name, func(st *State) {
			if st.Checked.Before(last) {
				st.Checked = last
			}
			st.LastOutcome = OutcomeMissed
		}); err != nil {
			s.log.Warn("recording missed fires", "tenant", e.Tenant, "schedule", e.Name, "error", err)
		}
		e.setCursor(last)
		return nil
	}
}

func (s *Scheduler) fireOf(e *entry, at time.Time) Fire {
	return Fire{Tenant: e.Tenant, Schedule: e.Name, Integration: e.Integration, At: at, Policy: e.Concurrency}
}

// load reads the schedule's State; a schedule that is new, re-enabled or
// changed starts at now.
func (s *Scheduler) load(ctx context.Context, e *entry, now time.Time) error {
	st, found, err := s.st.get(ctx, e.Tenant, e.Name)
	if err != nil {
		return err
	}
	if !found || st.Sig != e.sig {
		st, err = s.st.update(ctx, e.Tenant, e.Name, func(st *State) {
			if st.Sig != e.sig {
				st.Sig = e.sig
				if st.Checked.Before(now) {
					st.Checked = now
				}
			}
		})
		if err != nil {
			return err
		}
	}
	cursor := st.Checked
	if st.LastFire.After(cursor) {
		cursor = st.LastFire
	}
	e.loaded = true
	e.setCursor(cursor)
	return nil
}

func (e *entry) setCursor(t time.Time) {
	e.cursor = t
	e.next = time.Time{}
	if !e.Enabled {
		return
	}
	if next, err := e.spec.Next(t); err == nil {
		e.next = next
	}
}

// fire claims f cluster-wide, applies the concurrency policy and calls Fire.
func (s *Scheduler) fire(ctx context.Context, e *entry, f Fire, now time.Time) error {
	won, err := s.st.claim(ctx, f, s.opts.Node)
	if err != nil {
		return err // not handled: retried (and late after MisfireThreshold)
	}
	lag := now.Sub(f.At)
	if !won {
		e.setCursor(f.At)
		s.observe(Event{Fire: f, Outcome: OutcomeDuplicate, Lag: lag, Count: 1})
		return nil
	}
	outcome := OutcomeFired
	var ferr error
	if f.Policy != Allow && s.opts.Running != nil {
		id, running, err := s.opts.Running(ctx, f.Tenant, f.Integration)
		switch {
		case err != nil:
			outcome, ferr = OutcomeFailed, fmt.Errorf("checking for a running run: %w", err)
		case running && f.Policy == Forbid:
			outcome = OutcomeSkippedRunning
		case running && f.Policy == Replace:
			f.Replaced = id
			if s.opts.Cancel != nil {
				if err := s.opts.Cancel(ctx, f.Tenant, id); err != nil {
					s.log.Warn("schedule replace: cancelling the running run", "tenant", f.Tenant, "schedule", f.Schedule, "run", id, "error", err)
				}
			}
		}
	}
	if outcome == OutcomeFired {
		if ferr = s.opts.Fire(ctx, f); errors.Is(ferr, ErrSkip) {
			outcome = OutcomeSkipped
		} else if ferr != nil {
			outcome = OutcomeFailed
		}
	}
	if ferr != nil && outcome == OutcomeFailed {
		s.log.Warn("schedule fire failed", "tenant", f.Tenant, "schedule", f.Schedule, "at", f.At, "error", ferr)
	}
	if _, err := s.st.update(ctx, f.Tenant, f.Schedule, func(st *State) {
		if st.Checked.Before(f.At) {
			st.Checked = f.At
		}
		if outcome == OutcomeFired || outcome == OutcomeFailed {
			if st.LastFire.Before(f.At) {
				st.LastFire = f.At
			}
		}
		st.LastOutcome, st.LastError = outcome, ""
		if ferr != nil {
			st.LastError = ferr.Error()
		}
	}); err != nil {
		s.log.Warn("recording a schedule fire", "tenant", f.Tenant, "schedule", f.Schedule, "error", err)
	}
	e.setCursor(f.At)
	s.observe(Event{Fire: f, Outcome: outcome, Lag: lag, Count: 1, Err: ferr})
	return nil
}

func (s *Scheduler) observe(ev Event) {
	if s.opts.Observe != nil {
		s.opts.Observe(ev)
	}
}

// State reads a schedule's State from the store.
func (s *Scheduler) State(ctx context.Context, tenant, name string) (State, bool, error) {
	return s.st.get(ctx, tenant, name)
}

// lastAtOrBefore returns the last fire time at or before now, given the
// first one (≤ now), and how many there are from first to it (a lower bound
// when there are very many).
func (s *Spec) lastAtOrBefore(first, now time.Time) (time.Time, int) {
	last, n := first, 1
	for ; n < 10000; n++ {
		next, err := s.Next(last)
		if err != nil || next.After(now) {
			return last, n
		}
		last = next
	}
	// Very many (a frequent schedule after long downtime): search backwards
	// from now in growing windows.
	for _, w := range []time.Duration{time.Hour, 24 * time.Hour, 8 * 24 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour, maxSearch} {
		t := now.Add(-w)
		if t.Before(last) {
			t = last
		}
		var found time.Time
		for range 100000 {
			next, err := s.Next(t)
			if err != nil || next.After(now) {
				break
			}
			found, t = next, next
		}
		if !found.IsZero() {
			return found, n
		}
	}
	return last, n
}
