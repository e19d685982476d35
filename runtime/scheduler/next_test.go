package scheduler

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ferryhq/ferry/lang"
)

func mustLoc(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// fires lists the fire times in (from, to], formatted in the spec's zone with
// the UTC time, so offsets are visible.
func fires(t *testing.T, spec string, loc *time.Location, from, to time.Time) []string {
	t.Helper()
	s, err := Parse(spec, loc)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for at := from; ; {
		next, err := s.Next(at)
		if err != nil {
			t.Fatal(err)
		}
		if next.After(to) {
			return out
		}
		if !next.After(at) {
			t.Fatalf("%s: Next(%v) = %v, not after", spec, at, next)
		}
		out = append(out, fmtFire(next))
		at = next
	}
}

func fmtFire(t time.Time) string {
	return t.Format("01-02 15:04:05 MST") + " " + t.UTC().Format("15:04Z")
}

// TestRobfigDST records what robfig/cron's own Schedule.Next does across DST
// (and so Kubernetes CronJob): the daily 02:30 is skipped on the day clocks
// spring forward and fires twice when they fall back. This is why the
// package evaluates expressions itself.
func TestRobfigDST(t *testing.T) {
	ams := mustLoc(t, "Europe/Amsterdam")
	s, err := lang.CronParser.Parse("CRON_TZ=Europe/Amsterdam 30 2 * * *")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, start := range []time.Time{time.Date(2026, 3, 28, 12, 0, 0, 0, ams), time.Date(2026, 10, 24, 12, 0, 0, 0, ams)} {
		at := start
		for range 3 {
			at = s.Next(at)
			got = append(got, fmtFire(at))
		}
	}
	want := []string{
		"03-30 02:30:00 CEST 00:30Z", // 03-28 fired before start; 03-29 skipped
		"03-31 02:30:00 CEST 00:30Z",
		"04-01 02:30:00 CEST 00:30Z",
		"10-25 02:30:00 CEST 00:30Z",
		"10-25 02:30:00 CET 01:30Z", // twice
		"10-26 02:30:00 CET 01:30Z",
	}
	if !slices.Equal(got, want) {
		t.Errorf("robfig/cron's behaviour changed:\n got %q\nwant %q", got, want)
	}
}

func TestNextDST(t *testing.T) {
	ams := mustLoc(t, "Europe/Amsterdam")
	ny := mustLoc(t, "America/New_York")
	d := func(loc *time.Location, mo time.Month, day, h, m int) time.Time {
		return time.Date(2026, mo, day, h, m, 0, 0, loc)
	}
	cases := []struct {
		name     string
		spec     string
		loc      *time.Location
		from, to time.Time
		want     []string
	}{
		// Europe/Amsterdam, spring forward: 2026-03-29 02:00 CET → 03:00 CEST (01:00Z).
		{"ams spring daily 02:30", "30 2 * * *", ams, d(ams, 3, 27, 12, 0), d(ams, 3, 31, 12, 0), []string{
			"03-28 02:30:00 CET 01:30Z",
			"03-29 03:00:00 CEST 01:00Z", // 02:30 does not exist: first instant after the gap
			"03-30 02:30:00 CEST 00:30Z",
			"03-31 02:30:00 CEST 00:30Z",
		}},
		{"ams spring */30", "*/30 * * * *", ams, d(ams, 3, 29, 0, 0), d(ams, 3, 29, 4, 0), []string{
			"03-29 00:30:00 CET 23:30Z",
			"03-29 01:00:00 CET 00:00Z",
			"03-29 01:30:00 CET 00:30Z",
			"03-29 03:00:00 CEST 01:00Z", // every 30 real minutes
			"03-29 03:30:00 CEST 01:30Z",
			"03-29 04:00:00 CEST 02:00Z",
		}},
		{"ams spring hourly", "0 * * * *", ams, d(ams, 3, 29, 0, 0), d(ams, 3, 29, 5, 0), []string{
			"03-29 01:00:00 CET 00:00Z",
			"03-29 03:00:00 CEST 01:00Z",
			"03-29 04:00:00 CEST 02:00Z",
			"03-29 05:00:00 CEST 03:00Z",
		}},
		{"ams spring @hourly", "@hourly", ams, d(ams, 3, 29, 0, 0), d(ams, 3, 29, 5, 0), []string{
			"03-29 01:00:00 CET 00:00Z",
			"03-29 03:00:00 CEST 01:00Z",
			"03-29 04:00:00 CEST 02:00Z",
			"03-29 05:00:00 CEST 03:00Z",
		}},
		{"ams spring 30 past every hour", "30 * * * *", ams, d(ams, 3, 29, 1, 0), d(ams, 3, 29, 4, 0), []string{
			"03-29 01:30:00 CET 00:30Z",
			"03-29 03:30:00 CEST 01:30Z", // one real hour later; 02:30 does not exist
		}},
		{"ams spring several gap times fire once", "*/15 2 * * *", ams, d(ams, 3, 28, 12, 0), d(ams, 3, 30, 2, 20), []string{
			"03-29 03:00:00 CEST 01:00Z",
			"03-30 02:00:00 CEST 00:00Z",
			"03-30 02:15:00 CEST 00:15Z",
		}},
		{"ams spring gap and 03:00 are one fire", "0 2,3 * * *", ams, d(ams, 3, 29, 0, 0), d(ams, 3, 29, 12, 0), []string{
			"03-29 03:00:00 CEST 01:00Z",
		}},
		{"ams spring seconds daily", "15 30 2 * * *", ams, d(ams, 3, 28, 12, 0), d(ams, 3, 30, 12, 0), []string{
			"03-29 03:00:00 CEST 01:00Z",
			"03-30 02:30:15 CEST 00:30Z",
		}},
		{"ams spring seconds interval", "*/20 * * * * *", ams, d(ams, 3, 29, 1, 59), d(ams, 3, 29, 3, 1), []string{
			"03-29 01:59:20 CET 00:59Z",
			"03-29 01:59:40 CET 00:59Z",
			"03-29 03:00:00 CEST 01:00Z",
			"03-29 03:00:20 CEST 01:00Z",
			"03-29 03:00:40 CEST 01:00Z",
			"03-29 03:01:00 CEST 01:01Z",
		}},

		// Europe/Amsterdam, fall back: 2026-10-25 03:00 CEST → 02:00 CET (01:00Z).
		{"ams fall daily 02:30", "30 2 * * *", ams, d(ams, 10, 24, 12, 0), d(ams, 10, 26, 12, 0), []string{
			"10-25 02:30:00 CEST 00:30Z", // once: first occurrence
			"10-26 02:30:00 CET 01:30Z",
		}},
		{"ams fall */30", "*/30 * * * *", ams, d(ams, 10, 25, 0, 0), d(ams, 10, 25, 4, 0), []string{
			"10-25 00:30:00 CEST 22:30Z",
			"10-25 01:00:00 CEST 23:00Z",
			"10-25 01:30:00 CEST 23:30Z",
			"10-25 02:00:00 CEST 00:00Z",
			"10-25 02:30:00 CEST 00:30Z",
			"10-25 02:00:00 CET 01:00Z", // every 30 real minutes
			"10-25 02:30:00 CET 01:30Z",
			"10-25 03:00:00 CET 02:00Z",
			"10-25 03:30:00 CET 02:30Z",
			"10-25 04:00:00 CET 03:00Z",
		}},
		{"ams fall hourly", "0 * * * *", ams, d(ams, 10, 25, 0, 0), d(ams, 10, 25, 4, 0), []string{
			"10-25 01:00:00 CEST 23:00Z",
			"10-25 02:00:00 CEST 00:00Z",
			"10-25 02:00:00 CET 01:00Z",
			"10-25 03:00:00 CET 02:00Z",
			"10-25 04:00:00 CET 03:00Z",
		}},
		{"ams fall @hourly", "@hourly", ams, d(ams, 10, 25, 1, 0), d(ams, 10, 25, 3, 0), []string{
			"10-25 02:00:00 CEST 00:00Z",
			"10-25 02:00:00 CET 01:00Z",
			"10-25 03:00:00 CET 02:00Z",
		}},
		{"ams fall fixed hour with minutes", "*/15 2 * * *", ams, d(ams, 10, 25, 0, 0), d(ams, 10, 25, 12, 0), []string{
			"10-25 02:00:00 CEST 00:00Z",
			"10-25 02:15:00 CEST 00:15Z",
			"10-25 02:30:00 CEST 00:30Z",
			"10-25 02:45:00 CEST 00:45Z",
		}},
		{"ams fall seconds daily", "0 30 2 * * *", ams, d(ams, 10, 24, 12, 0), d(ams, 10, 26, 12, 0), []string{
			"10-25 02:30:00 CEST 00:30Z",
			"10-26 02:30:00 CET 01:30Z",
		}},
		{"ams fall seconds interval", "*/30 59 2 * * *", ams, d(ams, 10, 25, 0, 0), d(ams, 10, 25, 12, 0), []string{
			"10-25 02:59:00 CEST 00:59Z",
			"10-25 02:59:30 CEST 00:59Z",
		}},
		{"ams fall @daily", "@daily", ams, d(ams, 10, 24, 12, 0), d(ams, 10, 26, 12, 0), []string{
			"10-25 00:00:00 CEST 22:00Z",
			"10-26 00:00:00 CET 23:00Z",
		}},

		// America/New_York, spring forward: 2026-03-08 02:00 EST → 03:00 EDT (07:00Z).
		{"ny spring daily 02:30", "30 2 * * *", ny, d(ny, 3, 7, 12, 0), d(ny, 3, 9, 12, 0), []string{
			"03-08 03:00:00 EDT 07:00Z",
			"03-09 02:30:00 EDT 06:30Z",
		}},
		{"ny spring */30", "*/30 * * * *", ny, d(ny, 3, 8, 1, 0), d(ny, 3, 8, 4, 0), []string{
			"03-08 01:30:00 EST 06:30Z",
			"03-08 03:00:00 EDT 07:00Z",
			"03-08 03:30:00 EDT 07:30Z",
			"03-08 04:00:00 EDT 08:00Z",
		}},
		{"ny spring hourly", "0 * * * *", ny, d(ny, 3, 8, 0, 0), d(ny, 3, 8, 4, 0), []string{
			"03-08 01:00:00 EST 06:00Z",
			"03-08 03:00:00 EDT 07:00Z",
			"03-08 04:00:00 EDT 08:00Z",
		}},
		{"ny spring seconds", "30 30 2 * * *", ny, d(ny, 3, 7, 12, 0), d(ny, 3, 9, 12, 0), []string{
			"03-08 03:00:00 EDT 07:00Z",
			"03-09 02:30:30 EDT 06:30Z",
		}},

		// America/New_York, fall back: 2026-11-01 02:00 EDT → 01:00 EST (06:00Z).
		{"ny fall daily 01:30", "30 1 * * *", ny, d(ny, 10, 31, 12, 0), d(ny, 11, 2, 12, 0), []string{
			"11-01 01:30:00 EDT 05:30Z", // once
			"11-02 01:30:00 EST 06:30Z",
		}},
		{"ny fall daily 02:30", "30 2 * * *", ny, d(ny, 10, 31, 12, 0), d(ny, 11, 2, 12, 0), []string{
			"11-01 02:30:00 EST 07:30Z", // not repeated in New York
			"11-02 02:30:00 EST 07:30Z",
		}},
		{"ny fall */30", "*/30 * * * *", ny, d(ny, 11, 1, 0, 0), d(ny, 11, 1, 3, 0), []string{
			"11-01 00:30:00 EDT 04:30Z",
			"11-01 01:00:00 EDT 05:00Z",
			"11-01 01:30:00 EDT 05:30Z",
			"11-01 01:00:00 EST 06:00Z",
			"11-01 01:30:00 EST 06:30Z",
			"11-01 02:00:00 EST 07:00Z",
			"11-01 02:30:00 EST 07:30Z",
			"11-01 03:00:00 EST 08:00Z",
		}},
		{"ny fall hourly", "0 * * * *", ny, d(ny, 11, 1, 0, 0), d(ny, 11, 1, 3, 0), []string{
			"11-01 01:00:00 EDT 05:00Z",
			"11-01 01:00:00 EST 06:00Z",
			"11-01 02:00:00 EST 07:00Z",
			"11-01 03:00:00 EST 08:00Z",
		}},
		{"ny fall seconds", "45 30 1 * * *", ny, d(ny, 10, 31, 12, 0), d(ny, 11, 2, 12, 0), []string{
			"11-01 01:30:45 EDT 05:30Z",
			"11-02 01:30:45 EST 06:30Z",
		}},

		// The zone in the expression wins.
		{"CRON_TZ prefix", "CRON_TZ=America/New_York 30 2 * * *", ams, d(ny, 3, 7, 12, 0), d(ny, 3, 8, 12, 0), []string{
			"03-08 03:00:00 EDT 07:00Z",
		}},
		// @every: multiples of the interval since the epoch, whatever the zone.
		{"@every", "@every 25m", ams, d(ams, 3, 29, 1, 10), d(ams, 3, 29, 3, 30), []string{
			"03-29 01:35:00 CET 00:35Z",
			"03-29 03:00:00 CEST 01:00Z",
			"03-29 03:25:00 CEST 01:25Z",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := fires(t, c.spec, c.loc, c.from, c.to)
			if !slices.Equal(got, c.want) {
				t.Errorf("%s in %s, (%s, %s]:\n got %q\nwant %q", c.spec, c.loc, fmtFire(c.from), fmtFire(c.to), got, c.want)
			}
		})
	}
}

// TestNextFromInsideTransition: Next is a function of the fire-time set, not
// of where the search starts.
func TestNextFromInsideTransition(t *testing.T) {
	ny := mustLoc(t, "America/New_York")
	// 01:10 EST on 2026-11-01 is inside the repeated hour (second occurrence).
	after := time.Date(2026, 11, 1, 6, 10, 0, 0, time.UTC)
	got, err := Next("30 1 * * *", ny, after)
	if err != nil {
		t.Fatal(err)
	}
	if want := "11-02 01:30:00 EST 06:30Z"; fmtFire(got) != want {
		t.Errorf("daily 01:30 after 01:10 EST: %s, want %s", fmtFire(got), want)
	}
	got, _ = Next("*/30 * * * *", ny, after)
	if want := "11-01 01:30:00 EST 06:30Z"; fmtFire(got) != want {
		t.Errorf("*/30 after 01:10 EST: %s, want %s", fmtFire(got), want)
	}
	// Exactly at the gap's end: strictly after.
	gapEnd := time.Date(2026, 3, 8, 7, 0, 0, 0, time.UTC)
	got, _ = Next("30 2 * * *", ny, gapEnd)
	if want := "03-09 02:30:00 EDT 06:30Z"; fmtFire(got) != want {
		t.Errorf("after the gap fire: %s, want %s", fmtFire(got), want)
	}
	got, _ = Next("30 2 * * *", ny, gapEnd.Add(-time.Nanosecond))
	if want := "03-08 03:00:00 EDT 07:00Z"; fmtFire(got) != want {
		t.Errorf("just before the gap fire: %s, want %s", fmtFire(got), want)
	}
	ts, err := NextN("@hourly", nil, time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC), 3)
	if err != nil || len(ts) != 3 || ts[0].Hour() != 1 || ts[2].Hour() != 3 || ts[0].Location() != time.UTC {
		t.Errorf("NextN(@hourly, nil, 00:30Z, 3) = %v, %v", ts, err)
	}
}

