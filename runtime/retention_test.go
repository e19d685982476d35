package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// bucketTTL is a bucket's TTL as its stream has it.
func bucketTTL(t *testing.T, rt *Runtime, bucket string) time.Duration {
	t.Helper()
	s, err := rt.js.Stream(context.Background(), "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Config.MaxAge
}

// waitGone polls until get reports ErrNotFound (JetStream expires messages
// on a timer, a moment after their age passed).
func waitGone(t *testing.T, what string, within time.Duration, get func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := get()
		if errors.Is(err, ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still there after %s (err %v)", what, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRunRetentionExpiresRuns: an ended run disappears once it is older
// than the run retention, with its settlements; its DLQ entries stay (the
// DLQ keeps entries by default).
func TestRunRetentionExpiresRuns(t *testing.T) {
	ctx := context.Background()
	rt := openTest(t, Options{RunRetention: 2 * time.Second})
	out := filepath.Join(t.TempDir(), "out.ndjson")
	src := listSource{{"id": 1, "name": "a"}, {"id": 2, "bad": true}}
	res, err := rt.RunJob(ctx, testJob("acme", "items", src, newFileSink(t, out)), RunOptions{RunID: "old"})
	if err != nil || res.Counts.Failed != 1 {
		t.Fatalf("run: %+v %v", res, err)
	}
	if p, err := rt.Runs().List(ctx, "acme", RunFilter{}); err != nil || p.Total != 1 {
		t.Fatalf("before the retention: %+v %v", p, err)
	}
	entries, err := rt.DLQ().List(ctx, "acme", DLQFilter{})
	if err != nil || entries.Total != 1 {
		t.Fatalf("DLQ: %+v %v", entries, err)
	}

	waitGone(t, "run", 10*time.Second, func() error { _, err := rt.Runs().Get(ctx, "acme", "old"); return err })
	if p, err := rt.Runs().List(ctx, "acme", RunFilter{}); err != nil || p.Total != 0 || len(p.Runs) != 0 {
		t.Fatalf("runs listed after the retention: %+v %v", p, err)
	}
	// Its settlements go too (they outlive the record by the settle margin).
	waitGone(t, "settlements", 5*time.Second, func() error {
		sets, err := rt.settlements(ctx, "acme", "old", false)
		if err == nil && len(sets) == 0 {
			return ErrNotFound
		}
		return err
	})
	if _, err := rt.DLQ().Get(ctx, "acme", entries.Entries[0].ID); err != nil {
		t.Fatalf("DLQ entry of an expired run: %v", err)
	}
}

// TestRunRetentionLongRun: a run that lasts longer than the run retention,
// and one that waits for it longer than that, both end with their counts:
// the record of a waiting run is rewritten while it waits, and the first
// settlements of a running one are rewritten before they could expire
// (counts derive from settlements at the end).
func TestRunRetentionLongRun(t *testing.T) {
	ctx := context.Background()
	rt := openTest(t, Options{RunRetention: 3 * time.Second})
	sink := newFileSink(t, filepath.Join(t.TempDir(), "out.ndjson"))
	sink.delay = 500 * time.Millisecond
	job := testJob("acme", "slow", genSource{n: 20}, sink)
	job.Workers, job.MessageRecords, job.BatchSize = 1, 2, 2 // 10 calls: ~5s

	type result struct {
		res *Run
		err error
	}
	second := make(chan result, 1)
	done := make(chan error, 1)
	go func() {
		res, err := rt.RunJob(ctx, job, RunOptions{RunID: "long"})
		if err == nil && res.Counts.Success != 20 {
			err = fmt.Errorf("counts %+v", res.Counts)
		}
		done <- err
	}()
	// The second run of the integration waits for the first one's lock.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if r, err := rt.Runs().Get(ctx, "acme", "long"); err == nil && !r.Started.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first run did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	go func() {
		j2 := testJob("acme", "slow", genSource{n: 2}, newFileSink(t, filepath.Join(t.TempDir(), "out2.ndjson")))
		res, err := rt.RunJob(ctx, j2, RunOptions{RunID: "waiting"})
		if err != nil {
			second <- result{err: err}
			return
		}
		r, err := rt.Runs().Get(ctx, "acme", res.ID)
		second <- result{r, err}
	}()
	if err := <-done; err != nil {
		t.Fatalf("long run: %v", err)
	}
	run, err := rt.Runs().Get(ctx, "acme", "long")
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, run.Counts)
	if run.Counts.Total != 20 || run.Counts.Success != 20 {
		t.Fatalf("a run longer than the retention lost settlements: %+v", run.Counts)
	}
	if run.Ended.Sub(run.Started) < 3*time.Second {
		t.Fatalf("the run took %s, not longer than the retention", run.Ended.Sub(run.Started))
	}
	r2 := <-second
	if r2.err != nil || r2.res.Counts.Success != 2 {
		t.Fatalf("the run that waited longer than the retention: %+v %v", r2.res, r2.err)
	}
}

// TestRetentionLayout: the buckets get the retention on Open, an existing
// store gets a new one when it is reopened with another, and KeepRetention
// leaves what a store has unless told otherwise. The work stream's
// deduplication window is short.
func TestRetentionLayout(t *testing.T) {
	dir := t.TempDir()
	open := func(o Options) *Runtime {
		t.Helper()
		o.DataDir = dir
		rt, err := Open(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	check := func(rt *Runtime, runs, dlq time.Duration) {
		t.Helper()
		if got := bucketTTL(t, rt, BucketRuns); got != runs {
			t.Errorf("runs bucket TTL %s, want %s", got, runs)
		}
		if got, want := bucketTTL(t, rt, BucketSettled), runs+runs/4; got != want {
			t.Errorf("settlements bucket TTL %s, want %s", got, want)
		}
		if got := bucketTTL(t, rt, BucketDLQ); got != dlq {
			t.Errorf("DLQ bucket TTL %s, want %s", got, dlq)
		}
		if r, d := rt.Retention(); r != runs || d != dlq {
			t.Errorf("Retention() = %s, %s; want %s, %s", r, d, runs, dlq)
		}
	}
	day := 24 * time.Hour

	rt := open(Options{})
	check(rt, DefaultRunRetention, 0)
	info, err := rt.work.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Duplicates != 2*time.Minute {
		t.Errorf("work stream duplicates window %s, want 2m", info.Config.Duplicates)
	}
	rt.Close()

	rt = open(Options{RunRetention: 30 * day, DLQRetention: 90 * day})
	check(rt, 30*day, 90*day)
	rt.Close()

	// A tool (KeepRetention, nothing set) changes nothing.
	rt = open(Options{KeepRetention: true})
	check(rt, 30*day, 90*day)
	rt.Close()

	// ferry run --run-retention: that one only.
	rt = open(Options{KeepRetention: true, RunRetention: 10 * day})
	check(rt, 10*day, 90*day)
	rt.Close()

	// The owner (ferry serve) without options: the defaults again.
	rt = open(Options{})
	check(rt, DefaultRunRetention, 0)

	// A store of an earlier version kept everything: it gets the default.
	for _, b := range []string{BucketRuns, BucketSettled} {
		s, err := rt.js.Stream(context.Background(), "KV_"+b)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		cfg.MaxAge = 0
		if _, err := rt.js.UpdateStream(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
	}
	rt.Close()
	rt = open(Options{})
	defer rt.Close()
	check(rt, DefaultRunRetention, 0)
}

func TestRetentionRefused(t *testing.T) {
	for _, o := range []Options{{RunRetention: -time.Hour}, {RunRetention: time.Second}, {DLQRetention: -1}, {DLQRetention: 100 * time.Millisecond}} {
		o.DataDir = t.TempDir()
		if rt, err := Open(context.Background(), o); err == nil {
			rt.Close()
			t.Errorf("Open(%+v) accepted", o)
		}
	}
}

// TestRunListOrderAndFilters: runs are listed newest first by the time they
// were queued, then by id, whatever their ids look like, and every filter
// counts the runs it matches.
func TestRunListOrderAndFilters(t *testing.T) {
	ctx := context.Background()
	rt := openTest(t, Options{})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	put := func(r Run) {
		t.Helper()
		b, _ := json.Marshal(r)
		if _, err := rt.runsKV.Put(ctx, runKey(r.Tenant, r.ID), b); err != nil {
			t.Fatal(err)
		}
	}
	// Ids that sort the other way round from the queue times, one pair queued at once.
	put(Run{ID: "zzz", Tenant: "acme", Integration: "a", Trigger: "api", Status: "succeeded", Queued: t0})
	put(Run{ID: "20990101T000000000Z-00", Tenant: "acme", Integration: "b", Trigger: "webhook", Status: "failed", Queued: t0.Add(time.Minute), Started: t0.Add(2 * time.Hour)})
	put(Run{ID: "aaa", Tenant: "acme", Integration: "a", Trigger: "cli", Status: "queued", Queued: t0.Add(2 * time.Minute)})
	put(Run{ID: "bbb", Tenant: "acme", Integration: "a", Trigger: "api", Status: "succeeded", Queued: t0.Add(2 * time.Minute)})
	put(Run{ID: "other", Tenant: "other", Integration: "a", Status: "succeeded", Queued: t0.Add(time.Hour)})
	if _, err := rt.runsKV.Put(ctx, "acme.junk", []byte("not json")); err != nil {
		t.Fatal(err)
	}

	ids := func(f RunFilter) []string {
		t.Helper()
		p, err := rt.Runs().List(ctx, "acme", f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range p.Runs {
			out = append(out, r.ID)
		}
		return append(out, "total="+strconv.Itoa(p.Total))
	}
	for _, c := range []struct {
		f    RunFilter
		want []string
	}{
		{RunFilter{}, []string{"bbb", "aaa", "20990101T000000000Z-00", "zzz", "total=4"}},
		{RunFilter{PageSize: 2, Page: 2}, []string{"20990101T000000000Z-00", "zzz", "total=4"}},
		{RunFilter{PageSize: 3, Page: 2}, []string{"zzz", "total=4"}},
		{RunFilter{PageSize: 3, Page: 3}, []string{"total=4"}},
		{RunFilter{Integration: "a"}, []string{"bbb", "aaa", "zzz", "total=3"}},
		{RunFilter{Status: "succeeded"}, []string{"bbb", "zzz", "total=2"}},
		{RunFilter{Trigger: "api"}, []string{"bbb", "zzz", "total=2"}},
		{RunFilter{Integration: "a", Status: "queued"}, []string{"aaa", "total=1"}},
		// From and To: the start time, else the queue time.
		{RunFilter{From: t0.Add(time.Hour)}, []string{"20990101T000000000Z-00", "total=1"}},
		{RunFilter{To: t0.Add(2 * time.Minute)}, []string{"zzz", "total=1"}},
		{RunFilter{Integration: "nope"}, []string{"total=0"}},
	} {
		if got := ids(c.f); !slices.Equal(got, c.want) {
			t.Errorf("%+v: %v, want %v", c.f, got, c.want)
		}
	}
	if p, err := rt.Runs().List(ctx, "nobody", RunFilter{}); err != nil || p.Runs != nil || p.Total != 0 {
		t.Errorf("no runs: %+v %v", p, err)
	}
}
