package runtime

// Fault injection: sinks that fail, time out or hang, a source that breaks
// mid-page, JetStream restarted underneath a run, shutdown under load, and
// goroutine and heap checks. Every test ends by proving that nothing was lost:
// each record reached the sink at least once or sits in the DLQ, and the run's
// counts add up.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/engine"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// faultSink keeps the successful writes per key in memory. before runs first on
// every call (try is the attempt number of its first write) and may block or
// fail the whole call; fail decides per write.
type faultSink struct {
	mu         sync.Mutex
	got        map[string]int // successful writes per key
	tries      map[string]int // attempts per key
	calls      atomic.Int64
	before     func(ctx context.Context, ws []connectors.Write, try int) error
	fail       func(w connectors.Write, try int) error
	concurrent bool
}

func newFaultSink() *faultSink {
	return &faultSink{got: map[string]int{}, tries: map[string]int{}, concurrent: true}
}

func (s *faultSink) Write(ctx context.Context, ws []connectors.Write) []error {
	s.calls.Add(1)
	errs := make([]error, len(ws))
	// Attempts count when the call starts, so a call the runtime abandoned
	// still counts when its retry arrives.
	s.mu.Lock()
	tries := make([]int, len(ws))
	for i, w := range ws {
		s.tries[w.Key]++
		tries[i] = s.tries[w.Key]
	}
	s.mu.Unlock()
	if s.before != nil && len(ws) > 0 {
		if err := s.before(ctx, ws, tries[0]); err != nil {
			for i := range errs {
				errs[i] = err
			}
			return errs
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, w := range ws {
		if s.fail != nil {
			if errs[i] = s.fail(w, tries[i]); errs[i] != nil {
				continue
			}
		}
		s.got[w.Key]++
	}
	return errs
}

func (s *faultSink) Close(context.Context) error { return nil }
func (s *faultSink) ConcurrentWrites() bool      { return s.concurrent }

// delivered returns the number of keys 0..n-1 that never reached the sink and
// the number written more than once.
func (s *faultSink) delivered(n int) (missing, dups int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range n {
		switch c := s.got[strconv.Itoa(i)]; {
		case c == 0:
			missing++
		case c > 1:
			dups++
		}
	}
	return missing, dups
}

func (s *faultSink) written() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkGoroutines fails the test if goroutines started during it are still
// running once its cleanups (rt.Close among them) ran. Register it before
// opening the runtime: cleanups run last-registered first.
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := goruntime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(15 * time.Second)
		for goruntime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				var buf bytes.Buffer
				_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
				t.Errorf("goroutine leak: %d running, %d before the test\n%s", goruntime.NumGoroutine(), before, buf.String())
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// noLostRecords checks the end state of a run of n records (keys 0..n-1) that
// must all have succeeded: every key at the sink, the counts exact, no work
// left behind, the DLQ empty.
func noLostRecords(t *testing.T, rt *Runtime, sink *faultSink, res *engine.RunResult, n int) (dups int) {
	t.Helper()
	missing, dups := sink.delivered(n)
	if missing > 0 {
		t.Fatalf("%d of %d records never reached the sink", missing, n)
	}
	if res.Status != engine.RunSucceeded || res.Counts.Total != int64(n) || res.Counts.Success != int64(n) || res.Counts.Failed != 0 {
		t.Fatalf("result %s %+v, want %d succeeded", res.Status, res.Counts, n)
	}
	checkCounts(t, res.Counts)
	ctx := context.Background()
	run, err := rt.Runs().Get(ctx, "acme", res.ID)
	if err != nil || run.Counts != res.Counts || run.Status != res.Status {
		t.Fatalf("stored run %+v %v, result %+v", run, err, res.Counts)
	}
	if p, err := rt.DLQ().List(ctx, "acme", DLQFilter{RunID: res.ID}); err != nil || p.Total != 0 {
		t.Fatalf("DLQ: %+v %v", p, err)
	}
	waitFor(t, "the work stream to be empty", 10*time.Second, func() bool {
		info, err := rt.work.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	return dups
}

// Case 1: a sink failing transiently a number of times per record.
func TestFaultSinkTransientNTimes(t *testing.T) {
	checkGoroutines(t)
	ctx := context.Background()
	rt := openTest(t, Options{})
	for _, tc := range []struct {
		name          string
		failures      int // per record, before the sink accepts it
		maxAttempts   int
		wantDead      bool
		wantRetried   int64
		concurrent    bool
		retryAfterKey string
	}{
		{name: "recovers", failures: 3, maxAttempts: 5, wantRetried: 3 * 600, concurrent: true, retryAfterKey: "42"},
		{name: "recovers serial sink", failures: 1, maxAttempts: 2, wantRetried: 600},
		{name: "exhausts attempts", failures: 4, maxAttempts: 3, wantDead: true, wantRetried: 2 * 600, concurrent: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 600
			sink := newFaultSink()
			sink.concurrent = tc.concurrent
			sink.fail = func(w connectors.Write, try int) error {
				if try > tc.failures {
					return nil
				}
				ra := time.Duration(0)
				if w.Key == tc.retryAfterKey {
					ra = 30 * time.Millisecond
				}
				return connectors.Transient(fmt.Errorf("503 try %d", try), ra)
			}
			job := testJob("acme", "transient-"+strconv.Itoa(tc.failures), genSource{n: n}, sink)
			job.Workers, job.MessageRecords, job.BatchSize = 4, 50, 20
			job.Retry = RetryPolicy{MaxAttempts: tc.maxAttempts, Initial: 2 * time.Millisecond, Max: 10 * time.Millisecond, Multiplier: 2}
			res, err := rt.RunJob(ctx, job, RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			checkCounts(t, res.Counts)
			if res.Counts.Retried != tc.wantRetried {
				t.Fatalf("retried %d, want %d", res.Counts.Retried, tc.wantRetried)
			}
			sink.mu.Lock()
			for i := range n {
				k := strconv.Itoa(i)
				wantTries := min(tc.failures+1, tc.maxAttempts)
				if sink.tries[k] != wantTries {
					sink.mu.Unlock()
					t.Fatalf("key %s tried %d times, want %d", k, sink.tries[k], wantTries)
				}
			}
			sink.mu.Unlock()
			if !tc.wantDead {
				if dups := noLostRecords(t, rt, sink, res, n); dups != 0 {
					t.Fatalf("%d records written twice by a sink that reported them failed", dups)
				}
				return
			}
			if res.Status != engine.RunFailed || res.Counts.Failed != n || res.Counts.Success != 0 {
				t.Fatalf("result %s %+v", res.Status, res.Counts)
			}
			p, err := rt.DLQ().List(ctx, "acme", DLQFilter{RunID: res.ID, PageSize: n})
			if err != nil || p.Total != n {
				t.Fatalf("DLQ: %d entries, %v", p.Total, err)
			}
			for _, e := range p.Entries {
				if e.Category != connectors.CategoryTransient || len(e.Attempts) != tc.maxAttempts || e.Stage != engine.StageExecute {
					t.Fatalf("DLQ entry %+v", e)
				}
			}
		})
	}
}

// Case 2a: a sink that honours its context but never answers in time for the
// first attempt of a record: the per-call limit (Options.SinkTimeout) cancels
// the call, and the retry succeeds.
func TestFaultSinkTimeout(t *testing.T) {
	checkGoroutines(t)
	rt := openTest(t, Options{SinkTimeout: 50 * time.Millisecond})
	const n = 300
	sink := newFaultSink()
	var timedOut atomic.Int64
	sink.before = func(ctx context.Context, _ []connectors.Write, try int) error {
		if try > 1 {
			return nil
		}
		timedOut.Add(1)
		<-ctx.Done() // a slow target: only the runtime's deadline ends the call
		return ctx.Err()
	}
	job := testJob("acme", "slow", genSource{n: n}, sink)
	job.Workers, job.MessageRecords, job.BatchSize = 4, 50, 25
	res, err := rt.RunJob(context.Background(), job, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	noLostRecords(t, rt, sink, res, n)
	if res.Counts.Retried != n || timedOut.Load() != n/25 {
		t.Fatalf("retried %d (want %d), %d calls timed out (want %d)", res.Counts.Retried, n, timedOut.Load(), n/25)
	}
}

// Case 2b: sinks that ignore their context. A call that hangs for a while is
// abandoned at the limit and its records retried; a call that never returns
// sends its records to the DLQ once the attempts are used up, and the run ends.
func TestFaultSinkHangsIgnoringContext(t *testing.T) {
	checkGoroutines(t)
	rt := openTest(t, Options{SinkTimeout: 50 * time.Millisecond})
	ctx := context.Background()

	t.Run("for a while, serial sink", func(t *testing.T) {
		const n = 200
		sink := newFaultSink()
		sink.concurrent = false
		var hung atomic.Int64
		sink.before = func(_ context.Context, ws []connectors.Write, _ int) error {
			if ws[0].Key == "0" && hung.Add(1) == 1 {
				time.Sleep(400 * time.Millisecond) // the fault: a stuck call, deaf to cancellation
			}
			return nil
		}
		job := testJob("acme", "hang-a-while", genSource{n: n}, sink)
		job.Workers, job.MessageRecords, job.BatchSize = 4, 50, 10
		job.Retry = RetryPolicy{MaxAttempts: 30, Initial: 5 * time.Millisecond, Max: 100 * time.Millisecond, Multiplier: 2}
		res, err := rt.RunJob(ctx, job, RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		noLostRecords(t, rt, sink, res, n)
		if res.Counts.Retried < 10 {
			t.Fatalf("the hung call's 10 records were not retried: %+v", res.Counts)
		}
	})

	t.Run("forever", func(t *testing.T) {
		const n = 200
		sink := newFaultSink()
		release := make(chan struct{})
		defer close(release) // lets the abandoned calls end, for the goroutine check
		sink.before = func(_ context.Context, ws []connectors.Write, _ int) error {
			for _, w := range ws {
				if w.Key == "7" {
					<-release
					return errors.New("released")
				}
			}
			return nil
		}
		job := testJob("acme", "hang-forever", genSource{n: n}, sink)
		job.Workers, job.MessageRecords, job.BatchSize = 4, 50, 1
		job.Retry = RetryPolicy{MaxAttempts: 3, Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond, Multiplier: 2}
		res, err := rt.RunJob(ctx, job, RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkCounts(t, res.Counts)
		if res.Status != engine.RunPartial || res.Counts.Success != n-1 || res.Counts.Failed != 1 {
			t.Fatalf("result %s %+v", res.Status, res.Counts)
		}
		p, err := rt.DLQ().List(ctx, "acme", DLQFilter{RunID: res.ID})
		if err != nil || p.Total != 1 {
			t.Fatalf("DLQ %+v %v", p, err)
		}
		e := p.Entries[0]
		if e.Key != "7" || e.Category != connectors.CategoryTransient || len(e.Attempts) != 3 || !strings.Contains(e.Error, "sink timeout") {
			t.Fatalf("DLQ entry %+v", e)
		}
		if missing, _ := sink.delivered(n); missing != 1 {
			t.Fatalf("%d keys missing, want only 7", missing)
		}
	})
}

// pagedSource emits records in pages; it fails after failAfter records
// (mid-page) when failAfter ≥ 0. Records carry "updated" = their id, so the
// integration can be incremental.
type pagedSource struct {
	n, page, failAfter int
	emitted            *atomic.Int64
}

func (s pagedSource) Read(ctx context.Context, req connectors.ReadRequest, emit func(connectors.Record) error) error {
	for i := 0; i < s.n; i++ {
		if s.failAfter >= 0 && i == s.failAfter {
			return fmt.Errorf("page %d: connection reset by peer", i/s.page+1)
		}
		if req.Cursor != "" {
			if c, _ := strconv.Atoi(req.Cursor); i < c {
				continue // the source's own cursor filter (the runtime checks too)
			}
		}
		raw, _ := json.Marshal(map[string]any{"id": i, "updated": i})
		if err := emit(connectors.Record{Raw: raw, Position: fmt.Sprintf("page %d #%d", i/s.page+1, i%s.page)}); err != nil {
			return err
		}
		if s.emitted != nil {
			s.emitted.Add(1)
		}
	}
	return nil
}

// Case 3: the source fails in the middle of a page.
func TestFaultSourceErrorsMidPage(t *testing.T) {
	checkGoroutines(t)
	ctx := context.Background()
	rt := openTest(t, Options{})
	const n, failAt = 1000, 250
	sink := newFaultSink()
	mk := func(failAfter int) *Job {
		j := testJob("acme", "paged", pagedSource{n: n, page: 100, failAfter: failAfter}, sink)
		j.CursorField = "updated"
		j.MessageRecords = 64 // 250 = 3 full messages + a partial one cut by the error
		return j
	}
	res, err := rt.RunJob(ctx, mk(failAt), RunOptions{RunID: "broken"})
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, res.Counts)
	if res.Status != engine.RunPartial || res.Counts.Total != failAt || res.Counts.Success != failAt ||
		!strings.Contains(res.Error, "read source") || !strings.Contains(res.Error, "page 3") {
		t.Fatalf("result %s %+v %q", res.Status, res.Counts, res.Error)
	}
	if missing, _ := sink.delivered(failAt); missing != 0 {
		t.Fatalf("%d records read before the error were not delivered", missing)
	}
	if sink.written() != failAt {
		t.Fatalf("%d keys written, want %d", sink.written(), failAt)
	}
	// The cursor did not move: the source's order is not known to be the
	// cursor's, so records after the last one read may hold lower values.
	if c, _ := rt.Cursors().Get(ctx, "acme", "paged"); !c.IsZero() {
		t.Fatalf("cursor moved after a failed read: %+v", c)
	}
	// The run ended: resuming it by id returns its result and runs nothing.
	again, err := rt.RunJob(ctx, mk(-1), RunOptions{RunID: "broken"})
	if err != nil || again.Counts != res.Counts || sink.written() != failAt {
		t.Fatalf("resume of an ended run: %+v %v (%d keys)", again, err, sink.written())
	}
	// A new run reads from the unmoved cursor: nothing is lost; the 250 are
	// written again (at least once), the rest once.
	res2, err := rt.RunJob(ctx, mk(-1), RunOptions{RunID: "healed"})
	if err != nil {
		t.Fatal(err)
	}
	noLostRecords(t, rt, sink, res2, n)
	if _, dups := sink.delivered(n); dups != failAt {
		t.Fatalf("%d keys written twice, want the %d of the failed run", dups, failAt)
	}
	if c, _ := rt.Cursors().Get(ctx, "acme", "paged"); c.Value != strconv.Itoa(n-1) {
		t.Fatalf("cursor after the healed run: %+v", c)
	}
	// Nothing new: the next run reads nothing and writes nothing.
	res3, err := rt.RunJob(ctx, mk(-1), RunOptions{})
	if err != nil || res3.Counts.Total != 0 || res3.Status != engine.RunSucceeded {
		t.Fatalf("run after the cursor: %+v %v", res3, err)
	}
	if _, dups := sink.delivered(n); dups != failAt {
		t.Fatalf("records written again after the cursor moved: %d dups", dups)
	}
}

// testNATS is an external nats-server the test can stop and start again on the
// same port and store directory.
type testNATS struct {
	t    *testing.T
	dir  string
	port int
	ns   *server.Server
}

func startTestNATS(t *testing.T) *testNATS {
	s := &testNATS{t: t, dir: t.TempDir(), port: -1}
	s.start()
	s.port = s.ns.Addr().(*net.TCPAddr).Port
	t.Cleanup(s.stop)
	return s
}

func (s *testNATS) start() {
	s.t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: s.port, JetStream: true, StoreDir: s.dir, NoSigs: true, NoLog: true})
	if err != nil {
		s.t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		s.t.Fatal("nats-server not ready")
	}
	s.ns = ns
}

func (s *testNATS) stop() {
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		s.ns = nil
	}
}

func (s *testNATS) url() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

// Case 4: the NATS server is stopped in the middle of a run, while ingest is
// still publishing and workers are writing, and started again on the same
// store; the run finishes with nothing lost.
func TestFaultJetStreamRestart(t *testing.T) {
	checkGoroutines(t)
	srv := startTestNATS(t)
	rt := openTest(t, Options{NATSURL: srv.url()})
	const n = 6000
	sink := newFaultSink()
	sink.before = func(context.Context, []connectors.Write, int) error {
		time.Sleep(5 * time.Millisecond) // a target slower than ingest
		return nil
	}
	gate := make(chan struct{})
	var emitted atomic.Int64
	src := gatedSource{pagedSource{n: n, page: 100, failAfter: -1, emitted: &emitted}, n / 2, gate}
	job := testJob("acme", "restart", src, sink)
	job.Workers, job.MessageRecords, job.BatchSize = 4, 100, 10
	job.Retry = RetryPolicy{MaxAttempts: 20, Initial: 10 * time.Millisecond, Max: 200 * time.Millisecond, Multiplier: 2}
	type result struct {
		res *engine.RunResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := rt.RunJob(context.Background(), job, RunOptions{RunID: "restart"})
		done <- result{res, err}
	}()
	// Half read, some written: stop the server, let ingest go on into the
	// outage, start the server again once the client noticed.
	waitFor(t, "half the records read and 1000 written", 30*time.Second, func() bool {
		return emitted.Load() >= n/2 && sink.written() >= 1000
	})
	srv.stop()
	close(gate)
	waitFor(t, "the client to notice the outage", 10*time.Second, func() bool { return rt.nc.Status() != nats.CONNECTED })
	atOutage := sink.written()
	srv.start()
	var r result
	select {
	case r = <-done:
	case <-time.After(45 * time.Second):
		info, err := rt.js.Consumer(context.Background(), WorkStream, consumerName("acme", "restart"))
		var ci any = err
		if err == nil {
			ci = info.CachedInfo()
		}
		run, _ := rt.Runs().Get(context.Background(), "acme", "restart")
		b, _ := json.Marshal(ci)
		t.Fatalf("run did not finish within 45s of the restart (%d of %d written, %d at the outage, %d emitted)\nconsumer: %s\nrun: %+v",
			sink.written(), n, atOutage, emitted.Load(), b, run)
	}
	if r.err != nil {
		t.Fatalf("run failed across the restart: %v", r.err)
	}
	dups := noLostRecords(t, rt, sink, r.res, n)
	t.Logf("restart at %d written; %d records written twice (at-least-once)", atOutage, dups)
}

// Case 4b: NATS goes away at the moment a run ends: every record settled,
// and the writes that end the run (cursor, counts and status, the
// integration's lock) meet a lost connection. The server comes back only
// once those writes failed and were tried again: the run rides the outage
// out and ends succeeded, its cursor moved and its lock released.
func TestFaultJetStreamOutageAsRunEnds(t *testing.T) {
	checkGoroutines(t)
	srv := startTestNATS(t)
	retried := &logSignal{msg: "NATS unavailable; trying again", seen: make(chan struct{})}
	rt := openTest(t, Options{NATSURL: srv.url(), Logger: slog.New(retried)})
	ctx := context.Background()
	// Attempts give up sooner than the client reconnects (2s), so the
	// outage outlasts one.
	defer func(d time.Duration) { natsAttempt = d }(natsAttempt)
	natsAttempt = 200 * time.Millisecond

	const n = 500
	sink := newFaultSink()
	job := testJob("acme", "ending", pagedSource{n: n, page: 100, failAfter: -1}, sink)
	job.CursorField = "updated"
	job.MessageRecords = 100
	stopped := make(chan struct{})
	testHookSettled = func(runID string) {
		if runID == "ending" {
			srv.stop()
			close(stopped)
		}
	}
	t.Cleanup(func() { testHookSettled = nil })
	type result struct {
		res *engine.RunResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := rt.RunJob(ctx, job, RunOptions{RunID: "ending"})
		done <- result{res, err}
	}()
	select {
	case <-stopped:
	case r := <-done:
		t.Fatalf("the run ended without reaching its end writes: %+v %v", r.res, r.err)
	}
	var r result
	select {
	case <-retried.seen:
		srv.start()
		r = <-done
	case r = <-done: // gave up at the first failure
		srv.start()
	}
	if r.err != nil {
		t.Fatalf("run failed across a NATS outage as it ended: %v", r.err)
	}
	noLostRecords(t, rt, sink, r.res, n)
	if run, err := rt.Runs().Get(ctx, "acme", "ending"); err != nil || run.Ended.IsZero() || run.Resumes != 0 {
		t.Fatalf("stored run %+v %v", run, err)
	}
	if c, err := rt.Cursors().Get(ctx, "acme", "ending"); err != nil || c.Value != strconv.Itoa(n-1) || c.RunID != "ending" {
		t.Fatalf("cursor %+v %v, want %d of run ending", c, err, n-1)
	}
	// The next run of the integration need not wait out the lock's TTL.
	if _, err := rt.lockKV.Get(ctx, lockKey("acme", "ending")); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("the integration's lock after the run: %v, want it released", err)
	}
}

// logSignal is a log handler that closes seen at the first record with
// message msg, and drops every record.
type logSignal struct {
	msg  string
	seen chan struct{}
	once sync.Once
}

func (h *logSignal) Enabled(context.Context, slog.Level) bool { return true }
func (h *logSignal) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(func() { close(h.seen) })
	}
	return nil
}
func (h *logSignal) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logSignal) WithGroup(string) slog.Handler      { return h }