func TestNextErrors(t *testing.T) {
	if _, err := Next("0 0 30 2 *", time.UTC, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); !errors.Is(err, ErrNoFireTime) {
		t.Errorf("February 30th: %v, want ErrNoFireTime", err)
	}
	for _, bad := range []string{"", "* * *", "61 * * * *", "@fortnightly", "* * * * * * *"} {
		if _, err := Parse(bad, time.UTC); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

// TestNextOracle compares Next with a brute-force walk over every real
// minute around DST transitions of several zones, applying the documented
// rules directly: an every-hour expression fires at each instant whose wall
// time matches; a fixed-hour one fires at a matching wall time only at its
// first occurrence, and once at the first instant after a gap that skipped a
// matching wall time.
func TestNextOracle(t *testing.T) {
	specs := []string{"30 2 * * *", "*/30 * * * *", "0 * * * *", "*/15 2 * * *", "0 0 * * *", "5 1-3 * * *",
		"0 9 * * 1-5", "*/7 * * * *", "30 1 * * 0", "0 */2 * * *", "45 23 * * *", "@daily", "@hourly"}
	windows := []struct {
		zone string
		at   time.Time // a transition (UTC)
	}{
		{"Europe/Amsterdam", time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC)},
		{"Europe/Amsterdam", time.Date(2026, 10, 25, 1, 0, 0, 0, time.UTC)},
		{"America/New_York", time.Date(2026, 3, 8, 7, 0, 0, 0, time.UTC)},
		{"America/New_York", time.Date(2026, 11, 1, 6, 0, 0, 0, time.UTC)},
		{"Australia/Lord_Howe", time.Date(2026, 4, 4, 15, 0, 0, 0, time.UTC)},   // 30-minute shift
		{"Australia/Lord_Howe", time.Date(2026, 10, 3, 15, 30, 0, 0, time.UTC)}, // 30-minute shift
		{"America/Sao_Paulo", time.Date(2018, 11, 4, 3, 0, 0, 0, time.UTC)},     // gap at midnight
		{"America/Sao_Paulo", time.Date(2019, 2, 17, 2, 0, 0, 0, time.UTC)},     // overlap at midnight
		{"Pacific/Apia", time.Date(2011, 12, 30, 10, 0, 0, 0, time.UTC)},        // a whole day skipped
		{"Europe/Moscow", time.Date(2014, 10, 25, 22, 0, 0, 0, time.UTC)},       // standard offset changed
	}
	for _, w := range windows {
		loc := mustLoc(t, w.zone)
		from, to := w.at.Add(-50*time.Hour), w.at.Add(50*time.Hour)
		for _, spec := range specs {
			want := oracle(t, spec, loc, from, to)
			got := fires(t, spec, loc, from, to)
			if !slices.Equal(got, want) {
				t.Errorf("%s in %s around %s:\n got %q\nwant %q", spec, w.zone, w.at, got, want)
			}
		}
	}
}

func oracle(t *testing.T, spec string, loc *time.Location, from, to time.Time) []string {
	s, err := Parse(spec, loc)
	if err != nil {
		t.Fatal(err)
	}
	matches := func(wall int64) bool {
		w, ok := s.civilAtOrAfter(wall)
		return ok && w == wall
	}
	wallOf := func(u int64) int64 {
		_, off := time.Unix(u, 0).In(loc).Zone()
		return u + int64(off)
	}
	var out []string
	step := int64(60)
	start := from.Unix() - from.Unix()%step
	maxWall := wallOf(start)
	for u := start + step; u <= to.Unix(); u += step {
		wall, prev := wallOf(u), wallOf(u-step)
		fire := false
		if s.everyHour {
			fire = matches(wall)
		} else {
			if wall > maxWall { // not a repeated wall time
				fire = matches(wall)
			}
			for g := prev + step; g < wall && !fire; g += step { // skipped wall times
				if g > maxWall && matches(g) {
					fire = true
				}
			}
		}
		maxWall = max(maxWall, wall)
		if fire && u > from.Unix() {
			out = append(out, fmtFire(time.Unix(u, 0).In(loc)))
		}
	}
	return out
}

func ExampleNextN() {
	ams, _ := time.LoadLocation("Europe/Amsterdam")
	ts, _ := NextN("30 2 * * *", ams, time.Date(2026, 3, 28, 12, 0, 0, 0, ams), 3)
	for _, t := range ts {
		fmt.Println(t.Format(time.RFC3339))
	}
	// Output:
	// 2026-03-29T03:00:00+02:00
	// 2026-03-30T02:30:00+02:00
	// 2026-03-31T02:30:00+02:00
}
