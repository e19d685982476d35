package runtime

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/engine"
)

// Cancelling a run (its context cancelled with ErrCancelled) ends it as
// cancelled: what settled is counted, the rest of its work is dropped from
// the stream, and the integration's lock is released at once, so the next
// run starts without waiting out the lock's TTL.
func TestCancelRunEndsItAndFreesTheIntegration(t *testing.T) {
	checkGoroutines(t)
	rt := openTest(t, Options{LockTTL: 10 * time.Minute})
	const n = 2000
	sink := newFaultSink()
	gate := make(chan struct{})
	sink.before = func(ctx context.Context, _ []connectors.Write, _ int) error {
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	job := testJob("acme", "slow", genSource{n: n}, sink)
	job.Workers, job.MessageRecords, job.BatchSize = 2, 50, 50

	ctx, cancel := context.WithCancelCause(context.Background())
	type result struct {
		res *engine.RunResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := rt.RunJob(ctx, job, RunOptions{RunID: "run-1", Trigger: "manual"})
		done <- result{res, err}
	}()
	// Let a few calls through, so some records settle before the cancel.
	for range 3 {
		gate <- struct{}{}
	}
	waitFor(t, "some records settled", 20*time.Second, func() bool { return sink.written() >= 100 })
	cancel(ErrCancelled)
	r := <-done
	if r.err != nil {
		t.Fatalf("a cancelled run ends without an error: %v", r.err)
	}
	c := r.res.Counts
	if r.res.Status != engine.RunCancelled || c.Success < 100 || c.Success >= n {
		t.Fatalf("status %s counts %+v", r.res.Status, c)
	}
	checkCounts(t, c)
	run, err := rt.Runs().Get(context.Background(), "acme", "run-1")
	if err != nil || run.Status != engine.RunCancelled || run.Ended.IsZero() || !run.Finished() {
		t.Fatalf("stored run %+v, %v", run, err)
	}
	// Its remaining work is gone from the stream.
	s, err := rt.js.Stream(context.Background(), WorkStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(workSubject("acme", "slow", "run-1")))
	if err != nil {
		t.Fatal(err)
	}
	if left := info.State.Subjects[workSubject("acme", "slow", "run-1")]; left != 0 {
		t.Fatalf("%d work messages of the cancelled run are left", left)
	}

	// The next run of the integration is not held by the cancelled one's lock.
	close(gate)
	next := testJob("acme", "slow", genSource{n: 10}, newFaultSink())
	nctx, ncancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer ncancel()
	res, err := rt.RunJob(nctx, next, RunOptions{RunID: "run-2"})
	if err != nil || res.Status != engine.RunSucceeded {
		t.Fatalf("next run: %v %+v", err, res)
	}

	// Cancelling a run that never started records it as cancelled; an
	// ended run stays as it ended.
	res, err = rt.EndCancelled(context.Background(), "acme", "slow", "run-3", "schedule", "rev1")
	if err != nil || res.Status != engine.RunCancelled || res.Counts.Total != 0 {
		t.Fatalf("never started: %v %+v", err, res)
	}
	res, err = rt.EndCancelled(context.Background(), "acme", "slow", "run-2", "", "")
	if err != nil || res.Status != engine.RunSucceeded {
		t.Fatalf("ended run: %v %+v", err, res)
	}
	if _, err := rt.EndCancelled(context.Background(), "acme", "slow", "bad id", "", ""); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("invalid id: %v", err)
	}
}
