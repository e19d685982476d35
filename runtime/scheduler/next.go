// Package scheduler fires ferry's schedules: cron expressions evaluated in an
// IANA time zone with explicit daylight-saving rules, once cluster-wide, with
// a concurrency policy and a missed-fire policy.
//
// # Expressions
//
// The syntax is lang.CronParser's (github.com/robfig/cron/v3): five fields
// (minute hour day-of-month month day-of-week), an optional leading seconds
// field (six fields), or a descriptor: @yearly, @monthly, @weekly, @daily
// (@midnight), @hourly, @every <duration>. A "CRON_TZ=<zone> " or "TZ=<zone> "
// prefix overrides the schedule's time zone. Day-of-month and day-of-week
// combine as in cron: if either is "*" both must match, otherwise either.
//
// # Time zones and daylight saving time
//
// Fire times are wall-clock times in the schedule's zone. robfig/cron's own
// Schedule.Next (and so Kubernetes CronJob) skips a daily 02:30 on the day
// the clocks spring forward over it and fires it twice when they fall back;
// ferry does not. It follows ISC (Vixie) cron, the cron of most Linux
// systems, and distinguishes two kinds of expression.
//
// Fixed-hour expressions are those whose hour field does not match every
// hour ("30 2 * * *", "0 9 * * 1-5", @daily, @weekly):
//
//   - A wall time that does not exist because the clocks spring forward over
//     it (02:30 on the last Sunday of March in Europe/Amsterdam) fires once,
//     at the first instant after the gap (03:00 local). Several such wall
//     times ("*/15 2 * * *") fire once together; if the first wall time after
//     the gap matches too, it is the same fire.
//   - A wall time that occurs twice because the clocks fall back (02:30 on the
//     last Sunday of October in Europe/Amsterdam) fires once, at its first
//     occurrence (02:30 CEST), never again at 02:30 CET.
//
// Every-hour expressions, whose hour field matches all 24 hours ("*/15 * * *
// *", "0 * * * *", @hourly, "*/10 * * * * *"), keep their cadence in real
// time:
//
//   - Wall times inside a spring-forward gap do not exist and do not fire.
//   - Wall times in a fall-back overlap fire at both occurrences.
//
// So "*/15 * * * *" fires every 15 real minutes and @hourly every real hour
// through both transitions, as in ISC cron.
//
// @every <duration> ignores zones: it fires at the multiples of the duration
// since the Unix epoch, so every node computes the same fire times whatever
// time it started.
//
// Fire times have whole-second precision. The rules are general: they hold
// for zones whose offset changes by 30 minutes or by more than an hour, and
// for zones that changed their standard offset.
//
// # Running schedules
//
// Every node runs a Scheduler with the schedules of every tenant (Set) and
// evaluates them against its clock (Run). When a fire time is due, the node
// claims it by publishing to FERRY_FIRES_V1 with the message id
// <tenant>.<schedule>.<unix fire time>: the stream's duplicate window (24h)
// acknowledges the first publish and marks every other as Duplicate, so
// exactly one node goes on; the others move past the fire time. The winner
// applies the concurrency policy, calls Fire, and records the fire in KV
// ferry_v1_schedules (State: lastFire, and "checked", the fire time up to
// which everything was handled, by any node).
//
// Delivery is at most once: a node that dies between its claim and Fire
// loses that fire (the claim is a few milliseconds before Fire). Fire
// receives the fire time, so a caller can make starting a run idempotent too
// (the API uses the idempotency key schedule:<name>:<unix fire time>).
//
// # Missed fires
//
// A fire time is on time when it is handled within MisfireThreshold (default
// one minute) of its time. After downtime (no node running), or when the
// scheduler could not keep up, the fire times since State.Checked are
// missed: with missed = "skip" none of them fires; with "run_once" exactly
// one fires, for the most recent missed time (Fire.CatchUp is set), and the
// schedule continues normally. When an on-time fire follows missed ones, that
// fire is the one run and the earlier ones count as missed under both
// policies. A schedule that is new, re-enabled, or whose expression or zone
// changed starts afresh at the moment a node first sees it: nothing before
// that is missed.
//
// # Concurrency
//
// The policy is enforced here when Options.Running is set: "forbid" skips the
// fire (outcome skipped_running, recorded as the schedule's last outcome)
// while a run of the integration is in progress; "replace" calls
// Options.Cancel for the running run, then fires (Fire.Replaced is its id);
// "allow" fires regardless. Without Running the policy is only passed along
// in Fire.Policy for Fire to apply.
package scheduler

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ferryhq/ferry/lang"
	"github.com/robfig/cron/v3"
)

// maxSearch bounds the search for the next fire time (an expression like
// "0 0 30 2 *" never fires).
const maxSearch = 5 * 366 * 24 * time.Hour

// ErrNoFireTime is returned when an expression has no fire time within five
// years (e.g. February 30th).
var ErrNoFireTime = errors.New("no fire time within five years")

// Spec is a parsed cron expression with its time zone.
type Spec struct {
	expr  string
	loc   *time.Location
	civil *cron.SpecSchedule // matched against naive wall times (Location UTC)
	every time.Duration      // @every: epoch-anchored interval
	// everyHour: the hour field matches all 24 hours (real-time cadence
	// through DST transitions).
	everyHour bool
}

