package apiserver

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const scheduleFiles = `schedule "every5" {
  integration = integration.items
  cron        = "*/5 * * * *"
  timezone    = "Europe/Amsterdam"
  concurrency = "forbid"
}

schedule "nightly" {
  integration = integration.items
  cron        = "30 2 * * *"
  timezone    = "Europe/Amsterdam"
  missed      = "run_once"
}

schedule "off" {
  integration = integration.items
  cron        = "@hourly"
  enabled     = false
}
`

func scheduleConfig(gate string) map[string]any {
	cfg := gateConfig(gate, "m1")
	cfg["files"].(map[string]string)["schedules.hcl"] = scheduleFiles
	return cfg
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestScheduleNext(t *testing.T) {
	e := newRunEnv(t)
	key := e.tenantWithKey("acme", RoleUser)
	viewer := e.key("acme", RoleViewer)
	newGate(t, "sched-next", records(1, 1))
	e.expect(e.do("PUT", "/v1/config", key, scheduleConfig("sched-next"), "If-Match", "0"), 200)

	// The env's clock reads 2026-03-01 12:00 UTC (13:00 in Amsterdam).
	m := e.expect(e.do("GET", "/v1/schedules/every5/next?count=3", viewer, nil), 200).json(t)
	if got, want := strs(m["next"]), []string{"2026-03-01T13:05:00+01:00", "2026-03-01T13:10:00+01:00", "2026-03-01T13:15:00+01:00"}; !slices.Equal(got, want) {
		t.Errorf("next: %q, want %q", got, want)
	}
	if m["schedule"] != "every5" || m["timezone"] != "Europe/Amsterdam" || m["lastFire"] != nil || m["enabled"] != true {
		t.Errorf("response: %v", m)
	}
	if n := len(strs(e.expect(e.do("GET", "/v1/schedules/every5/next", key, nil), 200).json(t)["next"])); n != 5 {
		t.Errorf("default count: %d fire times", n)
	}

	// Across the spring-forward change: 02:30 does not exist on March 29th
	// and fires once at 03:00 CEST.
	e.clock.Add(27 * 24 * time.Hour) // 2026-03-28 12:00 UTC
	m = e.expect(e.do("GET", "/v1/schedules/nightly/next?count=3", key, nil), 200).json(t)
	if got, want := strs(m["next"]), []string{"2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"}; !slices.Equal(got, want) {
		t.Errorf("nightly next: %q, want %q", got, want)
	}
	m = e.expect(e.do("GET", "/v1/schedules/off/next", key, nil), 200).json(t)
	if len(m["next"].([]any)) != 0 || m["enabled"] != false {
		t.Errorf("disabled schedule: %v", m)
	}
	e.expect(e.do("GET", "/v1/schedules/nope/next", key, nil), 404)
	e.expect(e.do("GET", "/v1/schedules/every5/next?count=0", key, nil), 400)
	e.expect(e.do("GET", "/v1/schedules/every5/next?count=101", key, nil), 400)
}

// TestScheduleFiresRuns: the server's scheduler picks up an applied schedule
// and starts runs through StartRun; forbid skips a fire while a run is in
// flight; a deactivated integration's fire is skipped; the metrics count it
// all and the API shows the last fire.
func TestScheduleFiresRuns(t *testing.T) {
	e := newRunEnv(t)
	key := e.tenantWithKey("acme", RoleUser)
	g := newGate(t, "sched-fire", records(3, 1))
	g.pauseAt = 2
	e.expect(e.do("PUT", "/v1/config", key, scheduleConfig("sched-fire"), "If-Match", "0"), 200)
	sched := e.s.sched.sched
	ctx := t.Context()

	// The scheduler learns the schedules from the configuration watch.
	waitUntil(t, "the schedules to be loaded", func() bool {
		next, ok := sched.NextDue()
		return ok && next.Equal(time.Date(2026, 3, 1, 12, 5, 0, 0, time.UTC))
	})
	runDue := func() {
		t.Helper()
		if err := sched.RunDue(ctx); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Add(5 * time.Minute) // 13:05 in Amsterdam: every5 fires
	runDue()
	select {
	case <-g.paused:
	case <-time.After(10 * time.Second):
		t.Fatal("the scheduled run did not start")
	}
	// 13:10: the run is still in flight; forbid skips the fire.
	e.clock.Add(5 * time.Minute)
	runDue()
	close(g.open)
	var runs []any
	waitUntil(t, "the scheduled run to end", func() bool {
		runs = e.expect(e.do("GET", "/v1/runs?trigger=schedule", key, nil), 200).json(t)["items"].([]any)
		return len(runs) == 1 && runs[0].(map[string]any)["status"] == "succeeded"
	})
	waitUntil(t, "the run request to be gone", func() bool {
		_, running, err := e.s.sched.running(ctx, "acme", "items")
		return err == nil && !running
	})
	// Deactivated: the fire is skipped.
	e.expect(e.do("POST", "/v1/integrations/items/deactivate", key, nil), 200)
	e.clock.Add(5 * time.Minute)
	runDue()

	m := e.expect(e.do("GET", "/v1/schedules/every5/next?count=1", key, nil), 200).json(t)
	if m["lastFire"] != "2026-03-01T13:05:00+01:00" || m["lastOutcome"] != "skipped" {
		t.Errorf("last fire: %v %v", m["lastFire"], m["lastOutcome"])
	}
	if got := strs(m["next"]); !slices.Equal(got, []string{"2026-03-01T13:20:00+01:00"}) {
		t.Errorf("next: %q", got)
	}
	metrics := string(e.expect(e.do("GET", "/metrics", "", nil), 200).body)
	for _, want := range []string{
		`ferry_schedule_fires_total{outcome="fired"} 1`,
		`ferry_schedule_fires_total{outcome="skipped_running"} 1`,
		`ferry_schedule_fires_total{outcome="skipped"} 1`,
		`ferry_schedule_fires_total{outcome="duplicate"} 0`,
		`ferry_schedule_fire_lag_seconds_count 3`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if runs := e.expect(e.do("GET", "/v1/runs?trigger=schedule", key, nil), 200).json(t)["items"].([]any); len(runs) != 1 {
		t.Errorf("%d scheduled runs, want 1", len(runs))
	}
}

// TestScheduleOnceAcrossServers: two servers on one NATS fire each fire
// time once.
func TestScheduleOnceAcrossServers(t *testing.T) {
	e := newRunEnv(t)
	key := e.tenantWithKey("acme", RoleUser)
	newGate(t, "sched-two", records(1, 1))
	e.expect(e.do("PUT", "/v1/config", key, scheduleConfig("sched-two"), "If-Match", "0"), 200)
	other, err := New(e.rt, Options{Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		other.Close(ctx)
	})
	want := time.Date(2026, 3, 1, 12, 5, 0, 0, time.UTC)
	for _, s := range []*Server{e.s, other} {
		waitUntil(t, "the schedules to be loaded", func() bool {
			next, ok := s.sched.sched.NextDue()
			return ok && next.Equal(want)
		})
	}
	e.clock.Add(5 * time.Minute)
	for _, s := range []*Server{other, e.s} {
		if err := s.sched.sched.RunDue(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "the scheduled run to end", func() bool {
		runs := e.expect(e.do("GET", "/v1/runs?trigger=schedule", key, nil), 200).json(t)["items"].([]any)
		return len(runs) == 1 && runs[0].(map[string]any)["status"] == "succeeded"
	})
	time.Sleep(50 * time.Millisecond)
	if runs := e.expect(e.do("GET", "/v1/runs?trigger=schedule", key, nil), 200).json(t)["items"].([]any); len(runs) != 1 {
		t.Errorf("%d scheduled runs, want 1", len(runs))
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// concurrency = "replace": a fire while the integration's run is in flight
// cancels that run and starts a new one.
func TestScheduleReplaceCancelsTheRunningRun(t *testing.T) {
	e := newRunEnv(t)
	key := e.tenantWithKey("acme", RoleUser)
	g := newGate(t, "sched-replace", records(3, 1))
	g.pauseAt = 2
	cfg := gateConfig("sched-replace", "m1")
	cfg["files"].(map[string]string)["schedules.hcl"] = `schedule "every5" {
  integration = integration.items
  cron        = "*/5 * * * *"
  concurrency = "replace"
}
`
	e.expect(e.do("PUT", "/v1/config", key, cfg, "If-Match", "0"), 200)
	sched := e.s.sched.sched
	ctx := t.Context()
	waitUntil(t, "the schedules to be loaded", func() bool { _, ok := sched.NextDue(); return ok })
	e.clock.Add(5 * time.Minute)
	if err := sched.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.paused: // the first run is in flight, paused in its source
	case <-time.After(10 * time.Second):
		t.Fatal("the scheduled run did not start")
	}
	e.clock.Add(5 * time.Minute)
	if err := sched.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	var runs []any
	var opened sync.Once
	waitUntil(t, "the first run cancelled and the second ended", func() bool {
		runs = e.expect(e.do("GET", "/v1/runs?trigger=schedule", key, nil), 200).json(t)["items"].([]any)
		statuses := map[any]int{}
		for _, r := range runs {
			statuses[r.(map[string]any)["status"]]++
		}
		if statuses["cancelled"] == 1 {
			opened.Do(func() { close(g.open) }) // the replacement pauses in its source too
		}
		return len(runs) == 2 && statuses["cancelled"] == 1 && statuses["succeeded"] == 1
	})
}