// gatedSource emits the first `at` records of src, then waits for gate.
type gatedSource struct {
	src  pagedSource
	at   int
	gate chan struct{}
}

func (s gatedSource) Read(ctx context.Context, req connectors.ReadRequest, emit func(connectors.Record) error) error {
	i := 0
	return s.src.Read(ctx, req, func(r connectors.Record) error {
		if i == s.at {
			select {
			case <-s.gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		i++
		return emit(r)
	})
}

// TestNATSServerHelper is this test binary re-executed as a nats-server
// process (FERRY_NATS_HELPER = its store directory): it prints "URL <url>"
// and serves until its stdin closes.
func TestNATSServerHelper(t *testing.T) {
	dir := os.Getenv("FERRY_NATS_HELPER")
	if dir == "" {
		t.Skip("helper process for TestFaultNoLeaksAcrossRuns")
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	fmt.Printf("URL %s\n", ns.ClientURL())
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// natsProcess starts a nats-server in a child process and returns its URL.
func natsProcess(t *testing.T) string {
	cmd := exec.Command(os.Args[0], "-test.run=^TestNATSServerHelper$")
	cmd.Env = append(os.Environ(), "FERRY_NATS_HELPER="+t.TempDir())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "URL "); ok {
				urls <- u
			}
		}
	}()
	select {
	case u := <-urls:
		return u
	case <-time.After(30 * time.Second):
		t.Fatal("the nats-server process did not start within 30s")
	}
	return ""
}

// Case 5: repeated runs on one runtime leave no goroutine behind (checked after
// every run, and after Close) and do not grow the heap. NATS runs in a child
// process, so the heap measured is the runtime's own, not the server's caches.
func TestFaultNoLeaksAcrossRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("repeated runs and a child process")
	}
	checkGoroutines(t)
	ctx := context.Background()
	rt := openTest(t, Options{NATSURL: natsProcess(t), SinkTimeout: 50 * time.Millisecond})
	heap := func() uint64 {
		var m goruntime.MemStats
		goruntime.GC()
		goruntime.GC()
		goruntime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	const n, warmup, runs = 2000, 5, 25
	var baseHeap uint64
	var baseGoroutines int
	for i := range runs {
		sink := newFaultSink()
		// Every run meets transient failures, a timed-out call and DLQ entries.
		sink.fail = func(w connectors.Write, try int) error {
			if k, _ := strconv.Atoi(w.Key); k%97 == 0 {
				return connectors.Permanent(errors.New("422"))
			} else if k%13 == 0 && try == 1 {
				return connectors.Transient(errors.New("503"), 0)
			}
			return nil
		}
		var once atomic.Bool
		sink.before = func(ctx context.Context, _ []connectors.Write, _ int) error {
			if once.CompareAndSwap(false, true) {
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		}
		job := testJob("acme", "leaks", genSource{n: n}, sink)
		job.Workers = 4
		res, err := rt.RunJob(ctx, job, RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkCounts(t, res.Counts)
		if res.Counts.Total != n || res.Counts.Failed != n/97+1 {
			t.Fatalf("run %d: %s %+v", i, res.Status, res.Counts)
		}
		switch {
		case i == warmup-1: // pools, caches and the connection's subscriptions exist
			baseHeap, baseGoroutines = heap(), goruntime.NumGoroutine()
		case i >= warmup:
			waitFor(t, fmt.Sprintf("goroutines of run %d to end (%d, %d after the warm-up)", i, goruntime.NumGoroutine(), baseGoroutines),
				10*time.Second, func() bool { return goruntime.NumGoroutine() <= baseGoroutines })
		}
	}
	growth := int64(heap()) - int64(baseHeap)
	t.Logf("heap after %d runs: %d KiB; after %d more: %+d KiB", warmup, baseHeap>>10, runs-warmup, growth>>10)
	// A leaked run (its tracker, a message, a sink) holds ≥ 100 KiB here: 20
	// of them would be 2 MiB. Allow half of that for allocator noise.
	if growth > 1<<20 {
		t.Fatalf("heap grew %d KiB over %d runs", growth>>10, runs-warmup)
	}
}

// Case 6: shutdown under load. The run's context is cancelled (what ferry
// serve and ferry run do on a signal) while workers are busy, the runtime is
// closed, and a new runtime on the same data directory resumes the run: every
// record succeeds, none is counted twice, and only messages in flight at the
// shutdown may be written twice.
func TestFaultGracefulShutdownUnderLoad(t *testing.T) {
	checkGoroutines(t)
	dir := filepath.Join(t.TempDir(), "data")
	rt, err := Open(context.Background(), Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	const n, workers, perMsg = 20000, 4, 100
	sink := newFaultSink()
	sink.before = func(context.Context, []connectors.Write, int) error {
		time.Sleep(200 * time.Microsecond)
		return nil
	}
	job := testJob("acme", "shutdown", genSource{n: n}, sink)
	job.Workers, job.MessageRecords, job.BatchSize = workers, perMsg, 25
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := rt.RunJob(ctx, job, RunOptions{RunID: "busy"})
		done <- err
	}()
	waitFor(t, "the run to be busy", 30*time.Second, func() bool { return sink.written() >= n/5 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("interrupted run: %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the run did not stop within 30s of being cancelled")
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	atShutdown := sink.written()
	if atShutdown >= n {
		t.Fatal("the run finished before the shutdown")
	}
	t.Logf("shut down with %d of %d records written", atShutdown, n)

	rt = openTest(t, Options{DataDir: dir})
	res, err := rt.RunJob(context.Background(), job, RunOptions{RunID: "busy"})
	if err != nil {
		t.Fatal(err)
	}
	dups := noLostRecords(t, rt, sink, res, n)
	// Settled messages were acked or are acked again without executing; only
	// the messages workers had in hand when the run stopped run twice.
	if dups > workers*perMsg {
		t.Fatalf("%d records written twice; at most %d (the messages in flight) may be", dups, workers*perMsg)
	}
	if run, _ := rt.Runs().Get(context.Background(), "acme", "busy"); run.Resumes != 1 {
		t.Fatalf("resumes %d", run.Resumes)
	}
	t.Logf("%d records written twice (in flight at the shutdown)", dups)
}

// Case 6b: the runtime is closed under a run whose context stays alive (a
// caller that forgot to cancel): RunJob returns an error instead of hanging,
// and the run resumes on a new runtime.
func TestFaultCloseUnderRunningRun(t *testing.T) {
	checkGoroutines(t)
	dir := filepath.Join(t.TempDir(), "data")
	rt, err := Open(context.Background(), Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	sink := newFaultSink()
	sink.before = func(context.Context, []connectors.Write, int) error {
		time.Sleep(500 * time.Microsecond)
		return nil
	}
	job := testJob("acme", "closed", genSource{n: n}, sink)
	job.Workers, job.MessageRecords, job.BatchSize = 2, 100, 25
	done := make(chan error, 1)
	go func() {
		_, err := rt.RunJob(context.Background(), job, RunOptions{RunID: "orphan"})
		done <- err
	}()
	waitFor(t, "the run to be busy", 30*time.Second, func() bool { return sink.written() >= 500 })
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("RunJob after Close: %v, want ErrClosed", err)
		}
		t.Logf("RunJob after Close: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("RunJob still running 30s after Close")
	}
	if _, err := rt.RunJob(context.Background(), job, RunOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("RunJob on a closed runtime: %v, want ErrClosed", err)
	}
	rt = openTest(t, Options{DataDir: dir})
	res, err := rt.RunJob(context.Background(), job, RunOptions{RunID: "orphan"})
	if err != nil {
		t.Fatal(err)
	}
	noLostRecords(t, rt, sink, res, n)
}

// BenchmarkCallSink measures what bounding a sink call costs (a goroutine and a
// timer per call of BatchSize records) against calling the sink directly.
//
//	go test ./runtime -run '^$' -bench CallSink
func BenchmarkCallSink(b *testing.B) {
	rt := &Runtime{opts: Options{SinkTimeout: DefaultSinkTimeout}}
	var sink nopSink
	writes := make([]connectors.Write, 100)
	ctx := context.Background()
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			sink.Write(ctx, writes)
		}
	})
	b.Run("bounded", func(b *testing.B) {
		sem := make(chan struct{}, 16)
		for b.Loop() {
			rt.callSink(ctx, DefaultSinkTimeout, sink, sem, nil, writes)
		}
	})
}

type nopSink struct{}

func (nopSink) Write(context.Context, []connectors.Write) []error { return nil }
func (nopSink) Close(context.Context) error                       { return nil }