// Parse parses a cron expression for the zone loc (nil means UTC). A
// CRON_TZ= or TZ= prefix in expr takes precedence over loc.
func Parse(expr string, loc *time.Location) (*Spec, error) {
	if loc == nil {
		loc = time.UTC
	}
	s, err := lang.CronParser.Parse(expr)
	if err != nil {
		return nil, err
	}
	sp := &Spec{expr: expr, loc: loc}
	switch c := s.(type) {
	case *cron.SpecSchedule:
		t := strings.TrimSpace(expr)
		if strings.HasPrefix(t, "TZ=") || strings.HasPrefix(t, "CRON_TZ=") {
			sp.loc = c.Location
		}
		civil := *c
		civil.Location = time.UTC
		sp.civil = &civil
		const allHours = 1<<24 - 1
		sp.everyHour = c.Hour&allHours == allHours
	case cron.ConstantDelaySchedule:
		sp.every = c.Delay
		if sp.every < time.Second {
			sp.every = time.Second
		}
	default:
		return nil, fmt.Errorf("unsupported schedule type %T", s)
	}
	return sp, nil
}

// Location is the zone the expression is evaluated in.
func (s *Spec) Location() *time.Location { return s.loc }

// String is the expression as written.
func (s *Spec) String() string { return s.expr }

// Next returns the first fire time strictly after `after`, in the spec's zone.
func (s *Spec) Next(after time.Time) (time.Time, error) {
	a := after.Unix() // floors, also before 1970
	if s.every > 0 {
		d := int64(s.every / time.Second)
		n := a/d + 1
		if a < 0 && a%d != 0 {
			n = a / d
		}
		return time.Unix(n*d, 0).In(s.loc), nil
	}
	limit := a + int64(maxSearch/time.Second)
	lo := a + 1 // the first candidate instant
	for p := periodAt(s.loc, lo); ; {
		// A spring-forward gap right before this period: the wall times
		// [start+prevOff, start+off) never occur.
		if p.trans && p.start >= lo && !s.everyHour && p.off > p.prevOff {
			if w, ok := s.civilAtOrAfter(p.start + int64(p.prevOff)); ok && w < p.start+int64(p.off) {
				return time.Unix(p.start, 0).In(s.loc), nil
			}
		}
		from := max(lo, p.start) + int64(p.off) // wall time of the first candidate
		// A fall-back overlap right before this period: the wall times
		// [start+off, start+prevOff) occurred already; fixed-hour expressions
		// fire only at their first occurrence.
		if !s.everyHour && p.off < p.prevOff {
			from = max(from, p.start+int64(p.prevOff))
		}
		w, ok := s.civilAtOrAfter(from)
		if !ok || w-int64(p.off) > limit {
			return time.Time{}, fmt.Errorf("%q: %w", s.expr, ErrNoFireTime)
		}
		if p.end == 0 || w-int64(p.off) < p.end {
			return time.Unix(w-int64(p.off), 0).In(s.loc), nil
		}
		p = periodAt(s.loc, p.end)
	}
}

// NextN returns the next n fire times after `after`.
func (s *Spec) NextN(after time.Time, n int) ([]time.Time, error) {
	out := make([]time.Time, 0, max(n, 0))
	t := after
	for range n {
		next, err := s.Next(t)
		if err != nil {
			return out, err
		}
		out = append(out, next)
		t = next
	}
	return out, nil
}

// Next returns the first fire time of spec in loc strictly after `after`.
func Next(spec string, loc *time.Location, after time.Time) (time.Time, error) {
	s, err := Parse(spec, loc)
	if err != nil {
		return time.Time{}, err
	}
	return s.Next(after)
}

// NextN returns the next n fire times of spec in loc after `after`.
func NextN(spec string, loc *time.Location, after time.Time, n int) ([]time.Time, error) {
	s, err := Parse(spec, loc)
	if err != nil {
		return nil, err
	}
	return s.NextN(after, n)
}

// civilAtOrAfter is the first wall time (a naive time as Unix seconds, i.e.
// read as UTC) at or after w that matches the expression's fields.
func (s *Spec) civilAtOrAfter(w int64) (int64, bool) {
	t := s.civil.Next(time.Unix(w-1, 0).UTC())
	if t.IsZero() {
		return 0, false
	}
	return t.Unix(), true
}

// period is a stretch of time with one UTC offset: [start, end) as Unix
// seconds (end 0: no later transition); prevOff is the offset before start.
type period struct {
	start, end   int64
	off, prevOff int
	trans        bool // the offset changed at start
}

func periodAt(loc *time.Location, u int64) period {
	t := time.Unix(u, 0).In(loc)
	_, off := t.Zone()
	start, end := t.ZoneBounds()
	p := period{off: off, prevOff: off}
	if !start.IsZero() {
		p.start = start.Unix()
		_, p.prevOff = time.Unix(p.start-1, 0).In(loc).Zone()
		p.trans = p.prevOff != off
	} else {
		p.start = u
	}
	if !end.IsZero() {
		p.end = end.Unix()
	}
	return p
}
