package runtime

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/engine"
	"github.com/nats-io/nats-server/v2/server"
)

func TestBackoff(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 5, Initial: time.Second, Max: 10 * time.Second, Multiplier: 2}
	for attempt, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 9: 10 * time.Second} {
		if got := p.Backoff(attempt, 0, nil); got != want {
			t.Errorf("attempt %d: %v, want %v", attempt, got, want)
		}
	}
	if got := p.Backoff(1, 30*time.Second, nil); got != 30*time.Second {
		t.Errorf("Retry-After not honoured: %v", got)
	}
	if got := p.Backoff(3, time.Second, nil); got != 4*time.Second {
		t.Errorf("smaller Retry-After must not shorten backoff: %v", got)
	}
	p.Jitter = 0.5
	if lo, hi := p.Backoff(2, 0, func() float64 { return 0 }), p.Backoff(2, 0, func() float64 { return 0.999999 }); lo != time.Second || math.Abs(float64(hi-3*time.Second)) > float64(time.Millisecond) {
		t.Errorf("jitter bounds: %v..%v, want 1s..3s", lo, hi)
	}
	for range 1000 {
		if d := p.Backoff(2, 0, nil); d < time.Second || d > 3*time.Second {
			t.Fatalf("jittered delay %v out of range", d)
		}
	}
}

func TestInvalidNames(t *testing.T) {
	rt := openTest(t, Options{})
	for _, bad := range []string{"", "a.b", "a b", "a*", "a>", "ä"} {
		j := testJob(bad, "i", genSource{n: 1}, &fileSink{})
		if _, err := rt.RunJob(context.Background(), j, RunOptions{}); !errors.Is(err, ErrInvalidName) {
			t.Errorf("tenant %q: %v", bad, err)
		}
	}
	if _, err := rt.Runs().Get(context.Background(), "t", "x.y"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("run id with a dot: %v", err)
	}
}

func TestDurableRun(t *testing.T) {
	rt := openTest(t, Options{})
	out := filepath.Join(t.TempDir(), "out.ndjson")
	sink := newFileSink(t, out)
	src := genSource{n: 3000, extra: func(i int, m map[string]any) {
		if i%100 == 5 {
			m["bad"] = true
		}
		if i%50 == 7 {
			m["skip"] = true
		}
	}}
	res, err := rt.RunJob(context.Background(), testJob("acme", "orders", src, sink), RunOptions{Trigger: "test", RunID: "run1"})
	if err != nil {
		t.Fatal(err)
	}
	want := engine.Counts{Total: 3000, Success: 3000 - 30 - 60, Failed: 30, Skipped: 60}
	if res.Counts != want || res.Status != engine.RunPartial {
		t.Fatalf("result %s %+v, want partial %+v", res.Status, res.Counts, want)
	}
	if len(res.Failures) != 30 || res.Failures[0].Key != "5" || res.Failures[0].Stage != engine.StageNormalize {
		t.Fatalf("failures: %d %+v", len(res.Failures), res.Failures[:1])
	}
	keys := readKeys(t, out)
	if len(keys) != int(want.Success) {
		t.Fatalf("sink has %d keys, want %d", len(keys), want.Success)
	}
	run, err := rt.Runs().Get(context.Background(), "acme", "run1")
	if err != nil || run.Status != engine.RunPartial || run.Counts != want || run.Trigger != "test" || run.Ended.IsZero() {
		t.Fatalf("stored run %+v %v", run, err)
	}
	page, err := rt.DLQ().List(context.Background(), "acme", DLQFilter{RunID: "run1"})
	if err != nil || page.Total != 30 {
		t.Fatalf("dlq %+v %v", page, err)
	}
	e := page.Entries[0]
	if e.Key != "5" || e.Category != connectors.CategoryPermanent || len(e.Attempts) != 1 || e.Revision != "rev1" || string(e.Record) == "" {
		t.Fatalf("entry %+v", e)
	}
	// Running a finished run id again returns its result without running.
	again, err := rt.RunJob(context.Background(), testJob("acme", "orders", src, sink), RunOptions{RunID: "run1"})
	if err != nil || again.Counts != want {
		t.Fatalf("rerun of finished id: %+v %v", again, err)
	}
	if n := len(readKeys(t, out)); n != int(want.Success) {
		t.Fatalf("finished run ran again: %d keys", n)
	}
	// No work left in the stream.
	info, err := rt.work.Info(context.Background())
	if err != nil || info.State.Msgs != 0 {
		t.Fatalf("work stream not empty: %+v %v", info.State, err)
	}
}

func TestTransientThenSuccess(t *testing.T) {
	rt := openTest(t, Options{})
	out := filepath.Join(t.TempDir(), "out.ndjson")
	sink := newFileSink(t, out)
	var fails atomic.Int64
	seen := map[string]int{}
	var mu = make(chan struct{}, 1)
	sink.fail = func(w connectors.Write) error {
		mu <- struct{}{}
		defer func() { <-mu }()
		seen[w.Key]++
		if seen[w.Key] <= 2 { // every record fails twice, then succeeds
			fails.Add(1)
			ra := time.Duration(0)
			if w.Key == "3" {
				ra = 50 * time.Millisecond // a sink's Retry-After
			}
			return connectors.Transient(errors.New("503 busy"), ra)
		}
		return nil
	}
	job := testJob("acme", "orders", genSource{n: 2000}, sink)
	res, err := rt.RunJob(context.Background(), job, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != engine.RunSucceeded || res.Counts != (engine.Counts{Total: 2000, Success: 2000, Retried: 4000}) {
		t.Fatalf("%s %+v", res.Status, res.Counts)
	}
	if keys := readKeys(t, out); len(keys) != 2000 {
		t.Fatalf("sink has %d keys", len(keys))
	}
	if page, _ := rt.DLQ().List(context.Background(), "acme", DLQFilter{}); page.Total != 0 {
		t.Fatalf("DLQ not empty: %d", page.Total)
	}
}

func TestPermanentToDLQThenReplay(t *testing.T) {
	ctx := context.Background()
	rt := openTest(t, Options{})
	out := filepath.Join(t.TempDir(), "out.ndjson")
	sink := newFileSink(t, out)
	var broken atomic.Bool
	broken.Store(true)
	sink.fail = func(w connectors.Write) error {
		if !broken.Load() {
			return nil
		}
		if n, _ := strconv.Atoi(w.Key); n%2 == 0 {
			return connectors.Permanent(errors.New("422 invalid sku"))
		}
		return connectors.Transient(errors.New("timeout"), 0) // exhausts max_attempts
	}
	job := testJob("acme", "orders", genSource{n: 1000}, sink)
	res, err := rt.RunJob(ctx, job, RunOptions{RunID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != engine.RunFailed || res.Counts != (engine.Counts{Total: 1000, Failed: 1000, Retried: 1000}) {
		t.Fatalf("%s %+v", res.Status, res.Counts)
	}
	page, err := rt.DLQ().List(ctx, "acme", DLQFilter{Category: connectors.CategoryPermanent, PageSize: 1000})
	if err != nil || page.Total != 500 {
		t.Fatalf("permanent: %d %v", page.Total, err)
	}
	for _, e := range page.Entries {
		if len(e.Attempts) != 1 || e.Stage != engine.StageExecute {
			t.Fatalf("permanent entry with %d attempts: %+v", len(e.Attempts), e)
		}
	}
	tr, _ := rt.DLQ().List(ctx, "acme", DLQFilter{Category: connectors.CategoryTransient, PageSize: 10})
	if tr.Total != 500 || len(tr.Entries[0].Attempts) != 3 {
		t.Fatalf("transient: %d, attempts %d", tr.Total, len(tr.Entries[0].Attempts))
	}
	// Fix the cause; replay everything.
	broken.Store(false)
	sum, err := rt.DLQ().ReplayMany(ctx, "acme", DLQFilter{Integration: "orders"}, jobsOf(job), ReplayOptions{Reason: "fixed"})
	if err != nil || sum.Matched != 1000 || sum.Replayed != 1000 {
		t.Fatalf("replay: %+v %v", sum, err)
	}
	if p, _ := rt.DLQ().List(ctx, "acme", DLQFilter{Status: DLQPending}); p.Total != 0 {
		t.Fatalf("%d still pending", p.Total)
	}
	if keys := readKeys(t, out); len(keys) != 1000 {
		t.Fatalf("sink has %d keys after replay", len(keys))
	}
	run, _ := rt.Runs().Get(ctx, "acme", "r1")
	checkCounts(t, run.Counts)
	if run.Counts.Success != 1000 || run.Counts.Failed != 0 || run.Status != engine.RunSucceeded || run.Replays != 1000 {
		t.Fatalf("run after replay: %s %+v replays=%d", run.Status, run.Counts, run.Replays)
	}
	e, _ := rt.DLQ().Get(ctx, "acme", page.Entries[0].ID)
	if e.Status != DLQReplayed || len(e.Events) != 1 || e.Events[0].Result != "success" || e.Events[0].Reason != "fixed" {
		t.Fatalf("entry after replay: %+v", e)
	}
	if _, err := rt.DLQ().Replay(ctx, "acme", e.ID, jobsOf(job), ReplayOptions{}); !errors.Is(err, ErrNotPending) {
		t.Fatalf("second replay: %v", err)
	}
}

func TestDLQOperations(t *testing.T) {
	ctx := context.Background()
	rt := openTest(t, Options{})
	sink := newFileSink(t, filepath.Join(t.TempDir(), "out.ndjson"))
	bad := func(i int, m map[string]any) {
		if i%3 == 0 {
			m["bad"] = true
		}
	}
	jobA := testJob("acme", "a", genSource{n: 30, extra: bad}, sink)
	jobB := testJob("acme", "b", genSource{n: 30, extra: bad}, sink)
	if _, err := rt.RunJob(ctx, jobA, RunOptions{RunID: "ra"}); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.RunJob(ctx, jobB, RunOptions{RunID: "rb"}); err != nil {
		t.Fatal(err)
	}
	// Another tenant's entries are invisible.
	if _, err := rt.RunJob(ctx, testJob("other", "a", genSource{n: 30, extra: bad}, sink), RunOptions{RunID: "ro"}); err != nil {
		t.Fatal(err)
	}
	all, _ := rt.DLQ().List(ctx, "acme", DLQFilter{})
	if all.Total != 20 {
		t.Fatalf("total %d", all.Total)
	}
	p2, _ := rt.DLQ().List(ctx, "acme", DLQFilter{Integration: "a", Page: 2, PageSize: 4})
	if p2.Total != 10 || len(p2.Entries) != 4 || p2.Entries[0].Key != "12" {
		t.Fatalf("page 2: total %d, %d entries, first %s", p2.Total, len(p2.Entries), p2.Entries[0].Key)
	}
	p3, _ := rt.DLQ().List(ctx, "acme", DLQFilter{Integration: "a", Page: 3, PageSize: 4})
	if len(p3.Entries) != 2 {
		t.Fatalf("last page %d", len(p3.Entries))
	}
	if p, _ := rt.DLQ().List(ctx, "acme", DLQFilter{RunID: "rb", Category: connectors.CategoryTransient}); p.Total != 0 {
		t.Fatalf("category filter: %d", p.Total)
	}
	// Discard one.
	id := p2.Entries[0].ID
	d, err := rt.DLQ().Discard(ctx, "acme", id, "test data")
	if err != nil || d.Status != DLQDiscarded || d.Events[0].Action != "discard" {
		t.Fatalf("discard: %+v %v", d, err)
	}
	if _, err := rt.DLQ().Discard(ctx, "acme", id, ""); !errors.Is(err, ErrNotPending) {
		t.Fatalf("double discard: %v", err)
	}
	if p, _ := rt.DLQ().List(ctx, "acme", DLQFilter{Status: DLQDiscarded}); p.Total != 1 {
		t.Fatalf("status filter: %d", p.Total)
	}
	// Replay without a fix fails again and stays pending, with the attempt recorded.
	first := all.Entries[0]
	got, err := rt.DLQ().Replay(ctx, "acme", first.ID, jobsOf(jobA), ReplayOptions{})
	if err != nil || got.Status != DLQPending || len(got.Events) != 1 || got.Events[0].Result != "failed" || len(got.Attempts) != 2 {
		t.Fatalf("failed replay: %+v %v", got, err)
	}
	// Replay with an edited record succeeds.
	got, err = rt.DLQ().Replay(ctx, "acme", first.ID, jobsOf(jobA), ReplayOptions{Record: []byte(`{"id":0,"name":"fixed"}`)})
	if err != nil || got.Status != DLQReplayed || string(got.Events[1].Edited) != `{"id":0,"name":"fixed"}` {
		t.Fatalf("edited replay: %+v %v", got, err)
	}
	run, _ := rt.Runs().Get(ctx, "acme", "ra")
	checkCounts(t, run.Counts)
	if run.Counts.Failed != 9 || run.Counts.Success != 21 || run.Status != engine.RunPartial {
		t.Fatalf("run counts after replay: %+v", run.Counts)
	}
	errs, _ := rt.Runs().Errors(ctx, "acme", "ra")
	if len(errs) != 10 || errs[0].Message == "" {
		t.Fatalf("run errors: %d", len(errs))
	}
	if _, err := rt.DLQ().Get(ctx, "acme", "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	runs, _ := rt.Runs().List(ctx, "acme", RunFilter{Integration: "b"})
	if runs.Total != 1 || runs.Runs[0].ID != "rb" {
		t.Fatalf("run list: %+v", runs)
	}
}

func TestCursorTieBreaker(t *testing.T) {
	ctx := context.Background()
	rt := openTest(t, Options{})
	out := filepath.Join(t.TempDir(), "out.ndjson")
	sink := newFileSink(t, out)
	rec := func(id string, at int) map[string]any { return map[string]any{"id": id, "updated": at} }
	run := func(src listSource) map[string]int {
		before := readKeys(t, out)
		j := testJob("acme", "inc", src, sink)
		j.CursorField = "updated"
		if _, err := rt.RunJob(ctx, j, RunOptions{}); err != nil {
			t.Fatal(err)
		}
		after := readKeys(t, out)
		for k, n := range before {
			after[k] -= n
			if after[k] == 0 {
				delete(after, k)
			}
		}
		return after
	}
	got := run(listSource{rec("a", 1), rec("b", 2), rec("c", 2)})
	if len(got) != 3 {
		t.Fatalf("first run: %v", got)
	}
	c, _ := rt.Cursors().Get(ctx, "acme", "inc")
	if c.Value != "2" || c.Key != "c" {
		t.Fatalf("cursor %+v", c)
	}
	// d shares the cursor value 2 with b and c; it sorts after c, so it is new.
	got = run(listSource{rec("a", 1), rec("b", 2), rec("c", 2), rec("d", 2), rec("e", 10)})
	if len(got) != 2 || got["d"] != 1 || got["e"] != 1 {
		t.Fatalf("second run: %v", got)
	}
	if c, _ = rt.Cursors().Get(ctx, "acme", "inc"); c.Value != "10" || c.Key != "e" {
		t.Fatalf("cursor %+v (numeric order: 10 > 2)", c)
	}
	if err := rt.Cursors().Reset(ctx, "acme", "inc"); err != nil {
		t.Fatal(err)
	}
	if c, _ = rt.Cursors().Get(ctx, "acme", "inc"); !c.IsZero() {
		t.Fatalf("cursor after reset %+v", c)
	}
	if got = run(listSource{rec("a", 1), rec("b", 2)}); len(got) != 2 {
		t.Fatalf("after reset: %v", got)
	}
}

func TestSkipUnchanged(t *testing.T) {
	ctx := context.Background()
	rt := openTest(t, Options{})
	sink := newFileSink(t, filepath.Join(t.TempDir(), "out.ndjson"))
	mk := func(change int) *Job {
		j := testJob("acme", "hashy", genSource{n: 200, extra: func(i int, m map[string]any) {
			if i == change {
				m["name"] = "changed"
			}
		}}, sink)
		j.SkipUnchanged = true
		j.NewPreparer = func() Preparer { return testPrep{hash: true} }
		return j
	}
	r1, err := rt.RunJob(ctx, mk(-1), RunOptions{})
	if err != nil || r1.Counts.Success != 200 {
		t.Fatalf("%+v %v", r1, err)
	}
	r2, _ := rt.RunJob(ctx, mk(-1), RunOptions{})
	if r2.Counts != (engine.Counts{Total: 200, Skipped: 200}) || r2.Status != engine.RunSucceeded {
		t.Fatalf("unchanged run: %s %+v", r2.Status, r2.Counts)
	}
	r3, _ := rt.RunJob(ctx, mk(7), RunOptions{})
	if r3.Counts != (engine.Counts{Total: 200, Success: 1, Skipped: 199}) {
		t.Fatalf("one change: %+v", r3.Counts)
	}
	if err := rt.Hashes().Reset(ctx, "acme", "hashy"); err != nil {
		t.Fatal(err)
	}
	if r4, _ := rt.RunJob(ctx, mk(7), RunOptions{}); r4.Counts.Success != 200 {
		t.Fatalf("after reset: %+v", r4.Counts)
	}
}

// blockingSink blocks every Write until release is closed.
type blockingSink struct {
	started chan struct{}
	release chan struct{}
	once    atomic.Bool
}

func (s *blockingSink) Write(ctx context.Context, ws []connectors.Write) []error {
	if s.once.CompareAndSwap(false, true) {
		close(s.started)
	}
	<-s.release
	return nil
}
func (s *blockingSink) Close(context.Context) error { return nil }

func TestRunsOfOneIntegrationQueue(t *testing.T) {
	ctx := context.Background()
	rt := openTest(t, Options{})
	slow := &blockingSink{started: make(chan struct{}), release: make(chan struct{})}
	type res struct {
		r   *engine.RunResult
		err error
	}
	first := make(chan res, 1)
	go func() {
		r, err := rt.RunJob(ctx, testJob("acme", "q", genSource{n: 10}, slow), RunOptions{RunID: "first"})
		first <- res{r, err}
	}()
	<-slow.started
	second := make(chan res, 1)
	go func() {
		r, err := rt.RunJob(ctx, testJob("acme", "q", genSource{n: 10}, &fileSink{f: nil, fail: nil}), RunOptions{RunID: "second"})
		second <- res{r, err}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := rt.Runs().Get(ctx, "acme", "second")
		if err == nil && r.Status == engine.RunQueued {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("second run not queued: %+v %v", r, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if r, _ := rt.Runs().Get(ctx, "acme", "second"); r.Status != engine.RunQueued {
		t.Fatalf("second run started while first runs: %s", r.Status)
	}
	// Another integration is not blocked.
	other := newFileSink(t, filepath.Join(t.TempDir(), "o.ndjson"))
	if r, err := rt.RunJob(ctx, testJob("acme", "other", genSource{n: 10}, other), RunOptions{}); err != nil || r.Status != engine.RunSucceeded {
		t.Fatalf("other integration: %v %v", r, err)
	}
	close(slow.release)
	a, b := <-first, <-second
	if a.err != nil || b.err != nil {
		t.Fatal(a.err, b.err)
	}
	if !b.r.Started.After(a.r.Ended) && !b.r.Started.Equal(a.r.Ended) {
		t.Fatalf("second started %v before first ended %v", b.r.Started, a.r.Ended)
	}
}

func TestStaleLockDoesNotBlock(t *testing.T) {
	ctx := context.Background()
	rt := openTest(t, Options{LockTTL: 300 * time.Millisecond})
	// A lock left behind by a crashed process (no heartbeat).
	if _, err := rt.lockKV.Create(ctx, lockKey("acme", "q"), []byte(`{"runId":"dead","heartbeat":"2000-01-01T00:00:00Z"}`)); err != nil {
		t.Fatal(err)
	}
	sink := newFileSink(t, filepath.Join(t.TempDir(), "o.ndjson"))
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if r, err := rt.RunJob(c, testJob("acme", "q", genSource{n: 5}, sink), RunOptions{}); err != nil || r.Status != engine.RunSucceeded {
		t.Fatalf("%v %v", r, err)
	}
}

func TestResumeAfterCancel(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.ndjson")
	rt, err := Open(context.Background(), Options{DataDir: filepath.Join(dir, "data")})
	if err != nil {
		t.Fatal(err)
	}
	sink := newFileSink(t, out)
	sink.delay = 2 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for sink.calls.Load() < 10 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	job := testJob("acme", "orders", genSource{n: 5000}, sink)
	if _, err := rt.RunJob(ctx, job, RunOptions{RunID: "resumable"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("want canceled, got %v", err)
	}
	if r, _ := rt.Runs().Get(context.Background(), "acme", "resumable"); r.Status != engine.RunRunning {
		t.Fatalf("status after cancel %s", r.Status)
	}
	// Restart the embedded server too: the data directory keeps everything.
	rt.Close()
	rt = openTest(t, Options{DataDir: filepath.Join(dir, "data")})
	sink.delay = 0
	res, err := rt.RunJob(context.Background(), job, RunOptions{RunID: "resumable"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts != (engine.Counts{Total: 5000, Success: 5000}) || res.Status != engine.RunSucceeded {
		t.Fatalf("resumed: %s %+v", res.Status, res.Counts)
	}
	keys := readKeys(t, out)
	for i := range 5000 {
		if keys[strconv.Itoa(i)] == 0 {
			t.Fatalf("record %d missing", i)
		}
	}
	if r, _ := rt.Runs().Get(context.Background(), "acme", "resumable"); r.Resumes != 1 {
		t.Fatalf("resumes %d", r.Resumes)
	}
}

func TestExternalNATS(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	rt := openTest(t, Options{NATSURL: ns.ClientURL()})
	sink := newFileSink(t, filepath.Join(t.TempDir(), "o.ndjson"))
	r, err := rt.RunJob(context.Background(), testJob("acme", "ext", genSource{n: 100}, sink), RunOptions{})
	if err != nil || r.Counts.Success != 100 {
		t.Fatalf("%+v %v", r, err)
	}
	if _, err := Open(context.Background(), Options{NATSURL: "nats://127.0.0.1:1"}); err == nil {
		t.Fatal("connecting to nothing succeeded")
	}
}

func TestOpenIsIdempotentAndRestarts(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	rt, err := Open(ctx, Options{DataDir: dir, SyncPolicy: SyncAlways})
	if err != nil {
		t.Fatal(err)
	}
	sink := newFileSink(t, filepath.Join(dir, "o.ndjson"))
	if _, err := rt.RunJob(ctx, testJob("acme", "x", genSource{n: 10, extra: func(i int, m map[string]any) { m["bad"] = i == 3 }}, sink), RunOptions{RunID: "keep"}); err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	rt = openTest(t, Options{DataDir: dir})
	r, err := rt.Runs().Get(ctx, "acme", "keep")
	if err != nil || r.Counts.Total != 10 || r.Counts.Failed != 1 {
		t.Fatalf("run after restart: %+v %v", r, err)
	}
	if p, _ := rt.DLQ().List(ctx, "acme", DLQFilter{}); p.Total != 1 {
		t.Fatalf("DLQ after restart: %d", p.Total)
	}
	if _, err := Open(ctx, Options{DataDir: t.TempDir(), SyncPolicy: "sometimes"}); err == nil {
		t.Fatal("bad sync policy accepted")
	}
}

type failingSource struct{ after int }

func (s failingSource) Read(ctx context.Context, req connectors.ReadRequest, emit func(connectors.Record) error) error {
	if err := (genSource{n: s.after}).Read(ctx, req, emit); err != nil {
		return err
	}
	return errors.New("connection reset while reading page 2")
}

func TestRunLevelFailures(t *testing.T) {
	ctx := context.Background()
	rt := openTest(t, Options{})
	sink := newFileSink(t, filepath.Join(t.TempDir(), "o.ndjson"))
	// The source fails after 300 records: those are delivered; the run is partial.
	res, err := rt.RunJob(ctx, testJob("acme", "src", failingSource{after: 300}, sink), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != engine.RunPartial || res.Counts.Success != 300 || res.Error == "" {
		t.Fatalf("%s %+v %q", res.Status, res.Counts, res.Error)
	}
	// The target cannot open: failed, nothing read.
	j := testJob("acme", "tgt", genSource{n: 10}, sink)
	j.OpenSink = func(context.Context, connectors.SinkOptions) (connectors.Sink, error) {
		return nil, errors.New("401 unauthorized")
	}
	res, err = rt.RunJob(ctx, j, RunOptions{})
	if err != nil || res.Status != engine.RunFailed || res.Counts.Total != 0 {
		t.Fatalf("%+v %v", res, err)
	}
	// The lock was released: the next run of the integration does not wait.
	j.OpenSink = func(context.Context, connectors.SinkOptions) (connectors.Sink, error) { return sink, nil }
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if res, err = rt.RunJob(c, j, RunOptions{}); err != nil || res.Status != engine.RunSucceeded {
		t.Fatalf("%+v %v", res, err)
	}
}

// countingSink records the highest number of concurrent Write calls.
type countingSink struct {
	cur, max atomic.Int64
}

func (s *countingSink) Write(ctx context.Context, ws []connectors.Write) []error {
	n := s.cur.Add(1)
	for {
		m := s.max.Load()
		if n <= m || s.max.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(2 * time.Millisecond)
	s.cur.Add(-1)
	return nil
}
func (s *countingSink) Close(context.Context) error { return nil }
func (s *countingSink) ConcurrentWrites() bool      { return true }

func TestPerConnectionLimit(t *testing.T) {
	rt := openTest(t, Options{ConnectionConcurrency: 2})
	sink := &countingSink{}
	j := testJob("acme", "lim", genSource{n: 4000}, sink)
	j.Workers, j.MessageRecords, j.BatchSize = 8, 50, 10
	if _, err := rt.RunJob(context.Background(), j, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if m := sink.max.Load(); m > 2 || m < 1 {
		t.Fatalf("max concurrent calls %d, limit 2", m)
	}
}
